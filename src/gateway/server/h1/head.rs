//! A request head on the wire, without IO: parsed by `httparse` from the front of the read
//! buffer, its values left as slices of it, and the framing of the body that follows.
//!
//! Strict wherever a lenient reading could let two parties disagree on where a request ends
//! (request smuggling): `Transfer-Encoding` beside `Content-Length`, differing lengths, any
//! coding but a lone `chunked`, obs-fold and malformed lines are refused.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

use crate::gateway::error::ApiError;
use crate::gateway::server::MAX_URI_BYTES;

/// Header lines allowed in one request, as hyper's server.
const MAX_HEADERS: usize = 100;

/// Why a head was refused; each is answered, then the connection closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("{0}")]
    Malformed(&'static str),
    #[error("the request line and headers are over the limit")]
    TooLarge,
    #[error("the request target is over the limit")]
    UriTooLong,
}

impl HeadError {
    /// The answer a client gets.
    pub fn api_error(&self, max_header_bytes: usize) -> ApiError {
        match self {
            HeadError::Malformed(detail) => ApiError::malformed_request(detail),
            HeadError::TooLarge => ApiError::headers_too_large(max_header_bytes),
            HeadError::UriTooLong => ApiError::uri_too_long(MAX_URI_BYTES),
        }
    }
}

/// How the request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
}

/// A request head, and what the connection must do around it.
#[derive(Debug)]
pub struct Head {
    pub request: Request<()>,
    pub framing: Framing,
    /// The client allows another request on the connection after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
}

/// Parses one request head from the front of `buf` (consuming it). `Ok(None)`: incomplete,
/// read more. `limit`: the most bytes an incomplete head may hold.
pub fn parse(buf: &mut BytesMut, limit: usize) -> Result<Option<Head>, HeadError> {
    // Left uninitialised: zeroing 100 slots costs more than parsing a typical head.
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        &buf[..buf.len().min(limit)],
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= limit => return Err(too_large(buf)),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => {
            return Err(HeadError::Malformed("the HTTP version is not HTTP/1.0 or HTTP/1.1"))
        }
        Err(httparse::Error::Token | httparse::Error::NewLine) => {
            return Err(HeadError::Malformed("the request line is malformed"))
        }
        Err(_) => return Err(HeadError::Malformed("a header line is malformed")),
    };
    let method = Method::from_bytes(request.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Malformed("the method is not a valid token"))?;
    let version = match request.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let base = buf.as_ptr() as usize;
    let path = request.path.unwrap_or_default();
    let path_at = path.as_ptr() as usize - base;
    let path_span = (path_at, path_at + path.len());
    let count = request.headers.len();
    let mut spans = Vec::with_capacity(count);
    for header in request.headers.iter() {
        let name = header.name.as_ptr() as usize - base;
        let value = header.value.as_ptr() as usize - base;
        spans.push(((name, name + header.name.len()), (value, value + header.value.len())));
    }
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(path_span.0..path_span.1))
        .map_err(|_| HeadError::Malformed("the request target is not a valid URI"))?;
    let mut headers = HeaderMap::with_capacity(count);
    for (name, value) in spans {
        let name = HeaderName::from_bytes(&head[name.0..name.1])
            .map_err(|_| HeadError::Malformed("a header name is invalid"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value.0..value.1))
            .map_err(|_| HeadError::Malformed("a header value is invalid"))?;
        headers.append(name, value);
    }
    let framing = framing(&headers, version)?;
    let (mut close, mut keep_alive_10) = (false, false);
    for token in tokens(&headers, &CONNECTION) {
        close |= token.eq_ignore_ascii_case(b"close");
        keep_alive_10 |= token.eq_ignore_ascii_case(b"keep-alive");
    }
    let keep_alive = !close && (version == Version::HTTP_11 || keep_alive_10);
    let expect_continue = version == Version::HTTP_11
        && headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut built = Request::new(());
    *built.method_mut() = method;
    *built.uri_mut() = uri;
    *built.version_mut() = version;
    *built.headers_mut() = headers;
    Ok(Some(Head {
        request: built,
        framing,
        keep_alive,
        expect_continue,
    }))
}

/// An incomplete head over the limit: a request line that has not ended is a target too long.
fn too_large(buf: &[u8]) -> HeadError {
    let line = buf.iter().skip_while(|b| matches!(b, b'\r' | b'\n'));
    match line.clone().position(|&b| b == b'\n') {
        None if line.count() > MAX_URI_BYTES => HeadError::UriTooLong,
        _ => HeadError::TooLarge,
    }
}

/// The comma-separated tokens of every `name` header, trimmed, empty ones skipped.
fn tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The body's framing (RFC 9112 section 6): a request without either header has none.
fn framing(headers: &HeaderMap, version: Version) -> Result<Framing, HeadError> {
    if headers.contains_key(TRANSFER_ENCODING) {
        if headers.contains_key(CONTENT_LENGTH) {
            return Err(HeadError::Malformed(
                "Transfer-Encoding and Content-Length are both set",
            ));
        }
        if version == Version::HTTP_10 {
            return Err(HeadError::Malformed("Transfer-Encoding is not allowed in HTTP/1.0"));
        }
        let mut codings = tokens(headers, &TRANSFER_ENCODING);
        return match (codings.next(), codings.next()) {
            (Some(only), None) if only.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
            _ => Err(HeadError::Malformed(
                "the only transfer coding accepted is a lone chunked",
            )),
        };
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            let n = match part.len() {
                1..=19 if part.iter().all(u8::is_ascii_digit) => {
                    part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
                }
                _ => return Err(HeadError::Malformed("the Content-Length is not a number")),
            };
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("the Content-Length values differ"));
            }
            length = Some(n);
        }
    }
    Ok(Framing::Length(length.unwrap_or(0)))
}
