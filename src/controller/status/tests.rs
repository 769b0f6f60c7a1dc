//! Exact statuses for the situations users meet.

use std::path::Path;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::*;
use crate::compiler::{compile, Compiled, Inputs, ObjectKey, ObjectRef, SecretsAndEnv};
use crate::controller::gateways::ServingReplica;
use crate::crd::{ResolvedRoute, ResolvedTarget};
use crate::manifest::{parse_documents, Manifests};

fn time(s: &str) -> Time {
    Time(s.parse().expect("timestamp"))
}

/// Two gateway replicas serving every namespace, with their tables at these alias versions.
fn two_gateways(a: u64, b: u64) -> GatewayView {
    GatewayView::at_versions(&[("gw-a", a), ("gw-b", b)])
}

fn env<'a>(now: &'a Time, gateways: &'a GatewayView) -> Env<'a> {
    Env {
        now,
        stall_after: DEFAULT_STALL_AFTER,
        gateways,
    }
}

/// The `Programmed` condition an alias has before any gateway serves its new generation.
fn publishing(generation: i64, at: &Time) -> Condition {
    cond(
        "Programmed",
        "False",
        "Pending",
        &format!("served by 0/2 gateways at generation {generation}; waiting for gw-a, gw-b"),
        generation,
        at,
    )
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
    status_in(manifests, compiled, name, &env(now, &two_gateways(0, 0)), None)
}

fn status_in(
    manifests: &Manifests,
    compiled: &Compiled,
    name: &str,
    env: &Env,
    reference: Option<u64>,
) -> ModelAliasStatus {
    let alias = manifests.aliases.iter().find(|a| a.name_any() == name).expect("alias");
    let key = ObjectKey::new("ml", name);
    let route = compiled.table.routes.values().find(|r| r.source == key);
    let diagnostics: Vec<_> = compiled
        .diagnostics_for(&ObjectRef::alias(key.clone()))
        .cloned()
        .collect();
    alias_status(alias, route, &diagnostics, env, reference)
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
            usage: None,
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
                publishing(3, &now),
            ],
            target: Some("openai/gpt-4o-mini".into()),
            resolved: Some(ResolvedRoute {
                pricing: None,
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
                ..Default::default()
            }),
        }
    );
}

fn smart_at_generation_4(earlier: &Time) -> (ResolvedRoute, ModelAliasStatus) {
    let last_good = ResolvedRoute {
        pricing: None,
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
        ..Default::default()
    };
    let status = ModelAliasStatus {
        usage: None,
        observed_generation: Some(4),
        conditions: vec![
            cond(
                "Accepted",
                "True",
                "Accepted",
                "alias 'smart' is valid and belongs to this ModelAlias",
                4,
                earlier,
            ),
            cond(
                "ResolvedRefs",
                "True",
                "ResolvedRefs",
                "every target reaches a provider with its key",
                4,
                earlier,
            ),
            cond(
                "Ready",
                "True",
                "Serving",
                "serving 'smart' from ml/openai gpt-4o (100%)",
                4,
                earlier,
            ),
            cond("Stalled", "False", "Serving", "nothing blocks this alias", 4, earlier),
            cond(
                "Programmed",
                "True",
                "Programmed",
                "served by 2/2 gateways at generation 4",
                4,
                earlier,
            ),
        ],
        resolved: Some(last_good.clone()),
        target: Some("openai/gpt-4o".into()),
    };
    (last_good, status)
}

