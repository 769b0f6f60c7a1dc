//! Every compiler rule, asserted on the exact text a user reads.

use std::path::Path;

use super::*;
use crate::manifest::{parse_documents, Manifests};

const PROVIDERS: &str = r#"
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: openai, namespace: team-a}
spec:
  type: openai
  apiKey: {secretRef: {name: openai-key, key: apiKey}}
  models: [gpt-4o-mini, gpt-4o]
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: ollama, namespace: team-a}
spec: {type: openai-compatible, baseUrl: "http://ollama:11434/v1/"}
---
apiVersion: v1
kind: Secret
metadata: {name: openai-key, namespace: team-a}
stringData: {apiKey: "sk-test-SECRET-123\n"}
"#;

pub(super) fn compile_with(yaml: &str, previous: Option<&RoutingTable>) -> Compiled {
    let mut manifests = Manifests::default();
    parse_documents(
        &format!("{PROVIDERS}\n---\n{yaml}"),
        Path::new("test.yaml"),
        &mut manifests,
    );
    assert!(manifests.problems.is_empty(), "{:?}", manifests.problems);
    let env = |var: &str| (var == "SET_VAR").then(|| "from-env".to_string());
    let credentials = SecretsAndEnv {
        secrets: &manifests.secrets,
        env: Some(&env),
        view: crate::compiler::SecretView::All,
    };
    manifests.compile(&credentials, previous)
}

pub(super) fn compile_yaml(yaml: &str) -> Compiled {
    compile_with(yaml, None)
}

pub(super) fn alias(name: &str, spec: &str) -> String {
    format!("---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: {name}, namespace: team-a}}\nspec: {spec}\n")
}

/// `(object, field, reason, message)` of every diagnostic.
pub(super) fn said(compiled: &Compiled) -> Vec<(String, String, &'static str, String)> {
    compiled
        .diagnostics
        .iter()
        .map(|d| {
            (
                d.object.to_string(),
                d.field.clone(),
                d.reason.as_str(),
                d.message.clone(),
            )
        })
        .collect()
}

fn targets(compiled: &Compiled, alias: &str) -> Vec<(String, String, f64)> {
    let route = compiled
        .table
        .route(alias)
        .unwrap_or_else(|| panic!("no route for {alias}: {:?}", said(compiled)));
    route
        .targets
        .iter()
        .map(|t| (t.provider.to_string(), t.model.clone(), t.weight))
        .collect()
}

#[test]
fn provider_slash_model_targets_route_with_the_key() {
    let compiled = compile_yaml(&alias("fast-model", "{target: openai/gpt-4o-mini}"));
    assert_eq!(said(&compiled), vec![]);
    assert_eq!(
        targets(&compiled, "fast-model"),
        vec![("team-a/openai".into(), "gpt-4o-mini".into(), 100.0)]
    );
    let endpoint = &compiled.table.providers[&ObjectKey::new("team-a", "openai")];
    assert_eq!(endpoint.base_url, "https://api.openai.com/v1");
    assert_eq!(
        endpoint.api_key.as_ref().map(|k| k.expose()),
        Some("sk-test-SECRET-123")
    );
    let ollama = &compiled.table.providers[&ObjectKey::new("team-a", "ollama")];
    assert_eq!(ollama.base_url, "http://ollama:11434/v1");
}

#[test]
fn model_ids_may_contain_slashes() {
    let compiled = compile_yaml(&alias("llama", "{target: ollama/meta-llama/Llama-3.1-8B}"));
    assert_eq!(
        targets(&compiled, "llama"),
        vec![("team-a/ollama".into(), "meta-llama/Llama-3.1-8B".into(), 100.0)]
    );
}

#[test]
fn spec_alias_overrides_the_object_name() {
    let compiled = compile_yaml(&alias("gpt-4o", "{alias: GPT_4o, target: openai/gpt-4o}"));
    assert!(compiled.table.route("GPT_4o").is_some());
    assert!(compiled.table.route("gpt-4o").is_none());
}

