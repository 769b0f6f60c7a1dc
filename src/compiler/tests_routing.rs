//! Fallback tiers, routing policy and guardrail rules, asserted on the exact text a user reads.

use std::time::Duration;

use super::tests::{alias, compile_yaml, said};
use super::*;
use crate::crd::{FailureCondition, LoadBalancing};

fn tier_summary(route: &Route) -> Vec<(Vec<&'static str>, Vec<String>, String)> {
    route
        .extras
        .iter()
        .flat_map(|e| &e.fallbacks)
        .map(|t| {
            (
                t.on.iter().map(|c| c.as_str()).collect(),
                t.targets
                    .iter()
                    .map(|t| format!("{}/{} {}", t.provider.name, t.model, t.weight))
                    .collect(),
                t.via.clone(),
            )
        })
        .collect()
}

#[test]
fn fallbacks_compile_to_tiers_and_an_alias_brings_its_own_fallbacks() {
    let compiled = compile_yaml(
        &(alias(
            "chat",
            "{target: openai/gpt-4o, fallbacks: [{target: ollama/llama3, on: [rateLimited, timeout]}, {target: long, on: [contextWindowExceeded]}]}",
        ) + &alias(
            "long",
            "{targets: [{target: openai/gpt-4o-mini, weight: 50}, {target: ollama/qwen, weight: 50}], fallbacks: [{target: ollama/last}]}",
        )),
    );
    assert!(!compiled.has_errors(), "{:?}", said(&compiled));
    let chat = compiled.table.route("chat").expect("route");
    assert_eq!(
        tier_summary(chat),
        vec![
            (
                vec!["rateLimited", "timeout"],
                vec!["ollama/llama3 100".to_string()],
                "ollama/llama3".to_string()
            ),
            (
                vec!["contextWindowExceeded"],
                vec!["openai/gpt-4o-mini 50".to_string(), "ollama/qwen 50".to_string()],
                "long".to_string()
            ),
            (
                vec!["rateLimited", "overloaded", "serverError", "timeout", "unreachable"],
                vec!["ollama/last 100".to_string()],
                "long -> ollama/last".to_string()
            ),
        ]
    );
    // The tiers are published, so an in-cluster gateway serves exactly these.
    let resolved = chat.to_resolved(3);
    assert_eq!(resolved.fallbacks.len(), 3);
    assert_eq!(resolved.fallbacks[1].on, vec![FailureCondition::ContextWindowExceeded]);
    let back = Route::from_resolved(&resolved, chat.source.clone(), None);
    assert_eq!(back.extras, chat.extras);
}

#[test]
fn fallback_cycles_are_errors_naming_the_cycle() {
    let compiled = compile_yaml(
        &(alias("a", "{target: openai/gpt-4o, fallbacks: [{target: b}]}")
            + &alias("b", "{target: openai/gpt-4o-mini, fallbacks: [{target: a}]}")
            + &alias("c", "{target: openai/gpt-4o, fallbacks: [{target: d}]}")
            + &alias("d", "{target: c}")),
    );
    let errors: Vec<(String, String, &str, String)> = said(&compiled)
        .into_iter()
        .filter(|(_, _, reason, _)| *reason == "AliasCycle")
        .collect();
    assert_eq!(
        errors,
        vec![
            (
                "ModelAlias team-a/a".to_string(),
                "spec.fallbacks[0].target".to_string(),
                "AliasCycle",
                "aliases fall back to each other in a cycle: a -> b -> a; remove one of these fallbacks".to_string()
            ),
            (
                "ModelAlias team-a/b".to_string(),
                "spec.fallbacks[0].target".to_string(),
                "AliasCycle",
                "aliases fall back to each other in a cycle: a -> b -> a; remove one of these fallbacks".to_string()
            ),
            (
                "ModelAlias team-a/c".to_string(),
                "spec.fallbacks[0].target".to_string(),
                "AliasCycle",
                "the fallback leads back to this alias, a cycle: c -> d -> c (through fallbacks); fall back to another alias or to <provider>/<model>".to_string()
            ),
        ]
    );
    assert!(compiled.table.route("a").is_none() && compiled.table.route("c").is_none());
    assert!(compiled.table.route("d").is_some(), "d itself is fine");
}

#[test]
fn a_cycle_through_nested_fallbacks_and_a_target_is_named() {
    // b falls back to e, e falls back to c, and c's target is b: b's last tier would be b's
    // own targets again. Found by the compiler_graph fuzz target.
    let compiled = compile_yaml(
        &(alias("b", "{target: openai/gpt-4o, fallbacks: [{target: e}]}")
            + &alias("e", "{target: openai/gpt-4o-mini, fallbacks: [{target: c}]}")
            + &alias("c", "{target: b}")),
    );
    assert_eq!(
        said(&compiled),
        vec![(
            "ModelAlias team-a/b".to_string(),
            "spec.fallbacks[0].target".to_string(),
            "AliasCycle",
            "the fallback leads back to this alias, a cycle: b -> e -> c -> b (through fallbacks); fall back to another alias or to <provider>/<model>".to_string()
        )]
    );
    assert!(compiled.table.route("b").is_none());
    assert!(compiled.table.route("e").is_some() && compiled.table.route("c").is_some());
}

