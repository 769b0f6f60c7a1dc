use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::wire::{parse_head, Decoder, WireError};
use super::*;

/// Decodes `pieces` as they would arrive, then the connection closing: the body and the
/// bytes after it.
fn decode(decoder: Decoder, pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>), WireError> {
    match wire::decode_all(decoder, pieces) {
        (body, rest, None) => Ok((body, rest)),
        (_, _, Some(error)) => Err(error),
    }
}

fn singles(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.chunks(1).collect()
}

const HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-request-id: abc\r\ntransfer-encoding: chunked\r\n\r\n";

#[test]
fn a_head_split_anywhere_parses_the_same() {
    for cut in 1..HEAD.len() {
        let mut buf = BytesMut::from(&HEAD[..cut]);
        assert!(parse_head(&mut buf, &Method::POST).unwrap().is_none(), "cut at {cut}");
        buf.extend_from_slice(&HEAD[cut..]);
        buf.extend_from_slice(b"5\r\n");
        let head = parse_head(&mut buf, &Method::POST).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.headers["x-request-id"], "abc");
        assert!(head.reusable);
        assert_eq!(&buf[..], b"5\r\n", "the bytes after the head stay for the body");
    }
}

#[test]
fn a_head_with_many_headers_keeps_every_one_up_to_the_limit() {
    // Past the few kept on the stack while the head is read, up to hyper's limit of 100.
    for count in [23, 24, 25, 60, 100, 101] {
        let mut head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n".to_vec();
        for i in 1..count {
            head.extend_from_slice(format!("x-h{}: v{i}\r\n", i % 7).as_bytes());
        }
        head.extend_from_slice(b"\r\nok");
        let parsed = parse_head(&mut BytesMut::from(&head[..]), &Method::POST);
        if count > 100 {
            assert!(matches!(parsed, Err(WireError::Head(_))), "{count} headers");
            continue;
        }
        let head = parsed.unwrap().unwrap();
        assert_eq!(head.headers.len(), count, "{count} headers");
        assert_eq!(head.headers["content-length"], "2");
        let sixes: Vec<_> = head
            .headers
            .get_all("x-h6")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        let expected: Vec<String> = (1..count).filter(|i| i % 7 == 6).map(|i| format!("v{i}")).collect();
        assert_eq!(sixes, expected, "a name's values in order");
    }
}

#[test]
fn header_names_read_the_same_in_any_case_as_http_reads_them() {
    let names = [
        "Host",
        "DATE",
        "accept",
        "Server",
        "connection",
        "User-Agent",
        "content-TYPE",
        "Authorization",
        "Content-Length",
        "accept-encoding",
        "Transfer-Encoding",
        "x-request-id",
        "hosts",
        "X-Api-Key",
        "dat",
        "Content_Length",
        "hOST",
        "transfer-encodinG",
    ];
    for spelled in names {
        let ours = super::wire::name(spelled.as_bytes()).unwrap();
        assert_eq!(
            ours,
            http::HeaderName::from_bytes(spelled.as_bytes()).unwrap(),
            "{spelled}"
        );
        assert_eq!(ours.as_str(), spelled.to_ascii_lowercase(), "{spelled}");
    }
    for invalid in [
        &b""[..],
        b"ho st",
        b"content-length:",
        b"host\r",
        b"content\rlength",
        b"h\x0fst",
        "hóst".as_bytes(),
    ] {
        assert!(super::wire::name(invalid).is_err(), "{invalid:?}");
    }
    // Through a whole head: a response's names, in capitals, come out as the standard ones.
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 2\r\nServer: s\r\nDate: d\r\n\r\nok"[..]);
    let head = parse_head(&mut buf, &Method::POST).unwrap().unwrap();
    let got: Vec<_> = head
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(got, [("content-length", "2"), ("server", "s"), ("date", "d")]);
}

