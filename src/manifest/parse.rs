//! One file's YAML documents into typed objects, with every problem located.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{LoadProblem, Manifests, Origin};
use crate::compiler::rules::check_object_name;
use crate::compiler::tenancy::{ApiKeySecret, API_KEY_LABEL, API_KEY_SECRET_TYPE, KEY_HASH_FIELD, TEAM_LABEL};
use crate::compiler::{ObjectKey, ObjectKind, ObjectRef};
use crate::crd::{AccessGroup, LLMProvider, ModelAlias, Team, API_VERSION, GROUP};

/// Parses every document of one file into `manifests`.
pub fn parse_documents(text: &str, file: &Path, manifests: &mut Manifests) {
    for (n, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let origin = Origin {
            file: file.to_path_buf(),
            document: n + 1,
        };
        let value = match serde_json::Value::deserialize(document) {
            Ok(serde_json::Value::Null) => continue,
            Ok(value) => value,
            Err(e) => {
                manifests.problems.push(LoadProblem {
                    origin,
                    object: None,
                    subject: format!("document {}", n + 1),
                    field: "-".to_string(),
                    message: format!("not valid YAML: {}", yaml_error(&e, text)),
                    fatal_for_file: true,
                });
                return;
            }
        };
        parse_document(value, origin, manifests);
    }
}

/// A YAML error with its place as a line and column: for bytes it cannot read, libyaml gives
/// only a byte offset ("at position 294"), and no place at all at offset 0.
fn yaml_error(error: &serde_yaml_ng::Error, text: &str) -> String {
    let message = error.to_string();
    if let Some((before, after)) = message.split_once(" at position ") {
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(offset) = after[..digits].parse::<usize>() {
            let start = text.as_bytes()[..offset.min(text.len())]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let line = text.as_bytes()[..start].iter().filter(|&&b| b == b'\n').count() + 1;
            let column = text.get(start..offset).map_or(offset - start, |s| s.chars().count()) + 1;
            return format!("{before} at line {line} column {column}{}", &after[digits..]);
        }
    }
    match error.location() {
        Some(at) if !message.contains(" line ") => format!("{message} at line {} column {}", at.line(), at.column()),
        _ => message,
    }
}

fn parse_document(value: serde_json::Value, origin: Origin, manifests: &mut Manifests) {
    let text = |field: &str| value.get(field).and_then(|v| v.as_str()).map(str::to_string);
    let (api_version, kind) = (text("apiVersion").unwrap_or_default(), text("kind").unwrap_or_default());
    let metadata = value.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(|v| v.as_str())
        .unwrap_or("default")
        .to_string();
    let mut problem = |subject: String, object: Option<ObjectRef>, field: &str, message: String| {
        manifests.problems.push(LoadProblem {
            origin: origin.clone(),
            object,
            subject,
            field: field.to_string(),
            message,
            fatal_for_file: false,
        })
    };

    let object_kind = match kind.as_str() {
        "LLMProvider" => ObjectKind::LLMProvider,
        "ModelAlias" => ObjectKind::ModelAlias,
        "AccessGroup" => ObjectKind::AccessGroup,
        "Team" => ObjectKind::Team,
        "Secret" if api_version == "v1" => {
            return parse_secret(value, &namespace, &name, origin, manifests);
        }
        "" => {
            return problem(
                format!("document {}", origin.document),
                None,
                "kind",
                "has no kind; every document needs apiVersion and kind (LLMProvider, ModelAlias, AccessGroup, Team or Secret)".to_string(),
            )
        }
        other => {
            if api_version.starts_with(&format!("{GROUP}/")) {
                problem(
                    format!("{other} {namespace}/{name}"),
                    None,
                    "kind",
                    format!("unknown kind '{other}' in {GROUP}; the kinds are LLMProvider, ModelAlias, AccessGroup and Team"),
                );
            }
            // Other kinds (a Kustomization, a Namespace, a Deployment) may share the
            // directory; they are not ours to read.
            return;
        }
    };
    let subject = format!("{} {namespace}/{name}", object_kind.as_str());
    if name.is_empty() {
        return problem(subject, None, "metadata.name", "metadata.name is required".to_string());
    }
    let object = ObjectRef {
        kind: object_kind,
        key: ObjectKey::new(namespace.clone(), name.clone()),
    };
    if let Some(first) = manifests.origins.get(&object) {
        let message = format!(
            "{object} is defined twice: first in {} (document {}); keep one definition",
            first.file.display(),
            first.document
        );
        return problem(subject, Some(object), "metadata.name", message);
    }
    manifests.origins.insert(object.clone(), origin.clone());
    if api_version != API_VERSION {
        manifests.unreadable.push(object.clone());
        let message = format!("apiVersion is '{api_version}'; it must be {API_VERSION}");
        return problem(subject, Some(object), "apiVersion", message);
    }
    if let Err(message) = check_object_name(&name) {
        manifests.unreadable.push(object.clone());
        return problem(subject, Some(object), "metadata.name", message);
    }
    if let Err(message) = check_object_name(&namespace) {
        manifests.unreadable.push(object.clone());
        return problem(subject, Some(object), "metadata.namespace", message);
    }
    let parsed = match object_kind {
        ObjectKind::LLMProvider => typed::<LLMProvider>(value).map(|mut p| {
            p.metadata.namespace = Some(namespace.clone());
            manifests.providers.push(p);
        }),
        ObjectKind::ModelAlias => typed::<ModelAlias>(value).map(|mut a| {
            a.metadata.namespace = Some(namespace.clone());
            manifests.aliases.push(a);
        }),
        ObjectKind::AccessGroup => typed::<AccessGroup>(value).map(|mut g| {
            g.metadata.namespace = Some(namespace.clone());
            manifests.groups.push(g);
        }),
        ObjectKind::Team => typed::<Team>(value).map(|mut t| {
            t.metadata.namespace = Some(namespace.clone());
            manifests.teams.push(t);
        }),
        ObjectKind::Secret => Ok(()),
    };
    if let Err((field, message)) = parsed {
        manifests.unreadable.push(object.clone());
        problem(subject, Some(object), &field, message);
    }
}

