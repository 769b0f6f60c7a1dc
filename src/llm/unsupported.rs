//! Parameters a provider cannot honour are refused by name, or dropped when the provider's
//! owner allows it (`dropUnsupportedParams: true`); never dropped silently.

/// A request that cannot be translated for the provider: a 400 naming the parameter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TranslateError {
    /// The request field at fault, as the client wrote it (`tools[0].function.parameters`).
    pub param: Option<String>,
    pub message: String,
}

impl TranslateError {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError {
            param: Some(param.into()),
            message: message.into(),
        }
    }

    /// A body that is not a valid request of its API at all.
    pub fn invalid(message: impl Into<String>) -> Self {
        TranslateError {
            param: None,
            message: message.into(),
        }
    }
}

/// What a translator knows about the provider it translates for.
#[derive(Clone, Debug)]
pub struct TranslateOptions {
    /// The provider's name (`namespace/name`), for messages.
    pub provider: String,
    /// The provider type as users write it (`anthropic`), for messages.
    pub provider_type: &'static str,
    /// Drop parameters the provider cannot honour instead of refusing the request.
    pub drop_unsupported: bool,
    /// Output token limit when the client sets none and the provider requires one (Anthropic).
    pub default_max_tokens: u64,
}

impl TranslateOptions {
    /// Options for tests and tools: refuse unsupported parameters, 4096 tokens by default.
    pub fn strict(provider_type: &'static str) -> Self {
        TranslateOptions {
            provider: format!("default/{provider_type}"),
            provider_type,
            drop_unsupported: false,
            default_max_tokens: 4096,
        }
    }
}

/// Collects the parameters a translation could not carry.
#[derive(Debug)]
pub struct Unsupported<'a> {
    options: &'a TranslateOptions,
    dropped: Vec<String>,
}

impl<'a> Unsupported<'a> {
    pub fn new(options: &'a TranslateOptions) -> Self {
        Unsupported {
            options,
            dropped: Vec::new(),
        }
    }

    /// A parameter the provider cannot honour: an error naming it, or noted as dropped.
    pub fn param(&mut self, param: &str, why: &str) -> Result<(), TranslateError> {
        if self.options.drop_unsupported {
            self.dropped.push(param.to_string());
            return Ok(());
        }
        Err(TranslateError::new(
            param,
            format!(
                "The parameter '{param}' is not supported by the provider '{}' (type {}): {why}. Remove it from the request, or ask the platform team to set dropUnsupportedParams: true on the LLMProvider.",
                self.options.provider, self.options.provider_type
            ),
        ))
    }

    /// Every field of `rest` (fields the canonical form does not know) is unsupported.
    pub fn rest(
        &mut self,
        prefix: &str,
        rest: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), TranslateError> {
        for key in rest.keys() {
            let name = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            self.param(&name, "the gateway cannot translate it for this provider")?;
        }
        Ok(())
    }

    /// The parameters dropped so far (for a log line).
    pub fn dropped(&self) -> &[String] {
        &self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_parameters_are_named_or_dropped() {
        let strict = TranslateOptions::strict("anthropic");
        let error = Unsupported::new(&strict)
            .param("logit_bias", "no equivalent")
            .unwrap_err();
        assert_eq!(error.param.as_deref(), Some("logit_bias"));
        assert!(error.message.contains("'logit_bias'"), "{}", error.message);
        assert!(error.message.contains("dropUnsupportedParams"), "{}", error.message);

        let lenient = TranslateOptions {
            drop_unsupported: true,
            ..strict
        };
        let mut unsupported = Unsupported::new(&lenient);
        unsupported.param("logit_bias", "no equivalent").expect("dropped");
        assert_eq!(unsupported.dropped(), ["logit_bias"]);
    }
}
