//! The one compiler: `(providers, aliases, credentials) -> (routing table, diagnostics)`.
//!
//! Every routing rule lives here once and is shared by the controller, the gateway and
//! `modelgate validate`. The function is pure: the only outside knowledge (Secrets,
//! environment) comes in through [`Credentials`], and the last accepted table through
//! [`Inputs::previous`].

pub mod address;
mod aliases;
mod credentials;
mod diagnostic;
mod egress;
pub(crate) mod fallbacks;
mod providers;
mod routing_rules;
pub mod rules;
mod table;
pub mod tenancy;
mod tls;

use std::borrow::Borrow;
use std::collections::HashMap;

pub use aliases::claimed_name;
pub use credentials::{Credentials, KeyLookup, SecretData, SecretView, SecretsAndEnv};
pub use diagnostic::{ConditionKind, Diagnostic, ObjectKey, ObjectKind, ObjectRef, Reason, Severity};
pub use providers::{
    base_url, ANTHROPIC_DEFAULT_BASE_URL, ANTHROPIC_DEFAULT_MAX_TOKENS, ANTHROPIC_DEFAULT_VERSION,
    GEMINI_DEFAULT_BASE_URL, OPENAI_DEFAULT_BASE_URL,
};
pub use table::{
    AwsKeys, BedrockAuth, FallbackTier, OutlierPolicy, ProviderEndpoint, ProviderSettings, ResolvedTimeouts,
    RetryPolicy, Route, RouteExtras, RoutePolicy, RouteTarget, RoutingTable,
};
pub use tls::TrustedCa;

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
    /// Teams, access groups and keys (empty until [`Compiled::add_access`]).
    pub access: tenancy::AccessTable,
}

impl Compiled {
    /// Compiles teams, access groups and API keys against this routing table, adding their
    /// diagnostics in order.
    pub fn add_access<T, G, A>(
        &mut self,
        teams: &[T],
        groups: &[G],
        keys: &[tenancy::ApiKeySecret],
        aliases: &[A],
        membership: tenancy::Membership,
    ) where
        T: Borrow<crate::crd::Team>,
        G: Borrow<crate::crd::AccessGroup>,
        A: Borrow<ModelAlias>,
    {
        self.access = tenancy::compile_access(
            &tenancy::AccessInputs {
                teams,
                groups,
                keys,
                aliases,
                table: &self.table,
                membership,
            },
            &mut self.diagnostics,
        );
        self.diagnostics
            .sort_by(|a, b| (&a.object, a.severity, &a.field).cmp(&(&b.object, b.severity, &b.field)));
    }

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
    // Fallback tiers of the aliases that resolved; a broken fallback breaks its alias.
    let mut fallback_tiers = fallbacks::Fallbacks::new();
    let tiers: Vec<Option<Result<Vec<FallbackTier>, fallbacks::Broken>>> = outcomes
        .iter()
        .map(|(_, i, outcome)| {
            let has = entries[*i].alias.spec.fallbacks.as_ref().is_some_and(|f| !f.is_empty());
            (outcome.is_ok() && has).then(|| fallback_tiers.tiers(&mut resolver, *i))
        })
        .collect();

    let mut table = RoutingTable {
        routes: HashMap::with_capacity(outcomes.len()),
        providers: providers
            .iter()
            .filter_map(|(k, p)| Some((k.clone(), p.endpoint.as_ref().ok()?.clone())))
            .collect(),
    };
    let mut broken: Vec<ObjectKey> = Vec::new();
    for ((name, i, outcome), tiers) in outcomes.into_iter().zip(tiers) {
        let entry = &entries[i];
        let meta = &entry.alias.metadata;
        let spec = &entry.alias.spec;
        let (outcome, fallbacks) = match (outcome, tiers) {
            (Ok(_), Some(Err(broken))) => (Err(aliases::Failure::Invalid(broken.why)), Vec::new()),
            (outcome, Some(Ok(tiers))) => (outcome, tiers),
            (outcome, _) => (outcome, Vec::new()),
        };
        let extras = route_extras(spec, fallbacks);
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
            extras: extras.clone(),
            pricing: effective_pricing(&entries, &owners, i),
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
    Compiled {
        table,
        diagnostics,
        access: Default::default(),
    }
}

/// The price of alias `i`: its own `spec.pricing`, else that of the alias its single
/// `target` names (followed along a chain), else none.
fn effective_pricing(
    entries: &[aliases::AliasEntry<'_>],
    owners: &HashMap<String, usize>,
    mut i: usize,
) -> Option<(crate::crd::Pricing, tenancy::Price)> {
    for _ in 0..aliases::MAX_CHAIN {
        let spec = &entries[i].alias.spec;
        if let Some(pricing) = &spec.pricing {
            return Some((pricing.clone(), tenancy::Price::parse(pricing).ok()?));
        }
        i = *owners.get(spec.target.as_deref()?)?;
    }
    None
}

/// The fallbacks, policy and guardrails of a route; `None` when the spec sets none of them.
fn route_extras(spec: &crate::crd::ModelAliasSpec, fallbacks: Vec<FallbackTier>) -> Option<Box<RouteExtras>> {
    let policy = RoutePolicy::from_spec(
        spec.load_balancing,
        spec.retry.as_ref(),
        spec.timeouts.as_ref(),
        spec.outlier_detection.as_ref(),
    );
    if fallbacks.is_empty() && policy == RoutePolicy::default() && spec.guardrails.is_none() {
        return None;
    }
    Some(Box::new(RouteExtras {
        fallbacks,
        policy,
        guardrails: spec.guardrails.clone(),
    }))
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
#[cfg(test)]
mod tests_routing;
#[cfg(test)]
mod tests_tls;

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
        view: SecretView::All,
    };
    let compiled = manifests.compile(&credentials, None);
    (manifests, compiled)
}
