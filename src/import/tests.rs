//! The importers on the reference documents' own examples (tests/import-cases), realistic
//! configs, and broken inputs.

use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use super::*;

fn case(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/import-cases")
        .join(name);
    std::fs::read_to_string(path).expect("fixture")
}

fn import_with(source: Source, name: &str, keys: KeyMode) -> Imported {
    let options = ImportOptions { keys, namespace: None };
    match import_text(source, &case(name), Path::new(name), &options) {
        Ok(imported) => imported,
        Err(ImportError::Invalid { findings, .. }) => {
            panic!(
                "{name}: {}",
                findings.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
            )
        }
        Err(e) => panic!("{name}: {e}"),
    }
}

fn import(source: Source, name: &str) -> Imported {
    import_with(source, name, KeyMode::Secret)
}

fn failure(source: Source, name: &str) -> Vec<String> {
    match import_text(source, &case(name), Path::new(name), &ImportOptions::default()) {
        Err(ImportError::Invalid { findings, .. }) => findings
            .iter()
            .filter(|f| f.level == Level::Error)
            .map(ToString::to_string)
            .collect(),
        Err(e) => panic!("{name}: unexpected error {e}"),
        Ok(i) => panic!("{name}: imported although broken:\n{}", i.yaml),
    }
}

/// The documents of the output.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("output is YAML"))
        .collect()
}

fn spec_of<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind && (d["metadata"]["name"] == name || (kind == "ModelAlias" && d["spec"]["alias"] == name))
        })
        .map(|d| &d["spec"])
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn count(docs: &[Value], kind: &str) -> usize {
    docs.iter().filter(|d| d["kind"] == kind).count()
}

fn warnings(imported: &Imported) -> Vec<String> {
    imported.findings.iter().map(ToString::to_string).collect()
}

#[test]
fn arch_basic_example_maps_every_alias_to_its_provider_model() {
    let out = import(Source::Arch, "arch-basic.yaml");
    let docs = documents(&out.yaml);
    assert_eq!(
        spec_of(&docs, "ModelAlias", "arch.summarize.v1")["target"],
        "openai/gpt-4o-mini"
    );
    assert_eq!(
        spec_of(&docs, "ModelAlias", "arch.creative.v1")["target"],
        "anthropic/claude-3-5-sonnet-20241022"
    );
    assert_eq!(spec_of(&docs, "ModelAlias", "local-chat")["target"], "ollama/llama3.1");
    // Two entries with one key are one provider listing both models.
    assert_eq!(
        spec_of(&docs, "LLMProvider", "openai"),
        &json!({"type": "openai", "apiKey": {"secretRef": {"name": "openai-api-key", "key": "apiKey"}}, "models": ["gpt-4o", "gpt-4o-mini"]})
    );
    assert_eq!(
        spec_of(&docs, "LLMProvider", "ollama"),
        &json!({"type": "openai-compatible", "baseUrl": "http://host.docker.internal:11434/v1", "models": ["llama3.1"]})
    );
    // Clients that called Arch by model name keep working.
    assert_eq!(spec_of(&docs, "ModelAlias", "gpt-4o")["target"], "openai/gpt-4o");
    assert_eq!((count(&docs, "LLMProvider"), count(&docs, "ModelAlias")), (3, 11));
    assert!(out
        .yaml
        .contains("kubectl create secret generic openai-api-key --from-literal=apiKey=\"$OPENAI_API_KEY\""));
    assert!(out
        .yaml
        .contains("kubectl label secret openai-api-key modelgate.dev/credential=true"));
    assert_eq!(warnings(&out), Vec::<String>::new());
}

