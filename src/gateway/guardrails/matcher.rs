//! The content rules of one direction, compiled once per routing table: each pattern and
//! built-in detector with a literal to skip to searched alone (its own prefilter), the other
//! built-ins in one leftmost pass of one multi-pattern regex ([`Group`]), keywords in one
//! Aho-Corasick automaton (case-insensitive) behind a vectorised prefilter ([`Keywords`]).

use std::sync::Arc;

use regex::{Regex, RegexBuilder};

use super::detectors::detector;
use super::gate::Gate;
use super::json_text::{safe_in_string, JsonText};
use super::keywords::Keywords;
use super::scan::{each_match, Group};
use super::GuardError;
use crate::crd::{ContentRule, Direction, GuardAction, MessageRole};

/// Largest compiled size of one pattern (the compiler checks each pattern with this too).
const PATTERN_SIZE: usize = 1 << 20;
/// Longest hold-back window on streamed responses, in bytes; a rule whose matches can be
/// longer (a pattern with unbounded repetition) is held back this far.
pub const WINDOW_CAP: usize = 256;
/// Context after a match the checks look at (two characters).
const LOOKAHEAD: usize = 8;

/// A rule as the matcher reports it.
#[derive(Debug)]
pub struct RuleInfo {
    pub name: Arc<str>,
    pub action: GuardAction,
    /// Request roles the rule scans, as bits of [`role_bit`].
    roles: u8,
    /// `[REDACTED:<name>]`.
    redacted: String,
}

/// The bit of a role in [`RuleInfo::roles`].
pub fn role_bit(role: MessageRole) -> u8 {
    1 << (role as u8)
}

enum Source {
    Builtin {
        placeholder: &'static str,
        check: fn(&str, usize, usize) -> bool,
    },
    Pattern,
}

struct Entry {
    regex: Regex,
    source: Source,
    /// The rules using this detector or pattern, in rule order.
    rules: Vec<u16>,
    /// Its longest match (at most [`WINDOW_CAP`]) plus [`LOOKAHEAD`]: a match starting this
    /// far before the end of the text is complete.
    window: usize,
    /// Searched alone (a pattern, or a built-in with a literal to skip to), not in the group.
    alone: bool,
    /// The literals every match contains one of, when known ([`Gate`]).
    gate: Option<Gate>,
}

/// What a scanned text is, which decides what a masking match does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Form {
    /// Plain text: masked.
    #[default]
    Plain,
    /// JSON source (a tool call's arguments as a string): scanned with its strings' escapes
    /// decoded, masked in the source over the escapes; a match that is not inside one string
    /// (it spans a quote, or is a bare number) blocks, as masking would break the JSON.
    Json,
    /// Text a provider signed (Anthropic `thinking`, whose `signature` the client sends back):
    /// a changed text no longer matches its signature and the provider refuses it on the next
    /// turn, so a masking match blocks.
    Signed,
}

/// A match of one search before it is checked: `engine` is its entry, or the keywords'
/// index plus the keyword's ([`Matcher::engines`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub engine: usize,
    pub start: usize,
    pub end: usize,
}

/// One match to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    /// The deciding rule (the first blocking one, else the first masking one).
    pub rule: u16,
    /// A built-in's typed placeholder; `None` for patterns and keywords (`[REDACTED:<rule>]`).
    pub placeholder: Option<&'static str>,
}

pub struct Matcher {
    pub rules: Vec<RuleInfo>,
    entries: Vec<Entry>,
    /// The entries not searched alone, scanned together; `grouped[i]` is the entry of its
    /// pattern `i`.
    group: Option<Group>,
    grouped: Vec<usize>,
    keywords: Option<Keywords>,
    /// The rule of each keyword.
    keyword_rules: Vec<u16>,
    /// The keywords' [`Entry::window`].
    keyword_window: usize,
    /// Bytes of text a streamed response holds back (longest match plus context).
    pub window: usize,
}

