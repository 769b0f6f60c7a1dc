//! Keywords: every occurrence, overlapping ones included, ASCII case-insensitive.
//!
//! An overlapping Aho-Corasick search walks its automaton a byte at a time; with keywords
//! starting with many distinct bytes (both cases count) it gets no prefilter. So a
//! case-insensitive regex of the keywords, whose literal prefixes (expanded over case) feed a
//! vectorised prefilter, finds the next place where any keyword can start, and the overlapping
//! search runs only from there, over twice the longest keyword. The occurrences are exactly
//! those of the overlapping search over the whole text: the regex (Unicode case folding, a
//! superset of ASCII folding) matches wherever a keyword occurs, so its leftmost match never
//! starts after the next occurrence; each region reports the occurrences starting in its first
//! half (they end inside it), and the next search resumes just after that half.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};

use super::GuardError;

pub struct Keywords {
    starts: Regex,
    automaton: AhoCorasick,
    /// The longest keyword, in bytes.
    longest: usize,
}

impl Keywords {
    pub fn new(keywords: &[String]) -> Result<Keywords, GuardError> {
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(keywords)
            .map_err(|source| GuardError::Keywords { source })?;
        let alternation: Vec<String> = keywords.iter().map(|k| regex::escape(k)).collect();
        let starts = RegexBuilder::new(&alternation.join("|"))
            .case_insensitive(true)
            .build()
            .map_err(|source| GuardError::Patterns { source })?;
        let longest = keywords.iter().map(String::len).max().unwrap_or(0);
        Ok(Keywords {
            starts,
            automaton,
            longest,
        })
    }

    /// Calls `each` with every occurrence starting at or after `from` (overlapping ones too):
    /// its start, end and keyword index (region by region; unordered inside a region).
    pub fn each(&self, text: &str, from: usize, each: &mut dyn FnMut(usize, usize, usize)) {
        let mut at = from;
        while at <= text.len() {
            let Some(hit) = self.starts.find_at(text, at) else {
                return;
            };
            let start = hit.start();
            let last_start = start + self.longest;
            let end = (last_start + self.longest).min(text.len());
            let input = aho_corasick::Input::new(text).span(start..end);
            for m in self.automaton.find_overlapping_iter(input) {
                if m.start() <= last_start {
                    each(m.start(), m.end(), m.pattern().as_usize());
                }
            }
            at = ceil_boundary(text, last_start + 1);
        }
    }
}

fn ceil_boundary(text: &str, mut at: usize) -> usize {
    while at < text.len() && !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

#[cfg(test)]
#[path = "keywords_tests.rs"]
mod tests;
