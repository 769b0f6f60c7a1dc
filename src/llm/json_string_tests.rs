//! String literals are written as `serde_json` writes them.

use super::{plain_run, write};

fn written(text: &str) -> String {
    let mut out = Vec::new();
    write(&mut out, text);
    String::from_utf8(out).unwrap_or_default()
}

#[test]
fn every_string_is_written_as_serde_json_writes_it() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut alphabet: Vec<char> = (0u8..0x20).map(char::from).collect();
    alphabet.extend(['"', '\\', '/', '\u{7f}', 'a', ' ', 'é', '😀', '\u{2028}']);
    for _ in 0..20_000 {
        let text: String = (0..rng.usize(0..40))
            .map(|_| match rng.usize(..3) {
                0 => alphabet[rng.usize(..alphabet.len())],
                _ => 'x',
            })
            .collect();
        let expected = serde_json::to_string(&text).unwrap_or_default();
        assert_eq!(written(&text), expected, "{text:?}");
    }
    assert_eq!(written(""), "\"\"");
}

#[test]
fn a_run_of_plain_bytes_ends_at_the_first_quote_backslash_or_control_character() {
    let mut rng = fastrand::Rng::with_seed(5);
    let alphabet = [
        b'a', b'"', b'\\', 0x1F, 0x20, 0x7F, 0x80, 0xC3, 0xFF, b'!', b'#', b'[', b']',
    ];
    for _ in 0..5000 {
        let bytes: Vec<u8> = (0..rng.usize(0..40))
            .map(|_| match rng.usize(..4) {
                0 => alphabet[rng.usize(..alphabet.len())],
                _ => b'x',
            })
            .collect();
        let from = rng.usize(0..=bytes.len());
        let expected = (from..bytes.len())
            .find(|&at| matches!(bytes[at], b'"' | b'\\' | 0..=0x1F))
            .unwrap_or(bytes.len());
        assert_eq!(plain_run(&bytes, from), expected, "{bytes:?} from {from}");
    }
}
