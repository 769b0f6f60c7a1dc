//! In-cluster mode: the routing table is what the controller published in
//! `ModelAlias.status.resolved`, with endpoints and keys from the LLMProviders and their
//! credential Secrets (those labelled `modelgate.dev/credential=true`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use super::live::prepare;
use super::report::{Served, ServedTx};
use super::Shared;
use crate::compiler::{compile, Inputs, ObjectKey, Route, RoutingTable, SecretsAndEnv};
use crate::crd::{LLMProvider, ModelAlias};
use crate::kubernetes::{drive, reflectors, secret_data, wait_synced, Changes, Progress, Scope, Synced};

/// Builds the routing table from the published routes. Pure but for reading the stores.
pub fn table_from(
    providers: &[Arc<LLMProvider>],
    aliases: &[Arc<ModelAlias>],
    secrets: &crate::compiler::SecretData,
    previous: &RoutingTable,
) -> RoutingTable {
    let env = |var: &str| std::env::var(var).ok();
    let credentials = SecretsAndEnv {
        secrets,
        env: Some(&env),
    };
    let compiled = compile(&Inputs {
        providers,
        aliases: &[] as &[ModelAlias],
        credentials: &credentials,
        unreadable: &[],
        previous: None,
    });
    let mut table = RoutingTable {
        routes: Default::default(),
        providers: compiled.table.providers,
    };
    // A provider that still exists but cannot be compiled now (its Secret went away, say)
    // keeps its last endpoint: the last good route keeps working.
    for provider in providers {
        let key = ObjectKey::of(&provider.metadata);
        if let (std::collections::hash_map::Entry::Vacant(slot), Some(endpoint)) =
            (table.providers.entry(key.clone()), previous.providers.get(&key))
        {
            slot.insert(endpoint.clone());
        }
    }
    // Oldest first, so that if two objects ever publish one name, the older keeps it (as the
    // controller decides).
    let mut published: Vec<&Arc<ModelAlias>> = aliases
        .iter()
        .filter(|a| a.status.as_ref().is_some_and(|s| s.resolved.is_some()))
        .collect();
    published.sort_by_key(|a| {
        (
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            a.namespace(),
            a.name_any(),
        )
    });
    for alias in published {
        let Some(resolved) = alias.status.as_ref().and_then(|s| s.resolved.as_ref()) else {
            continue;
        };
        if table.routes.contains_key(&resolved.alias) {
            continue;
        }
        let key = ObjectKey::of(&alias.metadata);
        let created = alias.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second());
        table
            .routes
            .insert(resolved.alias.clone(), Route::from_resolved(resolved, key, created));
    }
    table
}

/// Watches the cluster and keeps `shared` serving its current table. Marks the gateway ready
/// after the first full sync; keeps serving the last table while the API is away. Each table
/// served is announced on `served` (for the replica's report).
pub async fn follow(client: Client, scope: Scope, shared: Arc<Shared>, served: ServedTx) {
    let changes = Changes::default();
    let r = reflectors(&client, &scope, &changes, crate::kubernetes::Reader::Gateway);
    let t = crate::kubernetes::tenancy::reflectors(&client, &scope, &changes, crate::kubernetes::Reader::Gateway);
    let watches = async {
        tokio::join!(
            drive("LLMProvider", r.provider_stream),
            drive("ModelAlias", r.alias_stream),
            drive("Secret", r.secret_stream),
            drive("Team", t.team_stream),
            drive("AccessGroup", t.group_stream),
            drive("API key Secret", t.key_stream),
        );
    };
    let tenancy = TenancyStores {
        teams: t.teams,
        groups: t.groups,
        keys: t.keys,
        synced: t.synced,
    };
    let progress = [r.alias_progress, r.provider_progress];
    let builder = rebuild_on_change(
        r.providers,
        r.aliases,
        r.secrets,
        r.synced,
        tenancy,
        changes,
        shared,
        (progress, served),
    );
    tokio::join!(watches, builder);
}

/// What the access table is built from.
struct TenancyStores {
    teams: Store<crate::crd::Team>,
    groups: Store<crate::crd::AccessGroup>,
    keys: Store<k8s_openapi::api::core::v1::Secret>,
    synced: [Synced; 3],
}

