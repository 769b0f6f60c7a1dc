use super::*;
use crate::crd::Direction;
use crate::gateway::guardrails::matcher::tests::matcher;

const RULES: &str = r#"
- name: pii
  builtin: [email, creditCard, phone, ipAddress, iban, openaiKey]
  "on": [response]
  action: mask
- name: codename
  patterns: ["(?i)project\\s+falcon"]
  keywords: [bluebird]
  "on": [response]
  action: mask
"#;

/// Feeds `pieces` and returns what the client would see.
fn stream(m: &Matcher, pieces: &[&str]) -> Result<String, u16> {
    let mut window = Window::default();
    let mut out = String::new();
    for (i, piece) in pieces.iter().enumerate() {
        match window.push(m, piece, i + 1 == pieces.len()) {
            Released::Text(text) => out.push_str(&text),
            Released::Blocked(rule) => return Err(rule),
        }
    }
    Ok(out)
}

fn whole(m: &Matcher, text: &str) -> String {
    let mut found = Vec::new();
    m.find(text, 0, None, &mut found);
    m.mask(text, &found)
}

/// Cuts `text` at these byte offsets (moved to character boundaries).
fn split_at<'t>(text: &'t str, cuts: &[usize]) -> Vec<&'t str> {
    let mut pieces = Vec::new();
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts
        .iter()
        .map(|&c| {
            let mut c = c.min(text.len());
            while !text.is_char_boundary(c) {
                c -= 1;
            }
            c
        })
        .collect();
    cuts.sort_unstable();
    for cut in cuts {
        pieces.push(&text[at..cut]);
        at = cut;
    }
    pieces.push(&text[at..]);
    pieces
}

fn samples() -> Vec<String> {
    let key = format!("sk-proj-{}T3BlbkFJ{}", "a1B2".repeat(8), "Z9y8".repeat(8));
    vec![
        "Contact jane.doe@example.com or bob@corp.io, card 4111 1111 1111 1111.".to_string(),
        "Project  Falcon: bluebird, bluebirds, xbluebird; call (415) 555-2671 from 10.0.0.1.".to_string(),
        format!("The key is {key} and IBAN GB82 WEST 1234 5698 7654 32 — déjà vu ✓ über"),
        "Nothing to see: version 1.2.3.4.5, 2024-05-17, std::vec::Vec, falconry.".to_string(),
        "a@b.cd".to_string(),
    ]
}

#[test]
fn every_two_piece_split_gives_the_whole_text_output() {
    let m = matcher(RULES, Direction::Response);
    for text in samples() {
        let expected = whole(&m, &text);
        for cut in 0..=text.len() {
            if !text.is_char_boundary(cut) {
                continue;
            }
            let got = stream(&m, &[&text[..cut], &text[cut..]]).expect("masked, not blocked");
            assert_eq!(got, expected, "split at {cut} of {text:?}");
        }
    }
}

#[test]
fn any_split_into_many_pieces_gives_the_whole_text_output() {
    let m = matcher(RULES, Direction::Response);
    let mut rng = fastrand::Rng::with_seed(12);
    for text in samples() {
        let expected = whole(&m, &text);
        // One byte at a time, then random cuts.
        let bytes: Vec<usize> = (1..text.len()).collect();
        assert_eq!(stream(&m, &split_at(&text, &bytes)).expect("masked"), expected);
        for _ in 0..500 {
            let n = rng.usize(1..12);
            let cuts: Vec<usize> = (0..n).map(|_| rng.usize(0..=text.len())).collect();
            let pieces = split_at(&text, &cuts);
            assert_eq!(stream(&m, &pieces).expect("masked"), expected, "{pieces:?}");
        }
    }
}

