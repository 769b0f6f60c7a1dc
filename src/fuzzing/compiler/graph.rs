//! The alias graph, worked out independently of the compiler's resolver, and the cycle
//! properties checked against it.

use std::collections::HashMap;

use crate::compiler::rules::{check_alias_name, check_alias_spec, split_target};
use crate::compiler::{claimed_name, Compiled, ObjectKey, ObjectRef, Reason};
use crate::crd::ModelAlias;

/// Aliases and which alias each one's bare targets name, worked out independently of the
/// resolver: nodes are the aliases that own their client-facing name and whose spec passes
/// the field rules.
pub(super) struct Graph<'a> {
    pub aliases: &'a [ModelAlias],
    /// Name -> index of the alias that owns it.
    pub owners: HashMap<String, usize>,
    /// `reach[i][j]`: alias `j` can be reached from alias `i` in one or more steps.
    reach: Vec<Vec<bool>>,
    /// One step from alias `i` to alias `j`, through a target or a fallback, as written (for
    /// any alias that owns its name, whether or not its spec is valid).
    step: Vec<Vec<bool>>,
}

impl<'a> Graph<'a> {
    pub fn new(aliases: &'a [ModelAlias]) -> Self {
        let keys: Vec<ObjectKey> = aliases.iter().map(|a| ObjectKey::of(&a.metadata)).collect();
        let first_of_key = |i: usize| keys.iter().position(|k| k == &keys[i]) == Some(i);
        let mut by_age: Vec<usize> = (0..aliases.len()).filter(|&i| first_of_key(i)).collect();
        by_age.sort_by_key(|&i| {
            let created = aliases[i].metadata.creation_timestamp.as_ref().map(|t| t.0);
            (created, created.map(|_| keys[i].clone()), i)
        });
        let mut owners = HashMap::new();
        for i in by_age {
            let name = claimed_name(&aliases[i], &keys[i]);
            if check_alias_name(name).is_ok() {
                owners.entry(name.to_string()).or_insert(i);
            }
        }
        let n = aliases.len();
        let mut step = vec![vec![false; n]; n];
        for &i in owners.values() {
            let spec = &aliases[i].spec;
            let written = spec
                .target
                .iter()
                .chain(spec.targets.iter().flatten().map(|t| &t.target))
                .chain(spec.fallbacks.iter().flatten().map(|f| &f.target));
            for target in written {
                if let Some(&j) = owners.get(target.as_str()) {
                    step[i][j] = true;
                }
            }
        }
        let mut reach = vec![vec![false; n]; n];
        for (name, &i) in &owners {
            let spec = &aliases[i].spec;
            let mut problems = Vec::new();
            check_alias_spec(&ObjectRef::alias(keys[i].clone()), spec, &mut problems);
            if !problems.is_empty() {
                continue;
            }
            let legs = spec
                .target
                .iter()
                .chain(spec.targets.iter().flatten().map(|t| &t.target));
            for target in legs {
                if split_target(target).is_none() && target != name {
                    if let Some(&j) = owners.get(target.as_str()) {
                        reach[i][j] = true;
                    }
                }
            }
        }
        // Transitive closure (Warshall).
        for k in 0..n {
            let via = reach[k].clone();
            for row in reach.iter_mut().filter(|row| row[k]) {
                for (cell, &step) in row.iter_mut().zip(&via) {
                    *cell |= step;
                }
            }
        }
        Graph {
            aliases,
            owners,
            reach,
            step,
        }
    }

    fn on_cycle(&self, i: usize) -> bool {
        self.reach[i][i]
    }

    fn index_of(&self, object: &ObjectRef) -> Option<usize> {
        self.owners
            .values()
            .copied()
            .find(|&i| ObjectKey::of(&self.aliases[i].metadata) == object.key)
    }

    pub fn check_cycles(&self, compiled: &Compiled) {
        let reported: Vec<(usize, &str)> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.reason == Reason::AliasCycle)
            .map(|d| {
                let i = self
                    .index_of(&d.object)
                    .expect("a cycle is reported on an alias that owns its name");
                (i, d.message.as_str())
            })
            .collect();
        for &(i, message) in &reported {
            if let Some(cycle) = through_fallbacks(message) {
                self.check_named_cycle(cycle, message);
                continue;
            }
            assert!(self.on_cycle(i), "a cycle reported on an alias on none: {message}");
            let text = message
                .strip_prefix("aliases refer to each other in a cycle: ")
                .and_then(|m| m.split_once(';'))
                .map(|(text, _)| text)
                .expect("the message names the cycle");
            let names: Vec<&str> = text.split(" -> ").collect();
            assert!(names.len() >= 3 && names.first() == names.last(), "{text}");
            for pair in names.windows(2) {
                let (from, to) = (self.owners[pair[0]], self.owners[pair[1]]);
                assert!(self.reach[from][to], "{text}: no edge {} -> {}", pair[0], pair[1]);
            }
        }
        // A chain longer than the limit is refused before its cycle is reached.
        let too_deep = compiled.diagnostics.iter().any(|d| d.reason == Reason::ChainTooDeep);
        for i in (0..self.aliases.len()).filter(|&i| self.on_cycle(i)) {
            let group_reported = too_deep || reported.iter().any(|&(j, _)| self.reach[i][j] && self.reach[j][i]);
            let name = claimed_name(&self.aliases[i], &ObjectKey::of(&self.aliases[i].metadata)).to_string();
            assert!(group_reported, "the cycle through '{name}' is not reported");
            let route = compiled.table.route(&name);
            assert!(
                route.is_none_or(|r| r.disabled.is_some()),
                "'{name}' is on a cycle but served: {route:?}"
            );
        }
    }

    /// A cycle named through fallbacks is a closed walk of written targets and fallbacks.
    fn check_named_cycle(&self, text: &str, message: &str) {
        let names: Vec<&str> = text.split(" -> ").collect();
        assert!(names.len() >= 2 && names.first() == names.last(), "{message}");
        for pair in names.windows(2) {
            let (Some(&from), Some(&to)) = (self.owners.get(pair[0]), self.owners.get(pair[1])) else {
                panic!("{message}: '{}' or '{}' is no alias", pair[0], pair[1]);
            };
            assert!(
                self.step[from][to],
                "{message}: no target or fallback {} -> {}",
                pair[0], pair[1]
            );
        }
    }
}

/// The cycle a fallback message names (`a -> b -> a`), for the two messages about cycles that
/// go through fallbacks.
fn through_fallbacks(message: &str) -> Option<&str> {
    if let Some(rest) = message.strip_prefix("aliases fall back to each other in a cycle: ") {
        return rest.split_once(';').map(|(text, _)| text);
    }
    let rest = message.strip_prefix("the fallback leads back to this alias, a cycle: ")?;
    rest.split_once(" (through fallbacks);").map(|(text, _)| text)
}
