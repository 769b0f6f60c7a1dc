//! Compiles LLMProviders into endpoints, or into the reason they cannot be used.

use std::collections::HashMap;

use super::credentials::{Credentials, KeyLookup};
use super::diagnostic::{Diagnostic, ObjectKey, ObjectRef, Reason};
use super::rules::{check_provider_spec, parse_duration};
use super::table::{BedrockAuth, ProviderEndpoint, ProviderSettings, ResolvedTimeouts};
use crate::crd::{LLMProvider, LLMProviderSpec, ProviderType};

/// Base URL of `type: openai` when `baseUrl` is absent.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Base URL of `type: anthropic` when `baseUrl` is absent.
pub const ANTHROPIC_DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// Base URL of `type: gemini` when `baseUrl` is absent.
pub const GEMINI_DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";
/// `anthropic-version` when `anthropic.version` is absent.
pub const ANTHROPIC_DEFAULT_VERSION: &str = "2023-06-01";
/// `max_tokens` of translated Anthropic requests when `anthropic.defaultMaxTokens` is absent.
pub const ANTHROPIC_DEFAULT_MAX_TOKENS: u32 = 4096;

/// The base URL a provider is reached at: `spec.baseUrl` without a trailing `/`, else the
/// type's default; `None` when the type needs an explicit one that is missing.
pub fn base_url(spec: &LLMProviderSpec, key: &ObjectKey) -> Option<String> {
    if let (Some(url), false) = (&spec.base_url, spec.provider_type == ProviderType::Mock) {
        return Some(url.trim_end_matches('/').to_string());
    }
    match spec.provider_type {
        ProviderType::Mock => Some(format!("mock://{key}")),
        ProviderType::Openai => Some(OPENAI_DEFAULT_BASE_URL.to_string()),
        ProviderType::Anthropic => Some(ANTHROPIC_DEFAULT_BASE_URL.to_string()),
        ProviderType::Gemini => Some(GEMINI_DEFAULT_BASE_URL.to_string()),
        ProviderType::Bedrock => {
            let region = spec.bedrock.as_ref()?.region.as_deref()?;
            Some(format!("https://bedrock-runtime.{region}.amazonaws.com"))
        }
        ProviderType::OpenaiCompatible | ProviderType::AzureOpenai => None,
    }
}

/// A provider as aliases see it.
pub(super) struct ProviderInfo {
    /// The endpoint, or why aliases cannot use this provider.
    pub endpoint: Result<ProviderEndpoint, String>,
    /// `spec.models`; empty means any model.
    pub models: Vec<String>,
}

pub(super) fn compile_providers<'p>(
    providers: impl ExactSizeIterator<Item = &'p LLMProvider>,
    unreadable: &[ObjectRef],
    credentials: &dyn Credentials,
    out: &mut Vec<Diagnostic>,
) -> HashMap<ObjectKey, ProviderInfo> {
    let mut compiled = HashMap::with_capacity(providers.len());
    for provider in providers {
        let key = ObjectKey::of(&provider.metadata);
        let object = ObjectRef::provider(key.clone());
        if compiled.contains_key(&key) {
            out.push(Diagnostic::error(
                &object,
                "metadata.name",
                Reason::InvalidSpec,
                format!("LLMProvider {key} is defined more than once; keep one definition"),
            ));
            continue;
        }
        let info = compile_provider(&object, provider, credentials, out);
        compiled.insert(key, info);
    }
    for object in unreadable
        .iter()
        .filter(|o| o.kind == crate::compiler::ObjectKind::LLMProvider)
    {
        compiled.entry(object.key.clone()).or_insert_with(|| ProviderInfo {
            endpoint: Err("its manifest could not be read".to_string()),
            models: Vec::new(),
        });
    }
    compiled
}

