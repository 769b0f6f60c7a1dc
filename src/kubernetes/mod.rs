//! What the controller and the in-cluster gateway share: scope, watches and credentials.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::compiler::SecretData;

pub use crate::crd::CREDENTIAL_LABEL;
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
    /// Serves `status.resolved`: every change counts, and conditions are not kept.
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
                }
            },
        }
    }
}

/// Keeps an object as it is.
fn keep<K>(_: &mut K) {}

/// A reflector: a store kept in sync with the API, its sync state, and the stream that drives
/// it (yielding every touched object). The stream must be polled for the store to fill.
/// Stored objects lose their `managedFields`, labels and annotations (kubectl's last-applied
/// configuration among them): nothing here reads them (selectors are applied by the API
/// server), and at thousands of objects they are much of the memory.
pub fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    changes: Changes,
    bump: Bump,
    trim: fn(&mut K),
) -> (
    Store<K>,
    Synced,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let (synced_tx, synced_rx) = watch::channel(false);
    let mut generations: HashMap<String, Option<i64>> = HashMap::new();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(move |object: &mut K| {
            let meta = object.meta_mut();
            meta.managed_fields = None;
            meta.labels = None;
            meta.annotations = None;
            trim(object);
        })
        .reflect(writer)
        .inspect(move |event| match event {
            Ok(watcher::Event::InitApply(object)) => {
                generations.insert(uid(object), object.meta().generation);
            }
            Ok(watcher::Event::InitDone) => {
                synced_tx.send_replace(true);
                changes.bump();
            }
            Ok(watcher::Event::Apply(object)) => {
                let before = generations.insert(uid(object), object.meta().generation);
                if bump == Bump::OnAny || before != Some(object.meta().generation) {
                    changes.bump();
                }
            }
            Ok(watcher::Event::Delete(object)) => {
                generations.remove(&uid(object));
                changes.bump();
            }
            _ => {}
        })
        .touched_objects();
    (store, Synced(synced_rx), stream)
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
    let (providers, providers_synced, provider_stream) = reflect(
        scope.api(client),
        scope.watcher_config(),
        changes.clone(),
        reader.bump(),
        keep,
    );
    let (aliases, aliases_synced, alias_stream) = reflect(
        scope.api(client),
        scope.watcher_config(),
        changes.clone(),
        reader.bump(),
        reader.alias_trim(),
    );
    let secret_scope = Scope {
        namespace: scope.namespace.clone(),
        selector: None,
    };
    let (secrets, secrets_synced, secret_stream) = reflect(
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
        provider_stream,
        alias_stream,
        secret_stream,
    }
}
