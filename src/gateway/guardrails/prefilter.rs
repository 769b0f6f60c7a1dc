//! The cheap pass before the built-in detectors: where in a text each one could match at all.
//!
//! Every match of a built-in contains a *trigger* its pattern cannot do without — an `@` for
//! an email; for a card thirteen digits in a row or a group of four then a separator and a
//! digit; for an SSN or a North American phone a last group of exactly four digits after a
//! digit and a separator; a `+` for an international phone; four dot-separated digit runs or
//! two colons at most four hex digits apart for an IP address; an upper-case letter then a
//! digit for an IBAN; a fixed prefix for a key or token. A match is at most
//! `max_len` bytes long, so it lies within `max_len` bytes of a trigger it overlaps: the
//! detector's regular expression only runs on those regions (merged when they touch), and on
//! prose with no candidate it does not run at all.
//!
//! Why the matches are the same as a scan of the whole text: a match found by scanning the
//! whole text lies inside one merged region, and the leftmost-first match at a position does
//! not depend on where the search started or on a span end past that match (look-around
//! still sees the bytes outside the span). The property test in `prefilter_tests.rs` checks
//! this against the whole-text scan on generated text.

use memchr::memmem::Finder;

use crate::crd::BuiltinDetector;

/// What a built-in's every match contains (as bits, one per kind).
pub type Triggers = u16;

pub const AT: Triggers = 1;
pub const PLUS: Triggers = 1 << 1;
pub const COLON: Triggers = 1 << 2;
/// Thirteen or more digits in a row, or exactly four followed by `[ -]` and a digit.
pub const CARD: Triggers = 1 << 3;
/// Four or more digit runs joined by single dots.
pub const DOTTED: Triggers = 1 << 4;
/// An upper-case ASCII letter followed by a digit.
pub const UPPER_DIGIT: Triggers = 1 << 5;
pub const AWS: Triggers = 1 << 6;
pub const PEM: Triggers = 1 << 7;
pub const OPENAI: Triggers = 1 << 8;
pub const GITHUB: Triggers = 1 << 9;
/// Exactly four digits after a digit and `[ .-]`.
pub const LAST4: Triggers = 1 << 10;

/// The fixed strings of the literal triggers, and the trigger of each.
const LITERALS: [(&str, Triggers); 7] = [
    ("AKIA", AWS),
    ("ASIA", AWS),
    ("ABIA", AWS),
    ("ACCA", AWS),
    ("A3T", AWS),
    ("-----BEGIN ", PEM),
    ("sk-", OPENAI),
];

/// The triggers of a built-in: each of its matches contains at least one.
pub fn triggers(builtin: BuiltinDetector) -> Triggers {
    match builtin {
        BuiltinDetector::Email => AT,
        // `\d{13,19}`, or `\b\d{4}[ -]\d…`.
        BuiltinDetector::CreditCard => CARD,
        // Ends with `\d-\d{4}\b`.
        BuiltinDetector::UsSsn => LAST4,
        // `+…`, or ends with `\d[ .-]\d{4}\b`.
        BuiltinDetector::Phone => PLUS | LAST4,
        // IPv4 is four dotted runs; IPv6 has `(?::[0-9a-fA-F]{0,4}){2,}`.
        BuiltinDetector::IpAddress => COLON | DOTTED,
        // Starts with `[A-Z]{2}\d{2}`.
        BuiltinDetector::Iban => UPPER_DIGIT,
        BuiltinDetector::AwsAccessKey => AWS,
        BuiltinDetector::PrivateKey => PEM,
        BuiltinDetector::OpenaiKey => OPENAI,
        BuiltinDetector::GithubToken => GITHUB,
    }
}

/// Finds the triggers a matcher's built-ins need, compiled once with the matcher.
#[derive(Debug)]
pub struct Prefilter {
    /// The triggers any built-in needs.
    needed: Triggers,
    /// One vectorised search per fixed string (cheaper than one automaton over all of them:
    /// their first bytes are common ones).
    literals: Vec<(Finder<'static>, Triggers)>,
}

/// One trigger found: its kind and where it is.
#[derive(Clone, Copy, Debug)]
pub struct Hit {
    pub kind: Triggers,
    pub start: usize,
    pub end: usize,
}

impl Prefilter {
    pub fn new(needed: Triggers) -> Prefilter {
        let literals = LITERALS
            .into_iter()
            .filter(|(_, k)| needed & k != 0)
            .map(|(s, k)| (Finder::new(s.as_bytes()).into_owned(), k))
            .collect();
        Prefilter { needed, literals }
    }