fn compile_provider(
    object: &ObjectRef,
    provider: &LLMProvider,
    credentials: &dyn Credentials,
    out: &mut Vec<Diagnostic>,
) -> ProviderInfo {
    let spec = &provider.spec;
    let models = spec.models.clone().unwrap_or_default();
    let errors_before = out.len();
    check_provider_spec(object, spec, out);
    super::tls::check_spec(object, spec, out);
    if let Some(first) = out[errors_before..].iter().find(|d| d.is_error()) {
        return ProviderInfo {
            endpoint: Err(format!("its spec is invalid ({}: {})", first.field, first.message)),
            models,
        };
    }

    let api_key = match &spec.api_key {
        None => None,
        Some(source) => match credentials.lookup(&object.key.namespace, source) {
            KeyLookup::Found(key) => Some(key),
            KeyLookup::Unchecked => None,
            KeyLookup::Missing(why) => {
                out.push(Diagnostic::error(
                    object,
                    "spec.apiKey",
                    Reason::KeyNotFound,
                    why.clone(),
                ));
                return ProviderInfo {
                    endpoint: Err(format!("its API key is missing: {why}")),
                    models,
                };
            }
        },
    };

    // `check_provider_spec` has made sure the type's required fields are there.
    let base_url = base_url(spec, &object.key).unwrap_or_default();
    let settings = match settings(object, spec, credentials, out) {
        Ok(settings) => settings,
        Err(why) => {
            return ProviderInfo {
                endpoint: Err(why),
                models,
            }
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let trusted_ca = match super::tls::trusted_ca(object, spec, credentials, now, out) {
        Ok(ca) => ca,
        Err(why) => {
            return ProviderInfo {
                endpoint: Err(why),
                models,
            }
        }
    };
    let defaults = ResolvedTimeouts::default();
    let timeouts = spec.timeouts.clone().unwrap_or_default();
    let pick = |value: &Option<String>, default| value.as_deref().and_then(parse_duration).unwrap_or(default);
    let endpoint = ProviderEndpoint {
        key: object.key.clone(),
        provider_type: spec.provider_type,
        base_url,
        api_key,
        headers: spec
            .headers
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        timeouts: ResolvedTimeouts {
            connect: pick(&timeouts.connect, defaults.connect),
            request: pick(&timeouts.request, defaults.request),
            idle: pick(&timeouts.idle, defaults.idle),
        },
        settings,
        drop_unsupported_params: spec.drop_unsupported_params.unwrap_or(false),
        trusted_ca,
    };
    ProviderInfo {
        endpoint: Ok(endpoint),
        models,
    }
}

/// The provider-type settings with defaults applied; Bedrock's static credentials are looked up
/// here. `Err` says why the provider cannot be used (a diagnostic is pushed too).
fn settings(
    object: &ObjectRef,
    spec: &LLMProviderSpec,
    credentials: &dyn Credentials,
    out: &mut Vec<Diagnostic>,
) -> Result<ProviderSettings, String> {
    Ok(match spec.provider_type {
        ProviderType::Anthropic => {
            let settings = spec.anthropic.clone().unwrap_or_default();
            ProviderSettings::Anthropic {
                version: settings
                    .version
                    .unwrap_or_else(|| ANTHROPIC_DEFAULT_VERSION.to_string()),
                default_max_tokens: settings.default_max_tokens.unwrap_or(ANTHROPIC_DEFAULT_MAX_TOKENS),
            }
        }
        ProviderType::AzureOpenai => ProviderSettings::Azure {
            api_version: spec
                .azure
                .as_ref()
                .and_then(|a| a.api_version.clone())
                .unwrap_or_else(|| "v1".to_string()),
        },
        ProviderType::Bedrock => {
            let bedrock = spec.bedrock.clone().unwrap_or_default();
            let auth = match (&spec.api_key, &bedrock.credentials) {
                (Some(_), _) => BedrockAuth::ApiKey,
                (None, None) => BedrockAuth::Chain,
                (None, Some(aws)) => match credentials.aws_keys(&object.key.namespace, &aws.secret_ref.name) {
                    KeyLookup::Found(keys) => BedrockAuth::Static(keys),
                    KeyLookup::Unchecked => BedrockAuth::Chain,
                    KeyLookup::Missing(why) => {
                        out.push(Diagnostic::error(
                            object,
                            "spec.bedrock.credentials",
                            Reason::KeyNotFound,
                            why.clone(),
                        ));
                        return Err(format!("its AWS credentials are missing: {why}"));
                    }
                },
            };
            ProviderSettings::Bedrock {
                region: bedrock.region.unwrap_or_default(),
                auth,
            }
        }
        ProviderType::Openai | ProviderType::OpenaiCompatible | ProviderType::Gemini | ProviderType::Mock => {
            ProviderSettings::None
        }
    })
}
