//! A masked request written once: the client's bytes as they came, with each masked string
//! replaced by its masked text, instead of the whole parsed body written again (which costs
//! about as much as parsing it).
//!
//! The body's strings are located by walking its bytes beside the [`Value`] parsed from them:
//! a string of the value is replaced when its address is one of the masked strings'. Objects
//! are matched member by member by name (the guard's parser refuses a name twice, so each
//! name leads to one value), arrays item by item. Everything else keeps the client's bytes:
//! the upstream reads the same value as from the body written again, and the bytes the guard
//! did not change go through as they were (order of members, spacing, escapes, numbers).

use std::borrow::Cow;

use serde_json::Value;

/// `body` (the JSON text `value` was parsed from) with every string of `value` whose address
/// is in `masked` written as its text now; `None` when the body does not walk beside the
/// value (not for a body the value was parsed from: the caller then writes the value whole).
pub fn splice(body: &[u8], value: &Value, masked: &[usize]) -> Option<Vec<u8>> {
    let mut masked = masked.to_vec();
    masked.sort_unstable();
    let mut walk = Walk {
        body,
        at: 0,
        masked: &masked,
        spans: Vec::with_capacity(masked.len()),
    };
    walk.value(value, 0)?;
    walk.space();
    if walk.at != body.len() {
        return None;
    }
    let grown: usize = walk
        .spans
        .iter()
        .map(|(_, _, text)| text.len() + text.len() / 8 + 2)
        .sum();
    let mut out = Vec::with_capacity(body.len() + grown);
    let mut at = 0;
    for (start, end, text) in walk.spans {
        out.extend_from_slice(&body[at..start]);
        serde_json::to_writer(&mut out, text).ok()?;
        at = end;
    }
    out.extend_from_slice(&body[at..]);
    Some(out)
}

/// Deepest nesting walked (the parser refuses deeper bodies before: 128).
const DEPTH: usize = 256;

struct Walk<'a> {
    body: &'a [u8],
    at: usize,
    /// Addresses of the masked strings, sorted.
    masked: &'a [usize],
    /// `start..end` (with the quotes) of each masked string in the body, and its text now.
    spans: Vec<(usize, usize, &'a str)>,
}

impl<'a> Walk<'a> {
    fn space(&mut self) {
        while matches!(self.body.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Skips `byte` after any space.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.space();
        if self.body.get(self.at) != Some(&byte) {
            return None;
        }
        self.at += 1;
        Some(())
    }

    fn value(&mut self, value: &'a Value, depth: usize) -> Option<()> {
        if depth > DEPTH {
            return None;
        }
        self.space();
        match (self.body.get(self.at)?, value) {
            (b'{', Value::Object(members)) => {
                self.at += 1;
                self.space();
                if self.body.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return members.is_empty().then_some(());
                }
                loop {
                    self.space();
                    let (start, end) = self.string()?;
                    let name = name(&self.body[start..end])?;
                    let member = members.get(name.as_ref())?;
                    self.expect(b':')?;
                    self.value(member, depth + 1)?;
                    self.space();
                    match self.body.get(self.at)? {
                        b',' => self.at += 1,
                        b'}' => break,
                        _ => return None,
                    }
                }
                self.at += 1;
            }
            (b'[', Value::Array(items)) => {
                self.at += 1;
                self.space();
                if self.body.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return items.is_empty().then_some(());
                }
                let mut items = items.iter();
                loop {
                    self.value(items.next()?, depth + 1)?;
                    self.space();
                    match self.body.get(self.at)? {
                        b',' => self.at += 1,
                        b']' => break,
                        _ => return None,
                    }
                }
                self.at += 1;
                if items.next().is_some() {
                    return None;
                }
            }
            (b'"', Value::String(text)) => {
                let (start, end) = self.string()?;
                let address = std::ptr::from_ref(text) as usize;
                if self.masked.binary_search(&address).is_ok() {
                    self.spans.push((start, end, text.as_str()));
                }
            }
            (b'"' | b'{' | b'[', _) => return None,
            (_, Value::String(_) | Value::Object(_) | Value::Array(_)) => return None,
            // A number, `true`, `false` or `null`: kept as written.
            _ => {
                let rest = &self.body[self.at..];
                let len = rest
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(rest.len());
                if len == 0 {
                    return None;
                }
                self.at += len;
            }
        }
        Some(())
    }

    /// The string at `at` (its opening quote): its `start..end` with the quotes.
    fn string(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        if self.body.get(start) != Some(&b'"') {
            return None;
        }
        let mut at = start + 1;
        loop {
            at += memchr::memchr2(b'"', b'\\', self.body.get(at..)?)?;
            if self.body[at] == b'"' {
                self.at = at + 1;
                return Some((start, at + 1));
            }
            // An escape: the backslash and the byte after it (the rest of `\uXXXX` is hex).
            at += 2;
        }
    }
}

/// A member's name from its source (with the quotes): as written, or decoded when escaped.
fn name(source: &[u8]) -> Option<Cow<'_, str>> {
    let inner = source.get(1..source.len().checked_sub(1)?)?;
    if memchr::memchr(b'\\', inner).is_none() {
        return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
    }
    serde_json::from_slice::<String>(source).ok().map(Cow::Owned)
}

#[cfg(test)]
#[path = "splice_tests.rs"]
mod tests;