#[test]
fn every_alias_on_a_fallback_cycle_says_cycle_even_when_something_else_broke_first() {
    // b's first fallback is broken on its own; its second closes a cycle with a. a reports the
    // cycle, not b's other error under the cycle's reason.
    let compiled = compile_yaml(
        &(alias("a", "{target: openai/gpt-4o, fallbacks: [{target: b}]}")
            + &alias(
                "b",
                "{target: openai/gpt-4o-mini, fallbacks: [{target: nowhere}, {target: a}]}",
            )),
    );
    let cycles: Vec<(String, String)> = said(&compiled)
        .into_iter()
        .filter(|(_, _, reason, _)| *reason == "AliasCycle")
        .map(|(object, _, _, message)| (object, message))
        .collect();
    let message = "aliases fall back to each other in a cycle: a -> b -> a; remove one of these fallbacks";
    assert_eq!(
        cycles,
        vec![
            ("ModelAlias team-a/a".to_string(), message.to_string()),
            ("ModelAlias team-a/b".to_string(), message.to_string()),
        ]
    );
}

#[test]
fn a_missing_fallback_provider_breaks_the_alias_with_its_field() {
    let compiled = compile_yaml(&alias(
        "a",
        "{target: openai/gpt-4o, fallbacks: [{target: anthropic/claude}]}",
    ));
    assert_eq!(
        said(&compiled),
        vec![(
            "ModelAlias team-a/a".to_string(),
            "spec.fallbacks[0].target".to_string(),
            "ProviderNotFound",
            "LLMProvider 'anthropic' does not exist in namespace 'team-a' (providers there: ollama, openai); create it or fix the target".to_string()
        )]
    );
    assert!(compiled.table.route("a").is_none());
}

#[test]
fn the_policy_is_compiled_with_defaults_and_published() {
    let compiled = compile_yaml(&alias(
        "a",
        "{target: openai/gpt-4o, loadBalancing: roundRobin, retry: {attempts: 2}, timeouts: {firstToken: 10s, total: 2m}, outlierDetection: {consecutiveFailures: 3}}",
    ));
    assert!(!compiled.has_errors(), "{:?}", said(&compiled));
    let route = compiled.table.route("a").expect("route");
    let policy = &route.extras.as_ref().expect("extras").policy;
    assert_eq!(policy.load_balancing, LoadBalancing::RoundRobin);
    assert_eq!(
        policy.retry,
        Some(RetryPolicy {
            attempts: 2,
            on: vec![FailureCondition::ServerError, FailureCondition::Unreachable],
            backoff: Duration::from_millis(200)
        })
    );
    assert_eq!(policy.first_token, Some(Duration::from_secs(10)));
    assert_eq!(policy.total, Some(Duration::from_secs(120)));
    assert_eq!(
        policy.outlier,
        Some(OutlierPolicy {
            consecutive_failures: 3,
            ejection_time: Duration::from_secs(30)
        })
    );
    let back = Route::from_resolved(&route.to_resolved(1), route.source.clone(), None);
    assert_eq!(back.extras, route.extras);
    // A plain alias carries nothing extra.
    let plain = compile_yaml(&alias("p", "{target: openai/gpt-4o}"));
    assert_eq!(plain.table.route("p").expect("route").extras, None);
}

#[test]
fn policy_and_guardrail_rules_say_what_to_fix() {
    let compiled = compile_yaml(&alias(
        "a",
        r#"{target: openai/gpt-4o, retry: {attempts: 2, on: [contextWindowExceeded], backoff: soon}, timeouts: {firstToken: 3m, total: 1m}, fallbacks: [{target: "x/", on: [timeout, timeout]}], guardrails: {content: [{name: pii, patterns: ["(unclosed"]}, {name: pii, keywords: ["falcon"]}]}}"#,
    ));
    let messages: Vec<(String, String)> = said(&compiled).into_iter().map(|(_, f, _, m)| (f, m)).collect();
    assert_eq!(
        messages,
        vec![
            ("spec.fallbacks[0].on".to_string(), "'timeout' is listed twice".to_string()),
            ("spec.fallbacks[0].target".to_string(), "target 'x/' has no model after the '/'; write <provider>/<model> (for example openai/gpt-4o-mini) or the bare name of an alias or listed model".to_string()),
            ("spec.guardrails.content[0].patterns[0]".to_string(), "'(unclosed' is not a valid regular expression: unclosed group".to_string()),
            ("spec.guardrails.content[1].name".to_string(), "a content rule named 'pii' is defined twice".to_string()),
            ("spec.retry.backoff".to_string(), "'soon' must be a duration such as 500ms, 10s, 5m or 1h30m".to_string()),
            ("spec.retry.on".to_string(), "retrying contextWindowExceeded sends the same too-long request again; use a fallback to a model with a larger window instead".to_string()),
            ("spec.timeouts.firstToken".to_string(), "firstToken is longer than total, so it can never apply; make it shorter or remove it".to_string()),
        ]
    );
}

#[test]
fn a_fallback_on_spelled_as_yaml_1_1_readers_send_it_is_the_same_field() {
    // kubectl turns an unquoted `on:` key into `true`.
    let compiled = compile_yaml(&alias(
        "chat",
        "{target: openai/gpt-4o, fallbacks: [{target: ollama/llama3, \"true\": [contextWindowExceeded]}]}",
    ));
    assert!(!compiled.has_errors(), "{:?}", said(&compiled));
    let chat = compiled.table.route("chat").expect("route");
    assert_eq!(tier_summary(chat)[0].0, vec!["contextWindowExceeded"]);
}