#[test]
fn nothing_matched_is_released_before_a_block() {
    let m = matcher(
        r#"[{name: secrets, builtin: [openaiKey], keywords: [falcon], "on": [response], action: block}]"#,
        Direction::Response,
    );
    let key = format!("sk-proj-{}T3BlbkFJ{}", "a1B2".repeat(8), "Z9y8".repeat(8));
    let text = format!("{} the key {key} then more text after it", "lorem ipsum ".repeat(20));
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..300 {
        let cuts: Vec<usize> = (0..rng.usize(1..20)).map(|_| rng.usize(0..=text.len())).collect();
        let mut window = Window::default();
        let mut out = String::new();
        let pieces = split_at(&text, &cuts);
        let mut blocked = false;
        for (i, piece) in pieces.iter().enumerate() {
            match window.push(&m, piece, i + 1 == pieces.len()) {
                Released::Text(t) => out.push_str(&t),
                Released::Blocked(rule) => {
                    assert_eq!(rule, 0);
                    blocked = true;
                    break;
                }
            }
        }
        assert!(blocked, "{pieces:?}");
        assert!(!out.contains("T3BlbkFJ"), "part of the key reached the client: {out}");
        assert!(out.len() <= text.find("sk-proj").unwrap_or(0));
    }
}

#[test]
fn a_clean_stream_is_held_back_at_most_the_window_and_a_batch() {
    let m = matcher(RULES, Direction::Response);
    let mut window = Window::default();
    let text = "plain words only ".repeat(200);
    let mut released = 0;
    let mut most = 0;
    for piece in split_at(&text, &(1..text.len()).step_by(7).collect::<Vec<_>>()) {
        if let Released::Text(t) = window.push(&m, piece, false) {
            released += t.len();
        }
        most = most.max(window.held.len() - window.context);
    }
    // Text does flow while the stream goes on, and never more than the bound is held.
    assert!(released >= text.len() - m.window - BATCH, "released {released}");
    assert!(most <= m.window + BATCH, "held {most} > window {} + {BATCH}", m.window);
}

/// Long JSON source with escapes everywhere (an email and a card written with escapes, an
/// escaped quote and backslash before and after matches, surrogate pairs), cut anywhere, is
/// masked exactly as the whole arguments are, and stays valid JSON.
#[test]
fn json_source_cut_anywhere_is_masked_as_the_whole_of_it() {
    let m = matcher(RULES, Direction::Response);
    let field = |i: usize| {
        format!(
            r#""f\u00{i:02}": "say \"hi\" \\ to user{i}\u0040example.com, card 4111\u00201111 1111 1111 \ud83d\ude00 é {}""#,
            "filler ".repeat(i % 7)
        )
    };
    let text = format!(
        "{{{}, \"n\": [1, 2.5, null]}}",
        (10..40).map(field).collect::<Vec<_>>().join(", ")
    );
    let mut expected = text.clone();
    let (mut findings, mut masked) = (Vec::new(), Vec::new());
    assert_eq!(
        m.apply(&mut expected, None, Form::Json, &mut findings, &mut masked),
        None
    );
    assert!(
        !expected.contains("example.com") && !expected.contains("1111"),
        "{expected}"
    );
    assert_eq!(expected.matches("[EMAIL]").count(), 30);
    assert_eq!(expected.matches("[CREDIT_CARD]").count(), 30);
    serde_json::from_str::<serde_json::Value>(&expected).expect("masked JSON parses");
    let mut rng = fastrand::Rng::with_seed(31);
    for round in 0..200 {
        let cuts: Vec<usize> = match round {
            0 => (1..text.len()).collect(),
            _ => (0..rng.usize(1..60)).map(|_| rng.usize(0..=text.len())).collect(),
        };
        let pieces = split_at(&text, &cuts);
        let mut window = Window {
            form: Form::Json,
            ..Window::default()
        };
        let mut out = String::new();
        for (i, piece) in pieces.iter().enumerate() {
            match window.push(&m, piece, i + 1 == pieces.len()) {
                Released::Text(t) => out.push_str(&t),
                Released::Blocked(rule) => panic!("blocked by {rule}: {pieces:?}"),
            }
        }
        assert_eq!(out, expected, "{pieces:?}");
    }
}