impl Matcher {
    /// The rules of `rules` that apply in `direction` (`Request` or `Response`); `None` when
    /// none does.
    pub fn compile(rules: &[ContentRule], direction: Direction) -> Result<Option<Matcher>, GuardError> {
        let mut infos = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut keywords: Vec<String> = Vec::new();
        let mut keyword_rules = Vec::new();
        let mut longest = 0usize;
        let mut keyword_window = 0;
        let response = direction == Direction::Response;
        for rule in rules {
            let on = rule.directions().map_or(&[Direction::Request][..], Vec::as_slice);
            if !on.iter().any(|d| *d == direction || *d == Direction::Both) {
                continue;
            }
            let index = u16::try_from(infos.len()).unwrap_or(u16::MAX);
            let roles = rule
                .roles
                .as_deref()
                .unwrap_or(&[MessageRole::User, MessageRole::Tool])
                .iter()
                .fold(0u8, |bits, role| bits | role_bit(*role));
            infos.push(RuleInfo {
                name: Arc::from(rule.name.as_str()),
                action: rule.action.unwrap_or_default(),
                roles,
                redacted: format!("[REDACTED:{}]", rule.name),
            });
            for builtin in rule.builtin.iter().flatten() {
                let found = detector(*builtin, response);
                if let Some(entry) = entries
                    .iter_mut()
                    .find(|e| e.regex.as_str() == found.pattern && matches!(e.source, Source::Builtin { .. }))
                {
                    entry.rules.push(index);
                    continue;
                }
                let window = max_len(&found.pattern).min(WINDOW_CAP) + LOOKAHEAD;
                longest = longest.max(max_len(&found.pattern));
                entries.push(Entry {
                    window,
                    regex: build(&found.pattern, &rule.name)?,
                    source: Source::Builtin {
                        placeholder: found.placeholder,
                        check: found.check,
                    },
                    rules: vec![index],
                    alone: !found.required.is_empty(),
                    gate: Gate::builtin(found.required, found.lead)?,
                });
            }
            for pattern in rule.patterns.iter().flatten() {
                longest = longest.max(max_len(pattern));
                entries.push(Entry {
                    window: max_len(pattern).min(WINDOW_CAP) + LOOKAHEAD,
                    regex: build(pattern, &rule.name)?,
                    source: Source::Pattern,
                    rules: vec![index],
                    alone: true,
                    gate: Gate::prefixes(pattern)?,
                });
            }
            for keyword in rule.keywords.iter().flatten() {
                longest = longest.max(keyword.len());
                keyword_window = keyword_window.max(keyword.len().min(WINDOW_CAP) + LOOKAHEAD);
                keywords.push(keyword.clone());
                keyword_rules.push(index);
            }
        }
        if infos.is_empty() {
            return Ok(None);
        }
        let grouped: Vec<usize> = (0..entries.len()).filter(|i| !entries[*i].alone).collect();
        let group = match grouped.is_empty() {
            true => None,
            false => {
                let alone: Vec<Regex> = grouped.iter().map(|i| entries[*i].regex.clone()).collect();
                let group =
                    Group::new(alone, PATTERN_SIZE * grouped.len()).map_err(|source| GuardError::Group { source })?;
                Some(group)
            }
        };
        let keywords = match keywords.is_empty() {
            true => None,
            false => Some(Keywords::new(&keywords)?),
        };
        Ok(Some(Matcher {
            rules: infos,
            entries,
            group,
            grouped,
            keywords,
            keyword_rules,
            keyword_window,
            window: longest.min(WINDOW_CAP) + LOOKAHEAD,
        }))
    }

    /// Finds the matches starting at or after `from` in `text` (the text before `from` is
    /// context), for text of `role` (`None`: a response, where every rule applies). The
    /// findings come sorted and without overlaps; a blocking rule's finding wins its overlap.
    pub fn find(&self, text: &str, from: usize, role: Option<MessageRole>, out: &mut Vec<Finding>) {
        let mut raw = Vec::new();
        let _ = self.candidates(text, &|_| from, role, &mut raw);
        self.judge(text, &mut raw, role, out);
    }

    /// Searches: an entry (detector or pattern) is an [`Engine`] of its index, the keywords
    /// one of index `entries` (each keyword's candidates are `entries + keyword`).
    pub fn engines(&self) -> usize {
        self.entries.len() + 1
    }

    /// The search a candidate of `engine` comes from.
    pub fn search_of(&self, engine: usize) -> usize {
        engine.min(self.entries.len())
    }

    /// The window of a search ([`Entry::window`]): its candidates that start this far before
    /// the end of the text are final, whatever text follows.
    pub fn search_window(&self, search: usize) -> usize {
        self.entries.get(search).map_or(self.keyword_window, |e| e.window)
    }

    /// How far before the end of text a match of a search may start and still be incomplete
    /// when its gate found none of its literals ([`Gate::lead`]); `None`: no gate.
    pub fn lead(&self, search: usize) -> Option<usize> {
        self.entries.get(search)?.gate.as_ref().map(|gate| gate.lead)
    }

