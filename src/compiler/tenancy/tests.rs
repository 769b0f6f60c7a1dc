//! Every tenancy rule, asserted on the exact text a user reads.

use super::*;
use crate::compiler::compile_text;

const WORLD: &str = r#"
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: mock, namespace: acme}
spec: {type: mock}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: gpt-3.5-turbo, namespace: acme, labels: {tier: starter}}
spec: {target: mock/gpt-3.5-turbo, pricing: {inputPerMillionTokens: "0.50", outputPerMillionTokens: "1.50"}}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: fast, namespace: acme}
spec: {target: gpt-3.5-turbo}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: other-ns, namespace: elsewhere, labels: {tier: starter}}
spec: {target: mock/x}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: mock, namespace: elsewhere}
spec: {type: mock}
"#;

/// Compiled with the teams' access from their specs (`Manifests::compile` adds it).
fn compiled(extra: &str) -> crate::compiler::Compiled {
    compile_text(&format!("{WORLD}---\n{extra}")).1
}

fn said(compiled: &crate::compiler::Compiled) -> Vec<String> {
    compiled.diagnostics.iter().map(ToString::to_string).collect()
}

#[test]
fn groups_grant_named_and_selected_aliases_and_teams_get_their_groups() {
    let c = compiled(&format!(
        r#"
apiVersion: modelgate.dev/v1alpha1
kind: AccessGroup
metadata: {{name: starter-models, namespace: acme}}
spec: {{description: Models for starter plan, aliases: [fast], aliasSelector: {{matchLabels: {{tier: starter}}}}}}
---
apiVersion: modelgate.dev/v1alpha1
kind: Team
metadata: {{name: newclient-prod, namespace: acme}}
spec:
  displayName: Production
  organization: org_newclient
  accessGroups: [starter-models]
  credits: {{allocated: "1000.00", currency: USD, period: Monthly}}
  limits: {{requestsPerMinute: 600, tokensPerMinute: 200000, maxParallelRequests: 20}}
---
apiVersion: v1
kind: Secret
metadata: {{name: key-ci, namespace: acme, labels: {{modelgate.dev/api-key: "true", modelgate.dev/team: newclient-prod}}}}
type: modelgate.dev/api-key
stringData: {{keyHash: "{}"}}
"#,
        key_hash("mg-1")
    ));
    assert_eq!(said(&c), Vec::<String>::new());
    let team = &c.access.teams[0];
    // The selector matches only ModelAliases in the group's namespace.
    assert_eq!(team.aliases, ["fast", "gpt-3.5-turbo"]);
    assert_eq!(
        team.credits,
        Some(CreditPolicy {
            allocated: 1_000 * NANOS_PER_USD,
            period: crate::crd::Period::Monthly
        })
    );
    assert_eq!(team.keys, 1);
    assert_eq!(
        c.access.keys[0].digest,
        parse_key_hash(&key_hash("mg-1")).expect("hash")
    );
    // `fast` has no price of its own: it costs what the alias it routes to costs.
    let price = c.table.route("fast").and_then(|r| r.pricing.as_ref()).map(|(_, p)| *p);
    assert_eq!(price.map(|p| (p.input, p.output)), Some((500_000, 1_500_000)));
}

#[test]
fn missing_aliases_groups_and_teams_and_bad_keys_are_reported_on_their_objects() {
    let c = compiled(&format!(
        r#"
apiVersion: modelgate.dev/v1alpha1
kind: AccessGroup
metadata: {{name: g, namespace: acme}}
spec: {{aliases: [fast, gpt-5, claude]}}
---
apiVersion: modelgate.dev/v1alpha1
kind: Team
metadata: {{name: t, namespace: acme}}
spec: {{accessGroups: [g, premium]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: k1, namespace: acme, labels: {{modelgate.dev/api-key: "true", modelgate.dev/team: nobody}}}}
stringData: {{keyHash: "{hash}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: k2, namespace: acme, labels: {{modelgate.dev/api-key: "true", modelgate.dev/team: t}}}}
stringData: {{keyHash: "md5:abc"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: k3, namespace: acme, labels: {{modelgate.dev/api-key: "true", modelgate.dev/team: t}}}}
stringData: {{keyHash: "{hash}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: k4, namespace: acme, labels: {{modelgate.dev/api-key: "true", modelgate.dev/team: t}}}}
stringData: {{keyHash: "{hash}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: k5, namespace: acme}}
type: modelgate.dev/api-key
stringData: {{keyHash: "{hash}"}}
"#,
        hash = key_hash("mg-2")
    ));
    assert_eq!(
        said(&c),
        [
            "AccessGroup acme/g: spec.aliases: no ModelAlias serves 'gpt-5', 'claude'; create them or remove them from spec.aliases (teams are not granted missing aliases)",
            "Team acme/t: spec.accessGroups: AccessGroup 'premium' not found in namespace 'acme' (it has: g); create it or fix spec.accessGroups: the team's keys cannot call those aliases",
            "Secret acme/k1: metadata.labels: Team 'nobody' does not exist in namespace 'acme'; create it or fix the modelgate.dev/team label: this key is refused",
            "Secret acme/k2: data.keyHash: keyHash must be sha256:<64 hex digits> of the key; create key Secrets with `modelgate keys create`",
            "Secret acme/k4: data.keyHash: Secret acme/k3 holds the same key; a key belongs to one team: create a new key for this Secret",
            "Secret acme/k5: metadata.labels: the API key has no modelgate.dev/team label; label it with the name of a Team in namespace 'acme'",
        ]
    );
    assert_eq!(c.access.teams[0].aliases, ["fast"], "what exists is still granted");
    assert_eq!(c.access.keys.len(), 1);
}

#[test]
fn a_malformed_price_is_an_invalid_spec_of_the_alias() {
    let (_, c) = compile_text(&format!(
        "{WORLD}---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: bad, namespace: acme}}\nspec: {{target: mock/m, pricing: {{inputPerMillionTokens: \"2,50\", outputPerMillionTokens: \"1\"}}}}\n"
    ));
    assert_eq!(
        said(&c),
        ["ModelAlias acme/bad: spec.pricing.inputPerMillionTokens: '2,50' must be a decimal number of US dollars such as 2.50 or 0.075 (at most 6 decimals)"]
    );
    assert!(c.table.route("bad").is_none(), "not served until fixed");
}
