//! LiteLLM proxy `config.yaml`: every `model_name` of `model_list` becomes an alias, its
//! deployments the weighted targets; `router_settings` / `litellm_settings` add aliases of
//! aliases, fallbacks, retries, timeouts and cool-downs (see `litellm_router`).

use super::litellm_deployment::deployment;
use super::litellm_router::{self, Globals};
use super::plan::{percentages, Plan};
use super::walk::{parse_yaml, Node};
use crate::crd::{ModelAliasSpec, Pricing, WeightedTarget};

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
    let globals = litellm_router::globals(&root);
    read_model_list(&list, &globals, plan);
    litellm_router::apply(&root, plan);
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