#[test]
fn a_bare_model_listed_by_one_provider_resolves_to_it() {
    let compiled = compile_yaml(&alias("arch.summarize.v1", "{target: gpt-4o-mini}"));
    assert_eq!(
        targets(&compiled, "arch.summarize.v1"),
        vec![("team-a/openai".into(), "gpt-4o-mini".into(), 100.0)]
    );
}

#[test]
fn a_bare_name_equal_to_the_alias_itself_means_the_listed_model() {
    let compiled = compile_yaml(&alias("gpt-4o", "{target: gpt-4o}"));
    assert_eq!(said(&compiled), vec![]);
    assert_eq!(
        targets(&compiled, "gpt-4o"),
        vec![("team-a/openai".into(), "gpt-4o".into(), 100.0)]
    );
}

#[test]
fn an_unknown_bare_name_says_what_to_write() {
    let compiled = compile_yaml(&alias("local-chat", "{target: llama3.1}"));
    assert_eq!(
        said(&compiled),
        vec![(
            "ModelAlias team-a/local-chat".into(),
            "spec.target".into(),
            "TargetNotFound",
            "target 'llama3.1' is neither an alias nor a model listed in spec.models of an LLMProvider in namespace 'team-a'; write <provider>/llama3.1 (providers there: ollama, openai) or create the alias".into()
        )]
    );
    assert!(compiled.table.route("local-chat").is_none());
}

#[test]
fn a_bare_model_listed_twice_is_ambiguous() {
    let other = "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: azure, namespace: team-a}\nspec: {type: openai-compatible, baseUrl: 'https://example.test/v1', models: [gpt-4o]}\n";
    let compiled = compile_yaml(&format!("{other}{}", alias("smart", "{target: gpt-4o}")));
    assert_eq!(
        said(&compiled),
        vec![(
            "ModelAlias team-a/smart".into(),
            "spec.target".into(),
            "AmbiguousTarget",
            "model 'gpt-4o' is listed by 2 LLMProviders in namespace 'team-a'; write one of azure/gpt-4o, openai/gpt-4o to choose".into()
        )]
    );
}

#[test]
fn a_missing_provider_is_named() {
    let compiled = compile_yaml(&alias("creative", "{target: anthropic/claude-3-5-sonnet}"));
    assert_eq!(
        said(&compiled),
        vec![(
            "ModelAlias team-a/creative".into(),
            "spec.target".into(),
            "ProviderNotFound",
            "LLMProvider 'anthropic' does not exist in namespace 'team-a' (providers there: ollama, openai); create it or fix the target".into()
        )]
    );
}

#[test]
fn a_model_outside_the_allow_list_is_refused() {
    let compiled = compile_yaml(&alias("reasoning", "{target: openai/o1}"));
    assert_eq!(
        said(&compiled)[0].3,
        "LLMProvider team-a/openai does not list model 'o1' in spec.models (it lists: gpt-4o-mini, gpt-4o); add it there or pick a listed model"
    );
    assert_eq!(said(&compiled)[0].2, "ModelNotServed");
}

#[test]
fn chains_resolve_to_the_concrete_model_and_record_the_path() {
    let compiled = compile_yaml(&format!(
        "{}{}",
        alias("prod.chat.v1", "{target: smart}"),
        alias("smart", "{target: openai/gpt-4o}")
    ));
    assert_eq!(said(&compiled), vec![]);
    let route = compiled.table.route("prod.chat.v1").expect("route");
    assert_eq!(route.targets[0].chain, vec!["prod.chat.v1", "smart"]);
    assert_eq!(route.targets[0].model, "gpt-4o");
}

