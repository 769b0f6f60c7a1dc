//! Client keys: read from `Authorization: Bearer` or `x-api-key`, hashed (SHA-256), and
//! matched against the key Secrets' hashes in constant time. The key itself is never kept,
//! logged or compared as text.

use http::HeaderMap;
use rustc_hash::FxHashMap;
use subtle::ConstantTimeEq;

use super::seen::SeenKeys;
use crate::compiler::tenancy::KeyDigest;
use crate::secret::SecretString;

/// Key digests by their first eight bytes (a digest is uniformly random, so buckets hold one
/// entry), each with the index of its team. Fx rather than SipHash: the map's keys are the
/// digests of the configured keys (a client can only look up, never insert), and a looked-up
/// prefix is itself a SHA-256 output, so there is no flooding to defend against. Keys matched
/// once are remembered by a keyed tag ([`SeenKeys`]), which spares their later requests
/// SHA-256.
#[derive(Default)]
pub struct KeyIndex {
    digests: FxHashMap<u64, Vec<([u8; 32], usize)>>,
    seen: SeenKeys,
}

impl KeyIndex {
    pub fn new(keys: &[KeyDigest]) -> Self {
        let mut digests: FxHashMap<u64, Vec<([u8; 32], usize)>> = FxHashMap::default();
        digests.reserve(keys.len());
        for key in keys {
            digests
                .entry(prefix(&key.digest))
                .or_default()
                .push((key.digest, key.team));
        }
        KeyIndex {
            digests,
            seen: SeenKeys::new(keys.len()),
        }
    }

    /// The team of a presented key. The digests are compared in constant time; which bucket
    /// is looked at depends only on the SHA-256 of the key, which tells an attacker nothing
    /// about any stored key.
    pub fn team_of(&self, key: &SecretString) -> Option<usize> {
        self.team_of_presented(key.expose().as_bytes())
    }

    /// [`KeyIndex::team_of`] for a key still in the request's headers (not copied): by its
    /// tag if this table has matched it before, else by its SHA-256 (and remembered if
    /// that matches).
    pub fn team_of_presented(&self, key: &[u8]) -> Option<usize> {
        let tag = self.seen.tag(key);
        if let Some(team) = tag.as_ref().and_then(|tag| self.seen.team_of(tag)) {
            return Some(team);
        }
        let team = self.team_by_digest(key)?;
        if let Some(tag) = tag {
            self.seen.remember(tag, team);
        }
        Some(team)
    }

    fn team_by_digest(&self, key: &[u8]) -> Option<usize> {
        let digest = sha256(key);
        let candidates = self.digests.get(&prefix(&digest))?;
        let mut found = None;
        for (stored, team) in candidates {
            if bool::from(digests_equal(stored, &digest)) {
                found = Some(*team);
            }
        }
        found
    }
}

/// Constant-time equality of two digests, compared as four 64-bit words (`subtle` on a byte
/// array compares, and fences, byte by byte: 33 optimisation barriers a key instead of 4).
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> subtle::Choice {
    a.chunks_exact(8)
        .zip(b.chunks_exact(8))
        .fold(subtle::Choice::from(1), |equal, (x, y)| equal & word(x).ct_eq(&word(y)))
}

fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// SHA-256 with aws-lc (the library rustls already links): its assembly uses SHA-NI where the
/// CPU has it and AVX2/AVX/SSSE3 rounds where it does not (many cloud Xeons), where `sha2`
/// falls back to portable rounds. Under callgrind (which hides SHA-NI, like those CPUs): 2,390
/// instructions per key (the AVX rounds) against sha2's 3,470.
fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn prefix(digest: &[u8; 32]) -> u64 {
    word(&digest[..8])
}

/// [`presented`], as a secret of its own.
#[cfg(any(test, feature = "fuzzing"))]
pub fn presented_key(headers: &HeaderMap) -> Option<SecretString> {
    presented(headers).map(SecretString::new)
}

/// The key a request presents: `Authorization: Bearer <key>` (OpenAI clients) or
/// `x-api-key: <key>` (Anthropic clients), borrowed from the headers.
#[cfg(any(test, feature = "fuzzing"))]
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    presented_bytes(headers).and_then(|key| std::str::from_utf8(key).ok())
}

/// The key a request presents (see [`presented`]) as its bytes (ASCII), borrowed from the
/// headers: the request path hashes it where it is, without a copy or the UTF-8 check a
/// `&str` needs.
pub fn presented_bytes(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        // On bytes: `to_str`, `split_once` and `trim` cost about 350 instructions a request
        // under callgrind (a visible-ASCII check a byte at a time, a char searcher, Unicode
        // whitespace); a header value holds no `\r`, `\n` or NUL, only ASCII whitespace.
        let text = value.as_bytes();
        let space = text.iter().position(|b| *b == b' ')?;
        let (scheme, key) = text.split_at(space);
        return ascii_key(key).filter(|_| scheme.eq_ignore_ascii_case(b"bearer"));
    }
    ascii_key(headers.get(X_API_KEY)?.as_bytes())
}

