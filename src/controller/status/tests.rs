//! Exact statuses for the situations users meet.

use std::path::Path;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::*;
use crate::compiler::{compile, Compiled, Inputs, ObjectKey, ObjectRef, SecretsAndEnv};
use crate::crd::{ResolvedRoute, ResolvedTarget};
use crate::manifest::{parse_documents, Manifests};

fn time(s: &str) -> Time {
    Time(s.parse().expect("timestamp"))
}

const WORLD: &str = r#"
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: openai, namespace: ml, generation: 1}
spec: {type: openai, apiKey: {secretRef: {name: key, key: apiKey}}}
---
apiVersion: v1
kind: Secret
metadata: {name: key, namespace: ml}
stringData: {apiKey: sk-1}
"#;

fn world(aliases: &str) -> (Manifests, Compiled) {
    crate::compiler::compile_text(&format!("{WORLD}---\n{aliases}"))
}

fn status_of(manifests: &Manifests, compiled: &Compiled, name: &str, now: &Time) -> ModelAliasStatus {
    let alias = manifests.aliases.iter().find(|a| a.name_any() == name).expect("alias");
    let key = ObjectKey::new("ml", name);
    let route = compiled.table.routes.values().find(|r| r.source == key);
    let diagnostics: Vec<_> = compiled
        .diagnostics_for(&ObjectRef::alias(key.clone()))
        .cloned()
        .collect();
    alias_status(alias, route, &diagnostics, now)
}

fn cond(type_: &str, status: &str, reason: &str, message: &str, generation: i64, at: &Time) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(generation),
        last_transition_time: at.clone(),
    }
}

#[test]
fn a_valid_alias_is_accepted_resolved_ready_and_publishes_its_route() {
    let now = time("2026-11-22T10:00:00Z");
    let (m, c) = world("apiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: fast, namespace: ml, generation: 3}\nspec: {target: openai/gpt-4o-mini}\n");
    assert_eq!(
        status_of(&m, &c, "fast", &now),
        ModelAliasStatus {
            observed_generation: Some(3),
            conditions: vec![
                cond(
                    "Accepted",
                    "True",
                    "Accepted",
                    "alias 'fast' is valid and belongs to this ModelAlias",
                    3,
                    &now
                ),
                cond(
                    "ResolvedRefs",
                    "True",
                    "ResolvedRefs",
                    "every target reaches a provider with its key",
                    3,
                    &now
                ),
                cond(
                    "Ready",
                    "True",
                    "Serving",
                    "serving 'fast' from ml/openai gpt-4o-mini (100%)",
                    3,
                    &now
                ),
                cond("Stalled", "False", "Serving", "nothing blocks this alias", 3, &now),
            ],
            resolved: Some(ResolvedRoute {
                alias: "fast".into(),
                generation: 3,
                active: true,
                disabled_reason: None,
                hidden: false,
                description: None,
                targets: vec![ResolvedTarget {
                    provider: "ml/openai".into(),
                    model: "gpt-4o-mini".into(),
                    weight: 100.0,
                    chain: vec!["fast".into()],
                }],
            }),
        }
    );
}

#[test]
fn a_broken_generation_keeps_the_last_route_and_stalls() {
    let earlier = time("2026-11-22T09:00:00Z");
    let now = time("2026-11-22T10:00:00Z");
    let (mut m, c) = world("apiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: smart, namespace: ml, generation: 5}\nspec: {target: anthropic/claude}\n");
    let last_good = ResolvedRoute {
        alias: "smart".into(),
        generation: 4,
        active: true,
        disabled_reason: None,
        hidden: false,
        description: None,
        targets: vec![ResolvedTarget {
            provider: "ml/openai".into(),
            model: "gpt-4o".into(),
            weight: 100.0,
            chain: vec!["smart".into()],
        }],
    };
    m.aliases[0].status = Some(ModelAliasStatus {
        observed_generation: Some(4),
        conditions: vec![
            cond(
                "Accepted",
                "True",
                "Accepted",
                "alias 'smart' is valid and belongs to this ModelAlias",
                4,
                &earlier,
            ),
            cond(
                "ResolvedRefs",
                "True",
                "ResolvedRefs",
                "every target reaches a provider with its key",
                4,
                &earlier,
            ),
            cond(
                "Ready",
                "True",
                "Serving",
                "serving 'smart' from ml/openai gpt-4o (100%)",
                4,
                &earlier,
            ),
            cond("Stalled", "False", "Serving", "nothing blocks this alias", 4, &earlier),
        ],
        resolved: Some(last_good.clone()),
    });
    let missing = "spec.target: LLMProvider 'anthropic' does not exist in namespace 'ml' (providers there: openai); create it or fix the target";
    assert_eq!(
        status_of(&m, &c, "smart", &now),
        ModelAliasStatus {
            observed_generation: Some(5),
            conditions: vec![
                cond("Accepted", "True", "Accepted", "alias 'smart' is valid and belongs to this ModelAlias", 5, &earlier),
                cond("ResolvedRefs", "False", "ProviderNotFound", missing, 5, &now),
                cond(
                    "Ready",
                    "False",
                    "ProviderNotFound",
                    &format!("{missing}; the gateway keeps serving the last accepted route (generation 4) until this is fixed"),
                    5,
                    &now
                ),
                cond("Stalled", "True", "ProviderNotFound", missing, 5, &now),
            ],
            resolved: Some(last_good),
        }
    );
}

