//! A plan as multi-document YAML: a header that says which Secrets to create (never their
//! values), the LLMProviders, then the ModelAliases, checked by the compiler before printing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::families::KeySource;
use super::plan::{kube_name, Plan, PlannedProvider};
use super::{Finding, ImportError, ImportOptions, Imported, KeyMode, Level, Source};
use crate::compiler::Severity;
use crate::crd::{
    AccessGroup, AccessGroupSpec, ApiKeySource, AwsCredentials, AzureSettings, BedrockSettings, LLMProvider,
    LLMProviderSpec, ModelAlias, ProviderType, SecretKeyRef, SecretNameRef, Timeouts,
};
use crate::manifest::{parse_documents, Manifests};

/// The label credential Secrets need (see `kubernetes::CREDENTIAL_LABEL`).
const CREDENTIAL_LABEL: &str = "modelgate.dev/credential";

/// A Secret the user must create, described without its value.
struct SecretToCreate {
    /// `--from-literal` arguments, e.g. `apiKey="$OPENAI_API_KEY"`.
    literals: Vec<String>,
    /// Why (for a key found literally in the input: where it was).
    note: Option<String>,
}

pub fn write(mut plan: Plan, source: Source, options: &ImportOptions) -> Result<Imported, ImportError> {
    let mut secrets: BTreeMap<String, SecretToCreate> = BTreeMap::new();
    let mut documents = Vec::new();
    let providers = std::mem::take(&mut plan.providers);
    for p in &providers {
        let spec = provider_spec(p, options.keys, &mut secrets, &mut plan);
        let mut object = LLMProvider::new(&p.name, spec);
        object.metadata.namespace = options.namespace.clone();
        documents.push(to_yaml(&object)?);
    }
    let mut used_names = BTreeSet::new();
    for alias in &plan.aliases {
        let name = unique(kube_name(&alias.name), &mut used_names);
        let mut spec = alias.spec.clone();
        if name != alias.name {
            spec.alias = Some(alias.name.clone());
        }
        let mut object = ModelAlias::new(&name, spec);
        object.metadata.namespace = options.namespace.clone();
        documents.push(to_yaml(&object)?);
    }
    for (group, aliases) in &plan.access_groups {
        let mut object = AccessGroup::new(
            group,
            AccessGroupSpec {
                description: None,
                aliases: Some(aliases.clone()),
                alias_selector: None,
            },
        );
        object.metadata.namespace = options.namespace.clone();
        documents.push(to_yaml(&object)?);
    }
    let counts = Counts {
        providers: providers.len(),
        aliases: plan.aliases.len(),
        access_groups: plan.access_groups.len(),
    };
    let mut yaml = header(&plan.file, source, options, &secrets, &counts);
    for document in &documents {
        yaml.push_str("---\n");
        yaml.push_str(document);
    }
    check(&yaml, &mut plan)?;
    Ok(Imported {
        yaml,
        findings: plan.findings,
        providers: counts.providers,
        aliases: counts.aliases,
        access_groups: counts.access_groups,
    })
}

/// How many objects of each kind an import writes.
struct Counts {
    providers: usize,
    aliases: usize,
    access_groups: usize,
}

