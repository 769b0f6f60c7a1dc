//! The compact reader accepts what `serde_json` reads and refuses what it is not sure of.

use super::{plain_run, Compact};

fn skips(text: &str) -> bool {
    let mut json = Compact::new(text);
    json.skip().is_some() && json.done()
}

#[test]
fn values_serde_json_reads_are_skipped() {
    for text in [
        r#"{"a":[1,-2.5,0,true,false,null,{}],"b":"x\"\\\/\b\f\n\r\t\u00e9y","c":[[]]}"#,
        r#""日本語 😀""#,
        "123456789012345678",
    ] {
        assert!(skips(text), "{text}");
        assert!(serde_json::from_str::<serde_json::Value>(text).is_ok(), "{text}");
    }
}

#[test]
fn what_it_is_not_sure_of_is_refused() {
    for text in [
        r#"{"a": 1}"#,
        r#" {"a":1}"#,
        r#"{"a":1} "#,
        r#"{"\u0061":1}"#,
        r#""\ud800""#,
        r#""\u+123""#,
        r#""\x""#,
        "\"tab\there\"",
        "1e400",
        "1234567890123456789",
        "01",
        "1.",
        "-",
        "[1,]",
        "{\"a\":1,}",
        "nul",
        &format!("{}{}", "[".repeat(40), "]".repeat(40)),
    ] {
        assert!(!skips(text), "{text}");
    }
}

#[test]
fn an_index_is_a_plain_unsigned_integer_or_null() {
    let index = |text: &str| Compact::new(text).index();
    assert_eq!(index("7"), Some(Some(7)));
    assert_eq!(index("null"), Some(None));
    for text in ["-1", "1.0", "1e2", "01", "\"1\"", "99999999999999999999"] {
        assert_eq!(index(text), None, "{text}");
    }
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