    /// Whether a search's next search resumes where its last candidate ended (a regex's
    /// leftmost-first matches, one after another) rather than anywhere (overlapping keywords).
    pub fn chained(&self, search: usize) -> bool {
        search < self.entries.len()
    }

    /// Appends every candidate of each search from where it starts (`starts(search)`; the
    /// text before is context) for text of `role`: each regex's own matches from there, then
    /// from each match's end; every keyword occurrence from there on. Unchecked, unresolved.
    /// Returns the searches (as bits, below 64) whose gate found none of its literals from
    /// where they started: [`Matcher::lead`] bounds where their next search starts.
    pub fn candidates(
        &self,
        text: &str,
        starts: &dyn Fn(usize) -> usize,
        role: Option<MessageRole>,
        raw: &mut Vec<Candidate>,
    ) -> u64 {
        let applies = |rules: &[u16]| rules.iter().any(|r| self.applies(*r, role));
        let mut closed = 0;
        for (index, entry) in self.entries.iter().enumerate() {
            if !entry.alone || !applies(&entry.rules) {
                continue;
            }
            let from = starts(index);
            if let Some(gate) = &entry.gate {
                if !text.as_bytes().get(from..).is_some_and(|rest| gate.open(rest)) {
                    closed |= u32::try_from(index).ok().and_then(|i| 1u64.checked_shl(i)).unwrap_or(0);
                    continue;
                }
            }
            each_match(&entry.regex, text, from, &mut |start, end| {
                raw.push(Candidate {
                    engine: index,
                    start,
                    end,
                })
            });
        }
        if let Some(group) = &self.group {
            if self.grouped.iter().any(|i| applies(&self.entries[*i].rules)) {
                let mut found = Vec::new();
                group.each(text, self.grouped.iter().map(|i| starts(*i)).collect(), &mut found);
                raw.extend(found.into_iter().map(|(pattern, start, end)| Candidate {
                    engine: self.grouped[pattern],
                    start,
                    end,
                }));
            }
        }
        if let Some(keywords) = &self.keywords {
            let base = self.entries.len();
            keywords.each(text, starts(base), &mut |start, end, keyword| {
                raw.push(Candidate {
                    engine: base + keyword,
                    start,
                    end,
                })
            });
        }
        closed
    }

    /// The findings of `raw` (candidates of `text` for `role`): checked, their rules decided,
    /// sorted and without overlaps ([`resolve`]). The order of `raw` does not matter.
    pub fn judge(&self, text: &str, raw: &mut [Candidate], role: Option<MessageRole>, out: &mut Vec<Finding>) {
        raw.sort_unstable_by_key(|c| (c.start, std::cmp::Reverse(c.end), c.engine));
        let decide = |rules: &[u16]| -> Option<u16> {
            let mut applicable = rules.iter().copied().filter(|r| self.applies(*r, role));
            let first = applicable.clone().next()?;
            Some(
                applicable
                    .find(|r| self.rules[usize::from(*r)].action == GuardAction::Block)
                    .unwrap_or(first),
            )
        };
        let mut found = Vec::new();
        for &Candidate { engine, start, end } in raw.iter() {
            let Some(entry) = self.entries.get(engine) else {
                let rule = self.keyword_rules[engine - self.entries.len()];
                if self.applies(rule, role) && whole_word(text, start, end) {
                    found.push(Finding {
                        start,
                        end,
                        rule,
                        placeholder: None,
                    });
                }
                continue;
            };
            let Some(rule) = decide(&entry.rules) else { continue };
            let placeholder = match &entry.source {
                Source::Builtin { placeholder, check } => {
                    if !check(text, start, end) {
                        continue;
                    }
                    Some(*placeholder)
                }
                Source::Pattern => None,
            };
            found.push(Finding {
                start,
                end,
                rule,
                placeholder,
            });
        }
        out.extend(resolve(found, &self.rules));
    }

    fn applies(&self, rule: u16, role: Option<MessageRole>) -> bool {
        role.is_none_or(|role| {
            self.rules
                .get(usize::from(rule))
                .is_some_and(|r| r.roles & role_bit(role) != 0)
        })
    }

