//! One LiteLLM deployment (`litellm_params`, or an alias API's `litellm_model`) as a provider
//! and model: provider prefix, endpoint, key, Azure version, Bedrock region and credentials.

use super::families::{self, KeySource};
use super::litellm_router::Globals;
use super::plan::{seconds, Plan, Upstream};
use super::walk::Node;
use crate::crd::ProviderType;

/// Params handled below; any other is reported as not carried over.
const KNOWN_PARAMS: &[&str] = &[
    "model",
    "api_key",
    "api_base",
    "base_url",
    "api_version",
    "rpm",
    "tpm",
    "weight",
    "timeout",
    "aws_region_name",
    "aws_access_key_id",
    "aws_secret_access_key",
    "extra_headers",
    "headers",
    "drop_params",
];

/// The `provider/model` target of one LiteLLM model string (`azure/gpt-4o-eu`) with its
/// `litellm_params`; `None` (with a finding) when it cannot be served.
pub fn deployment(plan: &mut Plan, model: &str, params: Option<&Node>, globals: &Globals, at: &str) -> Option<String> {
    if model.contains('*') {
        plan.warn(
            at,
            format!("wildcard model '{model}' is not carried over: list the models one by one"),
        );
        return None;
    }
    let (family, mut id) = match families::split_model(model) {
        Some((prefix, rest)) => match families::by_prefix(prefix) {
            Some(f) => (f, rest),
            None => {
                plan.error(
                    at,
                    format!(
                        "unknown provider '{prefix}' in '{model}'; modelgate serves: {}",
                        families::known_prefixes()
                    ),
                );
                return None;
            }
        },
        None => match families::by_model_name(model) {
            Some(f) => (f, model),
            None => {
                plan.error(
                    at,
                    format!("cannot tell the provider of '{model}': write it as provider/model, e.g. openai/{model}"),
                );
                return None;
            }
        },
    };
    if family.kind == ProviderType::Bedrock {
        id = id
            .strip_prefix("converse/")
            .or_else(|| id.strip_prefix("invoke/"))
            .unwrap_or(id);
    }
    let mut up = Upstream::new(family);
    up.timeout = globals.timeout.clone();
    up.drop_params = globals.drop_params;
    let param = |key: &str| params.and_then(|p| p.get(key));
    match param("api_key").and_then(|k| k.text()) {
        Some(key) => {
            let location = format!("{}.api_key", params.map(|p| p.at()).unwrap_or_default());
            up.set_key(&key, &location);
            if matches!(up.key, Some(KeySource::Literal { .. })) {
                plan.warn(&location, "an API key is written in the file: it is not printed; the provider refers to a Secret instead (see the output's header)");
            }
        }
        None => up.key = family.key_env.map(|v| KeySource::Env(v.to_string())),
    }
    if let Some(base) = param("api_base").or_else(|| param("base_url")) {
        let url = base.text().unwrap_or_default();
        if let Some(var) = families::env_reference(&url) {
            plan.error(
                &base.at(),
                format!("the endpoint comes from ${var}: write the URL itself, modelgate needs it in the manifest"),
            );
            return None;
        }
        if !families::is_http_url(&url) {
            plan.error(&base.at(), format!("'{url}' is not an http:// or https:// URL"));
            return None;
        }
        if family.kind == ProviderType::Openai && !url.contains("api.openai.com") {
            up.kind = ProviderType::OpenaiCompatible;
        }
        up.base_url = Some(if family.name == "ollama" {
            families::with_default_path(&family, &url)
        } else {
            url.trim_end_matches('/').to_string()
        });
    }
    if matches!(up.kind, ProviderType::AzureOpenai | ProviderType::OpenaiCompatible) && up.base_url.is_none() {
        plan.error(
            at,
            format!("'{model}' needs api_base (the endpoint URL) in litellm_params"),
        );
        return None;
    }
    if let Some(version) = param("api_version").and_then(|v| v.text()) {
        if version == "v1" || is_dated_version(&version) {
            up.azure_api_version = Some(version).filter(|_| up.kind == ProviderType::AzureOpenai);
        } else {
            plan.warn(&format!("{}.api_version", params.map(|p| p.at()).unwrap_or_default()), format!("api_version '{version}' is not carried over (modelgate takes v1 or a dated version); Azure's v1 API is used"));
        }
    }
    bedrock(&mut up, params, at, plan)?;
    if let Some(t) = param("timeout").and_then(|t| t.number()) {
        up.timeout = seconds(t);
    }
    if let Some(drop) = param("drop_params").and_then(|d| d.value.as_bool()) {
        up.drop_params = drop;
    }
    if let Some(headers) = param("extra_headers").or_else(|| param("headers")) {
        headers_into(&headers, &mut up, plan);
    }
    if let Some(p) = params {
        for (key, node) in p.entries() {
            if !KNOWN_PARAMS.contains(&key.as_str()) {
                plan.warn(
                    &node.at(),
                    "not carried over: modelgate has no per-deployment equivalent",
                );
            }
        }
    }
    Some(plan.target(&up, id))
}

fn is_dated_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// Region and static credentials of a Bedrock deployment.
fn bedrock(up: &mut Upstream, params: Option<&Node>, at: &str, plan: &mut Plan) -> Option<()> {
    if up.kind != ProviderType::Bedrock {
        return Some(());
    }
    let param = |key: &str| params.and_then(|p| p.get(key)).and_then(|n| n.text());
    let region = param("aws_region_name").map(|r| {
        families::env_reference(&r)
            .map(str::to_string)
            .map_or(Ok(r.clone()), Err)
    });
    match region {
        Some(Ok(r)) if families::is_aws_region(&r) => up.bedrock_region = Some(r),
        Some(Err(var)) => {
            plan.error(
                at,
                format!("the Bedrock region comes from ${var}: write the region itself (e.g. us-east-1)"),
            );
            return None;
        }
        _ => {
            plan.error(
                at,
                "a Bedrock model needs aws_region_name (e.g. us-east-1) in litellm_params",
            );
            return None;
        }
    }
    if let (Some(id), Some(secret)) = (param("aws_access_key_id"), param("aws_secret_access_key")) {
        let var = |v: &str, default: &str| families::env_reference(v).unwrap_or(default).to_string();
        if families::env_reference(&id).is_none() || families::env_reference(&secret).is_none() {
            plan.warn(at, "AWS credentials are written in the file: they are not printed; the provider refers to a Secret instead (see the output's header)");
        }
        up.aws_keys = Some((var(&id, "AWS_ACCESS_KEY_ID"), var(&secret, "AWS_SECRET_ACCESS_KEY")));
        up.key = None;
    }
    Some(())
}

fn headers_into(headers: &Node, up: &mut Upstream, plan: &mut Plan) {
    for (name, value) in headers.entries() {
        if crate::compiler::rules::is_credential_header(&name) {
            plan.warn(
                &value.at(),
                "a credential header is not carried over (and not printed): put the key in api_key",
            );
        } else if let Some(text) = value.text() {
            up.headers.insert(name, text);
        }
    }
}
