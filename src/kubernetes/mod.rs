//! What the controller and the in-cluster gateway share: scope, watches and credentials.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::compiler::SecretData;

pub mod tenancy;

/// Label that marks a Secret as a provider credential. Only Secrets with it are read, by the
/// controller and the gateway alike: a Secret an LLMProvider references must carry it.
pub const CREDENTIAL_LABEL: &str = "modelgate.dev/credential";
/// The selector for [`CREDENTIAL_LABEL`].
pub const CREDENTIAL_SELECTOR: &str = "modelgate.dev/credential=true";

/// Which objects a process looks at.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// One namespace, or all.
    pub namespace: Option<String>,
    /// A label selector for LLMProviders and ModelAliases (e.g. to shard or test).
    pub selector: Option<String>,
}

impl Scope {
    pub fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }

    pub fn watcher_config(&self) -> watcher::Config {
        let config = watcher::Config::default();
        match &self.selector {
            Some(selector) => config.labels(selector),
            None => config,
        }
    }
}

/// Counts changes seen by the watches, so consumers can tell when the world moved.
#[derive(Clone)]
pub struct Changes(Arc<watch::Sender<u64>>);

impl Default for Changes {
    fn default() -> Self {
        Changes(Arc::new(watch::channel(0).0))
    }
}

impl Changes {
    pub fn bump(&self) {
        self.0.send_modify(|version| *version += 1);
    }

    pub fn version(&self) -> u64 {
        *self.0.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Whether a store holds its first full list. Any number of tasks may wait on it (the
/// store's own `wait_until_ready` wakes only one waiter at a time).
#[derive(Clone)]
pub struct Synced(watch::Receiver<bool>);

impl Synced {
    /// Waits for the first full list; returns at once afterwards.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the watch was dropped: nothing will ever sync, so stop waiting.
        let _ = rx.wait_for(|synced| *synced).await;
    }
}

/// How far a store has caught up: the newest resourceVersion it holds every change up to.
///
/// A watch delivers one kind's events in resourceVersion order, and since Kubernetes 1.35
/// resourceVersions of one kind compare as numbers (KEP-5504): once a store has applied the
/// event at version `v`, it has applied every earlier change of the objects it watches. During
/// a (re)list the store swaps in the new list only at its end, so the list's versions count
/// from then on.
#[derive(Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// The newest resourceVersion applied; 0 before the first list ends.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn reached(&self, version: u64) {
        self.0.fetch_max(version, Ordering::AcqRel);
    }
}

/// An object's resourceVersion as a number (0 when absent or not a number).
pub fn resource_version<K: Resource>(object: &K) -> u64 {
    object
        .meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Which watch events count as a change of the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bump {
    /// Only what the compiler reads: objects appearing or going, and spec edits (a new
    /// `metadata.generation`). Status writes, the controller's own included, do not count.
    OnSpec,
    /// Every event (the gateway reads `status.resolved`).
    OnAny,
}

/// Who reads the world, which decides what counts as a change and what is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// Compiles specs and writes status: status changes are not changes of its world.
    Controller,
    /// Serves `status.resolved`: every change counts, and conditions (and the display-only
    /// `status.target`) are not kept.
    Gateway,
}

impl Reader {
    fn bump(self) -> Bump {
        match self {
            Reader::Controller => Bump::OnSpec,
            Reader::Gateway => Bump::OnAny,
        }
    }

    fn alias_trim(self) -> fn(&mut crate::crd::ModelAlias) {
        match self {
            Reader::Controller => keep,
            Reader::Gateway => |alias| {
                if let Some(status) = alias.status.as_mut() {
                    status.conditions = Vec::new();
                    status.target = None;
                    status.usage = None;
                }
            },
        }
    }
}

/// Keeps an object as it is.
fn keep<K>(_: &mut K) {}

/// A reflector: a store kept in sync with the API, its sync state, how far it has caught up,
/// and the stream that drives it (yielding every touched object). The stream must be polled
/// for the store to fill.
/// Stored objects lose their `managedFields`, labels and annotations (kubectl's last-applied
/// configuration among them): nothing here reads them (selectors are applied by the API
/// server), and at thousands of objects they are much of the memory.
#[allow(clippy::type_complexity)]
pub fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    changes: Changes,
    bump: Bump,
    trim: fn(&mut K),
) -> (
    Store<K>,
    Synced,
    Progress,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    reflect_keeping(api, config, changes, bump, trim, false, generation)
}

/// What [`Bump::OnSpec`] compares: the object's `metadata.generation`.
pub fn generation<K: Resource>(object: &K) -> Option<i64> {
    object.meta().generation
}

/// For the gateway's ModelAliases: the generation and the published route, so status writes
/// that change neither (conditions, the usage summary) rebuild nothing.
fn published_route(alias: &crate::crd::ModelAlias) -> Option<i64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    alias.metadata.generation.hash(&mut hasher);
    serde_json::to_string(&alias.status.as_ref().and_then(|s| s.resolved.as_ref()))
        .unwrap_or_default()
        .hash(&mut hasher);
    Some(hasher.finish() as i64)
}

