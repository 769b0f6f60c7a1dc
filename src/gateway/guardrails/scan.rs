//! The built-in detectors without a literal to skip to (the digit-led ones: cards, SSNs,
//! phones, IP addresses, IBANs), found in one leftmost pass of one multi-pattern regex
//! instead of a pass each or an overlapping `RegexSet` pass (both cost two to three times as
//! much on digit-heavy text).
//!
//! What it reports is exactly what each pattern's own search would: the matches of
//! `find_at` from `from`, then from each match's end, for every pattern. The leftmost pass
//! finds the leftmost start of any pattern; a match of one pattern may hide another's that
//! starts inside it. So every match of every pattern starts inside some span of the leftmost
//! pass (a start in a gap would have been the leftmost one), and inside each span each
//! pattern is tried, anchored, at the positions its first byte allows, from where its own
//! search would resume. Spans are few and short on ordinary text (`d::c` in
//! `std::collections` is one), so the pass is most of the cost. Only patterns whose matches
//! are short belong here (the built-ins' are at most about 50 bytes): a span is then short
//! and each re-search inside it stops within a match's length. (A user's pattern like
//! `\d{200}z` would make every digit inside another pattern's spans a 200-byte re-search;
//! user patterns are searched alone.)

use regex::Regex as OneRegex;
use regex_automata::meta::{self, Regex};
use regex_automata::{Anchored, Input, PatternID};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::Hir;

use super::matcher::next_boundary;

/// The bytes a match can start with, as a 256-bit set.
#[derive(Clone, Copy)]
struct Bytes([u64; 4]);

impl Bytes {
    const ALL: Bytes = Bytes([u64::MAX; 4]);

    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    fn add(&mut self, other: &Bytes) {
        for (word, bits) in self.0.iter_mut().zip(other.0) {
            *word |= bits;
        }
    }

    fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The first bytes of `hir`'s matches (every byte when they cannot be bounded).
    fn first(hir: &Hir) -> Bytes {
        let seq = Extractor::new()
            .kind(ExtractKind::Prefix)
            .limit_class(256)
            .limit_literal_len(1)
            .limit_total(512)
            .extract(hir);
        let Some(literals) = seq.literals() else {
            return Bytes::ALL;
        };
        let mut set = Bytes([0; 4]);
        for literal in literals {
            let Some(&b) = literal.as_bytes().first() else {
                return Bytes::ALL;
            };
            set.0[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        set
    }
}

/// Several patterns (none of which matches the empty string) scanned together.
pub struct Group {
    regex: Regex,
    /// Each pattern alone, for text dense in matches.
    alone: Vec<OneRegex>,
    /// The first bytes of each pattern.
    first: Vec<Bytes>,
}

impl Group {
    /// The patterns of `alone`, in order; each pattern's matches are reported with its index
    /// there.
    pub fn new(alone: Vec<OneRegex>, size_limit: usize) -> Result<Group, Box<meta::BuildError>> {
        let patterns: Vec<&str> = alone.iter().map(OneRegex::as_str).collect();
        let regex = Regex::builder()
            .configure(Regex::config().auto_prefilter(false).nfa_size_limit(Some(size_limit)))
            .build_many(&patterns)
            .map_err(Box::new)?;
        let first = patterns
            .iter()
            .map(|p| {
                regex_syntax::Parser::new()
                    .parse(p)
                    .map_or(Bytes::ALL, |hir| Bytes::first(&hir))
            })
            .collect::<Vec<Bytes>>();
        Ok(Group { regex, alone, first })
    }

    /// Appends `(pattern, start, end)` for every match each pattern's own leftmost-first
    /// search makes from `resume[pattern]` on, then from each match's end; each pattern's in
    /// order of start (the patterns' interleaved). The pass starts at the least of them: every
    /// match of a pattern from where it resumes still starts inside one of its spans.
    pub fn each(&self, text: &str, mut resume: Vec<usize>, found: &mut Vec<(usize, usize, usize)>) {
        let hay = text.as_bytes();
        // Where each pattern's own search resumes: no start before it is still to report.
        let from = resume.iter().copied().min().unwrap_or(hay.len());
        let mut at = from;
        // Searches made (spans and re-searches, a few hundred instructions each).
        let mut searches = 0usize;
        while at < hay.len() {
            let Some(span) = self.regex.search(&Input::new(hay).range(at..)) else {
                return;
            };
            let (start, end) = (span.start(), span.end());
            searches += 1;
            let leading = span.pattern().as_usize();
            if resume[leading] <= start {
                found.push((leading, start, end));
                resume[leading] = end;
            }
            // The first bytes of the patterns that may still start inside the span: none, for
            // the usual span (`d::c` in `std::collections`) whose pattern resumes at its end
            // and no other starts with its bytes; then no position is looked at.
            let mut live = Bytes([0; 4]);
            for (pattern, first) in self.first.iter().enumerate() {
                if resume[pattern] < end {
                    live.add(first);
                }
            }
            // Positions in order: a pattern that matched resumes at its match's end.
            let positions = if live.is_empty() { start..start } else { start..end };
            for a in positions {
                let b = hay[a];
                if !live.contains(b) || !text.is_char_boundary(a) {
                    continue;
                }
                for (pattern, first) in self.first.iter().enumerate() {
                    if resume[pattern] > a || !first.contains(b) {
                        continue;
                    }
                    let input = Input::new(hay)
                        .range(a..)
                        .anchored(Anchored::Pattern(PatternID::new_unchecked(pattern)));
                    searches += 1;
                    if let Some(m) = self.regex.search(&input) {
                        found.push((pattern, a, m.end()));
                        resume[pattern] = m.end();
                    }
                }
            }
            for r in &mut resume {
                *r = (*r).max(end);
            }
            // No pattern matches the empty string: `end > start`.
            at = end.max(start + 1);
            if searches > 64 + (at - from) / 8 {
                // Text dense in matches (a table of numbers): each pattern's own search from
                // where it resumes costs less than re-searching every span.
                for (pattern, regex) in self.alone.iter().enumerate() {
                    each_match(regex, text, resume[pattern], &mut |start, end| {
                        found.push((pattern, start, end))
                    });
                }
                return;
            }
        }
    }
}

/// Calls `each` with every non-empty match of `regex`'s own search from `from` on, then from
/// each match's end.
pub fn each_match(regex: &OneRegex, text: &str, from: usize, each: &mut dyn FnMut(usize, usize)) {
    let mut at = from;
    while let Some(m) = regex.find_at(text, at) {
        if m.end() > m.start() {
            at = m.end();
            each(m.start(), m.end());
            continue;
        }
        at = next_boundary(text, m.end());
        if at > text.len() {
            break;
        }
    }
}
