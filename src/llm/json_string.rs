//! JSON string literals written as `serde_json` writes them (the same bytes: `"` and `\\`
//! escaped, the short escapes for backspace, form feed, line feed, carriage return and tab,
//! `\u00xx` for the other control characters, everything else as it is), with the runs that
//! need no escape found eight bytes at a time and copied whole: `serde_json` looks each byte
//! up in its table.

use bytes::BytesMut;

/// Where a literal is written: `extend_from_slice`, which the compiler turns into a store for
/// the short constant pieces (`bytes`' `BufMut::put_slice` is a call and a `memcpy` each).
pub trait Out {
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Out for BytesMut {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes `text` as a JSON string literal, quotes included.
#[inline]
pub fn write(out: &mut impl Out, text: &str) {
    let bytes = text.as_bytes();
    out.put(b"\"");
    let mut at = 0;
    loop {
        let end = plain_run(bytes, at);
        out.put(&bytes[at..end]);
        let Some(&byte) = bytes.get(end) else { break };
        match byte {
            b'"' => out.put(b"\\\""),
            b'\\' => out.put(b"\\\\"),
            b'\n' => out.put(b"\\n"),
            b'\r' => out.put(b"\\r"),
            b'\t' => out.put(b"\\t"),
            0x08 => out.put(b"\\b"),
            0x0C => out.put(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.put(b"\\u00");
                out.put(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xF)]]);
            }
        }
        at = end + 1;
    }
    out.put(b"\"");
}

/// Where the run of bytes from `at` that need no look inside a string ends: at a quote, a
/// backslash, a control character or the end. Eight bytes at a time (bit tricks on a `u64`:
/// a byte's top bit is set where it is a quote, a backslash or below 0x20; the lowest such
/// byte is exact).
#[inline]
pub fn plain_run(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const TOPS: u64 = ONES << 7;
    let zero = |word: u64| word.wrapping_sub(ONES) & !word & TOPS;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let special = zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & TOPS);
        if special != 0 {
            return at + (special.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while bytes.get(at).is_some_and(|b| *b != b'"' && *b != b'\\' && *b >= 0x20) {
        at += 1;
    }
    at
}

#[cfg(test)]
#[path = "json_string_tests.rs"]
mod tests;
