//! A byte-level reader of compact JSON (no whitespace between tokens, as providers stream
//! events and most clients send requests): the cheapest way to find the one text delta of a
//! streamed event (the guardrails), and the fields a request is routed by (`gateway::body`).
//! It accepts only what it is certain `serde_json` reads the same way: every value is
//! checked as it is skipped, and anything unusual (whitespace, an escaped key, a `\u` escape
//! of a surrogate, a number with an exponent or more than 18 characters, deep nesting) is
//! `None`, so the caller goes to its general path (`serde_json`), which decides.

use super::json_string::plain_run;

/// Nesting allowed inside an event (`serde_json` allows 128).
const MAX_DEPTH: u8 = 32;
/// Characters of a number skipped: shorter ones cannot overflow an `f64` or a `u64`.
const MAX_NUMBER: usize = 18;

/// A position in a compact JSON text.
pub struct Compact<'a> {
    text: &'a str,
    at: usize,
    depth: u8,
    /// Where the values a later event of the same shape may change are ([`Compact::recording`]).
    holes: Option<Vec<Hole>>,
}

/// A value of a read event that a later event of the same [`Shape`](super::shape::Shape) may
/// have differently: its span in the event and what it must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hole {
    pub start: usize,
    pub end: usize,
    pub kind: HoleKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoleKind {
    /// The delta's text: a string literal.
    Text,
    /// A string literal skipped unread.
    String,
    /// A number skipped unread.
    Number,
    /// The event's `sequence_number`: an index, not null.
    Sequence,
}

impl<'a> Compact<'a> {
    pub fn new(text: &'a str) -> Self {
        Compact {
            text,
            at: 0,
            depth: 0,
            holes: None,
        }
    }

    /// A reader that notes where the values it skips and the sequence number it reads are
    /// ([`Compact::holes`]).
    pub fn recording(text: &'a str) -> Self {
        Compact {
            holes: Some(Vec::new()),
            ..Compact::new(text)
        }
    }

    /// A reader of one value at `at` of `text` (a [`Hole`] of an event of a known shape).
    pub fn at(text: &'a str, at: usize) -> Self {
        Compact {
            at,
            ..Compact::new(text)
        }
    }

    /// Where the reader is.
    pub fn position(&self) -> usize {
        self.at
    }

    /// The holes noted by a [`Compact::recording`] reader, in the order read.
    pub fn holes(&mut self) -> Vec<Hole> {
        self.holes.take().unwrap_or_default()
    }

    fn note(&mut self, start: usize, kind: HoleKind) {
        if let Some(holes) = &mut self.holes {
            holes.push(Hole {
                start,
                end: self.at,
                kind,
            });
        }
    }

    /// The top-level `sequence_number`: an index, not null.
    pub fn sequence_number(&mut self) -> Option<u64> {
        let start = self.at;
        let number = self.index()??;
        self.note(start, HoleKind::Sequence);
        Some(number)
    }

    /// Whether the whole text was read.
    pub fn done(&self) -> bool {
        self.at == self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn word(&mut self, word: &str) -> Option<()> {
        let end = self.at + word.len();
        (self.text.as_bytes().get(self.at..end)? == word.as_bytes()).then(|| self.at = end)
    }

    /// `[]`, read when it is next.
    pub fn empty_array(&mut self) -> bool {
        self.peek() == Some(b'[') && self.word("[]").is_some()
    }

    /// `null`, read when it is next.
    pub fn null(&mut self) -> bool {
        self.peek() == Some(b'n') && self.word("null").is_some()
    }

    /// A string literal, quotes included, its escapes checked.
    pub fn string(&mut self) -> Option<&'a str> {
        self.literal().map(|(literal, _)| literal)
    }

    /// A string literal's text when it has no escape (keys and `type` values).
    pub fn plain(&mut self) -> Option<&'a str> {
        match self.literal()? {
            (literal, false) => literal.get(1..literal.len() - 1),
            (_, true) => None,
        }
    }

    /// A string literal, quotes included, its escapes checked; whether it has any.
    #[inline]
    fn literal(&mut self) -> Option<(&'a str, bool)> {
        let start = self.at;
        self.eat(b'"')?;
        let bytes = self.text.as_bytes();
        // Most literals have no escape: one run of plain bytes, then the closing quote.
        let end = plain_run(bytes, self.at);
        if bytes.get(end) == Some(&b'"') {
            self.at = end + 1;
            return Some((self.text.get(start..self.at)?, false));
        }
        self.escaped(start)
    }

    /// The rest of a literal with escapes (or invalid) from `start`.
    fn escaped(&mut self, start: usize) -> Option<(&'a str, bool)> {
        let bytes = self.text.as_bytes();
        let mut escaped = false;
        loop {
            self.at = plain_run(bytes, self.at);
            let byte = *bytes.get(self.at)?;
            self.at += 1;
            match byte {
                b'"' => return Some((self.text.get(start..self.at)?, escaped)),
                b'\\' => {
                    escaped = true;
                    let escape = *bytes.get(self.at)?;
                    self.at += 1;
                    match escape {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hex = self.text.get(self.at..self.at + 4)?;
                            let unit = u16::from_str_radix(hex, 16).ok()?;
                            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) || (0xD800..0xE000).contains(&unit) {
                                return None;
                            }
                            self.at += 4;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// An unsigned integer that fits a `u64`, or `null` (`None` inside).
    pub fn index(&mut self) -> Option<Option<u64>> {
        if self.null() {
            return Some(None);
        }
        let start = self.at;
        self.digits();
        let digits = self.text.get(start..self.at)?;
        let canonical = !digits.is_empty() && digits.len() <= MAX_NUMBER && (digits == "0" || !digits.starts_with('0'));
        let fraction = matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        (canonical && !fraction).then(|| digits.parse().ok().map(Some))?
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    pub fn number(&mut self) -> Option<()> {
        let start = self.at;
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            let whole = self.at;
            self.digits();
            if self.at == whole {
                return None;
            }
        }
        let exponent = matches!(self.peek(), Some(b'e' | b'E'));
        (!exponent && self.at - start <= MAX_NUMBER).then_some(())
    }

    /// Any value, checked and skipped.
    pub fn skip(&mut self) -> Option<()> {
        let start = self.at;
        match self.peek()? {
            b'"' => {
                self.string()?;
                self.note(start, HoleKind::String);
                Some(())
            }
            b'{' => self.object(|json, _| json.skip()),
            b'[' => self.array(|json| json.skip()),
            b't' => self.word("true"),
            b'f' => self.word("false"),
            b'n' => self.word("null"),
            _ => {
                self.number()?;
                self.note(start, HoleKind::Number);
                Some(())
            }
        }
    }

    /// An object, `field` called with each key (escape-free) to read its value.
    pub fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.nest(b'{', b'}', |json| {
            let key = json.plain()?;
            json.eat(b':')?;
            field(json, key)
        })
    }

    /// An array, `item` called to read each item.
    pub fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.nest(b'[', b']', item)
    }

    fn nest(&mut self, open: u8, close: u8, mut each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(open)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        if self.eat(close).is_none() {
            loop {
                each(self)?;
                if self.eat(b',').is_none() {
                    self.eat(close)?;
                    break;
                }
            }
        }
        self.depth -= 1;
        Some(())
    }
}

/// A field read at most once: `Err` on the second time (the typed view fails on a duplicate
/// key, and the general path keeps the last).
pub fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot.replace(value) {
        None => Some(()),
        Some(_) => None,
    }
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