/// [`reflect`], keeping labels when `labels` is true (label selectors are evaluated on them:
/// an AccessGroup's `aliasSelector`, an API key's team).
pub fn reflect_keeping<K>(
    api: Api<K>,
    config: watcher::Config,
    changes: Changes,
    bump: Bump,
    trim: fn(&mut K),
    labels: bool,
    version: fn(&K) -> Option<i64>,
) -> (
    Store<K>,
    Synced,
    Progress,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let (synced_tx, synced_rx) = watch::channel(false);
    let progress = Progress::default();
    let reached = progress.clone();
    let mut listed: u64 = 0;
    let mut generations: HashMap<String, Option<i64>> = HashMap::new();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(move |object: &mut K| {
            let meta = object.meta_mut();
            meta.managed_fields = None;
            if !labels {
                meta.labels = None;
            }
            meta.annotations = None;
            trim(object);
        })
        .reflect(writer)
        .inspect(move |event| match event {
            Ok(watcher::Event::Init) => listed = 0,
            Ok(watcher::Event::InitApply(object)) => {
                listed = listed.max(resource_version(object));
                generations.insert(uid(object), version(object));
            }
            Ok(watcher::Event::InitDone) => {
                reached.reached(listed);
                synced_tx.send_replace(true);
                changes.bump();
            }
            Ok(watcher::Event::Apply(object)) => {
                reached.reached(resource_version(object));
                let now = version(object);
                let before = generations.insert(uid(object), now);
                if bump == Bump::OnAny || before != Some(now) {
                    changes.bump();
                }
            }
            Ok(watcher::Event::Delete(object)) => {
                reached.reached(resource_version(object));
                generations.remove(&uid(object));
                changes.bump();
            }
            Err(_) => {}
        })
        .touched_objects();
    (store, Synced(synced_rx), progress, stream)
}

fn uid<K: Resource>(object: &K) -> String {
    object.meta().uid.clone().unwrap_or_default()
}

/// The credential Secrets' data, keyed by `(namespace, name)`.
pub fn secret_data(secrets: &Store<Secret>) -> SecretData {
    secrets
        .state()
        .iter()
        .map(|secret| {
            let key = (
                secret.metadata.namespace.clone().unwrap_or_default(),
                secret.metadata.name.clone().unwrap_or_default(),
            );
            let mut data: BTreeMap<String, Vec<u8>> = secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            for (k, v) in secret.string_data.iter().flatten() {
                data.insert(k.clone(), v.clone().into_bytes());
            }
            (key, data)
        })
        .collect()
}

/// Waits until every store holds its first full list.
pub async fn wait_synced(synced: &[Synced]) {
    for s in synced {
        s.wait().await;
    }
}

/// Drives a reflector stream to completion, logging watch errors (the watcher retries them
/// with backoff itself).
pub async fn drive<K, S>(kind: &'static str, stream: S)
where
    S: Stream<Item = Result<K, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            tracing::warn!(kind, error = %e, "watch error; retrying with backoff");
        }
    }
}

/// Reads all three kinds: returns their stores and the streams that must be polled.
pub struct Reflectors<P, A, S> {
    pub providers: Store<crate::crd::LLMProvider>,
    pub aliases: Store<crate::crd::ModelAlias>,
    pub secrets: Store<Secret>,
    /// Sync state of the three stores.
    pub synced: [Synced; 3],
    /// How far the provider and alias stores have caught up.
    pub provider_progress: Progress,
    pub alias_progress: Progress,
    pub provider_stream: P,
    pub alias_stream: A,
    pub secret_stream: S,
}

/// Sets up reflectors for LLMProviders and ModelAliases (in `scope`) and credential Secrets.
#[allow(clippy::type_complexity)]
pub fn reflectors(
    client: &Client,
    scope: &Scope,
    changes: &Changes,
    reader: Reader,
) -> Reflectors<
    impl Stream<Item = Result<crate::crd::LLMProvider, watcher::Error>> + Send + 'static,
    impl Stream<Item = Result<crate::crd::ModelAlias, watcher::Error>> + Send + 'static,
    impl Stream<Item = Result<Secret, watcher::Error>> + Send + 'static,
> {
    let (providers, providers_synced, provider_progress, provider_stream) = reflect(
        scope.api(client),
        scope.watcher_config(),
        changes.clone(),
        reader.bump(),
        keep,
    );
    // The gateway serves status.resolved: a new route is news to it, a new usage summary not.
    let (alias_bump, alias_version): (Bump, fn(&crate::crd::ModelAlias) -> Option<i64>) = match reader {
        Reader::Controller => (Bump::OnSpec, generation),
        Reader::Gateway => (Bump::OnSpec, published_route),
    };
    let (aliases, aliases_synced, alias_progress, alias_stream) = reflect_keeping(
        scope.api(client),
        scope.watcher_config(),
        changes.clone(),
        alias_bump,
        reader.alias_trim(),
        reader == Reader::Controller,
        alias_version,
    );
    let secret_scope = Scope {
        namespace: scope.namespace.clone(),
        selector: None,
    };
    let (secrets, secrets_synced, _, secret_stream) = reflect(
        secret_scope.api::<Secret>(client),
        watcher::Config::default().labels(CREDENTIAL_SELECTOR),
        changes.clone(),
        Bump::OnAny,
        keep,
    );
    Reflectors {
        providers,
        aliases,
        secrets,
        synced: [providers_synced, aliases_synced, secrets_synced],
        provider_progress,
        alias_progress,
        provider_stream,
        alias_stream,
        secret_stream,
    }
}