#[test]
fn arch_naming_examples_import_without_remarks() {
    let out = import(Source::Arch, "arch-naming.yaml");
    let docs = documents(&out.yaml);
    assert_eq!(
        spec_of(&docs, "ModelAlias", "staging.chat.v1")["target"],
        "anthropic/claude-3-5-sonnet-20241022"
    );
    assert_eq!(
        spec_of(&docs, "ModelAlias", "arch.summarize.latest")["target"],
        "openai/gpt-4o-mini"
    );
    assert_eq!(count(&docs, "ModelAlias"), 10 + 3);
    assert!(out.findings.is_empty(), "{:?}", warnings(&out));
}

#[test]
fn arch_coming_soon_features_map_to_guardrails_fallbacks_splits_and_balancing() {
    let out = import(Source::Arch, "arch-advanced.yaml");
    let docs = documents(&out.yaml);
    let reasoning = spec_of(&docs, "ModelAlias", "arch.reasoning.v1");
    assert_eq!(reasoning["target"], "groq/gpt-oss-120b");
    assert_eq!(reasoning["timeouts"], json!({"total": "5s"}));
    let rules: Vec<&Value> = reasoning["guardrails"]["content"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| &r["name"])
        .collect();
    assert_eq!(rules, vec!["pii", "secrets"]);
    assert_eq!(
        spec_of(&docs, "ModelAlias", "arch.summarize.v1")["fallbacks"],
        json!([
            {"target": "ollama/llama3.1", "on": ["rateLimited", "timeout"]},
            {"target": "anthropic/claude-3-haiku-20240307", "on": ["any"]}
        ])
    );
    assert_eq!(
        spec_of(&docs, "ModelAlias", "arch.experimental.v1")["targets"],
        json!([{"target": "openai/gpt-4o", "weight": 95}, {"target": "openai/o1-preview", "weight": 5}])
    );
    let balanced = spec_of(&docs, "ModelAlias", "high-throughput-chat");
    assert_eq!(balanced["loadBalancing"], "roundRobin");
    assert_eq!(
        balanced["targets"],
        json!([
            {"target": "openai-2/gpt-4o-mini", "weight": 34},
            {"target": "openai-3/gpt-4o-mini", "weight": 33},
            {"target": "openai-4/gpt-4o-mini", "weight": 33}
        ])
    );
    assert_eq!(
        spec_of(&docs, "LLMProvider", "openai-3")["baseUrl"],
        "https://api-2.example.com/v1"
    );
    let remarks = warnings(&out).join("\n");
    for expected in [
        "arch-advanced.yaml: model_aliases[\"arch.reasoning.v1\"].guardrails.max_cost_per_request: warning: a cost cap",
        "arch-advanced.yaml: model_aliases[\"arch.reasoning.v1\"].guardrails.block_categories[0]: warning: 'jailbreak' needs a classifier",
        "guardrails.content_filters[0]: warning: content filter 'profanity' has no built-in detector",
    ] {
        assert!(remarks.contains(expected), "missing '{expected}' in:\n{remarks}");
    }
}