/// `wire::value` takes a value `httparse` read without checking its bytes again (debug builds,
/// as here, would panic on an invalid value): a response's values, byte by byte.
#[test]
fn values_httparse_reads_are_the_values_http_accepts() {
    super::wire::every_value_byte(|wanted| {
        let mut raw = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-v: ".to_vec();
        raw.extend_from_slice(wanted);
        raw.extend_from_slice(b"\r\n\r\n");
        let read = parse_head(&mut BytesMut::from(&raw[..]), &Method::GET);
        read.ok().flatten().and_then(|head| head.headers.get("x-v").cloned())
    });
}

#[test]
fn interim_answers_are_skipped_and_101_is_refused() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"[..],
    );
    let head = parse_head(&mut buf, &Method::POST).unwrap().unwrap();
    assert_eq!(head.status, StatusCode::NO_CONTENT);
    assert!(head.decoder.is_done());
    let mut buf = BytesMut::from(&b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..]);
    assert_eq!(parse_head(&mut buf, &Method::GET).err(), Some(WireError::Upgrade));
}

#[test]
fn an_oversized_head_is_an_error_not_a_growing_buffer() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
    buf.extend_from_slice(b"x-padding: ");
    buf.extend_from_slice(&[b'a'; wire::MAX_HEAD]);
    assert!(parse_head(&mut buf.clone(), &Method::GET).is_err());
    buf.truncate(wire::MAX_HEAD - 1);
    assert_eq!(
        parse_head(&mut buf.clone(), &Method::GET).unwrap().map(|h| h.status),
        None
    );
    buf.extend_from_slice(b"a");
    assert_eq!(parse_head(&mut buf, &Method::GET).err(), Some(WireError::HeadTooLarge));
}

