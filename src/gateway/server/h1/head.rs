//! A request head on the wire, without IO: parsed by `httparse` from the front of the read
//! buffer, its values left as slices of it, and the framing of the body that follows.
//!
//! Strict wherever a lenient reading could let two parties disagree on where a request ends
//! (request smuggling): `Transfer-Encoding` beside `Content-Length`, differing lengths, any
//! coding but a lone `chunked`, obs-fold and malformed lines are refused.

use std::mem::MaybeUninit;
use std::sync::LazyLock;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderName, Method, Request, Uri, Version};

use crate::gateway::error::ApiError;
use crate::gateway::h1::maps;
use crate::gateway::h1::wire::{self, length, spans, tokens, value, Span, INLINE_SPANS};
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

/// The API's paths that clients call the most.
pub(super) const API_PATHS: [&str; 6] = [
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/models",
];

/// [`API_PATHS`], parsed once: a request for one of them takes a copy of the parsed URI (static
/// bytes: no parse, no reference to the head's buffer).
static KNOWN_URIS: LazyLock<[Uri; 6]> = LazyLock::new(|| API_PATHS.map(Uri::from_static));

fn known_uri(path: &[u8]) -> Option<Uri> {
    let index = API_PATHS.iter().position(|known| known.as_bytes() == path)?;
    KNOWN_URIS.get(index).cloned()
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
    // Where each name and value is in the head; the values stay slices of it (no copy).
    let count = request.headers.len();
    let (mut inline, mut heap) = ([Span::default(); INLINE_SPANS], Vec::new());
    let spans = spans(base, request.headers, &mut inline, &mut heap);
    let head = buf.split_to(len).freeze();
    let uri = match known_uri(&head[path_span.0..path_span.1]) {
        Some(uri) => uri,
        None => Uri::from_maybe_shared(head.slice(path_span.0..path_span.1))
            .map_err(|_| HeadError::Malformed("the request target is not a valid URI"))?,
    };
    let mut headers = maps::take(count);
    // The headers that frame the body and the connection, noted on the way (no lookups after).
    let mut scan = Scan::default();
    for span in spans.iter() {
        let name = wire::name(&head[span.name.0..span.name.1])
            .map_err(|_| HeadError::Malformed("a header name is invalid"))?;
        let value = value(&head, span.value);
        scan.note(&name, value.as_bytes())?;
        headers.append(name, value);
    }
    let framing = scan.framing(version)?;
    let keep_alive = !scan.close && (version == Version::HTTP_11 || scan.keep_alive);
    let expect_continue = version == Version::HTTP_11 && scan.expect_continue;
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

/// What the framing and connection headers said.
#[derive(Default)]
struct Scan {
    /// A `Transfer-Encoding` header was sent (even an empty one); its codings, and whether
    /// the last was `chunked`.
    encoded: bool,
    codings: usize,
    chunked: bool,
    length: Option<u64>,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl Scan {
    fn note(&mut self, name: &HeaderName, value: &[u8]) -> Result<(), HeadError> {
        if name == TRANSFER_ENCODING {
            self.encoded = true;
            for coding in tokens(value) {
                self.codings += 1;
                self.chunked = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name == CONTENT_LENGTH {
            for part in value.split(|&b| b == b',') {
                let n = length(part).ok_or(HeadError::Malformed("the Content-Length is not a number"))?;
                if self.length.is_some_and(|l| l != n) {
                    return Err(HeadError::Malformed("the Content-Length values differ"));
                }
                self.length = Some(n);
            }
        } else if name == CONNECTION {
            for token in tokens(value) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name == EXPECT {
            self.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        }
        Ok(())
    }

    /// The body's framing (RFC 9112 section 6): a request without either header has none.
    fn framing(&self, version: Version) -> Result<Framing, HeadError> {
        if !self.encoded {
            return Ok(Framing::Length(self.length.unwrap_or(0)));
        }
        if self.length.is_some() {
            return Err(HeadError::Malformed(
                "Transfer-Encoding and Content-Length are both set",
            ));
        }
        if version == Version::HTTP_10 {
            return Err(HeadError::Malformed("Transfer-Encoding is not allowed in HTTP/1.0"));
        }
        match (self.codings, self.chunked) {
            (1, true) => Ok(Framing::Chunked),
            _ => Err(HeadError::Malformed(
                "the only transfer coding accepted is a lone chunked",
            )),
        }
    }
}