#[test]
fn arch_realistic_config_keeps_names_endpoints_and_credentials() {
    let out = import(Source::Arch, "arch-realistic.yaml");
    let docs = documents(&out.yaml);
    assert_eq!(
        spec_of(&docs, "LLMProvider", "openai-prod")["apiKey"],
        json!({"secretRef": {"name": "openai-prod-key", "key": "apiKey"}})
    );
    assert_eq!(
        spec_of(&docs, "LLMProvider", "azure"),
        &json!({"type": "azure-openai", "baseUrl": "https://contoso-eu.openai.azure.com", "apiKey": {"secretRef": {"name": "azure-openai-api-key", "key": "apiKey"}}, "models": ["gpt-4o-eu"]})
    );
    let bedrock = spec_of(&docs, "LLMProvider", "bedrock");
    assert_eq!(bedrock["bedrock"], json!({"region": "us-west-2"}));
    assert_eq!(bedrock["apiKey"]["secretRef"]["name"], "aws-bearer-token-bedrock");
    assert_eq!(
        spec_of(&docs, "LLMProvider", "mistral")["baseUrl"],
        "https://api.mistral.ai/v1"
    );
    assert_eq!(
        spec_of(&docs, "LLMProvider", "vllm")["baseUrl"],
        "http://vllm.ai.svc:8000/v1"
    );
    assert_eq!(
        spec_of(&docs, "ModelAlias", "code")["target"],
        "vllm/meta-llama/Llama-3.1-8B-Instruct"
    );
    assert_eq!(spec_of(&docs, "ModelAlias", "chat.latest")["target"], "chat.default");
    assert_eq!(
        spec_of(&docs, "ModelAlias", "chat.local")["target"],
        "ollama/qwen2.5:7b"
    );
    assert_eq!(
        spec_of(&docs, "ModelAlias", "chat.default")["fallbacks"],
        json!([
            {"target": "azure/gpt-4o-eu", "on": ["rateLimited", "serverError"]},
            {"target": "bedrock/us.anthropic.claude-3-5-sonnet-20241022-v2:0", "on": ["timeout", "overloaded"]}
        ])
    );
    let remarks = warnings(&out).join("\n");
    for expected in [
        "llm_providers[0].default: warning: modelgate has no default model",
        "llm_providers[4].routing_preferences: warning: not carried over",
        "listeners: warning: not carried over",
        "prompt_targets: warning: not carried over",
        "llm_providers[5]: warning: 'qwen2.5:7b' cannot be an alias name",
    ] {
        assert!(remarks.contains(expected), "missing '{expected}' in:\n{remarks}");
    }
}

#[test]
fn litellm_docs_example_splits_by_rpm_and_keeps_aws_credentials_in_a_secret() {
    let out = import(Source::Litellm, "litellm-docs.yaml");
    let docs = documents(&out.yaml);
    assert_eq!(
        spec_of(&docs, "ModelAlias", "gpt-4o")["targets"],
        json!([{"target": "azure/gpt-4o-eu", "weight": 50}, {"target": "azure-2/gpt-4o-ca", "weight": 50}])
    );
    assert_eq!(
        spec_of(&docs, "LLMProvider", "azure"),
        &json!({"type": "azure-openai", "baseUrl": "https://my-endpoint-europe-berri-992.openai.azure.com", "apiKey": {"secretRef": {"name": "azure-api-key-eu", "key": "apiKey"}}, "models": ["gpt-4o-eu"], "dropUnsupportedParams": true})
    );
    assert_eq!(
        spec_of(&docs, "LLMProvider", "bedrock")["bedrock"],
        json!({"region": "us-east-1", "credentials": {"secretRef": {"name": "bedrock-aws-credentials"}}})
    );
    assert!(out.yaml.contains("--from-literal=accessKeyId=\"$CUSTOM_AWS_ACCESS_KEY_ID\" --from-literal=secretAccessKey=\"$CUSTOM_AWS_SECRET_ACCESS_KEY\""));
    // `api_key: none` is a placeholder, not a key.
    assert_eq!(
        spec_of(&docs, "LLMProvider", "openai"),
        &json!({"type": "openai-compatible", "baseUrl": "http://0.0.0.0:4000/v1", "models": ["facebook/opt-125m"], "dropUnsupportedParams": true})
    );
    assert_eq!(
        spec_of(&docs, "ModelAlias", "vllm-models")["target"],
        "openai/facebook/opt-125m"
    );
    assert!(warnings(&out)
        .join("\n")
        .contains("litellm-docs.yaml: general_settings: warning: proxy server settings are not imported"));
}