/// A key is ASCII (what `modelgate keys create` makes, and RFC 6750's token characters): a
/// header value with other bytes presents no key, as `HeaderValue::to_str` would say, checked
/// a word at a time by `is_ascii`.
fn ascii_key(value: &[u8]) -> Option<&[u8]> {
    let key = value.trim_ascii();
    (!key.is_empty() && key.is_ascii()).then_some(key)
}

/// Anthropic's key header: a constant name (a `&str` name is parsed on every lookup).
const X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::tenancy::{key_hash, parse_key_hash};
    use crate::compiler::ObjectKey;

    #[test]
    fn keys_are_found_by_hash_from_either_header() {
        let digest = parse_key_hash(&key_hash("mg-secret-1")).expect("hash");
        let index = KeyIndex::new(&[KeyDigest {
            digest,
            team: 3,
            secret: ObjectKey::new("ns", "k"),
        }]);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer mg-secret-1".parse().expect("header"));
        let key = presented_key(&headers).expect("key");
        assert_eq!(format!("{key:?}"), "[redacted]");
        assert_eq!(index.team_of(&key), Some(3));
        let mut anthropic = HeaderMap::new();
        anthropic.insert("x-api-key", "mg-secret-1".parse().expect("header"));
        assert_eq!(index.team_of(&presented_key(&anthropic).expect("key")), Some(3));
        assert_eq!(index.team_of(&SecretString::new("mg-secret-2")), None);
        // A value with bytes beyond ASCII presents no key (found by the api_key fuzz target).
        let mut odd = HeaderMap::new();
        odd.insert(
            "authorization",
            http::HeaderValue::from_bytes(b"Bearer mg-\xc9\x9e").expect("header"),
        );
        assert!(presented_key(&odd).is_none());
        let mut odd = HeaderMap::new();
        odd.insert(
            "x-api-key",
            http::HeaderValue::from_bytes(b"mg-\xc2\xa0").expect("header"),
        );
        assert!(presented_key(&odd).is_none());
        // Keys whose digests differ only past the bucket's prefix, or only in the last word.
        let mut near = digest;
        near[31] ^= 1;
        assert!(!bool::from(digests_equal(&digest, &near)));
        near[31] ^= 1;
        near[9] ^= 0x80;
        assert!(!bool::from(digests_equal(&digest, &near)));
        assert!(bool::from(digests_equal(&digest, &digest)));
        // A key matched once is remembered (by its tag, not in plain text) and found again by
        // it; an unknown key is not remembered; a new table starts with nothing remembered.
        assert_eq!(index.seen.len(), 1);
        assert_eq!(index.team_of_presented(b"mg-secret-1"), Some(3));
        assert_eq!(index.team_of_presented(b"mg-secret-2"), None);
        assert_eq!(index.seen.len(), 1);
        let tag = index.seen.tag(b"mg-secret-1").expect("tag");
        assert_eq!(index.seen.team_of(&tag), Some(3));
        let other = KeyIndex::new(&[KeyDigest {
            digest,
            team: 5,
            secret: ObjectKey::new("ns", "k"),
        }]);
        assert_eq!(other.seen.len(), 0);
        assert_eq!(other.seen.team_of(&tag), None);
        assert_eq!(other.team_of_presented(b"mg-secret-1"), Some(5));
        // A table without the key does not know it, however often it was seen before.
        let emptied = KeyIndex::new(&[]);
        assert_eq!(emptied.team_of_presented(b"mg-secret-1"), None);
        assert_eq!(emptied.seen.len(), 0);
        // The request path's SHA-256 (aws-lc) is the one the key Secrets hold (sha2), for keys
        // of one block, of several, and empty.
        for key in ["", "mg-x", &"k".repeat(55), &"k".repeat(56), &"mg-long-key-".repeat(40)] {
            assert_eq!(Some(sha256(key.as_bytes())), parse_key_hash(&key_hash(key)), "{key}");
        }
        // The scheme in any case, spaces around the key, and what is not a bearer key.
        for (value, key) in [
            ("bearer mg-secret-1", Some("mg-secret-1")),
            ("BEARER   mg-secret-1  ", Some("mg-secret-1")),
            ("Bearer\tmg-secret-1", None),
            ("Bearer ", None),
            ("Bearer    ", None),
            ("Bearermg-secret-1", None),
            ("Bearers mg-secret-1", None),
            ("mg-secret-1", None),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("authorization", value.parse().expect("header"));
            assert_eq!(presented(&headers), key, "{value:?}");
        }
        let mut anthropic = HeaderMap::new();
        anthropic.insert("x-api-key", "  mg-secret-1 ".parse().expect("header"));
        assert_eq!(presented(&anthropic), Some("mg-secret-1"));
        anthropic.insert("x-api-key", " ".parse().expect("header"));
        assert_eq!(presented(&anthropic), None);
        let mut basic = HeaderMap::new();
        basic.insert("authorization", "Basic bWc=".parse().expect("header"));
        assert!(presented_key(&basic).is_none());
        assert!(presented_key(&HeaderMap::new()).is_none());
    }
}
