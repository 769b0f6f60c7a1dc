//! `x-request-id`: every request has one. A client's own is kept when it is reasonable
//! (at most [`MAX_LEN`] characters from a URL-safe set); otherwise the gateway makes one, a
//! random UUID (version 4 layout). It travels upstream (`proxy` sets it on the outgoing
//! request), comes back on every response (success or error, `api`), and is logged on the
//! request's warnings and errors.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-sent request id kept.
pub const MAX_LEN: usize = 128;

/// Whether a client's request id is kept: 1 to [`MAX_LEN`] characters of letters, digits and
/// `-_.:+/=@` (UUIDs, ULIDs, trace ids, base64).
fn acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
}

/// The request's id: the client's when acceptable, else a new one (which then travels
/// upstream instead of the client's).
pub fn ensure(headers: &HeaderMap) -> HeaderValue {
    let mut sent = headers.get_all(&X_REQUEST_ID).iter();
    if let (Some(value), None) = (sent.next(), sent.next()) {
        if acceptable(value) {
            // A copy: a clone would share, and so keep, the connection's whole read buffer
            // (8 KB) for as long as the answer lasts, a stream's whole life.
            if let Ok(copy) = HeaderValue::from_bytes(value.as_bytes()) {
                return copy;
            }
        }
    }
    generate()
}

/// A request id as text, for logs.
pub fn text(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or("-")
}

/// A random UUID in the version 4 layout, from the thread's `fastrand` generator (a request
/// id needs to be unique, not unguessable, and must not cost a system call).
pub fn generate() -> HeaderValue {
    let bits = fastrand::u128(..);
    // Version 4, variant 10xx.
    let bits = (bits & !(0xf << 76)) | (0x4 << 76);
    let bits = (bits & !(0x3 << 62)) | (0x2 << 62);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 36];
    let mut at = 0;
    for (i, byte) in bits.to_be_bytes().into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text[at] = b'-';
            at += 1;
        }
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    // 36 hexadecimal digits and dashes are always a valid header value. Owned by its `Bytes`
    // (one allocation, shared by every clone): a copied slice would be copied again, into a
    // shared buffer, the first time the id is cloned.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text)).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_version_4_uuids_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        let text = a.to_str().expect("ascii");
        let groups: Vec<&str> = text.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{text}"
        );
        assert!(groups[2].starts_with('4'), "{text}");
        assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'), "{text}");
        assert!(text.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
    }

    #[test]
    fn a_reasonable_client_id_is_kept_and_anything_else_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("req-42_a.b:c"));
        assert_eq!(ensure(&headers), "req-42_a.b:c");

        for bad in ["", "has space", "<script>", &"x".repeat(MAX_LEN + 1)] {
            let mut headers = HeaderMap::new();
            headers.insert(X_REQUEST_ID, HeaderValue::from_str(bad).expect("value"));
            assert_eq!(ensure(&headers).len(), 36, "{bad:?} replaced");
        }

        let mut two = HeaderMap::new();
        two.append(X_REQUEST_ID, HeaderValue::from_static("one"));
        two.append(X_REQUEST_ID, HeaderValue::from_static("two"));
        assert_eq!(ensure(&two).len(), 36, "two ids: neither is the one");

        let id = ensure(&HeaderMap::new());
        assert_eq!(text(&id).len(), 36);
    }
}