#[test]
fn a_record_gives_the_masks_of_the_whole_text_only() {
    let m = matcher(RULES, Direction::Response);
    let text = "mail jane.doe@example.com, card 4111 1111 1111 1111, plain words after it";
    let mut window = Window::default();
    window.record();
    let mut out = String::new();
    for piece in split_at(text, &[9, 30, 41]) {
        assert!(window.masks_of(text, Form::Plain).is_none(), "not before the end");
        if let Released::Text(t) = window.push(&m, piece, false) {
            out.push_str(&t);
        }
    }
    if let Released::Text(t) = window.push(&m, "", true) {
        out.push_str(&t);
    }
    let masks = window.masks_of(text, Form::Plain).expect("complete");
    assert_eq!(m.mask(text, masks), out);
    assert_eq!(out, whole(&m, text));
    assert!(window.masks_of(&text[1..], Form::Plain).is_none());
    // Text after the end: the record no longer is the whole text's.
    window.push(&m, " more", true);
    assert!(window.masks_of(text, Form::Plain).is_none());
    assert_eq!(window.record_cost(), 0);
}

/// Text dense in matches and near-matches of every search (numbers joined to longer ones,
/// cards, addresses, phones, IBANs, emails, keys, keywords inside words, the pattern across
/// spaces), long enough for many scans, each resuming where its searches left off (or, where
/// a search's gate saw none of its literals, only its lead before the end).
fn dense(rng: &mut fastrand::Rng, len: usize) -> String {
    const TOKENS: [&str; 25] = [
        "sk-proj-a1B2a1B2a1B2a1B2a1B2T3BlbkFJZ9y8Z9y8Z9y8Z9y8Z9y8",
        "4111 1111 1111 1111",
        "1.4111 1111 1111 1111",
        "4111-1111-1111-1111-2",
        "10.0.0.1",
        "10.0.0.1.5",
        "::1",
        "std::vec::Vec",
        "(415) 555-2671",
        "+1 415 555 2671",
        "GB82 WEST 1234 5698 7654 32",
        "jane.doe@example.com",
        "x@y",
        "bluebird",
        "bluebirds",
        "project   falcon",
        "Project\nFalcon",
        "2024-05-17",
        "1,250",
        "12345678901234567890",
        " ",
        ", ",
        "-",
        ".",
        "é",
    ];
    let mut text = String::new();
    while text.len() < len {
        text.push_str(TOKENS[rng.usize(..TOKENS.len())]);
        if rng.bool() {
            text.push(' ');
        }
    }
    text
}

#[test]
fn dense_text_cut_anywhere_gives_the_whole_text_output() {
    let m = matcher(RULES, Direction::Response);
    let mut rng = fastrand::Rng::with_seed(78);
    let mut keys = 0;
    for round in 0..6 {
        let text = dense(&mut rng, 1200 + round * 300);
        let expected = whole(&m, &text);
        keys += expected.matches("[OPENAI_KEY]").count();
        assert!(
            expected.contains("[CREDIT_CARD]") && expected.contains("[EMAIL]"),
            "{expected}"
        );
        for first in 0..=text.len() {
            if !text.is_char_boundary(first) {
                continue;
            }
            // A first piece ending at every position, then pieces of one size (the scans
            // fall at every offset), and every two-piece split.
            let step = rng.usize(1..48);
            let cuts: Vec<usize> = (first..text.len()).step_by(step).collect();
            let pieces = split_at(&text, &cuts);
            assert_eq!(
                stream(&m, &pieces).expect("masked"),
                expected,
                "{first}/{step}: {text:?}"
            );
            let two = stream(&m, &[&text[..first], &text[first..]]).expect("masked");
            assert_eq!(two, expected, "split at {first}: {text:?}");
        }
    }
    assert!(keys > 2, "{keys} keys in the texts");
}
