//! A string that holds a credential and never shows it.

use std::fmt;
use std::sync::Arc;

/// A credential (provider key, client key). `Debug` and `Display` print `[redacted]`, it has
/// no `Serialize`, and the only way to read it is [`SecretString::expose`], so a key cannot
/// reach a log line, an error, a metric or a panic message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Arc<str>);

impl SecretString {
    /// Wraps a credential.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        SecretString(value.into())
    }

    /// The credential itself: call only where it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::SecretString;

    #[test]
    fn never_prints_the_value() {
        let key = SecretString::new("sk-live-123");
        assert_eq!(
            format!("{key:?} {key} {:?}", Some(&key)),
            "[redacted] [redacted] Some([redacted])"
        );
        assert_eq!(key.expose(), "sk-live-123");
    }
}
