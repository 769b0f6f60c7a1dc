//! Where provider keys come from: Secrets and environment variables.

use std::collections::{BTreeMap, HashMap};

use super::table::AwsKeys;
use crate::crd::{ApiKeySource, SecretKeyRef, CREDENTIAL_LABEL};
use crate::secret::SecretString;

/// The outcome of looking up a provider's key (or its AWS credentials).
#[derive(Clone, Debug, PartialEq)]
pub enum KeyLookup<T = SecretString> {
    Found(T),
    /// The source cannot be checked here (an `env` key seen by the controller, which does
    /// not run with the gateway's environment).
    Unchecked,
    /// Why the key is not usable, phrased for the provider's owner.
    Missing(String),
}

/// Looks up provider keys. The compiler stays pure: everything it learns about the world
/// outside the manifests comes through this trait.
pub trait Credentials {
    fn lookup(&self, namespace: &str, source: &ApiKeySource) -> KeyLookup;

    /// AWS credentials from the Secret `name` (`accessKeyId`, `secretAccessKey`, and
    /// optionally `sessionToken`).
    fn aws_keys(&self, namespace: &str, name: &str) -> KeyLookup<AwsKeys>;

    /// The raw bytes of a Secret key that is not an API key (a CA bundle), with `field` the
    /// spec field that names it, for the message.
    fn secret_bytes(&self, namespace: &str, secret_ref: &SecretKeyRef, field: &str) -> KeyLookup<Vec<u8>>;
}

/// Secret data keyed by `(namespace, name)`.
pub type SecretData = HashMap<(String, String), BTreeMap<String, Vec<u8>>>;

/// Reads an environment variable.
pub type EnvReader<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where the Secrets come from, which decides what a missing one may mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SecretView {
    /// Every Secret there is (manifest files): a missing Secret does not exist.
    #[default]
    All,
    /// Only Secrets labelled [`CREDENTIAL_LABEL`]`: "true"` (the controller's and the
    /// in-cluster gateway's watch): a missing Secret may exist without the label.
    Labelled,
}

impl SecretView {
    /// Why the Secret `namespace/name` is not there, and how to fix it: create it `with` its
    /// keys, or fix the `field` that names it.
    fn missing_secret(self, namespace: &str, name: &str, with: &str, field: &str) -> String {
        match self {
            SecretView::All => {
                format!("Secret {namespace}/{name} does not exist; create it with {with} or fix {field}")
            }
            SecretView::Labelled => format!(
                "Secret {namespace}/{name} does not exist or lacks the label {CREDENTIAL_LABEL}: \"true\" (only Secrets with it are read); create it with {with} and that label, or add the label: kubectl label secret {name} -n {namespace} {CREDENTIAL_LABEL}=true"
            ),
        }
    }
}

/// Keys from a fixed set of Secrets plus an environment-variable reader.
pub struct SecretsAndEnv<'a> {
    pub secrets: &'a SecretData,
    /// Reads an environment variable; `None` means "do not check environment variables".
    pub env: Option<EnvReader<'a>>,
    pub view: SecretView,
}

impl Credentials for SecretsAndEnv<'_> {
    fn aws_keys(&self, namespace: &str, name: &str) -> KeyLookup<AwsKeys> {
        let Some(data) = self.secrets.get(&(namespace.to_string(), name.to_string())) else {
            return KeyLookup::Missing(self.view.missing_secret(
                namespace,
                name,
                "the keys accessKeyId and secretAccessKey (and sessionToken for temporary credentials)",
                "bedrock.credentials.secretRef",
            ));
        };
        let field = |key: &str| -> Result<Option<SecretString>, String> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => match usable_key(bytes, || format!("key '{key}' of Secret {namespace}/{name}")) {
                    KeyLookup::Found(value) => Ok(Some(value)),
                    KeyLookup::Missing(why) => Err(why),
                    KeyLookup::Unchecked => Ok(None),
                },
            }
        };
        let required = |key: &str| -> Result<SecretString, String> {
            field(key)?.ok_or_else(|| {
                format!("Secret {namespace}/{name} has no key '{key}'; AWS credentials need accessKeyId and secretAccessKey")
            })
        };
        let keys = (|| {
            Ok::<_, String>(AwsKeys {
                access_key_id: required("accessKeyId")?.expose().to_string(),
                secret_access_key: required("secretAccessKey")?,
                session_token: field("sessionToken")?,
            })
        })();
        match keys {
            Ok(keys) => KeyLookup::Found(keys),
            Err(why) => KeyLookup::Missing(why),
        }
    }

    fn secret_bytes(&self, namespace: &str, secret_ref: &SecretKeyRef, field: &str) -> KeyLookup<Vec<u8>> {
        match self.secret_key(namespace, secret_ref, field) {
            Ok(bytes) => KeyLookup::Found(bytes.clone()),
            Err(why) => KeyLookup::Missing(why),
        }
    }

    fn lookup(&self, namespace: &str, source: &ApiKeySource) -> KeyLookup {
        if let Some(secret_ref) = &source.secret_ref {
            return match self.secret_key(namespace, secret_ref, "apiKey.secretRef") {
                Ok(bytes) => usable_key(bytes, || {
                    format!("key '{}' of Secret {namespace}/{}", secret_ref.key, secret_ref.name)
                }),
                Err(why) => KeyLookup::Missing(why),
            };
        }
        if let Some(var) = &source.env {
            let Some(read) = self.env else {
                return KeyLookup::Unchecked;
            };
            return match read(var) {
                Some(value) => usable_key(value.as_bytes(), || format!("environment variable {var}")),
                None => KeyLookup::Missing(format!(
                    "environment variable {var} is not set in the gateway's environment; export it or use apiKey.secretRef"
                )),
            };
        }
        KeyLookup::Missing("apiKey needs exactly one of secretRef or env".to_string())
    }
}

impl SecretsAndEnv<'_> {
    /// The bytes of the key `secret_ref` names, or why they are not there (`field` is the spec
    /// field that names them).
    fn secret_key(&self, namespace: &str, secret_ref: &SecretKeyRef, field: &str) -> Result<&Vec<u8>, String> {
        let Some(data) = self.secrets.get(&(namespace.to_string(), secret_ref.name.clone())) else {
            let with = format!("the key '{}'", secret_ref.key);
            return Err(self.view.missing_secret(namespace, &secret_ref.name, &with, field));
        };
        data.get(&secret_ref.key).ok_or_else(|| {
            let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
            keys.sort_unstable();
            format!(
                "Secret {namespace}/{} has no key '{}' (it has: {}); fix {field}.key",
                secret_ref.name,
                secret_ref.key,
                if keys.is_empty() {
                    "none".to_string()
                } else {
                    keys.join(", ")
                }
            )
        })
    }
}

/// Trims surrounding whitespace (keys pasted with a trailing newline are common) and checks
/// the key can travel in an HTTP header. The key's bytes never appear in the message.
fn usable_key(bytes: &[u8], describe: impl Fn() -> String) -> KeyLookup {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return KeyLookup::Missing(format!(
            "{} is not valid UTF-8 text; store the key as plain text",
            describe()
        ));
    };
    let key = text.trim();
    if key.is_empty() {
        return KeyLookup::Missing(format!("{} is empty; store the provider's API key there", describe()));
    }
    if !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return KeyLookup::Missing(format!(
            "{} contains spaces or characters that cannot be sent in an HTTP header; store only the key",
            describe()
        ));
    }
    KeyLookup::Found(SecretString::new(key))
}