#[test]
fn litellm_realistic_config_maps_groups_aliases_fallbacks_and_policies() {
    let out = import(Source::Litellm, "litellm-realistic.yaml");
    let docs = documents(&out.yaml);
    let gpt4o = spec_of(&docs, "ModelAlias", "gpt-4o");
    assert_eq!(
        gpt4o["targets"],
        json!([
            {"target": "azure/gpt-4o", "weight": 60},
            {"target": "azure-2/gpt-4o", "weight": 20},
            {"target": "openai/gpt-4o", "weight": 20}
        ])
    );
    assert_eq!(
        gpt4o["fallbacks"],
        json!([{"target": "claude-sonnet", "on": ["any"]}, {"target": "gemini-flash", "on": ["contextWindowExceeded"]}])
    );
    assert_eq!(gpt4o["retry"], json!({"attempts": 2}));
    // kubectl and Helm read YAML 1.1, where a bare `on:` key is the boolean true.
    assert!(out.yaml.contains("'on':"), "{}", out.yaml);
    assert!(!out
        .yaml
        .lines()
        .any(|l| l.trim_start() == "on:" || l.trim_start().starts_with("on: ")));
    assert_eq!(
        gpt4o["outlierDetection"],
        json!({"consecutiveFailures": 3, "ejectionTime": "30s"})
    );
    assert_eq!(
        spec_of(&docs, "ModelAlias", "gpt-4o-mini")["fallbacks"],
        json!([{"target": "llama3", "on": ["any"]}, {"target": "gpt-4o-128k", "on": ["contextWindowExceeded"]}])
    );
    assert_eq!(spec_of(&docs, "ModelAlias", "gpt-4")["target"], "gpt-4o");
    assert_eq!(spec_of(&docs, "ModelAlias", "claude-3-5-sonnet")["hidden"], true);
    assert_eq!(
        spec_of(&docs, "ModelAlias", "claude-sonnet")["description"],
        "Claude for long documents"
    );
    let azure = spec_of(&docs, "LLMProvider", "azure");
    assert_eq!(azure["azure"], json!({"apiVersion": "2024-10-21"}));
    assert_eq!(azure["timeouts"], json!({"request": "60s"}));
    assert_eq!(
        spec_of(&docs, "LLMProvider", "anthropic")["timeouts"],
        json!({"request": "120s"})
    );
    assert_eq!(
        spec_of(&docs, "LLMProvider", "ollama")["baseUrl"],
        "http://ollama.ai.svc:11434/v1"
    );
    assert_eq!(
        spec_of(&docs, "LLMProvider", "bedrock")["models"],
        json!(["us.amazon.nova-pro-v1:0"])
    );
    assert_eq!(
        spec_of(&docs, "LLMProvider", "groq")["baseUrl"],
        "https://api.groq.com/openai/v1"
    );
    let remarks = warnings(&out).join("\n");
    for expected in [
        "model_list[8].litellm_params.temperature: warning: not carried over",
        "litellm_settings.content_policy_fallbacks: warning: not carried over",
        "router_settings.allowed_fails: warning: allowed_fails / cooldown_time become outlierDetection",
    ] {
        assert!(remarks.contains(expected), "missing '{expected}' in:\n{remarks}");
    }
}

#[test]
fn litellm_literal_keys_are_never_printed_and_become_one_secret_reference() {
    let out = import(Source::Litellm, "litellm-literal-key.yaml");
    assert!(!out.yaml.contains("sk-proj"), "{}", out.yaml);
    assert!(!warnings(&out).join("\n").contains("sk-proj"));
    let docs = documents(&out.yaml);
    assert_eq!(count(&docs, "LLMProvider"), 1);
    assert_eq!(
        spec_of(&docs, "LLMProvider", "openai")["apiKey"],
        json!({"secretRef": {"name": "openai-inline-api-key", "key": "apiKey"}})
    );
    assert_eq!(
        warnings(&out)[0],
        "litellm-literal-key.yaml: model_list[0].litellm_params.api_key: warning: an API key is written in the file: it is not printed; the provider refers to a Secret instead (see the output's header)"
    );
    assert!(out
        .yaml
        .contains("# openai-inline-api-key: the key written literally at model_list[0].litellm_params.api_key"));
}