#[test]
fn an_edit_to_a_missing_provider_waits_keeping_the_last_route_then_stalls_saying_for_how_long() {
    let earlier = time("2026-11-22T09:00:00Z");
    let now = time("2026-11-22T10:00:00Z");
    let (mut m, c) = world("apiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: smart, namespace: ml, generation: 5}\nspec: {target: anthropic/claude}\n");
    let (last_good, previous) = smart_at_generation_4(&earlier);
    m.aliases[0].status = Some(previous);
    let missing = "spec.target: LLMProvider 'anthropic' does not exist in namespace 'ml' (providers there: openai); create it or fix the target";
    let ready = |at: &Time| {
        cond(
            "Ready",
            "False",
            "ProviderNotFound",
            &format!("{missing}; the gateway keeps serving the last accepted route (generation 4) until this is fixed"),
            5,
            at,
        )
    };
    let not_published = |at: &Time| {
        cond(
            "Programmed",
            "False",
            "NotPublished",
            "generation 5 is not published (see Ready); the gateways keep serving generation 4",
            5,
            at,
        )
    };
    let head = |at: &Time| {
        vec![
            cond(
                "Accepted",
                "True",
                "Accepted",
                "alias 'smart' is valid and belongs to this ModelAlias",
                5,
                &earlier,
            ),
            cond("ResolvedRefs", "False", "ProviderNotFound", missing, 5, at),
        ]
    };
    let waiting = ModelAliasStatus {
        usage: None,
        observed_generation: Some(5),
        conditions: [
            head(&now),
            vec![
                ready(&now),
                cond(
                    "Reconciling",
                    "True",
                    "ProviderNotFound",
                    &format!("{missing}; waiting for it until 2026-11-22T10:05:00Z, then Stalled"),
                    5,
                    &now,
                ),
                cond(
                    "Stalled",
                    "False",
                    "Waiting",
                    "not stalled yet: waiting until 2026-11-22T10:05:00Z (see Reconciling)",
                    5,
                    &earlier,
                ),
                not_published(&now),
            ],
        ]
        .concat(),
        resolved: Some(last_good.clone()),
        target: Some("anthropic/claude".into()),
    };
    assert_eq!(status_of(&m, &c, "smart", &now), waiting);
    assert_eq!(
        stall_deadline(&waiting.conditions, DEFAULT_STALL_AFTER),
        Some("2026-11-22T10:05:00Z".parse().expect("time")),
        "the controller looks again then"
    );

    // Until the deadline the same status: nothing to write.
    m.aliases[0].status = Some(waiting.clone());
    assert_eq!(status_of(&m, &c, "smart", &time("2026-11-22T10:04:59Z")), waiting);

    // At the deadline (or later, if the controller was down): stalled, saying for how long.
    let late = time("2026-11-22T10:05:01Z");
    let stalled = ModelAliasStatus {
        usage: None,
        observed_generation: Some(5),
        conditions: [
            head(&now),
            vec![
                ready(&now),
                cond(
                    "Stalled",
                    "True",
                    "ProviderNotFound",
                    &format!("{missing} (unresolved for 5m 1s, since 2026-11-22T10:00:00Z)"),
                    5,
                    &late,
                ),
                not_published(&now),
            ],
        ]
        .concat(),
        resolved: Some(last_good),
        target: Some("anthropic/claude".into()),
    };
    assert_eq!(status_of(&m, &c, "smart", &late), stalled);
    assert_eq!(stall_deadline(&stalled.conditions, DEFAULT_STALL_AFTER), None);
    m.aliases[0].status = Some(stalled.clone());
    assert_eq!(
        status_of(&m, &c, "smart", &time("2026-11-22T12:00:00Z")),
        stalled,
        "stalled stays as written"
    );

    // An edit starts a new wait.
    m.aliases[0].metadata.generation = Some(6);
    let again = status_of(&m, &c, "smart", &time("2026-11-22T12:00:00Z"));
    let reconciling = again
        .conditions
        .iter()
        .find(|c| c.type_ == "Reconciling")
        .expect("waiting again");
    assert_eq!(reconciling.last_transition_time, time("2026-11-22T12:00:00Z"));
}

