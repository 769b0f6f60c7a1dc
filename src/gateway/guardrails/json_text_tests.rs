//! Decoding JSON source text and mapping decoded offsets back.

use super::*;

#[test]
fn strings_are_decoded_and_offsets_map_back_over_the_escapes() {
    let source = r#"{"k\u0065y": "\u0041KIA\/x \"q\" \ud83d\ude00 é", "n": 12}"#;
    let decoded = JsonText::decode(source, false, true);
    assert_eq!(decoded.text, "{\"key\": \"AKIA/x \"q\" 😀 é\", \"n\": 12}");
    assert_eq!(decoded.complete, source.len());
    let value: serde_json::Value = serde_json::from_str(source).expect("json");
    assert!(decoded.text.contains(value["key"].as_str().expect("string")));
    // Each decoded character boundary maps to the start of what it came from, and back.
    for (at, _) in decoded.text.char_indices().chain([(decoded.text.len(), ' ')]) {
        let src = decoded.to_source(at);
        assert!(source.is_char_boundary(src), "{at} -> {src}");
        assert_eq!(decoded.to_decoded(src), at, "{at} -> {src}");
    }
    let akia = decoded.text.find("AKIA").expect("found");
    assert_eq!(
        &source[decoded.to_source(akia)..decoded.to_source(akia + 4)],
        r"\u0041KIA"
    );
    // The value's contents are one string; a match over its closing quote is not.
    let end = decoded.text.find(" é").expect("é") + " é".len();
    assert!(decoded.in_one_string(akia, end));
    assert!(!decoded.in_one_string(akia, end + 1));
    assert!(!decoded.in_one_string(decoded.text.find("12").expect("n"), decoded.text.len() - 1));
    assert!(!decoded.in_one_string(0, 2));
}

#[test]
fn a_cut_escape_waits_for_the_rest_unless_the_text_ended() {
    for (source, complete) in [
        (r#"{"a": "x\u00"#, 8),
        (r#"{"a": "x\"#, 8),
        (r#"{"a": "x\ud83d"#, 8),
        (r#"{"a": "x\ud83d\u"#, 8),
    ] {
        let decoded = JsonText::decode(source, false, false);
        assert_eq!(
            (decoded.complete, decoded.text.as_str()),
            (complete, "{\"a\": \"x"),
            "{source}"
        );
        let whole = JsonText::decode(source, false, true);
        assert_eq!(whole.complete, source.len());
        assert_eq!(whole.text, source, "kept as written");
    }
    // A piece that starts inside a string.
    let decoded = JsonText::decode(r#"ab\n", "c": 1"#, true, false);
    assert_eq!(decoded.text, "ab\n\", \"c\": 1");
    assert!(decoded.in_one_string(0, 3));
    assert!(!decoded.in_one_string(0, 4));
}

#[test]
fn unknown_escapes_and_lone_surrogates_do_not_stop_the_decoder() {
    let decoded = JsonText::decode(r#""\x \ud800 z""#, false, true);
    assert_eq!(decoded.text, "\"\\x \u{FFFD} z\"");
    assert!(decoded.in_one_string(1, decoded.text.len() - 1));
}

#[test]
fn string_state_is_followed_across_pieces() {
    assert!(ends_in_string(r#"{"a": "b"#, false));
    assert!(!ends_in_string(r#"{"a": "b\"c""#, false));
    assert!(ends_in_string(r#"x\\"#, true));
    assert!(!ends_in_string(r#"x\\""#, true));
    assert!(safe_in_string("[EMAIL]"));
    assert!(!safe_in_string("[REDACTED:a\"b]"));
}
