//! Compiles AccessGroups, Teams and API key Secrets into an [`AccessTable`].

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap};

use super::{
    money, parse_key_hash, selector, AccessTable, ApiKeySecret, CreditPolicy, GroupAccess, KeyDigest, TeamAccess,
};
use crate::compiler::{claimed_name, Diagnostic, ObjectKey, ObjectKind, ObjectRef, Reason, RoutingTable};
use crate::crd::{AccessGroup, ModelAlias, Team};

/// Where an AccessGroup's members come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// From its spec, matched against the aliases given (files, the controller).
    Spec,
    /// From `status.aliases`, as the controller resolved them (in-cluster gateways, whose
    /// ModelAlias store keeps no labels).
    Status,
}

/// Everything the tenancy compiler reads.
pub struct AccessInputs<'a, T = Team, G = AccessGroup, A = ModelAlias> {
    pub teams: &'a [T],
    pub groups: &'a [G],
    pub keys: &'a [ApiKeySecret],
    /// ModelAliases with their labels (for `aliasSelector`); unused with [`Membership::Status`].
    pub aliases: &'a [A],
    /// The compiled routes: the alias names that exist.
    pub table: &'a RoutingTable,
    pub membership: Membership,
}

/// Compiles the access table, appending one diagnostic per problem.
pub fn compile_access<T: Borrow<Team>, G: Borrow<AccessGroup>, A: Borrow<ModelAlias>>(
    inputs: &AccessInputs<'_, T, G, A>,
    out: &mut Vec<Diagnostic>,
) -> AccessTable {
    let groups = compile_groups(inputs, out);
    let by_key: HashMap<&ObjectKey, &GroupAccess> = groups.iter().map(|g| (&g.key, g)).collect();

    let mut teams: Vec<TeamAccess> = Vec::with_capacity(inputs.teams.len());
    for team in inputs.teams.iter().map(Borrow::borrow) {
        let key = ObjectKey::of(&team.metadata);
        let object = ObjectRef::new(ObjectKind::Team, key.clone());
        let spec = &team.spec;
        let names = spec.access_groups.clone().unwrap_or_default();
        let mut aliases = BTreeSet::new();
        let mut missing = Vec::new();
        for name in &names {
            match by_key.get(&ObjectKey::new(&key.namespace, name)) {
                Some(group) => aliases.extend(group.aliases.iter().cloned()),
                None => missing.push(name.as_str()),
            }
        }
        if !missing.is_empty() {
            let known: Vec<&str> = groups
                .iter()
                .filter(|g| g.key.namespace == key.namespace)
                .map(|g| g.key.name.as_str())
                .collect();
            out.push(Diagnostic::error(
                &object,
                "spec.accessGroups",
                Reason::AccessGroupNotFound,
                format!(
                    "AccessGroup {} not found in namespace '{}' ({}); create {} or fix spec.accessGroups: the team's keys cannot call those aliases",
                    quoted(&missing),
                    key.namespace,
                    if known.is_empty() { "it has none".to_string() } else { format!("it has: {}", known.join(", ")) },
                    if missing.len() == 1 { "it" } else { "them" },
                ),
            ));
        }
        let credits = spec.credits.as_ref().map(|credits| {
            let allocated = money::parse_amount(&credits.allocated).unwrap_or_else(|| {
                out.push(Diagnostic::error(
                    &object,
                    "spec.credits.allocated",
                    Reason::InvalidSpec,
                    format!("'{}' must be a decimal number of US dollars such as 1000.00 (at most 9 decimals); until it is fixed the team has no credits", credits.allocated),
                ));
                0
            });
            CreditPolicy {
                allocated,
                period: credits.period.unwrap_or_default(),
            }
        });
        teams.push(TeamAccess {
            key,
            display_name: spec.display_name.clone(),
            organization: spec.organization.clone(),
            groups: names,
            aliases: aliases.into_iter().collect(),
            credits,
            limits: spec.limits.clone().unwrap_or_default(),
            keys: 0,
        });
    }
    teams.sort_by(|a, b| a.key.cmp(&b.key));
    let team_index: HashMap<ObjectKey, usize> = teams.iter().enumerate().map(|(i, t)| (t.key.clone(), i)).collect();

    let mut keys: Vec<KeyDigest> = Vec::with_capacity(inputs.keys.len());
    let mut seen: HashMap<[u8; 32], ObjectKey> = HashMap::with_capacity(inputs.keys.len());
    let mut sorted: Vec<&ApiKeySecret> = inputs.keys.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for secret in sorted {
        let object = ObjectRef::new(ObjectKind::Secret, secret.key.clone());
        let Some(team_name) = secret.team.as_deref().filter(|t| !t.is_empty()) else {
            out.push(Diagnostic::error(
                &object,
                "metadata.labels",
                Reason::InvalidSpec,
                format!(
                    "the API key has no {} label; label it with the name of a Team in namespace '{}'",
                    super::TEAM_LABEL,
                    secret.key.namespace
                ),
            ));
            continue;
        };
        let digest = secret
            .key_hash
            .as_deref()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(parse_key_hash);
        let Some(digest) = digest else {
            out.push(Diagnostic::error(
                &object,
                "data.keyHash",
                Reason::InvalidSpec,
                "keyHash must be sha256:<64 hex digits> of the key; create key Secrets with `modelgate keys create`"
                    .to_string(),
            ));
            continue;
        };
        let Some(&team) = team_index.get(&ObjectKey::new(&secret.key.namespace, team_name)) else {
            out.push(Diagnostic::error(
                &object,
                "metadata.labels",
                Reason::TeamNotFound,
                format!(
                    "Team '{team_name}' does not exist in namespace '{}'; create it or fix the {} label: this key is refused",
                    secret.key.namespace,
                    super::TEAM_LABEL
                ),
            ));
            continue;
        };
        if let Some(first) = seen.get(&digest) {
            out.push(Diagnostic::error(
                &object,
                "data.keyHash",
                Reason::KeyConflict,
                format!(
                    "Secret {first} holds the same key; a key belongs to one team: create a new key for this Secret"
                ),
            ));
            continue;
        }
        seen.insert(digest, secret.key.clone());
        teams[team].keys += 1;
        keys.push(KeyDigest {
            digest,
            team,
            secret: secret.key.clone(),
        });
    }
    AccessTable { teams, keys, groups }
}

