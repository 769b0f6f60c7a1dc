//! Watches for tenancy: Teams, AccessGroups (in scope) and API key Secrets (labelled
//! `modelgate.dev/api-key=true`), shared by the controller and the in-cluster gateway.

use futures_util::Stream;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::Client;

use super::{generation, reflect_keeping, Bump, Changes, Reader, Scope, Synced};
use crate::compiler::tenancy::{ApiKeySecret, API_KEY_SELECTOR, KEY_HASH_FIELD, TEAM_LABEL};
use crate::compiler::ObjectKey;
use crate::crd::{AccessGroup, Team};

pub struct TenancyReflectors<T, G, K> {
    pub teams: Store<Team>,
    pub groups: Store<AccessGroup>,
    pub keys: Store<Secret>,
    pub synced: [Synced; 3],
    pub team_stream: T,
    pub group_stream: G,
    pub key_stream: K,
}

/// Teams and AccessGroups in `scope` (its selector too), key Secrets in its namespace.
#[allow(clippy::type_complexity)]
pub fn reflectors(
    client: &Client,
    scope: &Scope,
    changes: &Changes,
    reader: Reader,
) -> TenancyReflectors<
    impl Stream<Item = Result<Team, watcher::Error>> + Send + 'static,
    impl Stream<Item = Result<AccessGroup, watcher::Error>> + Send + 'static,
    impl Stream<Item = Result<Secret, watcher::Error>> + Send + 'static,
> {
    // The controller writes Team status (usage) itself: only spec changes are news to it. The
    // gateway reads the controller's AccessGroup.status.aliases, so for it every event is.
    let (team_bump, group_bump) = match reader {
        Reader::Controller => (Bump::OnSpec, Bump::OnSpec),
        Reader::Gateway => (Bump::OnSpec, Bump::OnAny),
    };
    let (teams, teams_synced, _, team_stream) = reflect_keeping(
        scope.api(client),
        scope.watcher_config(),
        changes.clone(),
        team_bump,
        |_| {},
        false,
        generation,
    );
    let (groups, groups_synced, _, group_stream) = reflect_keeping(
        scope.api(client),
        scope.watcher_config(),
        changes.clone(),
        group_bump,
        |_| {},
        false,
        generation,
    );
    let key_scope = Scope {
        namespace: scope.namespace.clone(),
        selector: None,
    };
    let (keys, keys_synced, _, key_stream) = reflect_keeping(
        key_scope.api::<Secret>(client),
        watcher::Config::default().labels(API_KEY_SELECTOR),
        changes.clone(),
        Bump::OnAny,
        |_| {},
        true,
        generation,
    );
    TenancyReflectors {
        teams,
        groups,
        keys,
        synced: [teams_synced, groups_synced, keys_synced],
        team_stream,
        group_stream,
        key_stream,
    }
}

/// The key Secrets as the compiler reads them: their team label and hash, nothing else.
pub fn api_keys(store: &Store<Secret>) -> Vec<ApiKeySecret> {
    store
        .state()
        .iter()
        .map(|secret| {
            let data = secret
                .data
                .as_ref()
                .and_then(|d| d.get(KEY_HASH_FIELD))
                .map(|v| v.0.clone());
            let string = secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(KEY_HASH_FIELD))
                .map(|v| v.clone().into_bytes());
            ApiKeySecret {
                key: ObjectKey::of(&secret.metadata),
                team: secret.metadata.labels.as_ref().and_then(|l| l.get(TEAM_LABEL)).cloned(),
                key_hash: string.or(data),
            }
        })
        .collect()
}