#[test]
fn an_unchanged_world_gives_an_identical_status() {
    let (mut m, c) = world("apiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: fast, namespace: ml, generation: 1}\nspec: {target: openai/gpt-4o-mini}\n");
    let first = status_of(&m, &c, "fast", &time("2026-11-22T10:00:00Z"));
    m.aliases[0].status = Some(first.clone());
    assert_eq!(
        status_of(&m, &c, "fast", &time("2026-11-22T11:00:00Z")),
        first,
        "no write on a later reconcile"
    );
}

#[test]
fn a_conflict_loser_publishes_no_route() {
    let now = time("2026-11-22T10:00:00Z");
    let (mut m, c) = world(
        "apiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: fast, namespace: ml, generation: 1, creationTimestamp: '2026-01-01T00:00:00Z'}\nspec: {target: openai/gpt-4o-mini}\n---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: fast2, namespace: ml, generation: 1, creationTimestamp: '2026-02-01T00:00:00Z'}\nspec: {alias: fast, target: openai/gpt-4o}\n",
    );
    m.aliases[1].status = Some(ModelAliasStatus {
        resolved: Some(ResolvedRoute::default()),
        ..Default::default()
    });
    let status = status_of(&m, &c, "fast2", &now);
    assert_eq!(status.resolved, None);
    assert_eq!(status.conditions[0].reason, "AliasConflict");
    assert_eq!(status.conditions[2].status, "False");
}

#[test]
fn provider_status_reports_the_key_without_showing_it() {
    let now = time("2026-11-22T10:00:00Z");
    let mut m = Manifests::default();
    parse_documents(
        "apiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: openai, namespace: ml, generation: 2}\nspec: {type: openai, apiKey: {secretRef: {name: gone, key: apiKey}}}\n",
        Path::new("p.yaml"),
        &mut m,
    );
    let credentials = SecretsAndEnv {
        secrets: &m.secrets,
        env: None,
        view: crate::compiler::SecretView::All,
    };
    let c = compile(&Inputs {
        providers: &m.providers,
        aliases: &[] as &[ModelAlias],
        credentials: &credentials,
        unreadable: &[],
        previous: None,
    });
    let key = ObjectKey::new("ml", "openai");
    let diagnostics: Vec<_> = c.diagnostics_for(&ObjectRef::provider(key.clone())).cloned().collect();
    let status = provider_status(&m.providers[0], c.table.providers.get(&key), &diagnostics, &now);
    let missing = "spec.apiKey: Secret ml/gone does not exist; create it with the key 'apiKey' or fix apiKey.secretRef";
    assert_eq!(
        status,
        LLMProviderStatus {
            observed_generation: Some(2),
            conditions: vec![
                cond("Accepted", "True", "Accepted", "the spec is valid", 2, &now),
                cond("ResolvedRefs", "False", "KeyNotFound", missing, 2, &now),
                cond(
                    "Ready",
                    "False",
                    "KeyNotFound",
                    &format!("{missing}; aliases routing here are not served"),
                    2,
                    &now
                ),
                cond("Stalled", "True", "KeyNotFound", missing, 2, &now),
            ],
            endpoint: Some("https://api.openai.com/v1".into()),
            provider_type: Some("openai".into()),
            key_present: Some(false),
        }
    );
}
