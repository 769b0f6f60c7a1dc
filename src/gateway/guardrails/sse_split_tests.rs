//! The splitter gives the events the `sse-parse` parser gives, on generated streams cut in
//! two at every position and fed a byte at a time.

use sse_parse::SseParser;

use super::Splitter;

/// Lines of generated streams: the common shapes, and each thing the fast path leaves to
/// the parser.
const LINES: [&[u8]; 18] = [
    b"data: {\"a\":1}",
    b"data:{\"b\":\"x y\"}",
    b"data: ",
    b"data:",
    b"data",
    b"event: content_block_delta",
    b"event:ping",
    b"event:",
    b"event: message",
    b": keep-alive",
    b"id: 7",
    b"retry: 100",
    b"datum: x",
    b"data:  two spaces",
    b"data: caf\xC3\xA9",
    b"data: bad \xFF byte",
    b"event: \xEF\xBB\xBFname",
    b"\xEF\xBB\xBFdata: after a mark",
];

fn generate(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut stream = Vec::new();
    if rng.usize(..10) == 0 {
        stream.extend_from_slice(b"\xEF\xBB\xBF");
    }
    for _ in 0..rng.usize(1..12) {
        // Mostly the common events; now and then anything.
        match rng.usize(..4) {
            0 => stream.extend_from_slice(b"data: {\"x\":\"y\"}\n\n"),
            1 => stream.extend_from_slice(b"event: delta\ndata: {\"x\":1}\n\n"),
            _ => {
                for _ in 0..rng.usize(1..4) {
                    stream.extend_from_slice(LINES[rng.usize(..LINES.len())]);
                    stream.extend_from_slice(match rng.usize(..30) {
                        0 => b"\r",
                        1 => b"\r\n",
                        _ => b"\n",
                    });
                }
                if rng.bool() {
                    stream.push(b'\n');
                }
            }
        }
    }
    stream
}

type Events = Vec<(String, String)>;

fn parsed(stream: &[u8]) -> Events {
    let mut parser = SseParser::new();
    parser.feed(stream);
    parser.finish();
    std::iter::from_fn(|| parser.next_event())
        .map(|e| (e.event, e.data))
        .collect()
}

fn split<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Events {
    let mut splitter = Splitter::default();
    let mut events = Vec::new();
    let mut each = |name: &str, data: &str| {
        events.push((name.to_string(), data.to_string()));
        Ok(())
    };
    for chunk in chunks {
        splitter.feed(chunk, &mut each).expect("fed");
    }
    splitter.finish(&mut each).expect("finished");
    events
}

#[test]
fn the_splitter_gives_the_parsers_events_however_the_stream_is_cut() {
    let mut rng = fastrand::Rng::with_seed(12);
    for _ in 0..600 {
        let stream = generate(&mut rng);
        let expected = parsed(&stream);
        let shown = String::from_utf8_lossy(&stream);
        for at in 0..=stream.len() {
            assert_eq!(
                split([&stream[..at], &stream[at..]]),
                expected,
                "cut at {at}: {shown:?}"
            );
        }
        assert_eq!(split(stream.chunks(1)), expected, "bytewise: {shown:?}");
    }
}

#[test]
fn a_stopped_stream_hands_on_no_more_events() {
    let mut splitter = Splitter::default();
    let mut seen = 0;
    let result = splitter.feed(b"data: a\n\ndata: b\n\n", &mut |_, _| {
        seen += 1;
        Err(())
    });
    assert_eq!((result, seen), (Err(()), 1));
}

#[test]
fn common_events_never_reach_the_parser_however_they_are_cut() {
    let stream = b"data: {\"a\":1}\n\nevent: delta\ndata: {\"b\":2}\n\nevent:\ndata:x\n\n";
    for at in 0..=stream.len() {
        let mut splitter = Splitter::default();
        let mut events = 0;
        let mut each = |_: &str, _: &str| {
            events += 1;
            Ok(())
        };
        splitter.feed(&stream[..at], &mut each).expect("fed");
        splitter.feed(&stream[at..], &mut each).expect("fed");
        assert_eq!((events, splitter.parser_fed), (3, false), "cut at {at}");
    }
}
