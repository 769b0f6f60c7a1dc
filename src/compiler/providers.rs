//! Compiles LLMProviders into endpoints, or into the reason they cannot be used.

use std::collections::HashMap;

use super::credentials::{Credentials, KeyLookup};
use super::diagnostic::{Diagnostic, ObjectKey, ObjectRef, Reason};
use super::rules::{check_provider_spec, parse_duration};
use super::table::{ProviderEndpoint, ResolvedTimeouts};
use crate::crd::{LLMProvider, ProviderType};

/// Base URL of `type: openai` when `baseUrl` is absent.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

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

    let base_url = match (spec.provider_type, &spec.base_url) {
        (ProviderType::Mock, _) => format!("mock://{}", object.key),
        (_, Some(url)) => url.trim_end_matches('/').to_string(),
        (_, None) => OPENAI_DEFAULT_BASE_URL.to_string(),
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
    };
    ProviderInfo {
        endpoint: Ok(endpoint),
        models,
    }
}
