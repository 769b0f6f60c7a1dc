//! A Responses event whose only changes are masked whole texts and its `sequence_number` is
//! written as its own bytes with those spliced in: it reads as the same value as the event
//! written again from its parsed value (the way before), on generated streams written compact,
//! pretty (several `data:` lines), with escapes where `serde_json` writes none and with the
//! number's key escaped; the numbers stay consecutive, and only the top-level one changes.

use serde_json::{json, Value};

use super::one_delta::tests::output;
use super::record_tests::{generated, scanned};

fn through(body: &str, spliced: bool) -> String {
    let mut scanned = scanned(body, super::RECORD_CAP);
    scanned.spliced = spliced;
    output(scanned)
}

/// Each event of `sse`: its name and its data, parsed.
fn events(sse: &str) -> Vec<(String, Value)> {
    sse.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default();
            let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            let data = serde_json::from_str(&data.join("\n")).unwrap_or_else(|e| panic!("{e}: {block}"));
            (name.to_string(), data)
        })
        .collect()
}

/// `sse` with each event's data written again at random: as it was, pretty (one `data:` line
/// per line), with `é` or `/` escaped, or with the number's key escaped and spaces around it.
fn rewritten(rng: &mut fastrand::Rng, sse: &str) -> String {
    let mut out = String::new();
    for (name, event) in events(sse) {
        let data = match rng.usize(..5) {
            0 => serde_json::to_string_pretty(&event).unwrap_or_default(),
            1 => event.to_string().replace('é', "\\u00e9").replace('/', "\\/"),
            2 => event
                .to_string()
                .replace(r#""sequence_number":"#, r#"  "sequence\u005fnumber" :  "#),
            _ => event.to_string(),
        };
        out.push_str(&format!("event: {name}\n"));
        for line in data.split('\n') {
            out.push_str(&format!("data: {line}\n"));
        }
        out.push('\n');
    }
    out
}

/// The `sequence_number` of each event of `sse` that has one.
fn numbers(sse: &str) -> Vec<u64> {
    events(sse)
        .iter()
        .filter_map(|(_, e)| e.get("sequence_number").and_then(Value::as_u64))
        .collect()
}

#[test]
fn spliced_events_read_as_the_events_written_again() {
    let mut rng = fastrand::Rng::with_seed(53);
    let mut differ = 0;
    for _ in 0..300 {
        let body = generated(&mut rng);
        let body = rewritten(&mut rng, &body);
        let spliced = through(&body, true);
        let again = through(&body, false);
        assert_eq!(events(&spliced), events(&again), "{body}");
        let numbers = numbers(&spliced);
        assert!(
            numbers.iter().enumerate().all(|(n, s)| *s == n as u64),
            "{numbers:?}: {spliced}"
        );
        differ += usize::from(spliced != again);
    }
    // Written as no serializer writes them, spliced events keep their form.
    assert!(differ > 100, "{differ}");
}

/// A stream of one output text whose last delta is held back and released before the
/// `*.done` (so the events after it are renumbered), with `done`'s data written as given.
fn renumbered(text: &str, done: &str) -> String {
    let delta = json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0,
        "delta": text, "sequence_number": 0});
    let done = done.replace('\n', "\ndata: ");
    format!("event: response.output_text.delta\ndata: {delta}\n\nevent: response.output_text.done\ndata: {done}\n\n")
}

#[test]
fn only_the_top_level_sequence_number_is_renumbered() {
    let text = r#"set "sequence_number":1 for bob@example.com"#;
    let done = json!({"type": "response.output_text.done", "output_index": 0, "content_index": 0,
        "text": text, "sequence_number": 1, "extra": {"sequence_number": 1}});
    let out = through(&renumbered(text, &done.to_string()), true);
    let events = events(&out);
    let numbers: Vec<_> = events.iter().map(|(_, e)| e["sequence_number"].clone()).collect();
    assert_eq!(numbers, [json!(0), json!(1), json!(2)], "{out}");
    let done = &events[2].1;
    assert_eq!(done["text"], json!(r#"set "sequence_number":1 for [EMAIL]"#), "{out}");
    assert_eq!(done["extra"], json!({"sequence_number": 1}), "{out}");
    assert!(
        out.contains(r#""extra":{"sequence_number":1}"#),
        "written as it came: {out}"
    );
}

#[test]
fn an_escaped_key_or_odd_spacing_is_renumbered_where_it_is() {
    let text = "mail bob@example.com";
    // Each as it came, and what of it must go out as written (only the number and the email
    // changed): the walk beside the value finds the key however it is written.
    for (done, kept) in [
        (
            r#"{"type":"response.output_text.done","output_index":0,"content_index":0,"text":"mail bob@example.com","sequence\u005fnumber":1}"#,
            r#""text":"mail [EMAIL]","sequence\u005fnumber":2}"#,
        ),
        (
            "{ \"type\" : \"response.output_text.done\" ,\n \"output_index\" : 0, \"content_index\":0,\n\t\"text\" : \"mail bob@example.com\" , \"sequence_number\" : 1 }",
            "\ndata: \t\"text\" : \"mail [EMAIL]\" , \"sequence_number\" : 2 }\n",
        ),
        (
            r#"{"type":"response.output_text.done","output_index":0,"content_index":0,"text":"mail bob\u0040example.com","sequence_number":1.0}"#,
            r#""text":"mail [EMAIL]","sequence_number":2}"#,
        ),
    ] {
        let out = through(&renumbered(text, done), true);
        assert_eq!(events(&out), events(&through(&renumbered(text, done), false)), "{out}");
        let done = &events(&out)[2].1;
        assert_eq!(done["sequence_number"], json!(2), "{out}");
        assert_eq!(done["text"], json!("mail [EMAIL]"), "{out}");
        assert!(!out.contains("bob"), "{out}");
        assert!(out.contains(kept), "{out}");
    }
}
