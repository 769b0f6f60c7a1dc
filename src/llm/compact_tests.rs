//! The compact reader accepts what `serde_json` reads and refuses what it is not sure of.

use super::Compact;

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
