//! The one compiler: `(providers, aliases, credentials) -> (routing table, diagnostics)`.
//!
//! Every routing rule lives here once and is shared by the controller, the gateway and
//! `modelgate validate`. The function is pure: the only outside knowledge (Secrets,
//! environment) comes in through [`Credentials`], and the last accepted table through
//! [`Inputs::previous`].

mod aliases;
mod credentials;
mod diagnostic;
mod providers;
pub mod rules;
mod table;

use std::borrow::Borrow;
use std::collections::HashMap;

pub use aliases::claimed_name;
pub use credentials::{Credentials, KeyLookup, SecretData, SecretsAndEnv};
pub use diagnostic::{ConditionKind, Diagnostic, ObjectKey, ObjectKind, ObjectRef, Reason, Severity};
pub use providers::OPENAI_DEFAULT_BASE_URL;
pub use table::{ProviderEndpoint, ResolvedTimeouts, Route, RouteTarget, RoutingTable};

use crate::crd::{LLMProvider, ModelAlias};
use aliases::{claim_names, Resolver};

/// Everything the compiler reads. Objects may be owned (`LLMProvider`, from files) or shared
/// (`Arc<LLMProvider>`, straight from a reflector store): the compiler never copies them.
pub struct Inputs<'a, P = LLMProvider, A = ModelAlias> {
    pub providers: &'a [P],
    /// Aliases; without creation timestamps (files), earlier entries are older.
    pub aliases: &'a [A],
    pub credentials: &'a dyn Credentials,
    /// Objects known to exist whose manifests could not be read: they keep their last routes.
    pub unreadable: &'a [ObjectRef],
    /// The last table that was served; broken aliases keep their routes from it.
    pub previous: Option<&'a RoutingTable>,
}

/// The compiler's answer.
#[derive(Debug, Default)]
pub struct Compiled {
    pub table: RoutingTable,
    /// Sorted by object, then errors before warnings, then field.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    /// Whether any object has an error (warnings do not count).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The diagnostics of one object.
    pub fn diagnostics_for<'s>(&'s self, object: &'s ObjectRef) -> impl Iterator<Item = &'s Diagnostic> + 's {
        self.diagnostics.iter().filter(move |d| &d.object == object)
    }
}

/// Compiles providers and aliases into a routing table and per-object diagnostics.
pub fn compile<P: Borrow<LLMProvider>, A: Borrow<ModelAlias>>(inputs: &Inputs<'_, P, A>) -> Compiled {
    let mut diagnostics = Vec::new();
    let providers = providers::compile_providers(
        inputs.providers.iter().map(Borrow::borrow),
        inputs.unreadable,
        inputs.credentials,
        &mut diagnostics,
    );
    let (entries, owners) = claim_names(inputs.aliases.iter().map(Borrow::borrow), &mut diagnostics);

    let mut resolver = Resolver::new(&entries, &owners, &providers, &mut diagnostics);
    let mut owner_list: Vec<(&String, &usize)> = owners.iter().collect();
    owner_list.sort();
    let outcomes: Vec<(String, usize, Result<aliases::Flat, aliases::Failure>)> = owner_list
        .into_iter()
        .map(|(name, &i)| (name.clone(), i, resolver.resolve(i)))
        .collect();

    let mut table = RoutingTable {
        routes: HashMap::with_capacity(outcomes.len()),
        providers: providers
            .iter()
            .filter_map(|(k, p)| Some((k.clone(), p.endpoint.as_ref().ok()?.clone())))
            .collect(),
    };
    let mut broken: Vec<ObjectKey> = Vec::new();
    for (name, i, outcome) in outcomes {
        let entry = &entries[i];
        let meta = &entry.alias.metadata;
        let spec = &entry.alias.spec;
        let route = |targets, disabled| Route {
            alias: name.clone(),
            source: entry.key().clone(),
            generation: meta.generation,
            description: spec.description.clone(),
            hidden: spec.is_hidden(),
            disabled,
            targets,
            stale: None,
            created: meta.creation_timestamp.as_ref().map(|t| t.0.as_second()),
        };
        match outcome {
            Ok(flat) => {
                let disabled = match flat.disabled_via {
                    Some(via) if via == name => Some(format!("alias '{name}' is disabled (spec.active is false)")),
                    Some(via) => {
                        let why = format!("alias '{name}' routes through alias '{via}', which is disabled");
                        diagnostics.push(Diagnostic::warning(
                            &entry.object,
                            "spec",
                            Reason::DisabledByChain,
                            format!(
                                "{why}; requests for '{name}' get 403 model_disabled until '{via}' is active again"
                            ),
                        ));
                        Some(why)
                    }
                    None => None,
                };
                table.routes.insert(name.clone(), route(flat.targets, disabled));
            }
            Err(_) if !spec.is_active() => {
                let why = format!("alias '{name}' is disabled (spec.active is false)");
                table.routes.insert(name.clone(), route(Vec::new(), Some(why)));
            }
            Err(_) => broken.push(entry.key().clone()),
        }
    }
    broken.extend(
        inputs
            .unreadable
            .iter()
            .filter(|o| o.kind == ObjectKind::ModelAlias)
            .map(|o| o.key.clone()),
    );
    if let Some(previous) = inputs.previous {
        keep_last_good(previous, &broken, &mut table, &mut diagnostics);
    }

    diagnostics.sort_by(|a, b| (&a.object, a.severity, &a.field).cmp(&(&b.object, b.severity, &b.field)));
    Compiled { table, diagnostics }
}

/// Broken aliases keep serving the route they had in the previous table, with the providers
/// it used, unless another alias now owns the name.
fn keep_last_good(previous: &RoutingTable, broken: &[ObjectKey], table: &mut RoutingTable, out: &mut Vec<Diagnostic>) {
    for key in broken {
        let Some(old) = previous.routes.values().find(|r| &r.source == key) else {
            continue;
        };
        if table.routes.contains_key(&old.alias) {
            continue;
        }
        for target in &old.targets {
            if !table.providers.contains_key(&target.provider) {
                if let Some(endpoint) = previous.providers.get(&target.provider) {
                    table.providers.insert(target.provider.clone(), endpoint.clone());
                }
            }
        }
        let summary: Vec<String> = old
            .targets
            .iter()
            .map(|t| format!("{}/{} ({}%)", t.provider.name, t.model, t.weight))
            .collect();
        let note = format!(
            "serving the last accepted route for '{}' ({}) until the errors above are fixed",
            old.alias,
            if summary.is_empty() {
                "disabled".to_string()
            } else {
                summary.join(", ")
            }
        );
        out.push(Diagnostic::warning(
            &ObjectRef::alias(key.clone()),
            "spec",
            Reason::ServingLastGood,
            note.clone(),
        ));
        table.routes.insert(
            old.alias.clone(),
            Route {
                stale: Some(note),
                ..old.clone()
            },
        );
    }
}

#[cfg(test)]
mod tests;

/// Compiles manifests given as YAML text, for tests: no previous table, keys from the
/// Secrets in the text only.
#[cfg(test)]
pub(crate) fn compile_text(yaml: &str) -> (crate::manifest::Manifests, Compiled) {
    let mut manifests = crate::manifest::Manifests::default();
    crate::manifest::parse_documents(yaml, std::path::Path::new("test.yaml"), &mut manifests);
    assert!(manifests.problems.is_empty(), "{:?}", manifests.problems);
    let credentials = SecretsAndEnv {
        secrets: &manifests.secrets,
        env: None,
    };
    let compiled = manifests.compile(&credentials, None);
    (manifests, compiled)
}