fn unique(base: String, used: &mut BTreeSet<String>) -> String {
    let base = if base.is_empty() { "alias".to_string() } else { base };
    let mut name = base.clone();
    let mut n = 2;
    while !used.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

fn provider_spec(
    p: &PlannedProvider,
    mode: KeyMode,
    secrets: &mut BTreeMap<String, SecretToCreate>,
    plan: &mut Plan,
) -> LLMProviderSpec {
    let u = &p.upstream;
    let api_key = u.key.as_ref().map(|key| match (key, mode) {
        (KeySource::Env(name), KeyMode::Env) => ApiKeySource {
            secret_ref: None,
            env: Some(name.clone()),
        },
        (KeySource::Env(name), KeyMode::Secret) => {
            let secret = kube_name(name);
            secrets.entry(secret.clone()).or_insert_with(|| SecretToCreate {
                literals: vec![format!("apiKey=\"${name}\"")],
                note: None,
            });
            secret_ref(secret)
        }
        (KeySource::Literal { location }, _) => {
            let secret = format!("{}-inline-api-key", p.name);
            secrets.entry(secret.clone()).or_insert_with(|| SecretToCreate {
                literals: vec!["apiKey='<the key>'".to_string()],
                note: Some(format!(
                    "the key written literally at {location} (not printed; rotate it if the file was shared)"
                )),
            });
            secret_ref(secret)
        }
    });
    let credentials = match (&u.aws_keys, mode) {
        (Some((id, secret_var)), KeyMode::Secret) => {
            let secret = format!("{}-aws-credentials", p.name);
            secrets.entry(secret.clone()).or_insert_with(|| SecretToCreate {
                literals: vec![
                    format!("accessKeyId=\"${id}\""),
                    format!("secretAccessKey=\"${secret_var}\""),
                ],
                note: None,
            });
            Some(AwsCredentials {
                secret_ref: SecretNameRef { name: secret },
            })
        }
        (Some((id, secret_var)), KeyMode::Env) => {
            if id != "AWS_ACCESS_KEY_ID" || secret_var != "AWS_SECRET_ACCESS_KEY" {
                plan.warn(
                    &format!("LLMProvider {}", p.name),
                    format!("with --keys env the gateway reads AWS credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or IRSA), not from {id} and {secret_var}"),
                );
            }
            None
        }
        (None, _) => None,
    };
    LLMProviderSpec {
        provider_type: u.kind,
        base_url: u.base_url.clone().filter(|_| u.kind != ProviderType::Bedrock),
        api_key,
        models: Some(p.models.iter().cloned().collect()),
        headers: (!u.headers.is_empty()).then(|| u.headers.clone()),
        timeouts: u.timeout.clone().map(|request| Timeouts {
            request: Some(request),
            ..Timeouts::default()
        }),
        anthropic: None,
        azure: u
            .azure_api_version
            .clone()
            .map(|v| AzureSettings { api_version: Some(v) }),
        bedrock: (u.kind == ProviderType::Bedrock).then(|| BedrockSettings {
            region: u.bedrock_region.clone(),
            credentials,
        }),
        tls: None,
        drop_unsupported_params: u.drop_params.then_some(true),
    }
}

fn secret_ref(name: String) -> ApiKeySource {
    ApiKeySource {
        secret_ref: Some(SecretKeyRef {
            name,
            key: "apiKey".to_string(),
        }),
        env: None,
    }
}

fn to_yaml<T: Serialize>(object: &T) -> Result<String, ImportError> {
    // Quoted for YAML 1.1 readers: kubectl would turn an unquoted `on:` into `true:`.
    serde_yaml_ng::to_string(object)
        .map(|yaml| crate::crd::quote_yaml11_booleans(&yaml))
        .map_err(|e| ImportError::Render(e.to_string()))
}

fn header(
    file: &Path,
    source: Source,
    options: &ImportOptions,
    secrets: &BTreeMap<String, SecretToCreate>,
    counts: &Counts,
) -> String {
    let mut out = String::new();
    let groups = match counts.access_groups {
        0 => String::new(),
        n => format!(", {n} AccessGroup(s)"),
    };
    let _ = writeln!(
        out,
        "# Imported from {} ({}) by `modelgate import`: {} LLMProvider(s), {} ModelAlias(es){groups}.",
        file.display(),
        source.describe(),
        counts.providers,
        counts.aliases,
    );
    let _ = writeln!(
        out,
        "# Check with `modelgate validate`, then apply with `kubectl apply -f`."
    );
    if secrets.is_empty() {
        return out;
    }
    let namespace = options
        .namespace
        .as_deref()
        .map(|n| format!(" -n {n}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "#\n# Credentials are not in this file. Create each Secret below first (labelled {CREDENTIAL_LABEL}: \"true\",\n# so the controller and gateways may read it):"
    );
    for (name, secret) in secrets {
        let _ = writeln!(out, "#");
        if let Some(note) = &secret.note {
            let _ = writeln!(out, "#   # {name}: {note}");
        }
        let literals: Vec<String> = secret.literals.iter().map(|l| format!("--from-literal={l}")).collect();
        let _ = writeln!(
            out,
            "#   kubectl create secret generic{namespace} {name} {}",
            literals.join(" ")
        );
        let _ = writeln!(
            out,
            "#   kubectl label secret{namespace} {name} {CREDENTIAL_LABEL}=true"
        );
    }
    out
}

/// Runs the output through the compiler `modelgate validate` uses; its errors fail the import.
fn check(yaml: &str, plan: &mut Plan) -> Result<(), ImportError> {
    let mut manifests = Manifests::default();
    let origin = Path::new("(imported output)");
    parse_documents(yaml, origin, &mut manifests);
    let validation = crate::validate::validate_manifests(manifests, false);
    if validation.errors() > 0 {
        return Err(ImportError::Rejected {
            lines: validation.lines.into_iter().map(|l| l.text).collect(),
        });
    }
    for line in validation.lines.iter().filter(|l| l.severity == Severity::Warning) {
        plan.findings.push(Finding {
            level: Level::Warning,
            file: plan.file.clone(),
            location: "(output)".to_string(),
            message: line.text.clone(),
        });
    }
    Ok(())
}
