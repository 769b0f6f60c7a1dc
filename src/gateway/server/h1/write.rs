//! A response head as HTTP/1.1 sends it, in the layout hyper's server wrote (clients and tests
//! saw that): the status line, the handler's headers in order, then `connection` when the
//! connection's fate must be said, the body's framing when the handler set none, and `date`.

use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::response::Parts;
use http::{StatusCode, Version};

use crate::gateway::coarse;
use crate::gateway::h1::wire::{length, tokens};

/// How a response's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body may follow (`HEAD`'s answer keeps the length the body would have had).
    None,
    Length(u64),
    Chunked,
    /// HTTP/1.0 with a body of unknown length: it ends when the connection closes.
    Close,
}

/// What the head says and the connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub framing: Framing,
    pub keep_alive: bool,
}

/// Decides the framing from the handler's headers and the body's size (`exact`), and whether
/// the connection stays open after (`keep_alive`: what the request allowed).
pub fn plan(parts: &Parts, exact: Option<u64>, version: Version, keep_alive: bool) -> Plan {
    let status = parts.status;
    let no_body = status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    // One pass over the few headers: cheaper than two hashed lookups. The first length counts.
    let (mut closes, mut declared, mut length_seen) = (false, None, false);
    for (name, value) in &parts.headers {
        if name == CONNECTION {
            closes |= tokens(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close"));
        } else if name == CONTENT_LENGTH && !length_seen {
            length_seen = true;
            declared = length(value.as_bytes());
        }
    }
    let keep_alive = keep_alive && !closes;
    let framing = match (no_body, declared.or(exact)) {
        (true, _) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
        (false, None) if version == Version::HTTP_10 => Framing::Close,
        (false, None) => Framing::Chunked,
    };
    Plan {
        keep_alive: keep_alive && framing != Framing::Close,
        framing,
    }
}

/// Writes the head into `out`.
pub fn head(out: &mut Vec<u8>, parts: &Parts, version: Version, plan: Plan) {
    out.extend_from_slice(match version {
        Version::HTTP_10 => b"HTTP/1.0 ",
        _ => b"HTTP/1.1 ",
    });
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let (mut length, mut connection, mut date) = (false, false, false);
    for (name, value) in &parts.headers {
        if name == TRANSFER_ENCODING {
            continue;
        }
        if name == CONTENT_LENGTH {
            // Only the length the framing uses, once: an unreadable one (the framing then
            // comes from the body's size) or a second one is dropped.
            if length
                || !matches!(plan.framing, Framing::Length(n) if value.as_bytes() == itoa::Buffer::new().format(n).as_bytes())
            {
                continue;
            }
            length = true;
        }
        connection |= name == CONNECTION;
        date |= name == DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !connection {
        match (version, plan.keep_alive) {
            (Version::HTTP_10, true) => out.extend_from_slice(b"connection: keep-alive\r\n"),
            (Version::HTTP_11, false) => out.extend_from_slice(b"connection: close\r\n"),
            _ => {}
        }
    }
    match plan.framing {
        Framing::Length(n) if !length => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if !date {
        out.extend_from_slice(b"date: ");
        now(|now| out.extend_from_slice(now));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The size line of a chunk of `n` bytes.
pub fn chunk_size(n: usize, line: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = 16;
    let mut n = n;
    loop {
        at -= 1;
        line[at] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    line[16] = b'\r';
    line[17] = b'\n';
    &line[at..]
}

thread_local! {
    /// The `Date` value, formatted once a second per thread (as hyper does).
    static NOW: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Calls `f` with the current `Date` value (the coarse wall clock: a second's resolution needs
/// no precise read).
fn now(f: impl FnOnce(&[u8])) {
    let second = coarse::unix_seconds();
    NOW.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            *cached = (
                second,
                httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second)),
            );
        }
        f(cached.1.as_bytes());
    });
}
