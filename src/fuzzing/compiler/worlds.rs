//! The compiler's properties on small worlds dense with fallbacks, built directly rather than
//! from fuzzer bytes: five aliases that target and fall back to each other, a provider model
//! and a listed model, so fallback cycles through targets and nested fallbacks are common.
//! A fixed seed: the same worlds on every run.

use crate::crd::{Fallback, LLMProvider, LLMProviderSpec, ModelAlias, ModelAliasSpec, ProviderType};

const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

fn provider() -> LLMProvider {
    let mut provider = LLMProvider::new(
        "openai",
        LLMProviderSpec {
            provider_type: ProviderType::Mock,
            base_url: None,
            api_key: None,
            models: Some(vec!["m1".to_string()]),
            headers: None,
            timeouts: None,
            anthropic: None,
            azure: None,
            bedrock: None,
            tls: None,
            drop_unsupported_params: None,
        },
    );
    provider.metadata.namespace = Some("team-a".to_string());
    provider
}

fn reference(rng: &mut fastrand::Rng) -> String {
    match rng.u8(0..8) {
        0 => "openai/m1".to_string(),
        1 => "m1".to_string(),
        2 => "nowhere/m1".to_string(),
        _ => NAMES[rng.usize(0..NAMES.len())].to_string(),
    }
}

fn world(rng: &mut fastrand::Rng) -> Vec<ModelAlias> {
    NAMES
        .iter()
        .take(rng.usize(1..=NAMES.len()))
        .map(|name| {
            let fallbacks: Vec<Fallback> = (0..rng.usize(0..4))
                .map(|_| Fallback {
                    target: reference(rng),
                    on: None,
                    on_yaml11: None,
                })
                .collect();
            let spec = ModelAliasSpec {
                alias: None,
                description: None,
                active: (rng.u8(0..10) == 0).then_some(false),
                hidden: None,
                target: Some(reference(rng)),
                targets: None,
                load_balancing: None,
                fallbacks: (!fallbacks.is_empty()).then_some(fallbacks),
                retry: None,
                timeouts: None,
                outlier_detection: None,
                guardrails: None,
                pricing: None,
            };
            let mut alias = ModelAlias::new(name, spec);
            alias.metadata.namespace = Some("team-a".to_string());
            alias
        })
        .collect()
}

#[test]
fn worlds_dense_with_fallbacks_keep_every_compiler_property() {
    let providers = [provider()];
    let mut rng = fastrand::Rng::with_seed(7);
    for n in 0..3_000 {
        let aliases = world(&mut rng);
        let outcome = std::panic::catch_unwind(|| super::check_objects(&providers, &aliases));
        if outcome.is_err() {
            let specs: Vec<String> = aliases
                .iter()
                .map(|a| {
                    format!(
                        "{}: {}",
                        a.metadata.name.as_deref().unwrap_or(""),
                        serde_json::json!(a.spec)
                    )
                })
                .collect();
            panic!("world {n} breaks a property:\n{}", specs.join("\n"));
        }
    }
}
