//! `x-request-id`: every request has one. A client's own is kept when it is reasonable
//! (at most [`MAX_LEN`] characters from a URL-safe set); otherwise the gateway makes one, a
//! random UUID (version 4 layout). It travels upstream, comes back on every response (success
//! or error), and is logged on the request's warnings and errors.

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

/// The request's id: the client's when acceptable, else a new one, which replaces any
/// unacceptable value in `headers` so that only it travels upstream.
pub fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    let mut sent = headers.get_all(&X_REQUEST_ID).iter();
    if let (Some(value), None) = (sent.next(), sent.next()) {
        if acceptable(value) {
            return value.clone();
        }
    }
    let id = generate();
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// A request's id as text, for logs (`-` when absent, which [`ensure`] rules out).
pub fn of(headers: &HeaderMap) -> &str {
    headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-")
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
    let mut nibble = 32;
    for (i, slot) in text.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
        } else {
            nibble -= 1;
            *slot = HEX[((bits >> (nibble * 4)) & 0xf) as usize];
        }
    }
    // 36 hexadecimal digits and dashes are always a valid header value.
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
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
        assert_eq!(ensure(&mut headers), "req-42_a.b:c");

        for bad in ["", "has space", "<script>", &"x".repeat(MAX_LEN + 1)] {
            let mut headers = HeaderMap::new();
            headers.insert(X_REQUEST_ID, HeaderValue::from_str(bad).expect("value"));
            let id = ensure(&mut headers);
            assert_eq!(id.len(), 36, "{bad:?} replaced");
            assert_eq!(headers.get_all(X_REQUEST_ID).iter().collect::<Vec<_>>(), [&id]);
        }

        let mut two = HeaderMap::new();
        two.append(X_REQUEST_ID, HeaderValue::from_static("one"));
        two.append(X_REQUEST_ID, HeaderValue::from_static("two"));
        let id = ensure(&mut two);
        assert_eq!(
            two.get_all(X_REQUEST_ID).iter().collect::<Vec<_>>(),
            [&id],
            "one id upstream"
        );

        let mut none = HeaderMap::new();
        let id = ensure(&mut none);
        assert_eq!(
            (none.get(X_REQUEST_ID), of(&none)),
            (Some(&id), id.to_str().expect("ascii"))
        );
    }
}