#[test]
fn cycles_are_rejected_with_the_whole_cycle_named() {
    let compiled = compile_yaml(&format!(
        "{}{}{}{}",
        alias("a", "{target: b}"),
        alias("b", "{target: c}"),
        alias("c", "{target: a}"),
        alias("outside", "{target: a}")
    ));
    let messages = said(&compiled);
    let cycle = "aliases refer to each other in a cycle: a -> b -> c -> a; point one of them at <provider>/<model>";
    for name in ["a", "b", "c"] {
        assert!(
            messages.contains(&(
                format!("ModelAlias team-a/{name}"),
                "spec.target".into(),
                "AliasCycle",
                cycle.into()
            )),
            "{name}: {messages:?}"
        );
    }
    assert!(messages.contains(&(
        "ModelAlias team-a/outside".into(),
        "spec.target".into(),
        "TargetAliasInvalid",
        "target 'a' is an alias in a cycle (a -> b -> c -> a); fix that cycle or point this alias elsewhere".into()
    )));
    assert!(compiled.table.routes.is_empty());
}

#[test]
fn weighted_splits_must_add_up_to_100() {
    let compiled = compile_yaml(&alias(
        "arch.v1",
        "{targets: [{target: ollama/llama3.1, weight: 70}, {target: openai/gpt-4o-mini, weight: 20}]}",
    ));
    assert_eq!(
        said(&compiled),
        vec![(
            "ModelAlias team-a/arch.v1".into(),
            "spec.targets".into(),
            "InvalidSpec",
            "the weights of targets must add up to 100, but 70 + 20 = 90".into()
        )]
    );
}

#[test]
fn nested_splits_multiply_out_and_merge() {
    let compiled = compile_yaml(&format!(
        "{}{}",
        alias(
            "canary",
            "{targets: [{target: stable, weight: 50}, {target: openai/gpt-4o, weight: 50}]}"
        ),
        alias(
            "stable",
            "{targets: [{target: openai/gpt-4o-mini, weight: 80}, {target: openai/gpt-4o, weight: 20}]}"
        )
    ));
    assert_eq!(said(&compiled), vec![]);
    assert_eq!(
        targets(&compiled, "canary"),
        vec![
            ("team-a/openai".into(), "gpt-4o-mini".into(), 40.0),
            ("team-a/openai".into(), "gpt-4o".into(), 60.0)
        ]
    );
}

#[test]
fn exactly_one_of_target_or_targets() {
    let both = compile_yaml(&alias(
        "x",
        "{target: openai/gpt-4o, targets: [{target: openai/gpt-4o, weight: 100}]}",
    ));
    assert_eq!(
        said(&both)[0].3,
        "set exactly one of target (a single model) or targets (a weighted split), not both"
    );
    let neither = compile_yaml(&alias("x", "{description: nothing}"));
    assert_eq!(
        said(&neither)[0].3,
        "set exactly one of target (a single model) or targets (a weighted split); neither is set"
    );
}

#[test]
fn invalid_alias_names_are_refused() {
    let compiled = compile_yaml(&alias("x", "{alias: 'fast model', target: openai/gpt-4o}"));
    assert_eq!(
        said(&compiled),
        vec![(
            "ModelAlias team-a/x".into(),
            "spec.alias".into(),
            "InvalidSpec",
            "alias 'fast model' contains ' '; an alias may contain only letters, digits, '.', '-' and '_' (for example arch.summarize.v1)".into()
        )]
    );
}

#[test]
fn disabled_aliases_and_aliases_routing_through_them_are_disabled() {
    let compiled = compile_yaml(&format!(
        "{}{}",
        alias("old-model", "{target: openai/gpt-4o, active: false}"),
        alias("legacy", "{target: old-model}")
    ));
    assert_eq!(
        compiled
            .table
            .route("old-model")
            .and_then(|r| r.disabled.clone())
            .as_deref(),
        Some("alias 'old-model' is disabled (spec.active is false)")
    );
    assert_eq!(
        compiled
            .table
            .route("legacy")
            .and_then(|r| r.disabled.clone())
            .as_deref(),
        Some("alias 'legacy' routes through alias 'old-model', which is disabled")
    );
    assert_eq!(said(&compiled)[0].2, "DisabledByChain");
    assert!(!compiled.has_errors());
}

#[test]
fn a_disabled_alias_with_a_broken_target_still_answers_disabled() {
    let compiled = compile_yaml(&alias("gone", "{target: nowhere/x, active: false}"));
    assert!(compiled.has_errors());
    assert!(compiled.table.route("gone").is_some_and(|r| r.disabled.is_some()));
}

