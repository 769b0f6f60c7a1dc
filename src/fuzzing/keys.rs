//! The tenant stage's reading of what clients and operators write: the client key from
//! `Authorization` / `x-api-key` (`gateway::tenancy::auth`), key hashes in key Secrets, and
//! credit amounts in Teams.

use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use crate::compiler::tenancy::{format_usd, key_hash, parse_amount, parse_key_hash, KeyDigest};
use crate::compiler::ObjectKey;
use crate::gateway::tenancy::auth::{presented_key, KeyIndex};
use crate::secret::SecretString;

/// Input: one byte of settings (which headers are sent), then header values separated by a
/// 0xFF byte: `Authorization`, `x-api-key`; the whole text is also read as a key hash and as
/// a credit amount.
///
/// Properties: never panics; a key is read only from `Authorization: Bearer <key>` when that
/// header is present, else from `x-api-key`, never empty nor padded, and exactly as sent; a
/// key is found by its hash and another key is not; a hash written for a key reads back as the
/// key's SHA-256; a key found once is found again (by its remembered tag) and another key
/// still is not; an amount that reads is not negative and reads back from how it is shown.
pub fn api_key(data: &[u8]) {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let mut values = rest.splitn(2, |&b| b == 0xFF);
    let (authorization, x_api_key) = (values.next().unwrap_or_default(), values.next());
    let mut headers = HeaderMap::new();
    if settings & 1 == 1 {
        if let Ok(value) = HeaderValue::from_bytes(authorization) {
            headers.insert(http::header::AUTHORIZATION, value);
        }
    }
    if let Some(value) = x_api_key.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        headers.insert("x-api-key", value);
    }

    let key = presented_key(&headers);
    if let Some(key) = &key {
        let text = key.expose();
        assert!(
            !text.is_empty() && text.trim() == text,
            "a key is never empty nor padded"
        );
        match headers.get(http::header::AUTHORIZATION) {
            Some(value) => {
                let sent = value.to_str().expect("a key came from a text header");
                let (scheme, rest) = sent.split_once(' ').expect("a scheme and a key");
                assert!(scheme.eq_ignore_ascii_case("bearer"), "only a bearer key is read");
                assert_eq!(rest.trim(), text, "the key as sent");
            }
            None => {
                let sent = headers.get("x-api-key").and_then(|v| v.to_str().ok());
                assert_eq!(sent.map(str::trim), Some(text), "the key as sent");
            }
        }
        let digest = parse_key_hash(&key_hash(text)).expect("a written hash reads back");
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(text.as_bytes())));
        let index = KeyIndex::new(&[KeyDigest {
            digest,
            team: 7,
            secret: ObjectKey::new("fuzz", "key"),
        }]);
        assert_eq!(index.team_of(key), Some(7), "a key is found by its hash");
        assert_eq!(index.team_of(key), Some(7), "and again, remembered by its tag");
        assert_eq!(
            index.team_of(&SecretString::new(format!("{text}x"))),
            None,
            "another key is not"
        );
    } else if headers.contains_key(http::header::AUTHORIZATION) {
        let sent = headers[http::header::AUTHORIZATION].to_str().ok();
        let bearer = sent
            .and_then(|s| s.split_once(' '))
            .filter(|(scheme, key)| scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty());
        assert!(bearer.is_none(), "a bearer key was not read");
    }

    let text = String::from_utf8_lossy(rest);
    let _ = parse_key_hash(&text);
    if let Some(nanos) = parse_amount(&text) {
        assert!(nanos >= 0, "'{text}' reads as {nanos}");
        assert_eq!(
            parse_amount(&format_usd(nanos)),
            Some(nanos),
            "'{text}' shown as {}",
            format_usd(nanos)
        );
    }
}
