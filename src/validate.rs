//! `modelgate validate`: the compiler over files, one line per problem, for CI before a sync.

use std::path::PathBuf;

use crate::compiler::{AwsKeys, Credentials, KeyLookup, SecretData, SecretsAndEnv, Severity};
use crate::crd::{ApiKeySource, SecretKeyRef};
use crate::manifest::{load_paths, Manifests};
use crate::report::{self, Line};

/// The outcome of a validation run.
pub struct Validation {
    pub lines: Vec<Line>,
    pub providers: usize,
    pub aliases: usize,
    pub files: usize,
}

impl Validation {
    pub fn errors(&self) -> usize {
        self.lines.iter().filter(|l| l.severity == Severity::Error).count()
    }

    pub fn warnings(&self) -> usize {
        self.lines.len() - self.errors()
    }
}

/// Keys are checked only where the files can answer: a Secret in the files is checked, a
/// Secret kept elsewhere (sealed, external) or an environment variable is not, unless
/// `check_keys` asks for it.
struct FileKeys<'a> {
    secrets: &'a SecretData,
    check_keys: bool,
}

impl Credentials for FileKeys<'_> {
    fn lookup(&self, namespace: &str, source: &ApiKeySource) -> KeyLookup {
        let env = |var: &str| std::env::var(var).ok();
        let strict = SecretsAndEnv {
            secrets: self.secrets,
            env: Some(&env),
            view: crate::compiler::SecretView::All,
        };
        if self.check_keys {
            return strict.lookup(namespace, source);
        }
        match &source.secret_ref {
            Some(r) if self.secrets.contains_key(&(namespace.to_string(), r.name.clone())) => {
                strict.lookup(namespace, source)
            }
            _ => KeyLookup::Unchecked,
        }
    }

    fn secret_bytes(&self, namespace: &str, secret_ref: &SecretKeyRef, field: &str) -> KeyLookup<Vec<u8>> {
        let strict = SecretsAndEnv {
            secrets: self.secrets,
            env: None,
            view: crate::compiler::SecretView::All,
        };
        if self.check_keys
            || self
                .secrets
                .contains_key(&(namespace.to_string(), secret_ref.name.clone()))
        {
            strict.secret_bytes(namespace, secret_ref, field)
        } else {
            KeyLookup::Unchecked
        }
    }

    fn aws_keys(&self, namespace: &str, name: &str) -> KeyLookup<AwsKeys> {
        let strict = SecretsAndEnv {
            secrets: self.secrets,
            env: None,
            view: crate::compiler::SecretView::All,
        };
        if self.check_keys || self.secrets.contains_key(&(namespace.to_string(), name.to_string())) {
            strict.aws_keys(namespace, name)
        } else {
            KeyLookup::Unchecked
        }
    }
}

/// Validates the manifests under `paths`.
pub fn validate(paths: &[PathBuf], check_keys: bool) -> Validation {
    validate_manifests(load_paths(paths), check_keys)
}

/// Validates manifests already read (e.g. the output of `modelgate import`, before it is
/// printed).
pub fn validate_manifests(manifests: Manifests, check_keys: bool) -> Validation {
    let credentials = FileKeys {
        secrets: &manifests.secrets,
        check_keys,
    };
    let compiled = manifests.compile(&credentials, None);
    Validation {
        lines: report::lines(&manifests, &compiled.diagnostics),
        providers: manifests.providers.len(),
        aliases: manifests.aliases.len(),
        files: manifests.files.len(),
    }
}