#[test]
fn env_key_mode_writes_api_key_env() {
    let out = import_with(Source::Litellm, "litellm-docs.yaml", KeyMode::Env);
    let docs = documents(&out.yaml);
    assert_eq!(
        spec_of(&docs, "LLMProvider", "azure")["apiKey"],
        json!({"env": "AZURE_API_KEY_EU"})
    );
    assert_eq!(
        spec_of(&docs, "LLMProvider", "bedrock")["bedrock"],
        json!({"region": "us-east-1"})
    );
    assert!(!out.yaml.contains("kubectl create secret"));
}

#[test]
fn alias_api_list_keeps_descriptions_and_disabled_aliases() {
    let out = import(Source::AliasApi, "alias-api-list.json");
    let docs = documents(&out.yaml);
    assert_eq!(
        spec_of(&docs, "ModelAlias", "old-model"),
        &json!({"description": "Disabled: kept for re-enabling", "active": false, "target": "openai/gpt-3.5-turbo"})
    );
    assert_eq!(
        spec_of(&docs, "ModelAlias", "claude-3-opus")["target"],
        "anthropic/claude-3-opus-20240229"
    );
    assert_eq!(
        spec_of(&docs, "LLMProvider", "anthropic")["apiKey"],
        json!({"secretRef": {"name": "anthropic-api-key", "key": "apiKey"}})
    );
    assert!(out.findings.is_empty(), "{:?}", warnings(&out));
}

#[test]
fn alias_api_examples_with_comments_and_single_entries_import() {
    let hybrid = documents(&import(Source::AliasApi, "alias-api-hybrid.json").yaml);
    assert_eq!(count(&hybrid, "ModelAlias"), 7);
    assert_eq!(
        spec_of(&hybrid, "ModelAlias", "gpt-3.5-turbo")["target"],
        "openai/gpt-3.5-turbo"
    );
    let providers = documents(&import(Source::AliasApi, "alias-api-providers.json").yaml);
    assert_eq!(spec_of(&providers, "LLMProvider", "gemini")["type"], "gemini");
    let create = import(Source::AliasApi, "alias-api-create.json");
    assert!(create.findings.is_empty(), "{:?}", warnings(&create));
    let created = documents(&create.yaml);
    assert_eq!(count(&created, "AccessGroup"), 2);
    assert_eq!(
        spec_of(&created, "AccessGroup", "gpt-models")["aliases"],
        json!(["gpt-4"])
    );
    assert_eq!(
        spec_of(&created, "AccessGroup", "premium-models")["aliases"],
        json!(["gpt-4"])
    );
}

#[test]
fn alias_api_access_groups_collect_their_aliases_and_bad_ones_are_named() {
    let text = r#"{"aliases": [
        {"alias": "fast", "litellm_model": "openai/gpt-4o-mini", "access_groups": ["Starter Models", "all"]},
        {"alias": "smart", "litellm_model": "openai/gpt-4o", "access_groups": ["all"]}
    ]}"#;
    let options = ImportOptions {
        keys: KeyMode::Secret,
        namespace: Some("acme".to_string()),
    };
    let out = import_text(Source::AliasApi, text, Path::new("groups.json"), &options).expect("imports");
    let docs = documents(&out.yaml);
    assert_eq!(
        spec_of(&docs, "AccessGroup", "all")["aliases"],
        json!(["fast", "smart"])
    );
    assert_eq!(
        spec_of(&docs, "AccessGroup", "starter-models")["aliases"],
        json!(["fast"])
    );
    assert!(docs
        .iter()
        .filter(|d| d["kind"] == "AccessGroup")
        .all(|d| d["metadata"]["namespace"] == "acme"));
    assert_eq!(out.access_groups, 2);
    assert!(out.yaml.contains("2 AccessGroup(s)"), "{}", out.yaml);
    assert_eq!(
        warnings(&out),
        vec!["groups.json: aliases[0].access_groups[0]: warning: access group 'Starter Models' is written as AccessGroup 'starter-models' (Kubernetes names are lowercase)"]
    );
    let not_a_list = r#"{"alias": "fast", "litellm_model": "openai/gpt-4o-mini", "access_groups": "all"}"#;
    match import_text(Source::AliasApi, not_a_list, Path::new("groups.json"), &options) {
        Err(ImportError::Invalid { findings, .. }) => assert_eq!(
            findings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["groups.json: access_groups: error: access_groups must be a list of group names"]
        ),
        _ => panic!("a string where a list belongs is an error"),
    }
}

