//! LiteLLM's `router_settings` and `litellm_settings`: aliases of aliases
//! (`model_group_alias`), fallbacks, retries, timeouts, cool-downs and the routing strategy,
//! applied to the aliases the model list produced.

use super::litellm::empty_spec;
use super::plan::{seconds, Plan};
use super::walk::Node;
use crate::crd::{FailureCondition, Fallback, LoadBalancing, OutlierDetection, Retry};

/// Settings that shape every provider of the config.
#[derive(Default)]
pub struct Globals {
    /// `timeout` / `request_timeout` as a duration.
    pub timeout: Option<String>,
    pub drop_params: bool,
}

/// Settings both sections may hold; `router_settings` wins where both set one.
fn setting<'a>(root: &Node<'a>, key: &str) -> Option<Node<'a>> {
    root.get("router_settings")
        .and_then(|s| s.get(key))
        .or_else(|| root.get("litellm_settings").and_then(|s| s.get(key)))
}

pub fn globals(root: &Node) -> Globals {
    let timeout = setting(root, "timeout")
        .or_else(|| setting(root, "request_timeout"))
        .and_then(|t| t.number())
        .and_then(seconds);
    let drop_params = setting(root, "drop_params")
        .and_then(|d| d.value.as_bool())
        .unwrap_or(false);
    Globals { timeout, drop_params }
}

/// Keys read by `globals` or `apply`, or that only tune LiteLLM itself (caching, logging,
/// Redis for its own state).
const HANDLED: &[&str] = &[
    "timeout",
    "request_timeout",
    "drop_params",
    "model_group_alias",
    "fallbacks",
    "context_window_fallbacks",
    "default_fallbacks",
    "num_retries",
    "allowed_fails",
    "cooldown_time",
    "routing_strategy",
    "redis_host",
    "redis_port",
    "redis_password",
    "redis_url",
    "cache",
    "cache_params",
    "set_verbose",
    "json_logs",
    "success_callback",
    "failure_callback",
    "callbacks",
    "service_callbacks",
    "turn_off_message_logging",
    "redact_user_api_key_info",
    "enable_pre_call_checks",
];

pub fn apply(root: &Node, plan: &mut Plan) {
    if let Some(aliases) = setting(root, "model_group_alias") {
        for (name, node) in aliases.entries() {
            let (target, hidden) = match node.text() {
                Some(t) => (Some(t), None),
                None => (
                    node.get("model").and_then(|m| m.text()),
                    node.get("hidden").and_then(|h| h.value.as_bool()),
                ),
            };
            let Some(target) = target else {
                plan.error(&node.at(), "expected a model_name, or {model: ..., hidden: true}");
                continue;
            };
            if plan.alias(&target).is_none() {
                plan.error(
                    &node.at(),
                    format!("'{target}' is not a model_name of model_list or another alias"),
                );
                continue;
            }
            let mut spec = empty_spec();
            spec.target = Some(target);
            spec.hidden = hidden.filter(|h| *h);
            plan.add_alias(&name, &node.at(), spec);
        }
    }
    let any = [FailureCondition::Any];
    if let Some(list) = setting(root, "fallbacks") {
        fallbacks(&list, &any, plan);
    }
    if let Some(list) = setting(root, "context_window_fallbacks") {
        fallbacks(&list, &[FailureCondition::ContextWindowExceeded], plan);
    }
    if let Some(list) = setting(root, "default_fallbacks") {
        let targets: Vec<(String, String)> = list.items().iter().filter_map(|t| Some((t.text()?, t.at()))).collect();
        let names: Vec<String> = plan.aliases.iter().map(|a| a.name.clone()).collect();
        for name in names.iter().filter(|n| !targets.iter().any(|(t, _)| t == *n)) {
            for (target, at) in &targets {
                add_fallback(plan, name, target, &any, at);
            }
        }
    }
    policies(root, plan);
    for section in ["router_settings", "litellm_settings"] {
        for (key, node) in root.get(section).map(|s| s.entries()).unwrap_or_default() {
            if !HANDLED.contains(&key.as_str()) {
                plan.warn(&node.at(), "not carried over: modelgate has no equivalent");
            }
        }
    }
}