#[test]
fn missing_keys_are_reported_on_the_provider_and_its_aliases() {
    let providers = r#"
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: no-secret, namespace: team-a}
spec: {type: openai, apiKey: {secretRef: {name: absent, key: apiKey}}}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: wrong-key, namespace: team-a}
spec: {type: openai, apiKey: {secretRef: {name: openai-key, key: token}}}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: no-env, namespace: team-a}
spec: {type: openai, apiKey: {env: UNSET_VAR}}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: with-env, namespace: team-a}
spec: {type: openai, apiKey: {env: SET_VAR}}
"#;
    let compiled = compile_yaml(&format!(
        "{providers}{}{}",
        alias("a", "{target: no-secret/gpt-4o}"),
        alias("b", "{target: with-env/gpt-4o}")
    ));
    let messages = said(&compiled);
    assert!(messages.contains(&(
        "LLMProvider team-a/no-secret".into(),
        "spec.apiKey".into(),
        "KeyNotFound",
        "Secret team-a/absent does not exist; create it with the key 'apiKey' or fix apiKey.secretRef".into()
    )));
    assert!(messages.contains(&(
        "LLMProvider team-a/wrong-key".into(),
        "spec.apiKey".into(),
        "KeyNotFound",
        "Secret team-a/openai-key has no key 'token' (it has: apiKey); fix apiKey.secretRef.key".into()
    )));
    assert!(messages.contains(&(
        "LLMProvider team-a/no-env".into(),
        "spec.apiKey".into(),
        "KeyNotFound",
        "environment variable UNSET_VAR is not set in the gateway's environment; export it or use apiKey.secretRef"
            .into()
    )));
    assert!(messages.contains(&(
        "ModelAlias team-a/a".into(),
        "spec.target".into(),
        "ProviderNotReady",
        "LLMProvider team-a/no-secret cannot be used: its API key is missing: Secret team-a/absent does not exist; create it with the key 'apiKey' or fix apiKey.secretRef".into()
    )));
    assert!(compiled.table.route("b").is_some());
    let text = format!("{:?}", compiled);
    assert!(
        !text.contains("sk-test-SECRET") && !text.contains("from-env"),
        "a key leaked: {text}"
    );
}

#[test]
fn provider_field_rules() {
    let compiled = compile_yaml(
        r#"
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: vllm, namespace: team-a}
spec: {type: openai-compatible}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: mocky, namespace: team-a}
spec: {type: mock, baseUrl: "http://x"}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: ftp, namespace: team-a}
spec: {type: openai, baseUrl: "ftp://x/v1", headers: {Authorization: "Bearer x"}, timeouts: {connect: "10", idle: 0s}}
"#,
    );
    let messages: Vec<(String, String, String)> = said(&compiled).into_iter().map(|(o, f, _, m)| (o, f, m)).collect();
    let expect = |o: &str, f: &str, m: &str| (o.to_string(), f.to_string(), m.to_string());
    assert_eq!(
        messages,
        vec![
            expect("LLMProvider team-a/ftp", "spec.baseUrl", "baseUrl must be an absolute http:// or https:// URL, for example https://api.openai.com/v1 ('ftp://x/v1')"),
            expect("LLMProvider team-a/ftp", "spec.headers.Authorization", "headers must not carry credentials or signing headers: put the key in apiKey (or bedrock.credentials) instead"),
            expect("LLMProvider team-a/ftp", "spec.timeouts.connect", "'10' must be a duration such as 500ms, 10s, 5m or 1h30m"),
            expect("LLMProvider team-a/ftp", "spec.timeouts.idle", "a timeout of zero would fail every request; remove it to use the default"),
            expect("LLMProvider team-a/mocky", "spec.baseUrl", "a mock provider answers locally: remove baseUrl or choose another type"),
            expect("LLMProvider team-a/vllm", "spec.baseUrl", "baseUrl is required when type is openai-compatible (for example http://ollama.ollama.svc:11434/v1)"),
        ]
    );
}

