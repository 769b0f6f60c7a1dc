//! Provider responses on our own HTTP/1.1 connection (`gateway::h1::wire`): the head parser
//! and the body decoders.

use bytes::BytesMut;
use http::Method;

use crate::gateway::h1::wire::{decode_all as body, parse_head, Decoder, WireError};

/// Input: one byte of settings, then bytes. Bit 0 picks the mode: the bytes as a whole
/// response to read (0), or as a body to encode chunked and decode again (1). The other bits
/// seed where the bytes are cut.
///
/// Properties: never panics; a response reads the same (head, body bytes, error or not) in
/// one piece, one byte at a time and cut at random places; a body never yields more than its
/// `Content-Length`, and nothing past a length or chunked body is taken from the buffer; and
/// a body encoded chunked (with extensions and trailers) decodes to exactly its bytes.
pub fn h1_response(data: &[u8]) {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    if settings & 1 == 0 {
        super::same_however_cut(settings >> 1, rest, read);
        return;
    }
    let mut encoded = Vec::new();
    for (i, chunk) in super::random_cuts(settings >> 1, rest).iter().enumerate() {
        encoded.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
        if i % 2 == 1 {
            encoded.extend_from_slice(b";ext=\"v\"");
        }
        encoded.extend_from_slice(b"\r\n");
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\nNEXT");
    for pieces in [
        vec![&encoded[..]],
        encoded.chunks(1).collect(),
        super::random_cuts(settings, &encoded),
    ] {
        let (body, after, error) = body(Decoder::chunked(), &pieces);
        assert_eq!(error, None);
        assert_eq!(body, rest, "decoded bytes differ from the encoded ones");
        assert_eq!(after, b"NEXT", "the decoder took bytes past the body");
    }
}

/// What reading a response gave: its status and body, the bytes left after it, or an error.
#[derive(Debug, PartialEq)]
enum Read {
    Head(Option<WireError>),
    Body(u16, Vec<u8>, Vec<u8>, Option<WireError>),
    Incomplete,
}

fn read(pieces: &[&[u8]]) -> Read {
    let mut buf = BytesMut::new();
    let mut pieces = pieces.iter();
    let head = loop {
        match parse_head(&mut buf, &Method::POST) {
            Ok(Some(head)) => break head,
            Ok(None) => match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => return Read::Incomplete,
            },
            Err(error) => return Read::Head(Some(error)),
        }
    };
    let declared = head.decoder.remaining();
    let mut left: Vec<&[u8]> = vec![&buf[..]];
    left.extend(pieces);
    let (body, rest, error) = body(head.decoder, &left);
    if let Some(length) = declared {
        assert!(body.len() as u64 <= length, "more than Content-Length");
        if error.is_none() {
            assert_eq!(body.len() as u64, length, "a clean end short of Content-Length");
        }
    }
    Read::Body(head.status.as_u16(), body, rest, error)
}
