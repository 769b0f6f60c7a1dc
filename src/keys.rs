//! `modelgate keys create`: a new client API key and the Secret that holds only its hash.

use crate::compiler::tenancy::{key_hash, API_KEY_LABEL, API_KEY_SECRET_TYPE, KEY_HASH_FIELD, TEAM_LABEL};
use crate::secret::SecretString;

/// Prefix of every key modelgate issues (so secret scanners and people can tell them apart).
pub const KEY_PREFIX: &str = "mg-";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read random bytes from the operating system: {0}")]
    Random(String),
    #[error("'{0}' is not a valid Kubernetes name: use lowercase letters, digits, '-' and '.'")]
    Name(String),
}

/// A new key: `mg-` and 43 base62 characters (256 bits from the operating system's CSPRNG).
pub fn new_key() -> Result<SecretString, KeyError> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut text = String::from(KEY_PREFIX);
    let mut produced = 0;
    while produced < 43 {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        // Rejection sampling keeps every character equally likely (248 = 4 × 62).
        for byte in bytes.into_iter().filter(|b| *b < 248) {
            if produced == 43 {
                break;
            }
            text.push(char::from(ALPHABET[usize::from(byte % 62)]));
            produced += 1;
        }
    }
    Ok(SecretString::new(text))
}

/// `key-<team>-<6 random lowercase letters and digits>`, unrelated to the key itself.
pub fn default_name(team: &str) -> Result<String, KeyError> {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    let suffix: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % 36]))
        .collect();
    Ok(format!("key-{team}-{suffix}"))
}

/// The Secret manifest for `key`: its hash only, labelled for the gateways' watch.
pub fn secret_manifest(key: &SecretString, name: &str, namespace: &str, team: &str) -> Result<String, KeyError> {
    for value in [name, namespace, team] {
        crate::compiler::rules::check_object_name(value).map_err(|_| KeyError::Name(value.to_string()))?;
    }
    Ok(format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    {API_KEY_LABEL}: \"true\"\n    {TEAM_LABEL}: {team}\ntype: {API_KEY_SECRET_TYPE}\nstringData:\n  {KEY_HASH_FIELD}: \"{}\"\n",
        key_hash(key.expose())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::tenancy::parse_key_hash;

    #[test]
    fn a_new_key_is_random_and_its_manifest_holds_only_the_hash() {
        let (a, b) = (new_key().expect("key"), new_key().expect("key"));
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 46);
        assert!(a.expose().starts_with("mg-"));
        let manifest = secret_manifest(&a, "key-ci", "acme", "newclient-prod").expect("manifest");
        assert!(!manifest.contains(a.expose()), "{manifest}");
        assert!(manifest.contains("type: modelgate.dev/api-key"));
        assert!(manifest.contains("modelgate.dev/team: newclient-prod"));
        let hash = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("keyHash: "))
            .expect("keyHash");
        assert!(parse_key_hash(hash.trim_matches('"')).is_some());
        assert!(secret_manifest(&a, "Bad_Name", "acme", "t").is_err());
    }
}
