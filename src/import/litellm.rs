//! LiteLLM proxy `config.yaml`: every `model_name` of `model_list` becomes an alias, its
//! deployments the weighted targets; `router_settings` / `litellm_settings` add aliases of
//! aliases, fallbacks, retries, timeouts and cool-downs (see `litellm_router`).

use super::families::{self, KeySource};
use super::litellm_router::{self, Globals};
use super::plan::{percentages, seconds, Plan, Upstream};
use super::walk::{parse_yaml, Node};
use crate::crd::{ModelAliasSpec, Pricing, ProviderType, WeightedTarget};

/// Top-level sections that hold nothing a gateway route needs.
const SERVER_SECTIONS: &[&str] = &[
    "general_settings",
    "environment_variables",
    "include",
    "credential_list",
];

pub fn read(text: &str, plan: &mut Plan) {
    let value = match parse_yaml(text) {
        Ok(value) => value,
        Err(e) => return plan.error(&e.location, e.message),
    };
    let root = Node::root(&value);
    if !value.is_object() {
        return plan.error("(top level)", "expected a LiteLLM config: a mapping with model_list");
    }
    let Some(list) = root.get("model_list") else {
        return plan.error("model_list", "missing: a LiteLLM config lists its models in model_list");
    };
    let globals = litellm_router::globals(&root, plan);
    read_model_list(&list, &globals, plan);
    litellm_router::apply(&root, &globals, plan);
    for (key, node) in root.entries() {
        match key.as_str() {
            "model_list" | "router_settings" | "litellm_settings" => {}
            k if SERVER_SECTIONS.contains(&k) => plan.warn(
                &node.at(),
                "proxy server settings are not imported (modelgate's own keys, Teams and limits replace master_key and the database)",
            ),
            _ => plan.warn(&node.at(), "not carried over: modelgate has no equivalent"),
        }
    }
}

/// One deployment of a model group.
struct Deployment {
    target: String,
    weight: Option<f64>,
    rpm: Option<f64>,
    tpm: Option<f64>,
    pricing: Option<Pricing>,
}

fn read_model_list(list: &Node, globals: &Globals, plan: &mut Plan) {
    // Groups in order of first appearance: (model_name, location, deployments, description).
    let mut groups: Vec<(String, String, Vec<Deployment>, Option<String>)> = Vec::new();
    let mut limits_reported = false;
    for entry in list.items() {
        let Some(name) = entry.get("model_name").and_then(|n| n.text()) else {
            plan.error(&entry.at(), "model_name is missing");
            continue;
        };
        if name.contains('*') {
            plan.warn(
                &entry.at(),
                format!("wildcard model_name '{name}' is not carried over: modelgate serves named aliases only"),
            );
            continue;
        }
        let params = entry.get("litellm_params");
        let Some(model) = params.as_ref().and_then(|p| p.get("model")).and_then(|m| m.text()) else {
            plan.error(&entry.at(), "litellm_params.model is missing");
            continue;
        };
        let at = format!("{}.litellm_params.model", entry.at());
        let Some(target) = deployment(plan, &model, params.as_ref(), globals, &at) else {
            continue;
        };
        let number = |key: &str| {
            params
                .as_ref()
                .and_then(|p| p.get(key))
                .or_else(|| entry.get(key))
                .and_then(|n| n.number())
        };
        let (rpm, tpm) = (number("rpm"), number("tpm"));
        if (rpm.is_some() || tpm.is_some()) && !limits_reported {
            limits_reported = true;
            plan.warn(
                &entry.at(),
                "rpm/tpm are used as load-balancing weights only; modelgate limits requests per Team, not per deployment",
            );
        }
        let info = entry.get("model_info");
        let deployment = Deployment {
            target,
            weight: number("weight"),
            rpm,
            tpm,
            pricing: info.as_ref().and_then(pricing),
        };
        let description = info.as_ref().and_then(|i| i.get("description")).and_then(|d| d.text());
        match groups.iter_mut().find(|g| g.0 == name) {
            Some(group) => {
                group.2.push(deployment);
                group.3 = group.3.take().or(description);
            }
            None => groups.push((name, entry.at(), vec![deployment], description)),
        }
    }
    for (name, location, deployments, description) in groups {
        let mut spec = group_spec(&name, &location, &deployments, plan);
        spec.description = description;
        plan.add_alias(&name, &location, spec);
    }
}