#[test]
fn an_alias_cycle_fails_naming_the_cycle() {
    assert_eq!(
        failure(Source::Arch, "broken-arch-cycle.yaml"),
        vec!["broken-arch-cycle.yaml: model_aliases[\"chat.v1\"]: error: alias cycle: chat.v1 -> chat.v2 -> chat.v3 -> chat.v1; an alias must end at a provider model"]
    );
}

#[test]
fn an_unknown_provider_fails_naming_its_place() {
    let errors = failure(Source::Litellm, "broken-litellm-unknown-provider.yaml");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("broken-litellm-unknown-provider.yaml: model_list[1].litellm_params.model: error: unknown provider 'frobnicate' in 'frobnicate/palm-2'; modelgate serves: openai, anthropic"),
        "{}",
        errors[0]
    );
}

#[test]
fn bad_yaml_and_json_fail_with_line_and_column() {
    let yaml = failure(Source::Litellm, "broken-litellm-bad-yaml.yaml");
    assert!(yaml[0].starts_with("broken-litellm-bad-yaml.yaml: 5:"), "{yaml:?}");
    assert!(yaml[0].contains("not valid YAML"), "{yaml:?}");
    let json = failure(Source::AliasApi, "broken-alias-api.json");
    assert!(json[0].starts_with("broken-alias-api.json: 4:"), "{json:?}");
}

#[test]
fn invalid_entries_are_each_reported() {
    let text = r#"{"aliases": [
        {"alias": "gpt-4", "litellm_model": "openai/gpt-4"},
        {"alias": "gpt-4", "litellm_model": "openai/gpt-4-turbo"},
        {"alias": "bad name", "litellm_model": "openai/gpt-4"},
        {"alias": "az", "litellm_model": "azure/gpt-4-deployment-name"},
        {"alias": "x"}
    ]}"#;
    let errors = match import_text(Source::AliasApi, text, Path::new("a.json"), &ImportOptions::default()) {
        Err(ImportError::Invalid { findings, .. }) => findings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        errors,
        vec![
            "a.json: aliases[1]: error: alias 'gpt-4' is defined twice (first at aliases[0]); keep one definition",
            "a.json: aliases[2]: error: 'bad name' cannot be a model alias: alias names may contain only letters, digits, '.', '-' and '_'",
            "a.json: aliases[3].litellm_model: error: 'azure/gpt-4-deployment-name' needs api_base (the endpoint URL) in litellm_params",
            "a.json: aliases[4]: error: alias 'x': litellm_model is missing",
        ]
    );
}

#[test]
fn weights_are_whole_percentages_adding_up_to_100() {
    use super::plan::percentages;
    assert_eq!(percentages(&[1.0, 1.0, 1.0]), vec![34, 33, 33]);
    assert_eq!(percentages(&[3.0, 1.0, 1.0]), vec![60, 20, 20]);
    assert_eq!(percentages(&[0.0, 0.0]), vec![50, 50]);
    assert_eq!(percentages(&[1000.0, 1.0]), vec![100, 0]);
}

#[test]
fn namespaces_are_set_on_every_object() {
    let options = ImportOptions {
        keys: KeyMode::Secret,
        namespace: Some("ml".to_string()),
    };
    let out = import_text(
        Source::AliasApi,
        &case("alias-api-list.json"),
        Path::new("a.json"),
        &options,
    )
    .expect("import");
    assert!(documents(&out.yaml).iter().all(|d| d["metadata"]["namespace"] == "ml"));
    assert!(out.yaml.contains("kubectl create secret generic -n ml openai-api-key"));
}
