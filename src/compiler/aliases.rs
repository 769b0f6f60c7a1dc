//! Compiles ModelAliases: name claims, target resolution, chains, cycles and weights.

use std::collections::HashMap;

use super::diagnostic::{Diagnostic, ObjectKey, ObjectRef, Reason};
use super::providers::ProviderInfo;
use super::rules::{check_alias_name, check_alias_spec, split_target};
use super::table::RouteTarget;
use crate::crd::ModelAlias;

/// Longest chain of aliases a request may pass through.
pub const MAX_CHAIN: usize = 16;

/// One alias as the resolver sees it.
pub(super) struct AliasEntry<'a> {
    pub alias: &'a ModelAlias,
    pub object: ObjectRef,
    /// The client-facing name, when it is valid.
    pub name: Option<String>,
    /// Whether the spec passed every field rule.
    pub spec_ok: bool,
}

impl AliasEntry<'_> {
    pub fn key(&self) -> &ObjectKey {
        &self.object.key
    }
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.object.key.name)
    }
}

/// The concrete targets an alias reaches, and whether a disabled alias is on the way.
#[derive(Clone, Debug)]
pub(super) struct Flat {
    pub targets: Vec<RouteTarget>,
    /// The first disabled alias on the way (the alias itself when it is disabled).
    pub disabled_via: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) enum Failure {
    /// The alias is part of a cycle; `members` are entry indices, `text` reads `a -> b -> a`.
    Cycle { members: Vec<usize>, text: String },
    /// The alias cannot be served, for the reason given.
    Invalid(String),
}

/// The client-facing name an alias claims: `spec.alias`, else `metadata.name` (here `key.name`).
pub fn claimed_name<'a>(alias: &'a ModelAlias, key: &'a ObjectKey) -> &'a str {
    alias.spec.alias.as_deref().unwrap_or(&key.name)
}

/// Builds entries, checks names and field rules, and decides which object owns each name.
/// Returns the entries and the index of the owner of each name.
pub(super) fn claim_names<'a>(
    aliases: impl ExactSizeIterator<Item = &'a ModelAlias>,
    out: &mut Vec<Diagnostic>,
) -> (Vec<AliasEntry<'a>>, HashMap<String, usize>) {
    let mut entries: Vec<AliasEntry<'a>> = Vec::with_capacity(aliases.len());
    let mut seen_keys: HashMap<ObjectKey, usize> = HashMap::with_capacity(aliases.len());
    for alias in aliases {
        let key = ObjectKey::of(&alias.metadata);
        let object = ObjectRef::alias(key.clone());
        if seen_keys.contains_key(&key) {
            out.push(Diagnostic::error(
                &object,
                "metadata.name",
                Reason::InvalidSpec,
                format!("ModelAlias {key} is defined more than once; keep one definition"),
            ));
            continue;
        }
        let before = out.len();
        check_alias_spec(&object, &alias.spec, out);
        let name = claimed_name(alias, &key).to_string();
        // A bad spec.alias was reported by check_alias_spec; check the metadata.name fallback here.
        let name_ok = match &alias.spec.alias {
            Some(explicit) => check_alias_name(explicit).is_ok(),
            None => check_alias_name(&name).is_ok(),
        };
        let spec_ok = out.len() == before;
        seen_keys.insert(key, entries.len());
        entries.push(AliasEntry {
            alias,
            object,
            name: name_ok.then_some(name),
            spec_ok,
        });
    }

    // Oldest first. Creation times have one-second resolution, so ties go to the smaller
    // namespace/name (the same answer on every replica); objects without a creation time
    // (files) keep their input order.
    let mut by_age: Vec<usize> = (0..entries.len()).collect();
    by_age.sort_by(|&a, &b| {
        let created = |i: usize| entries[i].alias.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let key = |i: usize| created(i).map(|_| entries[i].key());
        (created(a), key(a), a).cmp(&(created(b), key(b), b))
    });
    let mut owners: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    for i in by_age {
        let Some(name) = entries[i].name.clone() else {
            continue;
        };
        match owners.get(&name) {
            None => {
                owners.insert(name, i);
            }
            Some(&owner) => {
                let winner = entries[owner].key().clone();
                out.push(Diagnostic::error(
                    &entries[i].object,
                    if entries[i].alias.spec.alias.is_some() { "spec.alias" } else { "metadata.name" },
                    Reason::AliasConflict,
                    format!(
                        "alias '{name}' already exists: ModelAlias {winner} claimed it first and keeps serving it; give this one another name (spec.alias) or delete {winner}"
                    ),
                ));
            }
        }
    }
    (entries, owners)
}

/// Resolves every alias once (memoised), reporting each problem on the alias that has it.
pub(super) struct Resolver<'a, 'b> {
    pub entries: &'b [AliasEntry<'a>],
    pub owners: &'b HashMap<String, usize>,
    pub providers: &'b HashMap<ObjectKey, ProviderInfo>,
    pub memo: Vec<Option<Result<Flat, Failure>>>,
    pub out: &'b mut Vec<Diagnostic>,
    stack: Vec<usize>,
}