#[test]
fn only_an_edit_can_fix_a_cycle_an_invalid_target_or_an_ambiguous_model_so_they_stall_at_once() {
    let now = time("2026-11-22T10:00:00Z");
    let (m, c) = world(
        "apiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: a, namespace: ml}\nspec: {type: mock, models: [m1]}\n---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: b, namespace: ml}\nspec: {type: mock, models: [m1]}\n---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: x, namespace: ml, generation: 1}\nspec: {target: y}\n---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: y, namespace: ml, generation: 1}\nspec: {target: x}\n---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: ambiguous, namespace: ml, generation: 1}\nspec: {target: m1}\n---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: bad, namespace: ml, generation: 1}\nspec: {target: 'openai/'}\n",
    );
    for (name, reason) in [
        ("x", "AliasCycle"),
        ("ambiguous", "AmbiguousTarget"),
        ("bad", "InvalidSpec"),
    ] {
        let status = status_of(&m, &c, name, &now);
        let types: Vec<(&str, &str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(types[2], ("Ready", "False", reason), "{name}: {types:?}");
        assert_eq!(
            types[3],
            ("Stalled", "True", reason),
            "{name}: no Reconciling, stalled now: {types:?}"
        );
        assert_eq!(types[4], ("Programmed", "False", "NotServed"), "{name}: {types:?}");
        assert_eq!(types.len(), 5, "{name}: {types:?}");
    }
}

#[test]
fn a_target_alias_that_may_still_come_is_waited_for() {
    let now = time("2026-11-22T10:00:00Z");
    let (m, c) = world("apiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: prod, namespace: ml, generation: 1}\nspec: {target: later}\n");
    let status = status_of(&m, &c, "prod", &now);
    let reconciling = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Reconciling")
        .expect("waiting");
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", "TargetNotFound")
    );
}

#[test]
fn programmed_follows_the_gateways_until_every_one_serves_the_published_route() {
    let now = time("2026-11-22T10:00:00Z");
    let (mut m, c) = world("apiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: fast, namespace: ml, generation: 7}\nspec: {target: openai/gpt-4o-mini}\n");
    let programmed = |status: &ModelAliasStatus| {
        let c = status.conditions.last().expect("Programmed");
        assert_eq!(c.type_, "Programmed");
        (c.status.clone(), c.reason.clone(), c.message.clone())
    };
    let both_behind = two_gateways(90, 95);
    // The route is about to be written: no gateway can serve it yet.
    let first = status_in(&m, &c, "fast", &env(&now, &both_behind), None);
    assert_eq!(
        programmed(&first),
        (
            "False".into(),
            "Pending".into(),
            "served by 0/2 gateways at generation 7; waiting for gw-a, gw-b".into()
        )
    );
    // Written at resourceVersion 100: gw-a's table includes it, gw-b's not yet.
    m.aliases[0].status = Some(first);
    let one = status_in(&m, &c, "fast", &env(&now, &two_gateways(100, 99)), Some(100));
    assert_eq!(
        programmed(&one),
        (
            "False".into(),
            "Pending".into(),
            "served by 1/2 gateways at generation 7; waiting for gw-b".into()
        )
    );
    m.aliases[0].status = Some(one);
    let later = time("2026-11-22T10:00:02Z");
    let both = status_in(&m, &c, "fast", &env(&later, &two_gateways(104, 100)), Some(100));
    assert_eq!(
        programmed(&both),
        (
            "True".into(),
            "Programmed".into(),
            "served by 2/2 gateways at generation 7".into()
        )
    );
    assert_eq!(
        both.conditions.last().map(|c| c.last_transition_time.clone()),
        Some(later.clone())
    );
    // Once programmed it stays as written: gateways scaling, restarting or expiring cost no
    // writes (a replica that starts later loads everything published).
    m.aliases[0].status = Some(both.clone());
    for gateways in [GatewayView::default(), two_gateways(0, 0)] {
        assert_eq!(status_in(&m, &c, "fast", &env(&now, &gateways), None), both);
    }
    // No gateway at all.
    m.aliases[0].status = None;
    let none = status_in(&m, &c, "fast", &env(&now, &GatewayView::default()), None);
    assert_eq!(programmed(&none).1, "NoGateways");
    // More laggards than are named.
    let many = GatewayView::of(
        (0..8)
            .map(|i| ServingReplica {
                name: format!("gw-{i}"),
                namespace: None,
                aliases: Some(1),
                providers: Some(1),
            })
            .collect(),
    );
    assert_eq!(
        programmed(&status_in(&m, &c, "fast", &env(&now, &many), None)).2,
        "served by 0/8 gateways at generation 7; waiting for gw-0, gw-1, gw-2, gw-3, gw-4 and 3 more"
    );
}

