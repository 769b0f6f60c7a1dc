//! Server-sent events both ways: `llm::SseFramer` (how provider streams are split into events)
//! and `llm::stream::write_sse` (how the gateway writes events for clients).

use bytes::BytesMut;

use crate::llm::stream::write_sse;
use crate::llm::{Frame, Framer, SseFramer};

/// Input: one byte of settings, then bytes. Bit 0 picks the mode: the bytes as a stream to
/// frame (0), or as events to write and frame again (1: fields separated by NUL, in pairs of
/// event name and data). The rest seeds where the stream is cut.
///
/// Properties: never panics; the same events whether a stream comes in one piece, one byte
/// at a time or cut at random places; and every event the gateway writes (a name without line
/// breaks, data without carriage returns; `data: ` alone is an event with empty data, as the
/// SSE standard says) is framed back with the same name (`message` when none) and data.
pub fn sse_frames(data: &[u8]) {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let stream: Vec<u8>;
    let mut expected = None;
    if settings & 1 == 0 {
        stream = rest.to_vec();
    } else {
        let text = String::from_utf8_lossy(rest);
        let fields: Vec<&str> = text.split('\0').collect();
        let mut out = BytesMut::new();
        let mut events = Vec::new();
        for pair in fields.chunks(2) {
            let event = pair[0].replace(['\r', '\n'], "");
            let data = pair.get(1).map_or(String::new(), |d| d.replace('\r', ""));
            let event = (!event.is_empty()).then_some(event);
            write_sse(&mut out, event.as_deref(), &data);
            events.push((event.unwrap_or_else(|| "message".to_string()), data));
        }
        stream = out.to_vec();
        expected = Some(events);
    }

    let whole = frames(&[&stream]);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(whole, frames(&bytes), "one piece and single bytes disagree");
    let cuts = super::random_cuts(settings >> 1, &stream);
    assert_eq!(whole, frames(&cuts), "one piece and random cuts disagree");
    if let Some(expected) = expected {
        assert_eq!(whole, expected, "written events read back differently");
    }
}

fn frames(pieces: &[&[u8]]) -> Vec<(String, String)> {
    let mut framer = SseFramer::new();
    let mut seen = Vec::new();
    for piece in pieces {
        let fed = framer.feed(piece, &mut |frame| {
            if let Frame::Sse { event, data } = frame {
                seen.push((event.to_string(), data.to_string()));
            }
            Ok(())
        });
        assert!(fed.is_ok(), "an SSE framer refused bytes");
    }
    seen
}