/// What each Team's status last reported it spent this period.
fn seeds(tenancy: &TenancyStores) -> Vec<(String, crate::crd::Period, String, i64)> {
    tenancy
        .teams
        .state()
        .iter()
        .filter_map(|team| {
            let usage = team.status.as_ref()?.usage.as_ref()?;
            let period = team.spec.credits.as_ref()?.period.unwrap_or_default();
            let spent = crate::compiler::tenancy::parse_amount(&usage.cost_usd)?;
            Some((
                ObjectKey::of(&team.metadata).to_string(),
                period,
                usage.period.clone()?,
                spent,
            ))
        })
        .collect()
}

/// The access table from the Teams, the controller's AccessGroup members, and the keys.
fn access_from(tenancy: &TenancyStores, table: &RoutingTable) -> crate::compiler::tenancy::AccessTable {
    let mut diagnostics = Vec::new();
    crate::compiler::tenancy::compile_access(
        &crate::compiler::tenancy::AccessInputs {
            teams: &tenancy.teams.state(),
            groups: &tenancy.groups.state(),
            keys: &crate::kubernetes::tenancy::api_keys(&tenancy.keys),
            aliases: &[] as &[ModelAlias],
            table,
            membership: crate::compiler::tenancy::Membership::Status,
        },
        &mut diagnostics,
    )
}

#[allow(clippy::too_many_arguments)]
async fn rebuild_on_change(
    providers: Store<LLMProvider>,
    aliases: Store<ModelAlias>,
    secrets: Store<k8s_openapi::api::core::v1::Secret>,
    synced: [Synced; 3],
    tenancy: TenancyStores,
    changes: Changes,
    shared: Arc<Shared>,
    (progress, served): ([Progress; 2], ServedTx),
) {
    let mut changed = changes.subscribe();
    wait_synced(&synced).await;
    wait_synced(&tenancy.synced).await;
    let tenancy = Arc::new(tenancy);
    let mut current = Arc::new(RoutingTable::default());
    loop {
        changed.borrow_and_update();
        let started = Instant::now();
        // Read before the stores: the table built next includes at least these versions.
        let [alias_version, provider_version] = [progress[0].get(), progress[1].get()];
        let (providers, aliases, secrets, shared_for_build, previous, stores) = (
            providers.clone(),
            aliases.clone(),
            secrets.clone(),
            shared.clone(),
            current.clone(),
            tenancy.clone(),
        );
        // Off the async threads, so serving never waits for a rebuild.
        let built = tokio::task::spawn_blocking(move || {
            let table = table_from(&providers.state(), &aliases.state(), &secret_data(&secrets), &previous);
            let live = prepare(&table, &shared_for_build.clients);
            let access = access_from(&stores, &table);
            let seeds = seeds(&stores);
            (table, live.map(|live| (live, access, seeds)))
        })
        .await;
        match built {
            Ok((table, Ok((live, access, seeds)))) => {
                if !shared.is_ready() {
                    tracing::info!(
                        routes = table.routes.len(),
                        teams = access.teams.len(),
                        "first sync done: serving"
                    );
                }
                shared.install(live, table.routes.len(), 0);
                shared.tenancy.install(access);
                shared.tenancy.seed(&seeds);
                served.send(Served {
                    aliases: alias_version,
                    providers: provider_version,
                    routes: table.routes.len(),
                });
                current = Arc::new(table);
                // A rebuild frees the previous table and the watch events behind it: hand that
                // memory back now (a periodic trim under load cost the gateway half its
                // maximum request rate).
                tokio::task::spawn_blocking(crate::memory::trim);
            }
            Ok((_, Err(e))) => tracing::error!("cannot prepare the routing table: {e}; still serving the previous one"),
            Err(e) => tracing::error!("the routing table rebuild failed: {e}; still serving the previous one"),
        }
        let cost = started.elapsed();
        if changed.changed().await.is_err() {
            return;
        }
        // Gather the rest of a burst, and never spend more than about half the time
        // rebuilding: wait at least as long as the last rebuild took.
        tokio::time::sleep(cost.max(MIN_GATHER)).await;
    }
}

/// How long to gather watch events after the first change before rebuilding.
const MIN_GATHER: Duration = Duration::from_millis(10);