fn compile_groups<T, G: Borrow<AccessGroup>, A: Borrow<ModelAlias>>(
    inputs: &AccessInputs<'_, T, G, A>,
    out: &mut Vec<Diagnostic>,
) -> Vec<GroupAccess> {
    // Every claimed alias name, and the names of the aliases in each namespace with labels.
    let mut claimed: BTreeSet<&str> = inputs.table.routes.keys().map(String::as_str).collect();
    for alias in inputs.aliases.iter().map(Borrow::borrow) {
        if let Some(name) = alias.spec.alias.as_deref().or(alias.metadata.name.as_deref()) {
            claimed.insert(name);
        }
    }
    let mut groups: Vec<GroupAccess> = Vec::with_capacity(inputs.groups.len());
    for group in inputs.groups.iter().map(Borrow::borrow) {
        let key = ObjectKey::of(&group.metadata);
        let object = ObjectRef::new(ObjectKind::AccessGroup, key.clone());
        let members: BTreeSet<String> = match inputs.membership {
            Membership::Status => group
                .status
                .as_ref()
                .and_then(|s| s.aliases.clone())
                .unwrap_or_default()
                .into_iter()
                .collect(),
            Membership::Spec => {
                let spec = &group.spec;
                let mut members = BTreeSet::new();
                let mut missing = Vec::new();
                for name in spec.aliases.iter().flatten() {
                    if claimed.contains(name.as_str()) {
                        members.insert(name.clone());
                    } else {
                        missing.push(name.as_str());
                    }
                }
                if !missing.is_empty() {
                    out.push(Diagnostic::error(
                        &object,
                        "spec.aliases",
                        Reason::AliasNotFound,
                        format!(
                            "no ModelAlias serves {}; create {} or remove {} from spec.aliases (teams are not granted missing aliases)",
                            quoted(&missing),
                            if missing.len() == 1 { "it" } else { "them" },
                            if missing.len() == 1 { "it" } else { "them" },
                        ),
                    ));
                }
                if let Some(selector) = &spec.alias_selector {
                    match selector::check(selector) {
                        Err(why) => out.push(Diagnostic::error(
                            &object,
                            "spec.aliasSelector",
                            Reason::InvalidSpec,
                            why,
                        )),
                        Ok(()) => {
                            for alias in inputs.aliases.iter().map(Borrow::borrow) {
                                let alias_key = ObjectKey::of(&alias.metadata);
                                let labels = alias.metadata.labels.clone().unwrap_or_default();
                                if alias_key.namespace == key.namespace && selector::matches(selector, &labels) {
                                    let name = claimed_name(alias, &alias_key);
                                    if inputs.table.routes.get(name).is_some_and(|r| r.source == alias_key) {
                                        members.insert(name.to_string());
                                    }
                                }
                            }
                        }
                    }
                }
                members
            }
        };
        groups.push(GroupAccess {
            key,
            description: group.spec.description.clone(),
            aliases: members.into_iter().collect(),
        });
    }
    groups.sort_by(|a, b| a.key.cmp(&b.key));
    groups
}

fn quoted(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    quoted.join(", ")
}
