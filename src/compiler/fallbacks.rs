//! Fallback tiers: each `spec.fallbacks` entry compiled to concrete targets. A fallback to an
//! alias contributes that alias's targets as one tier, then its own fallback tiers, so a
//! fallback routes wherever that alias would. Cycles across targets, chains and fallbacks are
//! errors naming the cycle.

use std::collections::HashMap;

use super::aliases::{LegResult, Resolver};
use super::diagnostic::{Diagnostic, Reason};
use super::table::FallbackTier;
use crate::crd::FailureCondition;

/// The most fallback tiers a route may have, nested ones included.
pub const MAX_TIERS: usize = 16;

/// Why an alias's fallbacks cannot be built.
#[derive(Clone, Debug)]
pub(super) struct Broken {
    pub why: String,
    /// The aliases on a fallback cycle, when that is the reason.
    cycle: Vec<usize>,
}

/// Compiles fallback tiers, once per alias.
pub(super) struct Fallbacks {
    memo: HashMap<usize, Result<Vec<FallbackTier>, Broken>>,
    /// Aliases whose fallbacks are being expanded, outermost first.
    visiting: Vec<usize>,
}

impl Fallbacks {
    pub fn new() -> Self {
        Fallbacks {
            memo: HashMap::new(),
            visiting: Vec::new(),
        }
    }

    /// The tiers of alias `i`, or why they cannot be built (reported on the alias).
    pub fn tiers(&mut self, resolver: &mut Resolver<'_, '_>, i: usize) -> Result<Vec<FallbackTier>, Broken> {
        if let Some(done) = self.memo.get(&i) {
            return done.clone();
        }
        self.visiting.push(i);
        let result = self.compile(resolver, i);
        self.visiting.pop();
        self.memo.insert(i, result.clone());
        result
    }

    fn compile(&mut self, resolver: &mut Resolver<'_, '_>, i: usize) -> Result<Vec<FallbackTier>, Broken> {
        let entry = &resolver.entries[i];
        let own = entry.display_name().to_string();
        let object = entry.object.clone();
        let fallbacks = entry.alias.spec.fallbacks.clone().unwrap_or_default();
        let mut tiers = Vec::new();
        let mut failure: Option<Broken> = None;
        let mut cycle: Vec<usize> = Vec::new();
        // The message about that cycle: what every alias on it reports, whatever else broke.
        let mut cycle_why: Option<String> = None;
        let mut report = |resolver: &mut Resolver<'_, '_>, field: &str, reason: Reason, message: String| {
            resolver
                .out
                .push(Diagnostic::error(&object, field, reason, message.clone()));
            failure.get_or_insert(Broken {
                why: message,
                cycle: Vec::new(),
            });
        };
        for (n, fallback) in fallbacks.iter().enumerate() {
            let field = format!("spec.fallbacks[{n}].target");
            let on = fallback
                .conditions()
                .cloned()
                .unwrap_or_else(|| FailureCondition::TRANSIENT.to_vec());
            let flat = match resolver.resolve_leg(i, &fallback.target) {
                LegResult::Ok(flat) => flat,
                LegResult::Cycle(_, text) => {
                    report(
                        resolver,
                        &field,
                        Reason::AliasCycle,
                        format!(
                            "aliases refer to each other in a cycle: {text}; point one of them at <provider>/<model>"
                        ),
                    );
                    continue;
                }
                LegResult::Err(reason, message) => {
                    report(resolver, &field, reason, message);
                    continue;
                }
            };
            // The fallback's chain leads back to this alias: its tier would be this alias's
            // own targets again.
            if let Some(chain) = flat.targets.iter().map(|t| &t.chain).find(|c| c.contains(&own)) {
                let mut names = vec![own.clone()];
                names.extend(chain.iter().take_while(|n| **n != own).cloned());
                names.push(own.clone());
                report(resolver, &field, Reason::AliasCycle, leads_back_message(&names));
                continue;
            }
            if let Some(via) = &flat.disabled_via {
                resolver.out.push(Diagnostic::warning(
                    &object,
                    &field,
                    Reason::DisabledByChain,
                    format!("fallback '{}' is disabled through alias '{via}', so this tier is skipped until it is active again", fallback.target),
                ));
                continue;
            }
            tiers.push(FallbackTier {
                on,
                targets: flat.targets,
                via: fallback.target.clone(),
            });
            // A fallback to an alias brings that alias's own fallbacks after its targets.
            let Some(j) = resolver.owner_of_target(i, &fallback.target) else {
                continue;
            };
            if let Some(pos) = self.visiting.iter().position(|&v| v == j) {
                cycle = self.visiting[pos..].to_vec();
                let mut names: Vec<String> = cycle
                    .iter()
                    .map(|&v| resolver.entries[v].display_name().to_string())
                    .collect();
                names.push(resolver.entries[j].display_name().to_string());
                let why = format!(
                    "aliases fall back to each other in a cycle: {}; remove one of these fallbacks",
                    names.join(" -> ")
                );
                report(resolver, &field, Reason::AliasCycle, why.clone());
                cycle_why = Some(why);
                continue;
            }
            match self.tiers(resolver, j) {
                Ok(nested) => {
                    // A nested tier whose chain comes back here: this alias's own targets again,
                    // reached through fallbacks and then targets.
                    if let Some(names) = nested.iter().find_map(|t| leads_back(&own, &fallback.target, t)) {
                        report(resolver, &field, Reason::AliasCycle, leads_back_message(&names));
                        continue;
                    }
                    tiers.extend(nested.into_iter().map(|t| FallbackTier {
                        via: format!("{} -> {}", fallback.target, t.via),
                        ..t
                    }));
                }
                // This alias is on the cycle that broke them: the same error, here too.
                Err(broken) if broken.cycle.contains(&i) => {
                    cycle.clone_from(&broken.cycle);
                    report(resolver, &field, Reason::AliasCycle, broken.why.clone());
                    cycle_why = Some(broken.why);
                }
                Err(broken) => report(
                    resolver,
                    &field,
                    Reason::TargetAliasInvalid,
                    format!(
                        "fallback '{}' is an alias whose own fallbacks are broken: {}",
                        fallback.target, broken.why
                    ),
                ),
            }
        }
        if tiers.len() > MAX_TIERS {
            report(
                resolver,
                "spec.fallbacks",
                Reason::ChainTooDeep,
                format!(
                    "the fallbacks expand to {} tiers (nested fallbacks included); at most {MAX_TIERS} are allowed",
                    tiers.len()
                ),
            );
        }
        match failure {
            Some(broken) => Err(Broken {
                why: cycle_why.unwrap_or(broken.why),
                cycle,
            }),
            None => Ok(tiers),
        }
    }
}

/// The cycle `own -> fallback -> (the tier's fallbacks) -> (its chain) -> own`, when a target of
/// `tier` (one of the fallback alias's own tiers) is reached through `own`.
fn leads_back(own: &str, fallback: &str, tier: &FallbackTier) -> Option<Vec<String>> {
    let chain = tier
        .targets
        .iter()
        .map(|t| &t.chain)
        .find(|c| c.iter().any(|n| n == own))?;
    let mut names = vec![own.to_string(), fallback.to_string()];
    names.extend(tier.via.split(" -> ").map(str::to_string));
    names.extend(chain.iter().skip(1).take_while(|n| *n != own).cloned());
    names.push(own.to_string());
    Some(names)
}

fn leads_back_message(names: &[String]) -> String {
    format!(
        "the fallback leads back to this alias, a cycle: {} (through fallbacks); fall back to another alias or to <provider>/<model>",
        names.join(" -> ")
    )
}
