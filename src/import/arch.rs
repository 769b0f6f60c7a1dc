//! Arch gateway `arch_config.yaml`: `llm_providers` become LLMProviders (and an alias per
//! model id, as Arch serves models by name), `model_aliases` become ModelAliases with their
//! targets, splits, load balancing, fallbacks and guardrails.

use super::arch_policy::{conditions, guardrails};
use super::families::{self, KeySource};
use super::litellm::empty_spec;
use super::plan::{is_alias_name, percentages, Plan, Upstream};
use super::walk::{parse_yaml, Node};
use crate::crd::{Fallback, LoadBalancing, ProviderType, WeightedTarget};

/// One entry of `llm_providers`.
struct ArchModel {
    name: Option<String>,
    /// As written: `openai/gpt-4o`.
    full: String,
    /// The model id sent upstream: `gpt-4o`.
    id: String,
    upstream: Upstream,
    target: String,
    location: String,
}

/// Top-level sections about prompts, agents and listeners rather than model routes.
const OTHER_SECTIONS: &[&str] = &[
    "listener",
    "listeners",
    "prompt_targets",
    "prompt_guards",
    "system_prompt",
    "tracing",
    "overrides",
    "error_target",
    "agents",
    "filters",
    "ratelimits",
];

pub fn read(text: &str, plan: &mut Plan) {
    let value = match parse_yaml(text) {
        Ok(value) => value,
        Err(e) => return plan.error(&e.location, e.message),
    };
    if !value.is_object() {
        return plan.error("(top level)", "expected an Arch config: a mapping with llm_providers");
    }
    let root = Node::root(&value);
    let Some(list) = root.get("llm_providers").or_else(|| root.get("model_providers")) else {
        return plan.error(
            "llm_providers",
            "missing: an Arch config declares its models in llm_providers",
        );
    };
    let models: Vec<ArchModel> = list.items().iter().filter_map(|e| provider(e, &root, plan)).collect();
    let aliases = root.get("model_aliases");
    let alias_names: Vec<String> = aliases
        .as_ref()
        .map(|a| a.entries().into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default();
    for (name, node) in aliases.as_ref().map(|a| a.entries()).unwrap_or_default() {
        alias(&name, &node, &models, &alias_names, plan);
    }
    direct_aliases(&models, plan);
    for (key, node) in root.entries() {
        match key.as_str() {
            "version" | "llm_providers" | "model_providers" | "model_aliases" | "endpoints" => {}
            k if OTHER_SECTIONS.contains(&k) => plan.warn(
                &node.at(),
                "not carried over: modelgate routes models only (no prompt targets, agents or listeners)",
            ),
            _ => plan.warn(&node.at(), "not carried over: modelgate has no equivalent"),
        }
    }
}

fn provider(entry: &Node, root: &Node, plan: &mut Plan) -> Option<ArchModel> {
    let Some(full) = entry.get("model").and_then(|m| m.text()) else {
        plan.error(&entry.at(), "model is missing (e.g. model: openai/gpt-4o)");
        return None;
    };
    let at = format!("{}.model", entry.at());
    let interface = entry
        .get("provider_interface")
        .or_else(|| entry.get("provider"))
        .and_then(|p| p.text());
    let (family, id) = match (families::split_model(&full), interface.as_deref()) {
        (Some((prefix, rest)), _) if families::by_prefix(prefix).is_some() => {
            (families::by_prefix(prefix)?, rest.to_string())
        }
        (split, Some(i)) if families::by_prefix(i).is_some() => (
            families::by_prefix(i)?,
            split.map(|(_, rest)| rest).unwrap_or(&full).to_string(),
        ),
        (Some((prefix, _)), _) => {
            plan.error(&at, format!("unknown provider '{prefix}' in '{full}'; modelgate serves: {} (or set provider_interface: openai with base_url)", families::known_prefixes()));
            return None;
        }
        (None, _) => {
            plan.error(
                &at,
                format!("cannot tell the provider of '{full}': write it as provider/model, e.g. openai/{full}"),
            );
            return None;
        }
    };
    let mut up = Upstream::new(family);
    up.name_hint = entry.get("name").and_then(|n| n.text());
    if let Some(key) = entry.get("access_key").and_then(|k| k.text()) {
        let location = format!("{}.access_key", entry.at());
        up.set_key(&key, &location);
        if matches!(up.key, Some(KeySource::Literal { .. })) {
            plan.warn(&location, "an API key is written in the file: it is not printed; the provider refers to a Secret instead (see the output's header)");
        }
    }
    let base = entry
        .get("base_url")
        .and_then(|b| b.text())
        .or_else(|| endpoint(entry, root));
    if let Some(url) = base {
        if !families::is_http_url(&url) {
            plan.error(
                &format!("{}.base_url", entry.at()),
                format!("'{url}' is not an http:// or https:// URL"),
            );
            return None;
        }
        if family.kind == ProviderType::Bedrock {
            match families::bedrock_region(&url) {
                Some(region) => up.bedrock_region = Some(region),
                None => {
                    plan.error(&format!("{}.base_url", entry.at()), format!("cannot read an AWS region from '{url}' (expected https://bedrock-runtime.REGION.amazonaws.com)"));
                    return None;
                }
            }
        } else {
            if family.kind == ProviderType::Openai && !url.contains("api.openai.com") {
                up.kind = ProviderType::OpenaiCompatible;
            }
            up.base_url = Some(families::with_default_path(&family, &url));
        }
    }
    let missing = match up.kind {
        ProviderType::AzureOpenai | ProviderType::OpenaiCompatible => up.base_url.is_none(),
        ProviderType::Bedrock => up.bedrock_region.is_none(),
        _ => false,
    };
    if missing {
        plan.error(&entry.at(), format!("'{full}' needs base_url"));
        return None;
    }
    for (key, node) in entry.entries() {
        match key.as_str() {
            "model" | "name" | "access_key" | "base_url" | "provider_interface" | "provider" | "endpoint"
            | "stream" => {}
            "default" => plan.warn(
                &node.at(),
                "modelgate has no default model: clients always name an alias",
            ),
            _ => plan.warn(&node.at(), "not carried over: modelgate has no equivalent"),
        }
    }
    let target = plan.target(&up, &id);
    Some(ArchModel {
        name: up.name_hint.clone(),
        full,
        id,
        upstream: up,
        target,
        location: entry.at(),
    })
}

/// The URL of an older config's `endpoint: <name>` (a key of `endpoints`).
fn endpoint(entry: &Node, root: &Node) -> Option<String> {
    let name = entry.get("endpoint")?.text()?;
    let address = root.get("endpoints")?.get(&name)?.get("endpoint")?.text()?;
    Some(if address.contains("://") {
        address
    } else {
        format!("http://{address}")
    })
}

/// What a target name refers to: an alias (written bare), else a model of `llm_providers` by
/// its `name`, full `provider/model` or model id.
fn resolve(name: &str, at: &str, models: &[ArchModel], aliases: &[String], plan: &mut Plan) -> Option<String> {
    if aliases.iter().any(|a| a == name) {
        return Some(name.to_string());
    }
    if let Some(m) = models
        .iter()
        .find(|m| m.name.as_deref() == Some(name) || m.full == name)
    {
        return Some(m.target.clone());
    }
    let by_id: Vec<&ArchModel> = models.iter().filter(|m| m.id == name).collect();
    match by_id.as_slice() {
        [one] => Some(one.target.clone()),
        [] => {
            plan.error(
                at,
                format!("target '{name}' is neither a model of llm_providers nor an alias"),
            );
            None
        }
        several => {
            let places: Vec<&str> = several.iter().map(|m| m.location.as_str()).collect();
            plan.error(
                at,
                format!(
                    "target '{name}' is served by several llm_providers ({}); name one by its provider/model or name",
                    places.join(", ")
                ),
            );
            None
        }
    }
}

fn alias(name: &str, node: &Node, models: &[ArchModel], aliases: &[String], plan: &mut Plan) {
    let errors_before = plan.findings.len();
    let mut spec = empty_spec();
    let mut split: Vec<(String, Option<f64>)> = Vec::new();
    for (key, value) in node.entries() {
        match key.as_str() {
            "target" => {
                spec.target = value
                    .text()
                    .and_then(|t| resolve(&t, &value.at(), models, aliases, plan))
            }
            "targets" => split.extend(targets(&value, models, aliases, plan)),
            "load_balance" => {
                spec.load_balancing = match value.get("algorithm").and_then(|a| a.text()).as_deref() {
                    Some("round_robin") => Some(LoadBalancing::RoundRobin),
                    Some("least_connections") => Some(LoadBalancing::LeastConnections),
                    Some("weighted") | None => None,
                    Some(other) => {
                        plan.warn(
                            &value.at(),
                            format!("algorithm '{other}' has no equivalent; requests are spread by weight"),
                        );
                        None
                    }
                };
                if let Some(t) = value.get("targets") {
                    split.extend(targets(&t, models, aliases, plan));
                }
            }
            "fallbacks" => {
                let tiers: Vec<Fallback> = value
                    .items()
                    .iter()
                    .filter_map(|f| {
                        let target = f.get("target").or_else(|| f.get("model"))?.text()?;
                        let target = resolve(&target, &f.at(), models, aliases, plan)?;
                        let on = conditions(f.get("conditions"), plan);
                        Some(Fallback {
                            target,
                            on,
                            on_yaml11: None,
                        })
                    })
                    .collect();
                spec.fallbacks = (!tiers.is_empty()).then_some(tiers);
            }
            "guardrails" => (spec.guardrails, spec.timeouts) = guardrails(&value, plan),
            "description" => spec.description = value.text(),
            _ => plan.warn(&value.at(), "not carried over: modelgate has no equivalent"),
        }
    }
    if spec.target.is_some() && !split.is_empty() {
        return plan.error(
            &node.at(),
            format!("alias '{name}' sets both target and targets; keep one"),
        );
    }
    if !split.is_empty() {
        let given: Vec<f64> = split.iter().filter_map(|(_, w)| *w).collect();
        let weights: Vec<u32> = if given.len() == split.len() {
            if (given.iter().sum::<f64>() - 100.0).abs() > 1e-9 || given.iter().any(|w| w.fract() != 0.0) {
                return plan.error(
                    &node.at(),
                    format!(
                        "the weights of '{name}' add up to {}; they must be whole numbers adding up to 100",
                        given.iter().sum::<f64>()
                    ),
                );
            }
            given.iter().map(|w| *w as u32).collect()
        } else {
            percentages(&vec![1.0; split.len()])
        };
        spec.targets = Some(
            split
                .into_iter()
                .zip(weights)
                .map(|((target, _), weight)| WeightedTarget { target, weight })
                .collect(),
        );
    }
    if spec.target.is_none() && spec.targets.is_none() {
        let reported = plan.findings[errors_before..]
            .iter()
            .any(|f| f.level == super::Level::Error);
        if !reported {
            plan.error(
                &node.at(),
                format!("alias '{name}' has no target (set target, targets or load_balance.targets)"),
            );
        }
        return;
    }
    plan.add_alias(name, &node.at(), spec);
}

/// `targets: [{model, weight, endpoint}]`; an `endpoint` is its own provider at that URL.
fn targets(list: &Node, models: &[ArchModel], aliases: &[String], plan: &mut Plan) -> Vec<(String, Option<f64>)> {
    let mut out = Vec::new();
    for t in list.items() {
        let Some(model) = t.get("model").or_else(|| t.get("target")).and_then(|m| m.text()) else {
            plan.error(&t.at(), "model is missing");
            continue;
        };
        let Some(target) = resolve(&model, &t.at(), models, aliases, plan) else {
            continue;
        };
        let weight = t.get("weight").and_then(|w| w.number());
        let target = match t.get("endpoint").and_then(|e| e.text()) {
            None => target,
            Some(url) => match models.iter().find(|m| m.target == target) {
                Some(m) if families::is_http_url(&url) => {
                    let mut up = m.upstream.clone();
                    up.base_url = Some(families::with_default_path(&m.upstream.family, &url));
                    up.name_hint = None;
                    plan.target(&up, &m.id)
                }
                _ => {
                    plan.error(
                        &t.at(),
                        format!("endpoint '{url}' needs a model of llm_providers and an http(s) URL"),
                    );
                    continue;
                }
            },
        };
        out.push((target, weight));
    }
    out
}

/// An alias per model id, so clients that called Arch with `model: gpt-4o` keep working.
fn direct_aliases(models: &[ArchModel], plan: &mut Plan) {
    for m in models {
        if plan.alias(&m.id).is_some() {
            continue;
        }
        if models.iter().filter(|o| o.id == m.id).count() > 1 {
            let message = format!(
                "'{}' is served by several llm_providers, so no alias of that name is made; clients must use an alias",
                m.id
            );
            if models
                .iter()
                .position(|o| o.id == m.id)
                .and_then(|i| models.get(i))
                .is_some_and(|first| std::ptr::eq(first, m))
            {
                plan.warn(&m.location, message);
            }
            continue;
        }
        if !is_alias_name(&m.id) {
            plan.warn(&m.location, format!("'{}' cannot be an alias name (letters, digits, '.', '-', '_'); clients must use an alias of model_aliases", m.id));
            continue;
        }
        let mut spec = empty_spec();
        spec.target = Some(m.target.clone());
        spec.description = Some(format!("{} as Arch served it by name", m.full));
        plan.add_alias(&m.id, &m.location, spec);
    }
}