/// Deserialises strictly: a wrong type or an unknown field is an error naming its path.
fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, (String, String)> {
    let mut unknown: Vec<String> = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let result: Result<T, _> = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record));
    let parsed = result.map_err(|e| {
        let field = e.path().to_string();
        (
            if field == "." { "-".to_string() } else { field },
            e.into_inner().to_string(),
        )
    })?;
    // The derived root types read apiVersion and kind themselves; status is the server's.
    let unexpected = unknown
        .iter()
        .find(|f| !matches!(f.as_str(), "apiVersion" | "kind") && !f.starts_with("status"));
    match unexpected {
        Some(field) if field.split('.').any(str::is_empty) => {
            let field = named_empty_keys(field);
            Err((
                field.clone(),
                format!("a key with no name at '{field}' (an empty or null key, such as a `?` line with nothing after it); remove it"),
            ))
        }
        Some(field) => Err((
            field.clone(),
            format!("unknown field '{field}'; check its spelling against `modelgate crds` or `kubectl explain`"),
        )),
        _ => Ok(parsed),
    }
}

/// A field path with each empty key spelled out (`spec.` → `spec.<empty key>`).
fn named_empty_keys(path: &str) -> String {
    path.split('.')
        .map(|key| if key.is_empty() { "<empty key>" } else { key })
        .collect::<Vec<_>>()
        .join(".")
}

fn parse_secret(value: serde_json::Value, namespace: &str, name: &str, origin: Origin, manifests: &mut Manifests) {
    let secret: Secret = match serde_json::from_value(value) {
        Ok(secret) => secret,
        Err(e) => {
            // The message from serde names no key values, only the shape that was wrong.
            manifests.problems.push(LoadProblem {
                origin,
                object: None,
                subject: format!("Secret {namespace}/{name}"),
                field: "data".to_string(),
                message: format!("cannot read the Secret (data values must be base64): {e}"),
                fatal_for_file: false,
            });
            return;
        }
    };
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    let labels = secret.metadata.labels.unwrap_or_default();
    if secret.type_.as_deref() == Some(API_KEY_SECRET_TYPE) || labels.get(API_KEY_LABEL).is_some_and(|v| v == "true") {
        manifests.api_keys.push(ApiKeySecret {
            key: crate::compiler::ObjectKey::new(namespace, name),
            team: labels.get(TEAM_LABEL).cloned(),
            key_hash: data.get(KEY_HASH_FIELD).cloned(),
        });
        manifests.origins.insert(
            ObjectRef::new(ObjectKind::Secret, crate::compiler::ObjectKey::new(namespace, name)),
            origin,
        );
        return;
    }
    let key = (namespace.to_string(), name.to_string());
    manifests.secret_origins.insert(key.clone(), origin);
    manifests.secrets.insert(key, data);
}
