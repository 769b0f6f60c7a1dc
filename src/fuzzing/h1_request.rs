//! Client requests on our own HTTP/1.1 server connection (`gateway::server::h1`): the head
//! parser and its framing rules.

use bytes::BytesMut;

use crate::gateway::server::parse_head;

/// What a head parse came to: a summary of the head and the bytes left after it, or the
/// error, or incomplete.
fn read(pieces: &[&[u8]]) -> String {
    let mut buf = BytesMut::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        match parse_head(&mut buf, LIMIT) {
            Ok(None) => {}
            Ok(Some(head)) => {
                let (request, framing) = (&head.request, head.framing);
                assert!(
                    !(request.headers().contains_key(http::header::TRANSFER_ENCODING)
                        && request.headers().contains_key(http::header::CONTENT_LENGTH)),
                    "both framings accepted"
                );
                return format!(
                    "{} {} {:?} {:?} {framing:?} keep-alive {} continue {}",
                    request.method(),
                    request.uri(),
                    request.version(),
                    request.headers(),
                    head.keep_alive,
                    head.expect_continue,
                );
            }
            Err(error) => return format!("error {error:?}"),
        }
    }
    "incomplete".to_string()
}

const LIMIT: usize = 4 << 10;

/// Input: one byte of settings (the seed of where the bytes are cut), then a request.
///
/// Properties: never panics; a request reads the same (head, framing, error or incomplete)
/// in one piece, one byte at a time and cut at random places; no head is accepted with both
/// `Transfer-Encoding` and `Content-Length`.
pub fn h1_request(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    super::same_however_cut(seed, rest, read);
}