    /// The triggers in `text[from..]` (a digit run may start before `from`), unsorted.
    pub fn hits(&self, text: &str, from: usize, out: &mut Vec<Hit>) {
        let bytes = text.as_bytes();
        if self.needed & AT != 0 {
            out.extend(memchr::memchr_iter(b'@', &bytes[from..]).map(|i| hit(AT, from + i, 1)));
        }
        if self.needed & PLUS != 0 {
            out.extend(memchr::memchr_iter(b'+', &bytes[from..]).map(|i| hit(PLUS, from + i, 1)));
        }
        if self.needed & COLON != 0 {
            for i in memchr::memchr_iter(b':', &bytes[from..]).map(|i| from + i) {
                // The next colon, with at most four hex digits between.
                let gap = bytes[i + 1..].iter().take(5).position(|b| !b.is_ascii_hexdigit());
                if gap.is_some_and(|g| bytes[i + 1 + g] == b':') {
                    out.push(hit(COLON, i, 2));
                }
            }
        }
        for (finder, kind) in &self.literals {
            let len = finder.needle().len();
            out.extend(finder.find_iter(&bytes[from..]).map(|i| hit(*kind, from + i, len)));
        }
        if self.needed & GITHUB != 0 {
            // `gh[pousr]_` and `github_pat_`, around an underscore.
            for i in memchr::memchr_iter(b'_', &bytes[from..]).map(|i| from + i) {
                let short = i >= 3 && bytes[i - 3..i - 1] == *b"gh" && b"pousr".contains(&bytes[i - 1]);
                let long = i >= 6 && bytes[i - 6..i] == *b"github" && bytes[i..].starts_with(b"_pat_");
                if short || long {
                    out.push(hit(GITHUB, i.saturating_sub(6), 7));
                }
            }
        }
        if self.needed & (CARD | LAST4 | DOTTED | UPPER_DIGIT) != 0 {
            self.digit_hits(bytes, from, out);
        }
    }

    /// The triggers made of digit runs, in one pass.
    fn digit_hits(&self, bytes: &[u8], from: usize, out: &mut Vec<Hit>) {
        let mut i = from;
        // A run that reaches `from` from before it.
        while i > 0 && bytes[i - 1].is_ascii_digit() {
            i -= 1;
        }
        let (mut chain_start, mut chain_runs, mut last_end) = (0, 0, usize::MAX);
        while i < bytes.len() {
            if !bytes[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let len = i - start;
            let next = bytes.get(i).copied();
            let next_digit = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
            let card = len >= 13 || (len == 4 && matches!(next, Some(b' ' | b'-')) && next_digit);
            if card && self.needed & CARD != 0 {
                out.push(hit(CARD, start, len));
            }
            let last4 = len == 4
                && start >= 2
                && matches!(bytes[start - 1], b' ' | b'.' | b'-')
                && bytes[start - 2].is_ascii_digit();
            if last4 && self.needed & LAST4 != 0 {
                out.push(hit(LAST4, start - 2, len + 2));
            }
            if self.needed & DOTTED != 0 {
                match last_end.checked_add(1) == Some(start) && bytes[start - 1] == b'.' {
                    true => chain_runs += 1,
                    false => (chain_start, chain_runs) = (start, 1),
                }
                last_end = i;
                if chain_runs >= 4 {
                    out.push(hit(DOTTED, chain_start, i - chain_start));
                }
            }
            if self.needed & UPPER_DIGIT != 0 && start > 0 && bytes[start - 1].is_ascii_uppercase() {
                out.push(hit(UPPER_DIGIT, start - 1, 2));
            }
        }
    }
}

fn hit(kind: Triggers, start: usize, len: usize) -> Hit {
    Hit {
        kind,
        start,
        end: start + len,
    }
}

/// The regions of `text[from..]` where a detector with `triggers`, whose matches are at most
/// `max_len` bytes, can match: sorted, merged when they overlap or touch.
pub fn regions(
    hits: &[Hit],
    triggers: Triggers,
    max_len: usize,
    text: &str,
    from: usize,
    out: &mut Vec<(usize, usize)>,
) {
    out.clear();
    for hit in hits.iter().filter(|h| h.kind & triggers != 0) {
        let start = floor(text, hit.start.saturating_sub(max_len)).max(from);
        let end = ceil(text, hit.end.saturating_add(max_len));
        if start < end {
            out.push((start, end));
        }
    }
    out.sort_unstable();
    let mut merged = 0;
    for i in 0..out.len() {
        let (start, end) = out[i];
        if merged > 0 && start <= out[merged - 1].1 {
            out[merged - 1].1 = out[merged - 1].1.max(end);
        } else {
            out[merged] = (start, end);
            merged += 1;
        }
    }
    out.truncate(merged);
}

fn floor(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while at < text.len() && !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

#[cfg(test)]
#[path = "prefilter_tests.rs"]
mod tests;
