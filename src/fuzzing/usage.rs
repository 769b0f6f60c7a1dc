//! Usage metering (`gateway::usage`) on any response body, cut into chunks anywhere.

use bytes::Bytes;

use crate::gateway::usage::{usage_in_json, Usage, UsageScanner};

/// Input: one byte of settings, then the response body. Bit 0 of the settings picks a server-
/// sent event stream (else a JSON body); the rest seeds where the body is cut.
///
/// Properties: never panics; the same usage whether the body arrives in one chunk, one byte
/// at a time, or cut at arbitrary places; for a JSON body, what `usage_in_json` reads from the
/// whole body; and for a JSON body with one top-level `usage` object (the only `"usage"` in
/// it, unescaped), exactly that object's counts.
pub fn usage_metering(data: &[u8]) {
    let Some((&settings, body)) = data.split_first() else {
        return;
    };
    let content_type = if settings & 1 == 1 {
        "text/event-stream; charset=utf-8"
    } else {
        "application/json"
    };
    let whole = scan(content_type, [Bytes::copy_from_slice(body)]);
    let bytewise = scan(content_type, body.iter().map(|b| Bytes::copy_from_slice(&[*b])));
    assert_eq!(whole, bytewise, "one chunk and single bytes disagree ({content_type})");
    let pieces = super::random_cuts(settings >> 1, body)
        .into_iter()
        .map(Bytes::copy_from_slice);
    let cut = scan(content_type, pieces);
    assert_eq!(whole, cut, "one chunk and random cuts disagree ({content_type})");

    if settings & 1 == 0 {
        assert_eq!(whole, usage_in_json(body));
        if let Some(expected) = single_top_level_usage(body) {
            assert_eq!(whole, Some(expected), "the top-level usage object is read");
        }
    }
}

fn scan(content_type: &str, chunks: impl IntoIterator<Item = Bytes>) -> Option<Usage> {
    let mut scanner = UsageScanner::for_content_type(Some(content_type), crate::gateway::usage::UsageShape::Chat);
    for chunk in chunks {
        scanner.feed(&chunk);
    }
    scanner.finish()
}

/// The counts of a JSON object's `usage`, when the body holds exactly one `"usage"` and no
/// `\u` escape (an escaped key is a JSON key the byte scan cannot see, by design).
fn single_top_level_usage(body: &[u8]) -> Option<Usage> {
    let occurrences = memchr::memmem::find_iter(body, b"\"usage\"").count();
    let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !object || occurrences != 1 || memchr::memmem::find(body, b"\\u").is_some() {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Top<'a> {
        #[serde(borrow)]
        usage: &'a serde_json::value::RawValue,
    }
    let top: Top<'_> = serde_json::from_slice(body).ok()?;
    serde_json::from_str(top.usage.get()).ok()
}