    /// Scans a whole text of `role` and masks it in place; the blocking rule, if one matched
    /// (the text is then left as it was). Masking rules are added to `masked`; `findings` is
    /// scratch space. `form` says what the text is: JSON source is scanned decoded and a mask
    /// that could not be written back inside one string blocks; in a signed text any match
    /// blocks (see [`Form`]).
    pub fn apply(
        &self,
        text: &mut String,
        role: Option<MessageRole>,
        form: Form,
        findings: &mut Vec<Finding>,
        masked: &mut Vec<u16>,
    ) -> Option<u16> {
        findings.clear();
        let decoded = (form == Form::Json).then(|| JsonText::decode(text, false, true));
        self.find(decoded.as_ref().map_or(text.as_str(), |d| &d.text), 0, role, findings);
        if let Some(block) = self.blocking(findings) {
            return Some(block.rule);
        }
        if let Some(decoded) = &decoded {
            if let Some(f) = findings.iter().find(|f| !self.fits_json(decoded, f)) {
                return Some(f.rule);
            }
            for f in findings.iter_mut() {
                (f.start, f.end) = (decoded.to_source(f.start), decoded.to_source(f.end));
            }
        }
        if let (Form::Signed, Some(f)) = (form, findings.first()) {
            return Some(f.rule);
        }
        if !findings.is_empty() {
            *text = self.mask(text, findings);
            masked.extend(findings.iter().map(|f| f.rule));
        }
        None
    }

    /// `text` with every finding replaced by its placeholder.
    pub fn mask(&self, text: &str, findings: &[Finding]) -> String {
        let mut masked = String::with_capacity(text.len());
        let mut at = 0;
        for f in findings {
            masked.push_str(&text[at..f.start]);
            masked.push_str(self.placeholder(f));
            at = f.end;
        }
        masked.push_str(&text[at..]);
        masked
    }

    pub fn placeholder(&self, finding: &Finding) -> &str {
        match finding.placeholder {
            Some(typed) => typed,
            None => &self.rules[usize::from(finding.rule)].redacted,
        }
    }

    /// Whether `finding` (in decoded JSON source) can be masked in the source and leave it as
    /// valid as it was: it lies inside one string and its placeholder needs no escaping.
    pub fn fits_json(&self, decoded: &JsonText, finding: &Finding) -> bool {
        decoded.in_one_string(finding.start, finding.end) && safe_in_string(self.placeholder(finding))
    }

    /// The first blocking finding, if any.
    pub fn blocking<'f>(&self, findings: &'f [Finding]) -> Option<&'f Finding> {
        findings
            .iter()
            .find(|f| self.rules[usize::from(f.rule)].action == GuardAction::Block)
    }

    /// Whether any rule scans text of `role`.
    pub fn scans(&self, role: MessageRole) -> bool {
        self.rules.iter().any(|r| r.roles & role_bit(role) != 0)
    }
}

/// Sorts findings by position and drops overlaps (the earliest, then the longest, stays), in
/// O(n log n) however many there are; a blocking finding replaces a masking one it overlaps,
/// so a block is never hidden.
fn resolve(mut found: Vec<Finding>, rules: &[RuleInfo]) -> Vec<Finding> {
    if found.len() <= 1 {
        return found;
    }
    let blocks = |f: &Finding| rules[usize::from(f.rule)].action == GuardAction::Block;
    // Stable: candidates of one span stay in the order [`Matcher::judge`] gave them.
    found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    let mut kept: Vec<Finding> = Vec::with_capacity(found.len());
    for f in found {
        match kept.last_mut() {
            Some(last) if f.start < last.end => {
                if blocks(&f) && !blocks(last) {
                    *last = f;
                }
            }
            _ => kept.push(f),
        }
    }
    kept
}

/// A keyword counts only as a whole word: `falcon` is not in `falconry`.
fn whole_word(text: &str, start: usize, end: usize) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let edge_ok = |inner: Option<char>, outer: Option<char>| !(inner.is_some_and(word) && outer.is_some_and(word));
    let first = text[start..end].chars().next();
    let last = text[start..end].chars().next_back();
    edge_ok(first, text[..start].chars().next_back()) && edge_ok(last, text[end..].chars().next())
}

pub(super) fn next_boundary(text: &str, at: usize) -> usize {
    let mut next = at + 1;
    while next < text.len() && !text.is_char_boundary(next) {
        next += 1;
    }
    next
}

fn build(pattern: &str, rule: &str) -> Result<Regex, GuardError> {
    RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE)
        .build()
        .map_err(|source| GuardError::Pattern {
            rule: rule.to_string(),
            source,
        })
}

/// The longest match a pattern can make, in bytes; unbounded ones count as the cap.
fn max_len(pattern: &str) -> usize {
    regex_syntax::Parser::new()
        .parse(pattern)
        .ok()
        .and_then(|hir| hir.properties().maximum_len())
        .unwrap_or(WINDOW_CAP)
}

#[cfg(test)]
#[path = "matcher_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "scan_tests.rs"]
mod scan_tests;
