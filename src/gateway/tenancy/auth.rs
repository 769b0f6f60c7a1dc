//! Client keys: read from `Authorization: Bearer` or `x-api-key`, hashed (SHA-256), and
//! matched against the key Secrets' hashes in constant time. The key itself is never kept,
//! logged or compared as text.

use std::collections::HashMap;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::compiler::tenancy::KeyDigest;
use crate::secret::SecretString;

/// Key digests by their first eight bytes (a digest is uniformly random, so buckets hold one
/// entry), each with the index of its team.
#[derive(Default)]
pub struct KeyIndex(HashMap<u64, Vec<([u8; 32], usize)>>);

impl KeyIndex {
    pub fn new(keys: &[KeyDigest]) -> Self {
        let mut index: HashMap<u64, Vec<([u8; 32], usize)>> = HashMap::with_capacity(keys.len());
        for key in keys {
            index
                .entry(prefix(&key.digest))
                .or_default()
                .push((key.digest, key.team));
        }
        KeyIndex(index)
    }

    /// The team of a presented key. The digests are compared in constant time; which bucket
    /// is looked at depends only on the SHA-256 of the key, which tells an attacker nothing
    /// about any stored key.
    pub fn team_of(&self, key: &SecretString) -> Option<usize> {
        self.team_of_presented(key.expose())
    }

    /// [`KeyIndex::team_of`] for a key still in the request's headers (not copied).
    pub fn team_of_presented(&self, key: &str) -> Option<usize> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let candidates = self.0.get(&prefix(&digest))?;
        let mut found = None;
        for (stored, team) in candidates {
            if bool::from(stored.ct_eq(&digest)) {
                found = Some(*team);
            }
        }
        found
    }
}

fn prefix(digest: &[u8; 32]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// [`presented`], as a secret of its own.
#[cfg(any(test, feature = "fuzzing"))]
pub fn presented_key(headers: &HeaderMap) -> Option<SecretString> {
    presented(headers).map(SecretString::new)
}

/// The key a request presents: `Authorization: Bearer <key>` (OpenAI clients) or
/// `x-api-key: <key>` (Anthropic clients), borrowed from the headers: the request path hashes
/// it where it is, without a copy.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let text = value.to_str().ok()?;
        let (scheme, key) = text.split_once(' ')?;
        let key = key.trim();
        return (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key);
    }
    let key = headers.get("x-api-key")?.to_str().ok()?.trim();
    (!key.is_empty()).then_some(key)
}

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
        let mut basic = HeaderMap::new();
        basic.insert("authorization", "Basic bWc=".parse().expect("header"));
        assert!(presented_key(&basic).is_none());
        assert!(presented_key(&HeaderMap::new()).is_none());
    }
}