/// The alias of one model group: one target, or a split weighted as LiteLLM's simple-shuffle
/// weighs (by `weight`, else `rpm`, else `tpm`, else evenly).
fn group_spec(name: &str, location: &str, deployments: &[Deployment], plan: &mut Plan) -> ModelAliasSpec {
    let mut merged: Vec<(String, f64)> = Vec::new();
    let basis: fn(&Deployment) -> Option<f64> = if deployments.iter().any(|d| d.weight.is_some()) {
        |d| Some(d.weight.unwrap_or(1.0))
    } else if deployments.iter().all(|d| d.rpm.is_some()) {
        |d| d.rpm
    } else if deployments.iter().all(|d| d.tpm.is_some()) {
        |d| d.tpm
    } else {
        |_| Some(1.0)
    };
    for d in deployments {
        let share = basis(d).unwrap_or(1.0);
        match merged.iter_mut().find(|(t, _)| *t == d.target) {
            Some((_, total)) => *total += share,
            None => merged.push((d.target.clone(), share)),
        }
    }
    let pricing = deployments
        .first()
        .and_then(|d| d.pricing.clone())
        .filter(|p| deployments.iter().all(|d| d.pricing.as_ref() == Some(p)));
    let mut spec = empty_spec();
    spec.pricing = pricing;
    if merged.len() == 1 {
        spec.target = merged.pop().map(|(t, _)| t);
        return spec;
    }
    let shares: Vec<f64> = merged.iter().map(|(_, s)| *s).collect();
    let weights = percentages(&shares);
    for ((target, share), weight) in merged.iter().zip(&weights) {
        if *weight == 0 && *share > 0.0 {
            plan.warn(
                location,
                format!("{name}: the share of {target} rounds to 0 % and drains it"),
            );
        }
    }
    spec.targets = Some(
        merged
            .into_iter()
            .zip(weights)
            .map(|((target, _), weight)| WeightedTarget { target, weight })
            .collect(),
    );
    spec
}

pub fn empty_spec() -> ModelAliasSpec {
    ModelAliasSpec {
        alias: None,
        description: None,
        active: None,
        hidden: None,
        target: None,
        targets: None,
        load_balancing: None,
        fallbacks: None,
        retry: None,
        timeouts: None,
        outlier_detection: None,
        guardrails: None,
        pricing: None,
    }
}

/// `model_info.input_cost_per_token` / `output_cost_per_token` as prices per million tokens.
fn pricing(info: &Node) -> Option<Pricing> {
    let per_million = |key: &str| {
        let cost = info.get(key)?.number()?;
        let text = format!("{:.6}", cost * 1_000_000.0);
        let text = text.trim_end_matches('0').trim_end_matches('.').to_string();
        (cost >= 0.0 && text.len() <= 16).then_some(text)
    };
    Some(Pricing {
        input_per_million_tokens: per_million("input_cost_per_token")?,
        output_per_million_tokens: per_million("output_cost_per_token")?,
        cached_input_per_million_tokens: per_million("cache_read_input_token_cost"),
    })
}

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
    const CREDENTIAL: &[&str] = &[
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "cookie",
    ];
    for (name, value) in headers.entries() {
        if CREDENTIAL.contains(&name.to_ascii_lowercase().as_str()) {
            plan.warn(
                &value.at(),
                "a credential header is not carried over (and not printed): put the key in api_key",
            );
        } else if let Some(text) = value.text() {
            up.headers.insert(name, text);
        }
    }
}