/// `[{"gpt-3.5-turbo": ["gpt-4"]}]` (or one mapping of them).
fn fallbacks(list: &Node, on: &[FailureCondition], plan: &mut Plan) {
    let mut pairs = Vec::new();
    let maps = if list.value.is_array() {
        list.items()
    } else {
        vec![Node {
            value: list.value,
            path: list.at(),
        }]
    };
    for map in maps {
        if !map.value.is_object() {
            plan.error(&map.at(), "expected {model_name: [fallback, ...]}");
            continue;
        }
        for (name, targets) in map.entries() {
            for t in targets.items() {
                match t.text() {
                    Some(target) => pairs.push((name.clone(), target, t.at())),
                    None => plan.error(&t.at(), "expected a model_name"),
                }
            }
        }
    }
    for (name, target, at) in pairs {
        if plan.alias(&name).is_none() {
            plan.error(
                &at,
                format!("fallbacks for '{name}', which is not a model_name of model_list"),
            );
        } else if plan.alias(&target).is_none() {
            plan.error(&at, format!("fallback '{target}' is not a model_name of model_list"));
        } else {
            add_fallback(plan, &name, &target, on, &at);
        }
    }
}

/// Adds a tier to an alias, or widens the conditions of an existing tier to the same target.
fn add_fallback(plan: &mut Plan, name: &str, target: &str, on: &[FailureCondition], at: &str) {
    let Some(alias) = plan.alias_mut(name) else { return };
    let tiers = alias.spec.fallbacks.get_or_insert_with(Vec::new);
    if let Some(tier) = tiers.iter_mut().find(|t| t.target == target) {
        let conditions = tier.on.get_or_insert_with(Vec::new);
        for c in on {
            if !conditions.contains(c) {
                conditions.push(*c);
            }
        }
        if conditions.contains(&FailureCondition::Any) {
            *conditions = vec![FailureCondition::Any];
        }
        return;
    }
    if tiers.len() >= 8 {
        return plan.warn(
            at,
            format!("'{name}' has more than 8 fallbacks; '{target}' is left out"),
        );
    }
    tiers.push(Fallback {
        target: target.to_string(),
        on: Some(on.to_vec()),
        on_yaml11: None,
    });
}

/// Retries, cool-downs and the routing strategy, applied to every alias of the model list.
fn policies(root: &Node, plan: &mut Plan) {
    let retries = setting(root, "num_retries");
    let retry = retries.as_ref().and_then(|n| n.number()).map(|n| {
        if n > 10.0 {
            plan.warn(
                &retries.as_ref().map(|r| r.at()).unwrap_or_default(),
                "more than 10 retries: modelgate caps retries at 10",
            );
        }
        Retry {
            attempts: n.clamp(0.0, 10.0) as u32,
            on: None,
            on_yaml11: None,
            backoff: None,
        }
    });
    let allowed_at = setting(root, "allowed_fails")
        .or_else(|| setting(root, "cooldown_time"))
        .map(|n| n.at());
    let allowed = setting(root, "allowed_fails").and_then(|n| n.number());
    let cooldown = setting(root, "cooldown_time").and_then(|n| n.number());
    let outlier = allowed_at.map(|at| {
        plan.warn(
            &at,
            "allowed_fails / cooldown_time become outlierDetection: LiteLLM counts failures per minute, modelgate counts failures in a row",
        );
        OutlierDetection {
            consecutive_failures: allowed.map(|n| n.clamp(1.0, 1000.0) as u32),
            ejection_time: cooldown.and_then(seconds),
        }
    });
    let balancing = match setting(root, "routing_strategy").map(|s| (s.text(), s.at())) {
        Some((Some(s), _)) if s == "simple-shuffle" => None,
        Some((Some(s), _)) if s == "least-busy" => Some(LoadBalancing::LeastConnections),
        Some((s, at)) => {
            plan.warn(
                &at,
                format!(
                    "routing_strategy {} has no equivalent; requests are spread by weight",
                    s.unwrap_or_default()
                ),
            );
            None
        }
        None => None,
    };
    for alias in &mut plan.aliases {
        let direct = alias.spec.targets.is_some() || alias.spec.target.as_deref().is_some_and(|t| t.contains('/'));
        if !direct {
            continue; // an alias of an alias: the policies apply where it leads
        }
        alias.spec.retry = retry.clone();
        alias.spec.outlier_detection = outlier.clone();
        if alias.spec.targets.is_some() {
            alias.spec.load_balancing = balancing;
        }
    }
}
