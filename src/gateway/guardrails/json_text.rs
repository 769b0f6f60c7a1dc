//! JSON source text (a tool call's arguments) as the rules must see it: with its strings'
//! escapes decoded, so `"\u0041KIA…"` or `"a\/b"` is scanned as what it means, and the way
//! back from a match in the decoded text to the source bytes it came from, so a mask is
//! written over the escapes themselves and the JSON stays valid.
//!
//! The decoder reads any text (a streamed prefix, or text that is not JSON at all): outside
//! strings bytes are kept as they are; an escape it does not know is kept as written; an
//! escape cut off at the end is left undecoded unless the text is complete.

/// One decoded escape: `len` bytes at `at` in the decoded text came from `src_len` bytes at
/// `src` in the source.
#[derive(Debug, Clone, Copy)]
struct Escape {
    at: usize,
    len: usize,
    src: usize,
    src_len: usize,
}

/// Decoded JSON source text.
#[derive(Debug, Default)]
pub struct JsonText {
    /// The text with the escapes of its strings decoded.
    pub text: String,
    escapes: Vec<Escape>,
    /// The decoded ranges of string contents, in order (an unterminated one ends at the end).
    strings: Vec<(usize, usize)>,
    /// Source bytes decoded: all of them, but for an escape cut off at the end.
    pub complete: usize,
}

impl JsonText {
    /// Decodes `source`, which starts inside a string when `in_string`; `last`: no more text
    /// follows (an escape cut off at the end is then kept as written).
    pub fn decode(source: &str, in_string: bool, last: bool) -> JsonText {
        let mut out = JsonText {
            text: String::with_capacity(source.len()),
            ..JsonText::default()
        };
        let bytes = source.as_bytes();
        let mut at = 0;
        let mut string_start = in_string.then_some(0);
        while at < bytes.len() {
            let Some(start) = string_start else {
                let quote = memchr::memchr(b'"', &bytes[at..]);
                let next = quote.map_or(bytes.len(), |n| at + n + 1);
                out.text.push_str(&source[at..next]);
                at = next;
                if quote.is_some() {
                    string_start = Some(out.text.len());
                }
                continue;
            };
            let Some(n) = memchr::memchr2(b'"', b'\\', &bytes[at..]) else {
                out.text.push_str(&source[at..]);
                at = bytes.len();
                break;
            };
            out.text.push_str(&source[at..at + n]);
            at += n;
            if bytes[at] == b'"' {
                out.strings.push((start, out.text.len()));
                out.text.push('"');
                string_start = None;
                at += 1;
                continue;
            }
            match escape(&bytes[at..]) {
                Step::Char(c, src_len) => {
                    out.escapes.push(Escape {
                        at: out.text.len(),
                        len: c.len_utf8(),
                        src: at,
                        src_len,
                    });
                    out.text.push(c);
                    at += src_len;
                }
                Step::Literal => {
                    out.text.push('\\');
                    at += 1;
                }
                Step::Cut if last => {
                    out.text.push_str(&source[at..]);
                    at = bytes.len();
                }
                Step::Cut => break,
            }
        }
        if let Some(start) = string_start {
            out.strings.push((start, out.text.len()));
        }
        out.complete = at;
        out
    }

    /// The source offset of decoded offset `at` (a character boundary).
    pub fn to_source(&self, at: usize) -> usize {
        let before = self.escapes.partition_point(|e| e.at + e.len <= at);
        match before.checked_sub(1).map(|i| self.escapes[i]) {
            Some(e) => e.src + e.src_len + (at - (e.at + e.len)),
            None => at,
        }
    }

    /// The decoded offset of source offset `at` (not inside an escape).
    pub fn to_decoded(&self, at: usize) -> usize {
        let before = self.escapes.partition_point(|e| e.src + e.src_len <= at);
        match before.checked_sub(1).map(|i| self.escapes[i]) {
            Some(e) => e.at + e.len + (at - (e.src + e.src_len)),
            None => at,
        }
    }

    /// Whether decoded `start..end` lies inside one string's contents: text that can be
    /// replaced by a placeholder (without quotes or backslashes) and leave the JSON as valid
    /// as it was.
    pub fn in_one_string(&self, start: usize, end: usize) -> bool {
        let after = self.strings.partition_point(|s| s.0 <= start);
        after > 0 && end <= self.strings[after - 1].1
    }
}

/// Whether `source`, which starts inside a string when `in_string`, ends inside one (it must
/// not end inside an escape).
pub fn ends_in_string(source: &str, mut in_string: bool) -> bool {
    let mut bytes = source.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' if in_string => {
                bytes.next();
            }
            b'"' => in_string = !in_string,
            _ => {}
        }
    }
    in_string
}

/// A text's placeholder written into JSON source stays inside its string.
pub fn safe_in_string(placeholder: &str) -> bool {
    !placeholder.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

enum Step {
    /// A decoded character and the escape's length in the source.
    Char(char, usize),
    /// Not an escape JSON knows: the backslash stands for itself.
    Literal,
    /// The escape is cut off by the end of the text.
    Cut,
}

/// The escape at the start of `bytes` (which starts with a backslash).
fn escape(bytes: &[u8]) -> Step {
    let Some(&kind) = bytes.get(1) else {
        return Step::Cut;
    };
    let simple = match kind {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => return unicode(bytes),
        _ => return Step::Literal,
    };
    Step::Char(simple, 2)
}

/// `\uXXXX`, or a surrogate pair `\uD8xx\uDCxx`; a lone surrogate decodes to U+FFFD.
fn unicode(bytes: &[u8]) -> Step {
    let hex = |from: usize| -> Option<Option<u32>> {
        let digits = bytes.get(from..from + 4)?;
        let digits = std::str::from_utf8(digits).ok();
        Some(digits.and_then(|d| u32::from_str_radix(d, 16).ok()))
    };
    let high = match hex(2) {
        None => return Step::Cut,
        Some(None) => return Step::Literal,
        Some(Some(unit)) => unit,
    };
    if !(0xD800..0xDC00).contains(&high) {
        return Step::Char(char::from_u32(high).unwrap_or('\u{FFFD}'), 6);
    }
    if bytes.len() < 12
        && bytes
            .get(6..)
            .is_some_and(|rest| b"\\u".starts_with(&rest[..rest.len().min(2)]))
    {
        return Step::Cut;
    }
    match (bytes.get(6..8), hex(8)) {
        (Some(b"\\u"), Some(Some(low))) if (0xDC00..0xE000).contains(&low) => {
            let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            Step::Char(char::from_u32(code).unwrap_or('\u{FFFD}'), 12)
        }
        _ => Step::Char('\u{FFFD}', 6),
    }
}

#[cfg(test)]
#[path = "json_text_tests.rs"]
mod tests;