fn aged_alias(name: &str, namespace: &str, created: &str, spec: &str) -> String {
    format!("---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: {name}, namespace: {namespace}, creationTimestamp: '{created}'}}\nspec: {spec}\n")
}

#[test]
fn the_oldest_alias_keeps_a_contested_name() {
    let team_b = "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: mock, namespace: team-b}\nspec: {type: mock}\n";
    let compiled = compile_yaml(&format!(
        "{team_b}{}{}",
        aged_alias("fast", "team-b", "2026-02-01T00:00:00Z", "{target: mock/m}"),
        aged_alias("fast", "team-a", "2026-01-01T00:00:00Z", "{target: openai/gpt-4o-mini}")
    ));
    assert_eq!(
        said(&compiled),
        vec![(
            "ModelAlias team-b/fast".into(),
            "metadata.name".into(),
            "AliasConflict",
            "alias 'fast' already exists: ModelAlias team-a/fast claimed it first and keeps serving it; give this one another name (spec.alias) or delete team-a/fast".into()
        )]
    );
    assert_eq!(
        targets(&compiled, "fast"),
        vec![("team-a/openai".into(), "gpt-4o-mini".into(), 100.0)]
    );
}

#[test]
fn a_broken_edit_keeps_the_last_good_route() {
    let good = compile_yaml(&alias("smart", "{target: openai/gpt-4o}"));
    let broken = compile_with(&alias("smart", "{target: anthropic/claude}"), Some(&good.table));
    let route = broken.table.route("smart").expect("the last good route is kept");
    assert_eq!(route.targets[0].model, "gpt-4o");
    assert_eq!(
        route.stale.as_deref(),
        Some("serving the last accepted route for 'smart' (openai/gpt-4o (100%)) until the errors above are fixed")
    );
    let reasons: Vec<&str> = broken.diagnostics.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons, vec!["ProviderNotFound", "ServingLastGood"]);
    // Deleting the alias, though, removes the route.
    let deleted = compile_with("", Some(&good.table));
    assert!(deleted.table.route("smart").is_none());
}

#[test]
fn same_second_claims_go_to_the_smaller_key_whatever_the_input_order() {
    let team_b = "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: openai, namespace: team-b}\nspec: {type: openai, models: [gpt-4o]}\n";
    let a = aged_alias("fast", "team-a", "2026-01-01T00:00:00Z", "{target: openai/gpt-4o-mini}");
    let b = aged_alias("fast", "team-b", "2026-01-01T00:00:00Z", "{target: openai/gpt-4o}");
    for order in [format!("{team_b}{a}{b}"), format!("{team_b}{b}{a}")] {
        let compiled = compile_yaml(&order);
        assert_eq!(
            compiled.table.route("fast").map(|r| r.source.namespace.as_str()),
            Some("team-a")
        );
    }
}

#[test]
fn a_secret_missing_from_the_labelled_view_may_only_lack_the_label() {
    let source = crate::crd::ApiKeySource {
        secret_ref: Some(crate::crd::SecretKeyRef {
            name: "openai-key".into(),
            key: "apiKey".into(),
        }),
        env: None,
    };
    let secrets = SecretData::new();
    let lookup = |view| {
        SecretsAndEnv {
            secrets: &secrets,
            env: None,
            view,
        }
        .lookup("ml", &source)
    };
    assert_eq!(
        lookup(SecretView::All),
        KeyLookup::Missing(
            "Secret ml/openai-key does not exist; create it with the key 'apiKey' or fix apiKey.secretRef".into()
        )
    );
    assert_eq!(
        lookup(SecretView::Labelled),
        KeyLookup::Missing(
            "Secret ml/openai-key does not exist or lacks the label modelgate.dev/credential: \"true\" (only Secrets with it are read); create it with the key 'apiKey' and that label, or add the label: kubectl label secret openai-key -n ml modelgate.dev/credential=true".into()
        )
    );
}
