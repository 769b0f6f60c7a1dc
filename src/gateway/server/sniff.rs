//! Which protocol a new connection speaks, told from its first bytes without consuming them.
//!
//! hyper-util's automatic builder reads the first bytes itself (up to the 24 of the HTTP/2
//! preface) and replays them to HTTP/1.1 ahead of the socket. hyper's read buffer then holds
//! those 24 bytes when it reserves its 8 KB for the rest of the request, and so doubles to
//! 16 KB, which every HTTP/1.1 connection keeps for its life. Peeking at the socket instead
//! lets hyper read the whole request into its 8 KB buffer. Only a connection whose first
//! bytes could still begin the preface (`P`, `PR`, … a request split into tiny segments) is
//! left to hyper-util's detection.

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113, section 3.4).
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

type Builder = auto::Builder<TokioExecutor>;

/// One listener's connection builders, all with the same settings.
pub(super) struct Builders {
    detect: Builder,
    http1: Builder,
    http2: Builder,
}

/// Whether a connection whose first bytes are `first` speaks HTTP/1.1 (served by our own
/// connection, `super::h1`): some bytes came, and they cannot begin the HTTP/2 preface.
pub(super) fn is_http1(first: &[u8]) -> bool {
    let n = first.len().min(PREFACE.len());
    n > 0 && first[..n] != PREFACE[..n]
}

impl Builders {
    pub fn new(builder: Builder) -> Self {
        Builders {
            http1: builder.clone().http1_only(),
            http2: builder.clone().http2_only(),
            detect: builder,
        }
    }

    /// The builder for a connection whose first bytes are `first`: HTTP/1.1 when they cannot
    /// begin the preface, HTTP/2 when they are the whole preface, and hyper-util's own
    /// detection when there are too few to tell (or none: it reports the closed connection).
    pub fn for_first_bytes(&self, first: &[u8]) -> &Builder {
        let n = first.len().min(PREFACE.len());
        if first[..n] != PREFACE[..n] {
            &self.http1
        } else if n == PREFACE.len() {
            &self.http2
        } else {
            &self.detect
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn which(builders: &Builders, first: &[u8]) -> &'static str {
        let chosen = builders.for_first_bytes(first);
        if std::ptr::eq(chosen, &builders.http1) {
            "http1"
        } else if std::ptr::eq(chosen, &builders.http2) {
            "http2"
        } else {
            "detect"
        }
    }

    #[test]
    fn the_first_bytes_choose_the_protocol() {
        let builders = Builders::new(auto::Builder::new(TokioExecutor::new()));
        assert_eq!(which(&builders, b"POST /v1/chat/completions HTTP/1.1\r\n"), "http1");
        assert_eq!(which(&builders, b"G"), "http1");
        assert_eq!(which(&builders, PREFACE), "http2");
        assert_eq!(
            which(&builders, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04"),
            "http2"
        );
        assert_eq!(which(&builders, b"PR"), "detect");
        assert_eq!(which(&builders, b""), "detect");
        assert_eq!(which(&builders, b"PRI * HTTP/1.1\r\n"), "http1");
        assert!(is_http1(b"G") && is_http1(b"PRI * HTTP/1.1\r\n"));
        assert!(!is_http1(b"") && !is_http1(b"PR") && !is_http1(PREFACE));
    }
}
