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
//! A masked string itself is written as its source bytes between the matches, with the
//! placeholders between them: only the placeholders are escaped, not the whole text again.

use std::borrow::Cow;

use serde_json::Value;

use super::json_text::{safe_in_string, JsonText};

/// A string of the parsed body the rules masked: its address, and each match replaced
/// (`start..end` in the text before masking, in order) with its placeholder.
pub struct Masked<'p> {
    pub address: usize,
    pub found: Vec<(usize, usize, &'p str)>,
}

/// `body` (the JSON text `value` was parsed from) with every string of `value` in `masked`
/// written as its text now; `None` when the body does not walk beside the value (not for a
/// body the value was parsed from: the caller then writes the value whole).
pub fn splice(body: &[u8], value: &Value, masked: &[Masked]) -> Option<Vec<u8>> {
    splice_raw(body, value, masked, &[])
}

/// [`splice`], and each value of `value` in `raw` (by its address, a `&Value`'s) written as
/// the JSON text given (a number the caller changed, say), whatever its source was.
pub fn splice_raw(body: &[u8], value: &Value, masked: &[Masked], raw: &[(usize, &[u8])]) -> Option<Vec<u8>> {
    let mut order: Vec<(usize, usize)> = masked.iter().enumerate().map(|(i, m)| (m.address, i)).collect();
    order.sort_unstable();
    let mut raw_order: Vec<(usize, usize)> = raw.iter().enumerate().map(|(i, r)| (r.0, i)).collect();
    raw_order.sort_unstable();
    let mut walk = Walk {
        body,
        at: 0,
        masked: &order,
        raw: &raw_order,
        spans: Vec::with_capacity(masked.len() + raw.len()),
    };
    walk.value(value, 0)?;
    walk.space();
    if walk.at != body.len() {
        return None;
    }
    let grown: usize = masked
        .iter()
        .flat_map(|m| m.found.iter().map(|(_, _, placeholder)| placeholder.len() + 2))
        .chain(raw.iter().map(|r| r.1.len()))
        .sum();
    let mut out = Vec::with_capacity(body.len() + grown);
    let mut at = 0;
    for (start, end, edit) in walk.spans {
        out.extend_from_slice(&body[at..start]);
        let (text, index) = match edit {
            Edit::Masked(text, index) => (text, index),
            Edit::Raw(index) => {
                out.extend_from_slice(raw[index].1);
                at = end;
                continue;
            }
        };
        let mark = out.len();
        if !masked_source(&mut out, &body[start + 1..end - 1], text, &masked[index].found) {
            // Not the text the matches were found in (never for a body the value was parsed
            // from): the text as it is now, escaped whole.
            out.truncate(mark);
            serde_json::to_writer(&mut out, text).ok()?;
        }
        at = end;
    }
    out.extend_from_slice(&body[at..]);
    Some(out)
}

/// Writes the string whose source (without quotes) is `source` masked, as `"`, its source
/// between the matches and each placeholder; whether `source` decodes to the text the
/// matches were found in (checked outside the matches against `now`, the masked text).
fn masked_source(out: &mut Vec<u8>, source: &[u8], now: &str, found: &[(usize, usize, &str)]) -> bool {
    let Ok(source) = std::str::from_utf8(source) else {
        return false;
    };
    // Without escapes, the source is the text.
    let decoded = memchr::memchr(b'\\', source.as_bytes()).map(|_| JsonText::decode(source, true, true));
    let text = decoded.as_ref().map_or(source, |d| d.text.as_str());
    let to_source = |at: usize| decoded.as_ref().map_or(at, |d| d.to_source(at));
    out.push(b'"');
    let (mut at, mut at_now) = (0, 0);
    for &(start, end, placeholder) in found {
        let Some(kept) = text.get(at..start) else {
            return false;
        };
        let after = at_now + kept.len();
        if now.get(at_now..after) != Some(kept) || now.get(after..after + placeholder.len()) != Some(placeholder) {
            return false;
        }
        at_now = after + placeholder.len();
        out.extend_from_slice(&source.as_bytes()[to_source(at)..to_source(start)]);
        if safe_in_string(placeholder) {
            out.extend_from_slice(placeholder.as_bytes());
        } else {
            let Ok(quoted) = serde_json::to_string(placeholder) else {
                return false;
            };
            out.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
        }
        at = end;
    }
    if text.get(at..) != now.get(at_now..) {
        return false;
    }
    out.extend_from_slice(&source.as_bytes()[to_source(at)..]);
    out.push(b'"');
    true
}

/// Deepest nesting walked (the parser refuses deeper bodies before: 128).
const DEPTH: usize = 256;

struct Walk<'a> {
    body: &'a [u8],
    at: usize,
    /// Addresses of the masked strings, sorted, and each one's index in the caller's list.
    masked: &'a [(usize, usize)],
    /// Addresses of the values written as given, sorted, and each one's index in the caller's
    /// list.
    raw: &'a [(usize, usize)],
    /// `start..end` of each masked string (with the quotes) and value written as given in the
    /// body, in order, and what replaces it.
    spans: Vec<(usize, usize, Edit<'a>)>,
}

/// What replaces a span of the body.
enum Edit<'a> {
    /// A masked string: its text now and its index in the caller's list.
    Masked(&'a str, usize),
    /// A value written as given: its index in the caller's list.
    Raw(usize),
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
        let address = std::ptr::from_ref(value) as usize;
        if let Ok(i) = self.raw.binary_search_by_key(&address, |r| r.0) {
            // Walked to find its end; what it holds is replaced with it.
            let (start, spans) = (self.at, self.spans.len());
            self.source(value, depth)?;
            self.spans.truncate(spans);
            self.spans.push((start, self.at, Edit::Raw(self.raw[i].1)));
            return Some(());
        }
        self.source(value, depth)
    }

    /// Walks the source of `value` (at `at`, after any space).
    fn source(&mut self, value: &'a Value, depth: usize) -> Option<()> {
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
                if let Ok(i) = self.masked.binary_search_by_key(&address, |m| m.0) {
                    self.spans
                        .push((start, end, Edit::Masked(text.as_str(), self.masked[i].1)));
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
