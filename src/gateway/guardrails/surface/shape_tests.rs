//! A shape reads an event exactly as the compact reader does, or leaves it to the reader.

use super::{locate, Shape, Shapes};
use crate::gateway::guardrails::surface::{surface, Surface};
use crate::gateway::metrics::Endpoint;
use crate::llm::compact::Compact;

const TEXT: &str = "\u{0}TEXT\u{0}";
const OBFUSCATION: &str = "\u{0}OBF\u{0}";

/// Delta events as providers stream them, `TEXT` (a JSON string) and `OBF` and `N` to fill.
fn events() -> Vec<(Endpoint, String)> {
    [
        (Endpoint::chat_completions, r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1733,"model":"gpt-4o","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":TEXT},"logprobs":null,"finish_reason":null}],"obfuscation":OBF}"#),
        (Endpoint::chat_completions, r#"{"choices":[{"delta":{"reasoning_content":TEXT,"role":"assistant"},"index":2}],"usage":{"n":[1,-2.5,OBF]},"id":"c"}"#),
        (Endpoint::messages, r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":TEXT}}"#),
        (Endpoint::messages, r#"{"type":"content_block_delta","index":1,"delta":{"type":"thinking_delta","thinking":TEXT,"x":OBF}}"#),
        (Endpoint::responses, r#"{"type":"response.output_text.delta","sequence_number":N,"item_id":"msg_1","output_index":0,"content_index":0,"delta":TEXT,"logprobs":[],"obfuscation":OBF}"#),
        (Endpoint::responses, r#"{"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":1,"summary_index":2,"delta":TEXT,"sequence_number":N}"#),
    ]
    .into_iter()
    .map(|(endpoint, event)| {
        let event = event.replace("TEXT", TEXT).replace("OBF", OBFUSCATION).replace('N', "\u{0}N\u{0}");
        (endpoint, event)
    })
    .collect()
}

fn random_text(rng: &mut fastrand::Rng) -> String {
    let alphabet = [
        'a', ' ', '"', '\\', '\n', '\u{1}', '/', 'é', '😀', '{', '}', ',', ':', '1',
    ];
    (0..rng.usize(0..30))
        .map(|_| alphabet[rng.usize(..alphabet.len())])
        .collect()
}

/// `event` with its placeholders filled: random texts as JSON strings (the skipped one the
/// same in half the events, as most skipped values are in a stream), a random number.
fn fill(rng: &mut fastrand::Rng, event: &str) -> String {
    let string = |rng: &mut fastrand::Rng| serde_json::to_string(&random_text(rng)).unwrap_or_default();
    let skipped = match rng.bool() {
        true => String::from("\"pad\""),
        false => string(rng),
    };
    event
        .replace(TEXT, &string(rng))
        .replace(OBFUSCATION, &skipped)
        .replace("\u{0}N\u{0}", &rng.u64(0..1 << 40).to_string())
}

fn reader(endpoint: Endpoint, data: &str) -> Option<(u32, &str, Option<u64>)> {
    locate(surface(endpoint), data).map(|d| (d.slot, d.text, d.sequence))
}

fn learnt(surface: &dyn Surface, data: &str) -> Shape {
    let mut json = Compact::recording(data);
    let delta = surface
        .locate(&mut json)
        .unwrap_or_else(|| panic!("the reader locates {data}"));
    Shape::learn(data, json.holes(), &delta).unwrap_or_else(|| panic!("a shape of {data}"))
}

#[test]
fn a_stream_is_located_by_the_shape_of_its_first_delta() {
    let mut rng = fastrand::Rng::with_seed(11);
    for (endpoint, event) in events() {
        let mut shapes = Shapes::default();
        for _ in 0..200 {
            let data = fill(&mut rng, &event);
            let found = shapes
                .locate(surface(endpoint), &data)
                .map(|d| (d.slot, d.text, d.sequence));
            assert!(found.is_some(), "{endpoint:?}: {data}");
            assert_eq!(found, reader(endpoint, &data), "{endpoint:?}: {data}");
        }
        assert_eq!(shapes.0.len(), 1, "{endpoint:?}: one shape read every event: {event}");
    }
}

/// Every event a shape reads, the reader reads the same: events of the shape with their
/// values changed and with bytes anywhere changed, added or taken away.
#[test]
fn shapes_read_what_the_reader_reads() {
    let mut rng = fastrand::Rng::with_seed(12);
    let pieces = [
        "\"", "\\", "\\u00e9", "\\ud800", ",", ":", "{", "}", "[", "]", "0", "7", "-", ".", "e", "null", "x", " ",
        "\n", "é",
    ];
    let (mut read, mut left) = ([0; 3], 0);
    for (endpoint, event) in events() {
        for _ in 0..3000 {
            let shape = learnt(surface(endpoint), &fill(&mut rng, &event));
            let mut data = fill(&mut rng, &event);
            for _ in 0..rng.usize(0..3) {
                let mut at = rng.usize(0..=data.len());
                while !data.is_char_boundary(at) {
                    at -= 1;
                }
                match rng.usize(..3) {
                    0 => data.insert_str(at, pieces[rng.usize(..pieces.len())]),
                    1 if at < data.len() => drop(data.remove(at)),
                    _ => {
                        data.truncate(at);
                        let rest = fill(&mut rng, &event);
                        let mut from = at.min(rest.len());
                        while !rest.is_char_boundary(from) {
                            from -= 1;
                        }
                        data.push_str(&rest[from..]);
                    }
                }
            }
            let expected = reader(endpoint, &data);
            for (way, found) in [
                (0, shape.read(&data)),
                (1, shape.read_same(&data)),
                (2, shape.read_holes(&data)),
            ] {
                match found {
                    Some(delta) => {
                        read[way] += 1;
                        let found = Some((delta.slot, delta.text, delta.sequence));
                        assert_eq!(found, expected, "{endpoint:?} (way {way}): {data}");
                    }
                    None => left += usize::from(way == 0),
                }
            }
        }
    }
    assert!(
        read.iter().all(|n| *n > 3000) && left > 5000,
        "read {read:?} (each way), left to the reader {left}"
    );
}

#[test]
fn a_changed_index_type_or_key_is_another_shape() {
    let first = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}"#;
    let shape = learnt(surface(Endpoint::messages), first);
    assert!(shape
        .read(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"b \"c\""}}"#)
        .is_some());
    for other in [
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"a"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","text":"a"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":null}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}} "#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","text":"b"}}"#,
    ] {
        assert_eq!(shape.read(other), None, "{other}");
    }
}

#[test]
fn at_most_a_few_shapes_are_kept() {
    let mut shapes = Shapes::default();
    for index in 0..10 {
        let data =
            format!(r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"text_delta","text":"a"}}}}"#);
        assert!(shapes.locate(surface(Endpoint::messages), &data).is_some());
    }
    assert_eq!(shapes.0.len(), super::KEPT);
}

#[test]
fn a_long_event_is_located_but_not_kept() {
    let mut shapes = Shapes::default();
    let text = "a".repeat(super::LONGEST);
    let data = format!(r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{text}"}}}}"#);
    assert!(shapes.locate(surface(Endpoint::messages), &data).is_some());
    assert!(shapes.0.is_empty());
}
