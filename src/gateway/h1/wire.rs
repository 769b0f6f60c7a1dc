//! HTTP/1.1 responses on the wire, without IO: the response head (parsed by `httparse`) and
//! the body's framing (`Content-Length`, chunked, or until the connection closes).
//!
//! Strict where a guess could splice two responses together: a malformed chunk size, a
//! chunk without its CRLF, conflicting lengths and an oversized head are errors, and a
//! connection whose framing was anything but a clean length or chunked body is not reused.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

/// A response head larger than this is refused.
pub const MAX_HEAD: usize = 64 << 10;
/// Response headers allowed, as hyper's client.
const MAX_HEADERS: usize = 100;
/// Room left in a head's map for the headers the gateway adds to the answer (its request id,
/// the provider's, the target, limits): growing the map on the way back cost more.
const ADDED_LATER: usize = 4;
/// A chunk-size line (with its extensions) or a trailer section longer than this is refused.
const MAX_LINE: usize = 4 << 10;
const MAX_TRAILERS: usize = 16 << 10;

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the provider's response head is over {} KB", MAX_HEAD >> 10)]
    HeadTooLarge,
    #[error("the provider's response head is malformed: {0}")]
    Head(String),
    #[error("the provider answered 101 Switching Protocols to a request that asked for no upgrade")]
    Upgrade,
    #[error("the provider's Content-Length is invalid or conflicting")]
    ContentLength,
    #[error("the provider's chunked body is malformed: {0}")]
    Chunk(&'static str),
    #[error("the provider closed the connection before the end of the body")]
    Truncated,
}

/// A parsed response head: how the body that follows is framed, and whether the connection
/// may carry another request after it.
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub decoder: Decoder,
    /// Keep-alive: HTTP/1.1 without `Connection: close`, and a body whose end is known.
    pub reusable: bool,
}

/// Parses one response head from the front of `buf` (consuming it), skipping interim `1xx`
/// answers. `Ok(None)`: the head is incomplete, read more (the buffer is at most `MAX_HEAD`).
pub fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, WireError> {
    loop {
        // Left uninitialised: zeroing 100 slots cost more than parsing a typical head.
        let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        // Only the first `MAX_HEAD` bytes are looked at, so that a head reads the same
        // however it arrives.
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            &buf[..buf.len().min(MAX_HEAD)],
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(WireError::HeadTooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(error) => return Err(WireError::Head(error.to_string())),
        };
        if len > MAX_HEAD {
            return Err(WireError::HeadTooLarge);
        }
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| WireError::Head(format!("status {code}")))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(WireError::Upgrade);
        }
        if status.is_informational() {
            let _ = buf.split_to(len);
            continue;
        }
        let version = match response.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        // Where each name and value is in the head; the values stay slices of it (no copy).
        // A typical head fits the small array kept on the stack; a longer one takes a vector.
        let base = buf.as_ptr() as usize;
        let count = response.headers.len();
        let (mut inline, mut heap) = ([Span::default(); INLINE_SPANS], Vec::new());
        let spans = spans(base, response.headers, &mut inline, &mut heap);
        let head = buf.split_to(len).freeze();
        let mut headers = super::maps::take(count + ADDED_LATER);
        // The headers that frame the body and the connection, noted on the way (no lookups after).
        let mut noted = Noted::default();
        for span in spans.iter() {
            let name = self::name(&head[span.name.0..span.name.1])
                .map_err(|_| WireError::Head("an invalid header name".to_string()))?;
            let value = value(&head, span.value);
            noted.note(&name, value.as_bytes());
            headers.append(name, value);
        }
        let (decoder, clean) = noted.framing(status, method)?;
        let reusable = clean && !noted.close && (version == Version::HTTP_11 || noted.keep_alive);
        return Ok(Some(Head {
            status,
            version,
            headers,
            decoder,
            reusable,
        }));
    }
}

/// Where a header's name and value are in the head.
#[derive(Clone, Copy, Default)]
pub(crate) struct Span {
    pub name: (usize, usize),
    pub value: (usize, usize),
}

/// Header spans kept on the stack while a head is read; more take a vector.
pub(crate) const INLINE_SPANS: usize = 24;

/// Where each of `headers` is in the head that starts at address `base`: in `inline` for a
/// typical head, in `heap` for a longer one. (The values then become slices of the head,
/// without a copy, once the parser's borrow of it has ended.)
pub(crate) fn spans<'a>(
    base: usize,
    headers: &[httparse::Header<'_>],
    inline: &'a mut [Span; INLINE_SPANS],
    heap: &'a mut Vec<Span>,
) -> &'a [Span] {
    let count = headers.len();
    let spans = match count <= INLINE_SPANS {
        true => &mut inline[..count],
        false => {
            heap.resize(count, Span::default());
            &mut heap[..]
        }
    };
    for (span, header) in spans.iter_mut().zip(headers) {
        let name = header.name.as_ptr() as usize - base;
        let value = header.value.as_ptr() as usize - base;
        *span = Span {
            name: (name, name + header.name.len()),
            value: (value, value + header.value.len()),
        };
    }
    spans
}