#[test]
fn framing_and_keep_alive_follow_the_head() {
    let cases: &[(&[u8], Option<u64>, bool)] = &[
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", Some(5), true),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n",
            Some(5),
            false,
        ),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n", Some(5), false),
        (
            b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\n",
            Some(5),
            true,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", None, false),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", None, false),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n", Some(5), true),
        // The last coding of all the headers decides; a length beside it is not trusted.
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked, \r\n\r\n",
            None,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            None,
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: x\r\n\r\n",
            None,
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\ncontent-length: 0\r\n\r\n",
            Some(0),
            false,
        ),
    ];
    for (head, remaining, reusable) in cases {
        let parsed = parse_head(&mut BytesMut::from(*head), &Method::POST).unwrap().unwrap();
        assert_eq!(
            parsed.decoder.remaining(),
            *remaining,
            "{}",
            String::from_utf8_lossy(head)
        );
        assert_eq!(parsed.reusable, *reusable, "{}", String::from_utf8_lossy(head));
    }
    for bad in [
        &b"content-length: 5, 6"[..],
        b"content-length: -1",
        b"content-length: 5x",
        b"content-length: ",
        b"content-length: 5\r\ncontent-length: 6",
        b"content-length: 18446744073709551616",
    ] {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        head.extend_from_slice(bad);
        head.extend_from_slice(b"\r\n\r\n");
        assert!(
            parse_head(&mut BytesMut::from(&head[..]), &Method::POST).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let head = &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"[..];
    let parsed = parse_head(&mut BytesMut::from(head), &Method::HEAD).unwrap().unwrap();
    assert!(parsed.decoder.is_done(), "a HEAD answer has no body");
}

#[test]
fn chunked_bodies_decode_however_they_are_cut() {
    let body =
        b"5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: yes\r\nx-other: 1\r\n\r\nNEXT";
    let whole = decode(Decoder::chunked(), &[body]).unwrap();
    assert_eq!(whole.0, b"helloabcdefghijklmnopqrstuvwxyz");
    assert_eq!(&whole.1[..], b"NEXT", "nothing past the body is taken");
    assert_eq!(decode(Decoder::chunked(), &singles(body)).unwrap(), whole);
    for cut in 1..body.len() {
        assert_eq!(
            decode(Decoder::chunked(), &[&body[..cut], &body[cut..]]).unwrap(),
            whole,
            "cut at {cut}"
        );
    }
    assert_eq!(decode(Decoder::chunked(), &[b"0\r\n\r\n"]).unwrap().0, b"");
}

#[test]
fn malformed_chunks_are_errors_not_guesses() {
    for bad in [
        &b"x\r\nhello\r\n0\r\n\r\n"[..],
        b"\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nx: y\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"11111111111111111\r\n",
    ] {
        assert!(
            matches!(decode(Decoder::chunked(), &[bad]), Err(WireError::Chunk(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn an_early_close_is_an_error_unless_the_body_ends_with_the_connection() {
    assert_eq!(
        decode(Decoder::length(10), &[b"hello"]).err(),
        Some(WireError::Truncated)
    );
    assert_eq!(
        decode(Decoder::chunked(), &[b"5\r\nhello\r\n"]).err(),
        Some(WireError::Truncated)
    );
    assert_eq!(
        decode(Decoder::chunked(), &[b"5\r\nhel"]).err(),
        Some(WireError::Truncated)
    );
    assert_eq!(decode(Decoder::close(), &[b"hel", b"lo"]).unwrap().0, b"hello");
    let (data, rest) = decode(Decoder::length(5), &[b"hello, more"]).unwrap();
    assert_eq!((&data[..], &rest[..]), (&b"hello"[..], &b", more"[..]));
}

/// A provider that answers each request on a connection with the next of `answers` (one
/// list per connection, in accept order; an empty answer: none), then closes the connection,
/// counting the connections.
async fn provider(scripts: Vec<Vec<&'static [u8]>>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        for script in scripts {
            let (mut socket, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                for answer in script {
                    if read_request(&mut socket).await.is_none() {
                        return;
                    }
                    if socket.write_all(answer).await.is_err() {
                        return;
                    }
                }
                // Then close (a provider ending an idle keep-alive connection).
            });
        }
    });
    (port, accepted)
}

/// Reads one request head and its `Content-Length` body.
async fn read_request(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        seen.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse().unwrap());
    let mut body = vec![0; length];
    socket.read_exact(&mut body).await.ok()?;
    seen.extend_from_slice(&body);
    Some(seen)
}

async fn send(port: u16, idle: &Arc<IdleStack>) -> Result<(StatusCode, Vec<u8>), String> {
    let request = Request::post("/v1/chat/completions")
        .header("host", format!("127.0.0.1:{port}"))
        .body(Full::new(Bytes::from_static(b"{\"model\":\"m\"}")))
        .unwrap();
    let prepared = Prepared::new(&request, None, None);
    let response = match idle.send_idle(&prepared).await {
        Some(sent) => sent,
        None => {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            exchange(Conn::new(Io::Tcp(tcp)), &prepared, idle).await
        }
    }
    .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok((status, body.to_bytes().to_vec()))
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";

#[tokio::test]
async fn a_connection_is_reused_after_a_full_body_only() {
    let (port, accepted) = provider(vec![vec![OK, CHUNKED, OK], vec![OK]]).await;
    let idle = Arc::new(IdleStack::default());
    for _ in 0..3 {
        assert_eq!(send(port, &idle).await.unwrap(), (StatusCode::OK, b"ok".to_vec()));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "three requests, one connection");
    assert_eq!(idle.len(), 1);

    // A body dropped before its end takes its connection with it.
    let (port, accepted) = provider(vec![
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello"],
        vec![OK],
    ])
    .await;
    let idle = Arc::new(IdleStack::default());
    let request = Request::get("/").body(Full::new(Bytes::new())).unwrap();
    let prepared = Prepared::new(&request, Some(&http::HeaderValue::from_static("p")), None);
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut response = exchange(Conn::new(Io::Tcp(tcp)), &prepared, &idle).await.unwrap();
    let first = response.body_mut().frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "hello");
    drop(response);
    assert_eq!(idle.len(), 0);
    assert_eq!(send(port, &idle).await.unwrap().1, b"ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_close_and_http_1_0_are_not_reused() {
    let close: &[u8] = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
    let old: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nok";
    let (port, accepted) = provider(vec![vec![close], vec![old], vec![OK]]).await;
    let idle = Arc::new(IdleStack::default());
    for _ in 0..3 {
        assert_eq!(send(port, &idle).await.unwrap().1, b"ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_idle_connection_the_provider_closed_is_not_used() {
    // The first connection answers once and is then closed by the provider.
    let (port, accepted) = provider(vec![vec![OK], vec![OK]]).await;
    let idle = Arc::new(IdleStack::default());
    assert_eq!(send(port, &idle).await.unwrap().1, b"ok");
    // Until the runtime has seen the close, the connection still looks open (bounded).
    for _ in 0..10_000 {
        match idle.take() {
            Some(conn) => idle.put(conn),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(idle.len(), 0, "the closed connection was dropped when taken");
    assert_eq!(send(port, &idle).await.unwrap().1, b"ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_written_and_answered_by_a_close_is_not_sent_again() {
    // The second request on the connection is read, then the connection is closed.
    let (port, accepted) = provider(vec![vec![OK, b""], vec![OK]]).await;
    let idle = Arc::new(IdleStack::default());
    assert_eq!(send(port, &idle).await.unwrap().1, b"ok");
    let request = Request::post("/").body(Full::new(Bytes::from_static(b"{}"))).unwrap();
    let prepared = Prepared::new(&request, Some(&http::HeaderValue::from_static("p")), None);
    let conn = idle.take().expect("the kept connection");
    let Err(error) = exchange(conn, &prepared, &idle).await else {
        panic!("the provider gave no answer");
    };
    assert!(!error.unsent(), "{error}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error() {
    let cut: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel";
    let (port, _) = provider(vec![vec![cut]]).await;
    let idle = Arc::new(IdleStack::default());
    let error = send(port, &idle).await.unwrap_err();
    assert!(error.contains("closed the connection before the end"), "{error}");
    assert_eq!(idle.len(), 0);
}

#[tokio::test]
async fn the_request_goes_out_in_origin_form_with_host_and_length() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let request = read_request(&mut socket).await.unwrap();
        socket.write_all(OK).await.unwrap();
        request
    });
    let request = Request::post("https://api.example:8443/v1/x?q=1")
        .header("authorization", "Bearer k")
        .header("transfer-encoding", "chunked")
        .header("content-length", "99")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let prepared = Prepared::new(
        &request,
        Some(&http::HeaderValue::from_static("api.example:8443")),
        None,
    );
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let idle = Arc::new(IdleStack::default());
    let response = exchange(Conn::new(Io::Tcp(tcp)), &prepared, &idle).await.unwrap();
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");
    let sent = String::from_utf8(server.await.unwrap()).unwrap();
    assert_eq!(
        sent,
        "POST /v1/x?q=1 HTTP/1.1\r\nhost: api.example:8443\r\nauthorization: Bearer k\r\ncontent-length: 2\r\n\r\n{}"
    );
}

#[test]
fn the_providers_fixed_headers_go_first_once_and_host_is_not_repeated() {
    let mut provider = http::HeaderMap::new();
    for (name, value) in [
        ("host", "up:8000"),
        ("authorization", "Bearer k"),
        ("content-length", "7"),
    ] {
        provider.insert(name, http::HeaderValue::from_static(value));
    }
    let fixed = FixedHeaders::new(provider, &[]);
    let request = Request::post("/v1/chat/completions")
        .header("x-request-id", "r1")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let prepared = Prepared::new(&request, Some(&http::HeaderValue::from_static("other")), Some(&fixed));
    assert_eq!(
        String::from_utf8(prepared.head.clone()).unwrap(),
        "POST /v1/chat/completions HTTP/1.1\r\nhost: up:8000\r\nauthorization: Bearer k\r\n\
         x-request-id: r1\r\ncontent-length: 2\r\n\r\n"
    );
}