struct LegError {
    reason: Reason,
    message: String,
}

/// The outcome of resolving one target string of an alias.
pub(super) enum LegResult {
    Ok(Flat),
    /// The alias itself is on a cycle through this target: the members and `a -> b -> a`.
    Cycle(Vec<usize>, String),
    /// Any other problem with this target.
    Err(Reason, String),
}

impl<'a, 'b> Resolver<'a, 'b> {
    pub fn new(
        entries: &'b [AliasEntry<'a>],
        owners: &'b HashMap<String, usize>,
        providers: &'b HashMap<ObjectKey, ProviderInfo>,
        out: &'b mut Vec<Diagnostic>,
    ) -> Self {
        Resolver {
            entries,
            owners,
            providers,
            memo: vec![None; entries.len()],
            out,
            stack: Vec::new(),
        }
    }

    pub fn resolve(&mut self, i: usize) -> Result<Flat, Failure> {
        if let Some(done) = &self.memo[i] {
            return done.clone();
        }
        if let Some(pos) = self.stack.iter().position(|&s| s == i) {
            let members = self.stack[pos..].to_vec();
            let mut names: Vec<&str> = members.iter().map(|&m| self.entries[m].display_name()).collect();
            names.push(self.entries[i].display_name());
            return Err(Failure::Cycle {
                members,
                text: names.join(" -> "),
            });
        }
        let result = self.resolve_uncached(i);
        self.memo[i] = Some(result.clone());
        result
    }

    fn resolve_uncached(&mut self, i: usize) -> Result<Flat, Failure> {
        let entry = &self.entries[i];
        if !entry.spec_ok {
            return Err(Failure::Invalid(format!(
                "ModelAlias {} has an invalid spec",
                entry.key()
            )));
        }
        if self.stack.len() >= MAX_CHAIN {
            let message = format!(
                "the alias chain through '{}' is longer than {MAX_CHAIN} aliases; point an alias in the chain straight at <provider>/<model>",
                entry.display_name()
            );
            self.out.push(Diagnostic::error(
                &entry.object,
                "spec",
                Reason::ChainTooDeep,
                message.clone(),
            ));
            return Err(Failure::Invalid(message));
        }
        let spec = &entry.alias.spec;
        let legs: Vec<(String, &str, u32)> = match (&spec.target, &spec.targets) {
            (Some(target), _) => vec![("spec.target".to_string(), target.as_str(), 100)],
            (None, Some(targets)) => targets
                .iter()
                .enumerate()
                .map(|(n, leg)| (format!("spec.targets[{n}].target"), leg.target.as_str(), leg.weight))
                .collect(),
            (None, None) => Vec::new(),
        };

        self.stack.push(i);
        let mut targets: Vec<RouteTarget> = Vec::new();
        let mut disabled_via = (!spec.is_active()).then(|| entry.display_name().to_string());
        let mut failure: Option<Failure> = None;
        let own_name = entry.display_name().to_string();
        for (field, target, weight) in legs {
            match self.resolve_leg(i, target) {
                LegResult::Ok(flat) => {
                    disabled_via = disabled_via.or(flat.disabled_via);
                    for t in flat.targets {
                        let mut chain = Vec::with_capacity(t.chain.len() + 1);
                        chain.push(own_name.clone());
                        chain.extend(t.chain);
                        merge(
                            &mut targets,
                            RouteTarget {
                                weight: t.weight * f64::from(weight) / 100.0,
                                chain,
                                ..t
                            },
                        );
                    }
                }
                LegResult::Cycle(members, text) => {
                    let entry = &self.entries[i];
                    self.out.push(Diagnostic::error(
                        &entry.object,
                        field,
                        Reason::AliasCycle,
                        format!(
                            "aliases refer to each other in a cycle: {text}; point one of them at <provider>/<model>"
                        ),
                    ));
                    failure = Some(Failure::Cycle { members, text });
                }
                LegResult::Err(reason, message) => {
                    self.out.push(Diagnostic::error(
                        &self.entries[i].object,
                        field,
                        reason,
                        message.clone(),
                    ));
                    failure.get_or_insert(Failure::Invalid(message));
                }
            }
        }
        self.stack.pop();
        // Routes live as long as their table: no spare capacity (a split of one target would
        // otherwise keep room for four, 312 bytes per alias).
        targets.shrink_to_fit();
        match failure {
            Some(f) => Err(f),
            None => Ok(Flat { targets, disabled_via }),
        }
    }

    /// The alias a bare target of alias `i` names, if it names one (not `i` itself).
    pub fn owner_of_target(&self, i: usize, target: &str) -> Option<usize> {
        if split_target(target).is_some() || self.entries[i].name.as_deref() == Some(target) {
            return None;
        }
        self.owners.get(target).copied()
    }

    /// Resolves one target string of alias `i`.
    pub fn resolve_leg(&mut self, i: usize, target: &str) -> LegResult {
        let namespace = self.entries[i].key().namespace.clone();
        let leg = |result: Result<Flat, LegError>| match result {
            Ok(flat) => LegResult::Ok(flat),
            Err(e) => LegResult::Err(e.reason, e.message),
        };
        if let Some((provider, model)) = split_target(target) {
            return leg(self.provider_target(&namespace, provider, model));
        }
        let own = self.entries[i].name.as_deref() == Some(target);
        if let Some(j) = self.owner_of_target(i, target) {
            return match self.resolve(j) {
                Ok(flat) => LegResult::Ok(flat),
                Err(Failure::Cycle { members, text }) if members.contains(&i) => LegResult::Cycle(members, text),
                Err(Failure::Cycle { text, .. }) => LegResult::Err(
                    Reason::TargetAliasInvalid,
                    format!("target '{target}' is an alias in a cycle ({text}); fix that cycle or point this alias elsewhere"),
                ),
                Err(Failure::Invalid(why)) => LegResult::Err(
                    Reason::TargetAliasInvalid,
                    format!("target '{target}' is an alias that cannot be served: {why}"),
                ),
            };
        }
        leg(self.listed_model_target(&namespace, target, own))
    }

    fn provider_target(&self, namespace: &str, provider: &str, model: &str) -> Result<Flat, LegError> {
        let key = ObjectKey::new(namespace, provider);
        let Some(info) = self.providers.get(&key) else {
            return Err(LegError {
                reason: Reason::ProviderNotFound,
                message: format!(
                    "LLMProvider '{provider}' does not exist in namespace '{namespace}'{}; create it or fix the target",
                    self.known_providers_hint(namespace)
                ),
            });
        };
        let endpoint = info.endpoint.as_ref().map_err(|why| LegError {
            reason: Reason::ProviderNotReady,
            message: format!("LLMProvider {key} cannot be used: {why}"),
        })?;
        if !info.models.is_empty() && !info.models.iter().any(|m| m == model) {
            return Err(LegError {
                reason: Reason::ModelNotServed,
                message: format!(
                    "LLMProvider {key} does not list model '{model}' in spec.models (it lists: {}); add it there or pick a listed model",
                    info.models.join(", ")
                ),
            });
        }
        Ok(Flat {
            targets: vec![RouteTarget {
                provider: endpoint.key.clone(),
                model: model.to_string(),
                weight: 100.0,
                chain: Vec::new(),
            }],
            disabled_via: None,
        })
    }

    fn listed_model_target(&self, namespace: &str, model: &str, own_name: bool) -> Result<Flat, LegError> {
        let mut listing: Vec<&ObjectKey> = self
            .providers
            .iter()
            .filter(|(key, info)| key.namespace == namespace && info.models.iter().any(|m| m == model))
            .map(|(key, _)| key)
            .collect();
        listing.sort();
        match listing.as_slice() {
            [only] => self.provider_target(namespace, &only.name, model),
            [] => Err(LegError {
                reason: Reason::TargetNotFound,
                message: if own_name {
                    format!(
                        "target '{model}' is this alias's own name, and no LLMProvider in namespace '{namespace}' lists it in spec.models; write <provider>/{model}{}",
                        self.known_providers_hint(namespace)
                    )
                } else {
                    format!(
                        "target '{model}' is neither an alias nor a model listed in spec.models of an LLMProvider in namespace '{namespace}'; write <provider>/{model}{} or create the alias",
                        self.known_providers_hint(namespace)
                    )
                },
            }),
            many => {
                let names: Vec<String> = many.iter().map(|k| format!("{}/{model}", k.name)).collect();
                Err(LegError {
                    reason: Reason::AmbiguousTarget,
                    message: format!(
                        "model '{model}' is listed by {} LLMProviders in namespace '{namespace}'; write one of {} to choose",
                        many.len(),
                        names.join(", ")
                    ),
                })
            }
        }
    }

    fn known_providers_hint(&self, namespace: &str) -> String {
        let mut names: Vec<&str> = self
            .providers
            .keys()
            .filter(|k| k.namespace == namespace)
            .map(|k| k.name.as_str())
            .collect();
        names.sort_unstable();
        match names.len() {
            0 => format!(" (there are no LLMProviders in namespace '{namespace}')"),
            1..=8 => format!(" (providers there: {})", names.join(", ")),
            _ => String::new(),
        }
    }
}

/// Adds a target, summing weights with an existing target for the same provider model.
fn merge(targets: &mut Vec<RouteTarget>, target: RouteTarget) {
    match targets
        .iter_mut()
        .find(|t| t.provider == target.provider && t.model == target.model)
    {
        Some(existing) => existing.weight += target.weight,
        None => targets.push(target),
    }
}