/// The header name `bytes` spell (in any case). The names most heads carry are matched here,
/// a few word compares each, without the lowercased copy and table lookup of
/// [`HeaderName::from_bytes`], which takes every other.
pub(crate) fn name(bytes: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    let common = match bytes.len() {
        4 if spells(bytes, b"host") => header::HOST,
        4 if spells(bytes, b"date") => header::DATE,
        6 if spells(bytes, b"accept") => header::ACCEPT,
        6 if spells(bytes, b"server") => header::SERVER,
        10 if spells(bytes, b"connection") => header::CONNECTION,
        10 if spells(bytes, b"user-agent") => header::USER_AGENT,
        12 if spells(bytes, b"content-type") => header::CONTENT_TYPE,
        13 if spells(bytes, b"authorization") => header::AUTHORIZATION,
        14 if spells(bytes, b"content-length") => header::CONTENT_LENGTH,
        15 if spells(bytes, b"accept-encoding") => header::ACCEPT_ENCODING,
        17 if spells(bytes, b"transfer-encoding") => header::TRANSFER_ENCODING,
        _ => return HeaderName::from_bytes(bytes),
    };
    Ok(common)
}

/// Whether `bytes` spell `known` (lowercase) with its letters in either case and its other
/// bytes exact. Without early exits, so that the compiler turns it into a few word compares.
#[inline(always)]
fn spells<const N: usize>(bytes: &[u8], known: &[u8; N]) -> bool {
    let Ok(bytes) = <&[u8; N]>::try_from(bytes) else {
        return false;
    };
    let mut diff = 0u8;
    for (&byte, &want) in bytes.iter().zip(known) {
        // `byte | 0x20` is a lowercase letter only when `byte` is that letter in either case.
        let fold = if want.is_ascii_lowercase() { 0x20 } else { 0 };
        diff |= (byte | fold) ^ want;
    }
    diff == 0
}

/// Header values most heads carry, kept static: taking one costs no check of its bytes and no
/// reference to the head's buffer (an atomic count on each clone and drop).
static JSON: HeaderValue = HeaderValue::from_static("application/json");
static EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
static KEEP_ALIVE: HeaderValue = HeaderValue::from_static("keep-alive");
static CHUNKED: HeaderValue = HeaderValue::from_static("chunked");
static NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
static ANY: HeaderValue = HeaderValue::from_static("*/*");

/// The header value at `span` of `head` (a value `httparse` read): a common one as a static
/// value, any other as a slice of the head (no copy, and no second check of its bytes).
pub(crate) fn value(head: &Bytes, span: (usize, usize)) -> HeaderValue {
    let common = match &head[span.0..span.1] {
        b"application/json" => &JSON,
        b"text/event-stream" => &EVENT_STREAM,
        b"keep-alive" => &KEEP_ALIVE,
        b"chunked" => &CHUNKED,
        b"no-cache" => &NO_CACHE,
        b"*/*" => &ANY,
        // SAFETY: a value `httparse` read holds only tab, 0x20-0x7E and 0x80-0xFF, the bytes
        // `HeaderValue` accepts (any other byte ends its line or fails the parse, and obs-fold
        // is refused: neither parser allows it), so the bytes are valid; the unchecked
        // constructor only skips a second pass over them. Debug builds check anyway and panic, and
        // `values_httparse_reads_are_the_values_http_accepts` tries every byte.
        _ => return unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(span.0..span.1)) },
    };
    common.clone()
}

