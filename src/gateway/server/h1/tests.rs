use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode, Version};

use super::head::{parse, Framing, HeadError};
use super::write::{self, Plan};

const LIMIT: usize = 8 << 10;

fn parse_all(bytes: &[u8]) -> Result<Option<super::head::Head>, HeadError> {
    parse(&mut BytesMut::from(bytes), LIMIT)
}

fn framing_of(bytes: &[u8]) -> Result<Framing, HeadError> {
    Ok(parse_all(bytes)?.expect("complete").framing)
}

#[test]
fn a_head_is_parsed_with_its_framing_and_connection() {
    let head = parse_all(
        b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 12\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
    )
    .expect("valid")
    .expect("complete");
    assert_eq!(head.request.method(), http::Method::POST);
    assert_eq!(head.request.uri().path(), "/v1/chat/completions");
    assert_eq!(head.request.uri().query(), Some("x=1"));
    assert_eq!(head.request.version(), Version::HTTP_11);
    assert_eq!(head.request.headers().get_all("x-a").iter().count(), 2);
    assert_eq!(head.framing, Framing::Length(12));
    assert!(head.keep_alive && !head.expect_continue);

    let head = parse_all(b"GET / HTTP/1.0\r\n\r\n").expect("valid").expect("complete");
    assert!(!head.keep_alive, "HTTP/1.0 keeps the connection only when asked");
    let head = parse_all(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        .expect("valid")
        .expect("complete");
    assert!(head.keep_alive);
    let head = parse_all(b"GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n")
        .expect("valid")
        .expect("complete");
    assert!(!head.keep_alive);
    let head = parse_all(b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
        .expect("valid")
        .expect("complete");
    assert!(head.expect_continue);
    let head = parse_all(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
        .expect("valid")
        .expect("complete");
    assert!(
        !head.expect_continue,
        "an HTTP/1.0 client does not wait for 100 Continue"
    );
}

#[test]
fn the_api_paths_and_common_header_values_read_as_sent() {
    let head = parse_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Type: application/json\r\nAccept: */*\r\nX-B: application/jsonx\r\nContent-Length: 2\r\n\r\n",
    )
    .expect("valid")
    .expect("complete");
    let request = head.request;
    assert_eq!(request.uri(), "/v1/chat/completions");
    assert_eq!(request.uri().query(), None);
    assert_eq!(request.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(request.headers()["accept"], "*/*");
    assert_eq!(request.headers()["x-b"], "application/jsonx");
    // Every API path reads as sent; so do the same with a query, another case or a suffix
    // (parsed from the head).
    let others = [
        "/v1/chat/completions?stream=1",
        "/V1/chat/completions",
        "/v1/chat/completions/",
        "/chat/completions",
    ];
    for path in super::head::API_PATHS.into_iter().chain(others) {
        let bytes = format!("POST {path} HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        let head = parse_all(bytes.as_bytes()).expect("valid").expect("complete");
        assert_eq!(head.request.uri(), path);
    }
    // A value with a byte no header may carry is refused, common-looking or not.
    let refused = parse_all(b"POST /v1/messages HTTP/1.1\r\nContent-Type: application/json\x7f\r\n\r\n");
    assert!(refused.is_err(), "{:?}", refused.map(|h| h.map(|h| h.request)));
}

#[test]
fn a_request_cut_at_every_byte_parses_the_same_and_leaves_the_next_one() {
    let first = b"POST /v1/embeddings HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer k\r\nContent-Length: 5\r\n\r\n";
    let next = b"GET /v1/models HTTP/1.1\r\n\r\n";
    let whole: Vec<u8> = [&first[..], b"hello", next].concat();
    let reference = parse_all(&whole).expect("valid").expect("complete");
    for cut in 0..whole.len() {
        let mut buf = BytesMut::from(&whole[..cut]);
        match parse(&mut buf, LIMIT).expect("a prefix is never an error") {
            None => assert!(cut < first.len(), "incomplete at {cut}"),
            Some(head) => {
                assert!(cut >= first.len(), "complete at {cut}");
                assert_eq!(head.request.headers(), reference.request.headers());
                assert_eq!(head.request.uri(), reference.request.uri());
                assert_eq!(head.framing, reference.framing);
                assert_eq!(&buf[..], &whole[first.len()..cut], "the rest stays in the buffer");
            }
        }
    }
}

#[test]
fn smuggling_shapes_are_refused() {
    let malformed = |bytes: &[u8]| matches!(framing_of(bytes), Err(HeadError::Malformed(_)));
    assert!(malformed(
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    ));
    assert!(malformed(
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
    ));
    assert!(malformed(b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n"));
    assert!(malformed(b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n"));
    assert!(malformed(b"POST / HTTP/1.1\r\nContent-Length: 0x3\r\n\r\n"));
    assert!(malformed(
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"
    ));
    assert!(malformed(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    ));
    assert!(malformed(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
    ));
    assert!(malformed(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
    ));
    assert!(malformed(b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n"));
    assert!(malformed(b"POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n"));
    assert!(malformed(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    ));
    assert!(malformed(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"));
    assert!(malformed(
        b"POST / HTTP/1.1\r\nX-A: 1\r\n  folded\r\nContent-Length: 1\r\n\r\n"
    ));
    assert!(malformed(b"POST / HTTP/1.1\r\nContent-Length : 1\r\n\r\n"));
    assert!(malformed(b"GET  / HTTP/1.1\r\n\r\n"));
    assert!(malformed(b"GET / HTTP/2.0\r\n\r\n"));
    assert!(malformed(b"GARBAGE\r\n\r\n"));
    assert_eq!(
        framing_of(b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n"),
        Ok(Framing::Length(3))
    );
    assert_eq!(
        framing_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
        Ok(Framing::Chunked)
    );
    assert_eq!(framing_of(b"GET / HTTP/1.1\r\n\r\n"), Ok(Framing::Length(0)));
}

#[test]
fn heads_over_the_limit_are_told_apart() {
    let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(LIMIT));
    assert_eq!(parse_all(long_target.as_bytes()).err(), Some(HeadError::TooLarge));
    let mut buf = BytesMut::from(format!("GET /{}", "a".repeat(crate::gateway::server::MAX_URI_BYTES + 10)).as_bytes());
    assert_eq!(parse(&mut buf, LIMIT).err(), Some(HeadError::UriTooLong));
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert_eq!(
        parse(&mut BytesMut::from(head.as_bytes()), 1 << 20).err(),
        Some(HeadError::TooLarge)
    );
    let big = format!("GET / HTTP/1.1\r\nx-big: {}\r\n", "b".repeat(LIMIT));
    assert_eq!(parse_all(big.as_bytes()).err(), Some(HeadError::TooLarge));
    assert_eq!(HeadError::UriTooLong.api_error(LIMIT).status, StatusCode::URI_TOO_LONG);
    let error = HeadError::Malformed("x").api_error(LIMIT);
    assert_eq!(
        (error.status, error.code),
        (StatusCode::BAD_REQUEST, Some("malformed_request"))
    );
}

/// A chunked body with extensions, cut at every byte position, decodes the same.
#[test]
fn chunked_bodies_with_extensions_decode_the_same_however_cut() {
    use crate::gateway::h1::wire::{decode_all, Decoder};
    let body = b"5;name=value\r\nhello\r\n6 ; quoted=\"a;b\"\r\n world\r\n0;last\r\nx-trailer: ignored\r\n\r\nGET";
    for cut in 0..body.len() {
        let (data, rest, error) = decode_all(Decoder::chunked(), &[&body[..cut], &body[cut..]]);
        assert_eq!(error, None, "cut at {cut}");
        assert_eq!(data, b"hello world");
        assert_eq!(rest, b"GET", "the next request stays");
    }
    for bad in [
        &b"g\r\n"[..],
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"11111111111111111\r\n",
    ] {
        assert!(
            decode_all(Decoder::chunked(), &[bad]).2.is_some(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

fn parts(status: u16, headers: &[(&'static str, &'static str)]) -> http::response::Parts {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    for (name, value) in headers {
        response.headers_mut().append(*name, HeaderValue::from_static(value));
    }
    response.into_parts().0
}

fn head_text(parts: &http::response::Parts, version: Version, plan: Plan) -> String {
    let mut out = Vec::new();
    write::head(&mut out, parts, version, plan);
    let text = String::from_utf8(out).expect("ascii");
    let (before, after) = text.split_once("date: ").expect("a date");
    let (date, rest) = after.split_once("\r\n").expect("line");
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    format!("{before}date: D\r\n{rest}")
}

#[test]
fn response_heads_are_laid_out_as_hyper_did() {
    let json = parts(200, &[("content-type", "application/json"), ("x-request-id", "r")]);
    let plan = write::plan(&json, Some(12), Version::HTTP_11, true);
    assert_eq!(
        plan,
        Plan {
            framing: write::Framing::Length(12),
            keep_alive: true
        }
    );
    assert_eq!(
        head_text(&json, Version::HTTP_11, plan),
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: r\r\ncontent-length: 12\r\ndate: D\r\n\r\n"
    );
    // The handler's own length stays where it put it.
    let sized = parts(
        200,
        &[
            ("content-type", "application/json"),
            ("content-length", "3"),
            ("x-request-id", "r"),
        ],
    );
    let plan = write::plan(&sized, Some(3), Version::HTTP_11, false);
    assert_eq!(
        head_text(&sized, Version::HTTP_11, plan),
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 3\r\nx-request-id: r\r\nconnection: close\r\ndate: D\r\n\r\n"
    );
    let stream = parts(200, &[("content-type", "text/event-stream")]);
    let plan = write::plan(&stream, None, Version::HTTP_11, true);
    assert_eq!(plan.framing, write::Framing::Chunked);
    assert_eq!(
        head_text(&stream, Version::HTTP_11, plan),
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\ndate: D\r\n\r\n"
    );
    // HTTP/1.0: a stream ends with the connection; a kept connection is said so.
    let plan = write::plan(&stream, None, Version::HTTP_10, true);
    assert_eq!(
        plan,
        Plan {
            framing: write::Framing::Close,
            keep_alive: false
        }
    );
    let plan = write::plan(&json, Some(0), Version::HTTP_10, true);
    assert_eq!(
        head_text(&json, Version::HTTP_10, plan),
        "HTTP/1.0 200 OK\r\ncontent-type: application/json\r\nx-request-id: r\r\nconnection: keep-alive\r\ncontent-length: 0\r\ndate: D\r\n\r\n"
    );
    // The handler's `Connection: close` (a drain, an unread body) closes the connection.
    let closing = parts(413, &[(CONNECTION.as_str(), "close")]);
    assert!(!write::plan(&closing, Some(5), Version::HTTP_11, true).keep_alive);
    let none = parts(204, &[(CONTENT_LENGTH.as_str(), "0"), (CONTENT_TYPE.as_str(), "x")]);
    assert_eq!(
        write::plan(&none, Some(0), Version::HTTP_11, true).framing,
        write::Framing::None
    );
}

#[test]
fn chunk_size_lines_are_hex() {
    let mut line = [0u8; 18];
    assert_eq!(write::chunk_size(1, &mut line), b"1\r\n");
    assert_eq!(write::chunk_size(255, &mut line), b"ff\r\n");
    assert_eq!(write::chunk_size(0x1_0000, &mut line), b"10000\r\n");
}

mod wire_level;

/// A request's header values are taken without a second check of their bytes (`wire::value`;
/// debug builds, as here, would panic on an invalid value), byte by byte.
#[test]
fn request_values_hold_only_the_bytes_http_accepts() {
    crate::gateway::h1::wire::every_value_byte(|wanted| {
        let mut raw = b"GET /v1/models HTTP/1.1\r\nhost: h\r\nx-v: ".to_vec();
        raw.extend_from_slice(wanted);
        raw.extend_from_slice(b"\r\n\r\n");
        let read = parse_all(&raw);
        read.ok()
            .flatten()
            .and_then(|head| head.request.headers().get("x-v").cloned())
    });
}