#[test]
fn a_weighted_split_shows_its_targets() {
    let now = time("2026-11-22T10:00:00Z");
    let (m, c) = world("apiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: ab, namespace: ml, generation: 1}\nspec: {targets: [{target: openai/a, weight: 80}, {target: openai/b, weight: 20}]}\n");
    assert_eq!(
        status_of(&m, &c, "ab", &now).target.as_deref(),
        Some("openai/a 80%, openai/b 20%")
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
        usage: None,
        resolved: Some(ResolvedRoute::default()),
        ..Default::default()
    });
    let status = status_of(&m, &c, "fast2", &now);
    assert_eq!(status.resolved, None);
    assert_eq!(status.conditions[0].reason, "AliasConflict");
    assert_eq!(status.conditions[2].status, "False");
}

#[test]
fn a_provider_waits_for_its_key_and_reports_it_missing_without_showing_it() {
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
    let gateways = two_gateways(0, 0);
    let status = provider_status(
        &m.providers[0],
        c.table.providers.get(&key),
        &diagnostics,
        &env(&now, &gateways),
        Some(1),
    );
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
                cond(
                    "Reconciling",
                    "True",
                    "KeyNotFound",
                    &format!("{missing}; waiting for it until 2026-11-22T10:05:00Z, then Stalled"),
                    2,
                    &now
                ),
                cond(
                    "Stalled",
                    "False",
                    "Waiting",
                    "not stalled yet: waiting until 2026-11-22T10:05:00Z (see Reconciling)",
                    2,
                    &now
                ),
                cond(
                    "Programmed",
                    "False",
                    "NotReady",
                    "generation 2 cannot be served (see Ready)",
                    2,
                    &now
                ),
            ],
            endpoint: Some("https://api.openai.com/v1".into()),
            provider_type: Some("openai".into()),
            key_present: Some(false),
        }
    );
}

#[test]
fn a_provider_at_a_metadata_address_is_ready_with_the_warning_in_its_message() {
    let now = time("2026-11-22T10:00:00Z");
    let (m, c) = crate::compiler::compile_text(
        "apiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: imds, namespace: ml, generation: 1}\nspec: {type: openai-compatible, baseUrl: 'http://0xa9fea9fe/latest'}\n",
    );
    let key = ObjectKey::new("ml", "imds");
    let diagnostics: Vec<_> = c.diagnostics_for(&ObjectRef::provider(key.clone())).cloned().collect();
    let gateways = GatewayView::default();
    let status = provider_status(
        &m.providers[0],
        c.table.providers.get(&key),
        &diagnostics,
        &env(&now, &gateways),
        None,
    );
    let ready = &status.conditions[2];
    assert_eq!(
        (ready.type_.as_str(), ready.status.as_str(), ready.reason.as_str()),
        ("Ready", "True", "Ready")
    );
    assert_eq!(
        ready.message,
        "aliases can route to http://0xa9fea9fe/latest; warning: spec.baseUrl: baseUrl host '0xa9fea9fe' is 169.254.169.254 in another spelling, a cloud metadata service, which hands out the node's credentials: every modelgate gateway refuses to connect to it, so requests routed here fail with 502 upstream_blocked; point baseUrl at the provider's real address (or, if this is really intended, allow the address on the gateway with --allow-upstream-cidr)"
    );
}
