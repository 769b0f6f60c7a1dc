//! The patterns without a literal to skip to (the digit-led detectors: cards, SSNs, phones,
//! IP addresses, IBANs, and user patterns like them), found in one leftmost pass of one
//! multi-pattern regex instead of a pass each or an overlapping `RegexSet` pass (both cost
//! two to three times as much on digit-heavy text).
//!
//! What it reports is exactly what each pattern's own search would: the matches of
//! `find_at` from `from`, then from each match's end, for every pattern. The leftmost pass
//! finds the leftmost start of any pattern; a match of one pattern may hide another's that
//! starts inside it. So every match of every pattern starts inside some span of the leftmost
//! pass (a start in a gap would have been the leftmost one), and inside each span each
//! pattern is tried, anchored, at the positions its first byte allows, from where its own
//! search would resume. Spans are few and short on ordinary text (`d::c` in
//! `std::collections` is one), so the pass is nearly all of the cost.

use regex_automata::meta::{self, Regex};
use regex_automata::{Anchored, Input, PatternID};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::Hir;

/// The bytes a match can start with, as a 256-bit set.
#[derive(Clone, Copy)]
struct Bytes([u64; 4]);

impl Bytes {
    const ALL: Bytes = Bytes([u64::MAX; 4]);

    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
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
    first: Vec<Bytes>,
}

impl Group {
    /// `patterns` in order; each pattern's matches are reported with its index here.
    pub fn new(patterns: &[&str], size_limit: usize) -> Result<Group, Box<meta::BuildError>> {
        let regex = Regex::builder()
            .configure(Regex::config().auto_prefilter(false).nfa_size_limit(Some(size_limit)))
            .build_many(patterns)
            .map_err(Box::new)?;
        let first = patterns
            .iter()
            .map(|p| {
                regex_syntax::Parser::new()
                    .parse(p)
                    .map_or(Bytes::ALL, |hir| Bytes::first(&hir))
            })
            .collect();
        Ok(Group { regex, first })
    }

    /// Whether `hir` fits in a group: it never matches the empty string.
    pub fn fits(hir: &Hir) -> bool {
        hir.properties().minimum_len().is_some_and(|n| n > 0)
    }

    /// Appends `(pattern, start, end)` for every match each pattern's own leftmost-first
    /// search makes from `from` on, then from each match's end: pattern by pattern in
    /// order of start (patterns interleaved).
    pub fn each(&self, text: &str, from: usize, found: &mut Vec<(usize, usize, usize)>) {
        let hay = text.as_bytes();
        // Where each pattern's own search resumes: no start before it is still to report.
        let mut resume = vec![from; self.first.len()];
        let mut at = from;
        while at < hay.len() {
            let Some(span) = self.regex.search(&Input::new(hay).range(at..)) else {
                return;
            };
            let (start, end) = (span.start(), span.end());
            let leading = span.pattern().as_usize();
            if resume[leading] <= start {
                found.push((leading, start, end));
                resume[leading] = end;
            }
            for (pattern, first) in self.first.iter().enumerate() {
                let mut a = resume[pattern].max(start);
                while a < end {
                    if first.contains(hay[a]) && text.is_char_boundary(a) {
                        let input = Input::new(hay)
                            .range(a..)
                            .anchored(Anchored::Pattern(PatternID::new_unchecked(pattern)));
                        if let Some(m) = self.regex.search(&input) {
                            found.push((pattern, a, m.end()));
                            a = m.end();
                            continue;
                        }
                    }
                    a += 1;
                }
                resume[pattern] = resume[pattern].max(a);
            }
            // No pattern matches the empty string: `end > start`.
            at = end.max(start + 1);
        }
    }
}