/// Checks a head parser against `HeaderValue`, byte by byte: `read` parses a head whose value
/// is the three bytes it is given and returns that value as read. A byte `HeaderValue` accepts
/// must come through whole; one it refuses must fail the head or end the value before it.
#[cfg(test)]
pub(crate) fn every_value_byte(read: impl Fn(&[u8]) -> Option<HeaderValue>) {
    for byte in 0..=255u8 {
        let wanted = [b'a', byte, b'z'];
        let value = read(&wanted);
        match HeaderValue::from_bytes(&wanted) {
            Ok(valid) => assert_eq!(value, Some(valid), "byte {byte:#04x} is valid and read whole"),
            Err(_) => assert!(
                value.is_none_or(|v| v.as_bytes() != wanted),
                "byte {byte:#04x} is invalid but was read into a value"
            ),
        }
    }
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped (requests' and
/// responses' heads alike).
pub(crate) fn tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// One comma-separated part of a `Content-Length`: 1 to 19 digits (always within a `u64`),
/// surrounding whitespace allowed; anything else is `None`.
pub(crate) fn length(part: &[u8]) -> Option<u64> {
    let part = part.trim_ascii();
    match part.len() {
        1..=19 if part.iter().all(u8::is_ascii_digit) => {
            Some(part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
        }
        _ => None,
    }
}

/// What the framing and connection headers of a response head said.
#[derive(Default)]
struct Noted {
    /// A `Transfer-Encoding` was sent; whether the last coding it named was `chunked`.
    encoded: bool,
    chunked: bool,
    /// A `Content-Length` was sent; its value, unless one was invalid or two differed.
    lengths: bool,
    length: Option<u64>,
    bad_length: bool,
    close: bool,
    keep_alive: bool,
}

impl Noted {
    fn note(&mut self, name: &HeaderName, value: &[u8]) {
        if name == TRANSFER_ENCODING {
            self.encoded = true;
            if let Some(last) = tokens(value).next_back() {
                self.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name == CONTENT_LENGTH {
            self.lengths = true;
            for part in value.split(|&b| b == b',') {
                let Some(n) = length(part) else {
                    self.bad_length = true;
                    continue;
                };
                self.bad_length |= self.length.is_some_and(|l| l != n);
                self.length = Some(n);
            }
        } else if name == CONNECTION {
            for token in tokens(value) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }

    /// How the body is framed (RFC 9112 section 6.3), and whether its end is known exactly.
    fn framing(&self, status: StatusCode, method: &Method) -> Result<(Decoder, bool), WireError> {
        if method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok((Decoder::length(0), true));
        }
        if self.encoded {
            // With a Content-Length beside it, the length is ignored and the connection closed
            // after (a sign of a proxy in between that may disagree about where the body ends).
            return Ok(match self.chunked {
                true => (Decoder::chunked(), !self.lengths),
                false => (Decoder::close(), false),
            });
        }
        if self.bad_length {
            return Err(WireError::ContentLength);
        }
        Ok(match self.length {
            Some(n) => (Decoder::length(n), true),
            None => (Decoder::close(), false),
        })
    }
}

/// What the decoder found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// Read more.
    More,
    /// The body ended (the bytes after it, if any, are left in the buffer).
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size: its value so far and how many digits.
    Size(u64, u8),
    /// After the size, before the line's LF: `ext` after a `;` or whitespace; `len` so far.
    SizeRest {
        size: u64,
        cr: bool,
        len: usize,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// The trailer section: bytes read so far, and whether the current line is empty so far.
    Trailers {
        len: usize,
        line_start: bool,
        cr: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

/// Decodes a body from a buffer the connection fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    kind: Kind,
}

impl Decoder {
    pub fn length(n: u64) -> Self {
        Decoder {
            kind: if n == 0 { Kind::Done } else { Kind::Length(n) },
        }
    }

    pub fn chunked() -> Self {
        Decoder {
            kind: Kind::Chunked(Chunk::Size(0, 0)),
        }
    }

    pub fn close() -> Self {
        Decoder { kind: Kind::Close }
    }

    pub fn is_done(&self) -> bool {
        self.kind == Kind::Done
    }

    /// The body's remaining length when it is known.
    pub fn remaining(&self) -> Option<u64> {
        match self.kind {
            Kind::Length(n) => Some(n),
            Kind::Done => Some(0),
            _ => None,
        }
    }

    /// The connection closed: the end of a close-delimited body, an error for any other.
    pub fn eof(&mut self) -> Result<(), WireError> {
        match self.kind {
            Kind::Close | Kind::Done => {
                self.kind = Kind::Done;
                Ok(())
            }
            _ => Err(WireError::Truncated),
        }
    }

    /// Takes the next piece of the body from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        match &mut self.kind {
            Kind::Done => Ok(Decoded::End),
            Kind::Close if buf.is_empty() => Ok(Decoded::More),
            Kind::Close => Ok(Decoded::Data(take(buf, buf.len()))),
            Kind::Length(_) if buf.is_empty() => Ok(Decoded::More),
            Kind::Length(left) => {
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                if *left == 0 {
                    self.kind = Kind::Done;
                }
                Ok(Decoded::Data(take(buf, n)))
            }
            Kind::Chunked(state) => {
                let (next, decoded) = chunked(*state, buf)?;
                self.kind = match next {
                    Some(state) => Kind::Chunked(state),
                    None => Kind::Done,
                };
                Ok(decoded)
            }
        }
    }
}

/// The first `n` bytes of `buf`, without a copy.
fn take(buf: &mut BytesMut, n: usize) -> Bytes {
    if n == buf.len() {
        std::mem::take(buf).freeze()
    } else {
        buf.split_to(n).freeze()
    }
}

/// Runs the chunked state machine over `buf` until it has data to give, needs more, or ends
/// (`None`: the body ended).
fn chunked(mut state: Chunk, buf: &mut BytesMut) -> Result<(Option<Chunk>, Decoded), WireError> {
    let mut used = 0;
    let result = loop {
        if let Chunk::Data(left) = state {
            let _ = buf.split_to(used);
            used = 0;
            if buf.is_empty() {
                break Decoded::More;
            }
            let n = left.min(buf.len() as u64) as usize;
            state = if left == n as u64 {
                Chunk::DataCr
            } else {
                Chunk::Data(left - n as u64)
            };
            let data = take(buf, n);
            return Ok((Some(state), Decoded::Data(data)));
        }
        let Some(&byte) = buf.get(used) else {
            break Decoded::More;
        };
        used += 1;
        state = match state {
            Chunk::Size(size, digits) => match (byte as char).to_digit(16) {
                Some(d) if digits < 16 => Chunk::Size(size << 4 | u64::from(d), digits + 1),
                Some(_) => return Err(WireError::Chunk("the chunk size is too large")),
                None if digits == 0 => return Err(WireError::Chunk("a chunk size must start with a hex digit")),
                None => match byte {
                    b'\r' => Chunk::SizeRest { size, cr: true, len: 0 },
                    b';' | b' ' | b'\t' => Chunk::SizeRest {
                        size,
                        cr: false,
                        len: 1,
                    },
                    _ => return Err(WireError::Chunk("invalid byte after the chunk size")),
                },
            },
            Chunk::SizeRest { size, cr: true, .. } => match byte {
                b'\n' if size == 0 => Chunk::Trailers {
                    len: 0,
                    line_start: true,
                    cr: false,
                },
                b'\n' => Chunk::Data(size),
                _ => return Err(WireError::Chunk("a chunk size line must end with CRLF")),
            },
            Chunk::SizeRest { size, cr: false, len } => match byte {
                _ if len >= MAX_LINE => return Err(WireError::Chunk("a chunk extension is too long")),
                b'\r' => Chunk::SizeRest { size, cr: true, len },
                b'\n' => return Err(WireError::Chunk("a chunk size line must end with CRLF")),
                _ => Chunk::SizeRest {
                    size,
                    cr: false,
                    len: len + 1,
                },
            },
            // Handled above, before a byte is taken.
            Chunk::Data(left) => {
                used -= 1;
                Chunk::Data(left)
            }
            Chunk::DataCr if byte == b'\r' => Chunk::DataLf,
            Chunk::DataLf if byte == b'\n' => Chunk::Size(0, 0),
            Chunk::DataCr | Chunk::DataLf => return Err(WireError::Chunk("a chunk's data must end with CRLF")),
            Chunk::Trailers { len, .. } if len >= MAX_TRAILERS => {
                return Err(WireError::Chunk("the trailer section is too long"))
            }
            Chunk::Trailers { line_start, cr, len } => match byte {
                b'\r' if !cr => Chunk::Trailers {
                    len: len + 1,
                    line_start,
                    cr: true,
                },
                b'\n' if cr && line_start => {
                    let _ = buf.split_to(used);
                    return Ok((None, Decoded::End));
                }
                b'\n' if cr => Chunk::Trailers {
                    len: len + 1,
                    line_start: true,
                    cr: false,
                },
                b'\r' | b'\n' => return Err(WireError::Chunk("a trailer line must end with CRLF")),
                _ => Chunk::Trailers {
                    len: len + 1,
                    line_start: false,
                    cr: false,
                },
            },
        };
    };
    let _ = buf.split_to(used);
    Ok((Some(state), result))
}

/// Decodes a body from `pieces`, then the connection closing: the body, the bytes left after
/// it (none after an error), and the error that stopped it.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn decode_all(mut decoder: Decoder, pieces: &[&[u8]]) -> (Vec<u8>, Vec<u8>, Option<WireError>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut ended = false;
    for piece in pieces.iter().map(Some).chain([None]) {
        match piece {
            Some(piece) => buf.extend_from_slice(piece),
            None if ended => {}
            None => match decoder.eof() {
                Ok(()) => ended = true,
                Err(error) => return (out, Vec::new(), Some(error)),
            },
        }
        while !ended {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(data)) => {
                    assert!(!data.is_empty(), "an empty data frame");
                    out.extend_from_slice(&data);
                }
                Ok(Decoded::More) => break,
                Ok(Decoded::End) => ended = true,
                // Where a malformed body is noticed depends on the cuts; the bytes left then
                // do too.
                Err(error) => return (out, Vec::new(), Some(error)),
            }
        }
    }
    (out, buf.to_vec(), None)
}
