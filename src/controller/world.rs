//! Everything the controller knows, compiled once per change and shared by every reconcile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::Store;
use kube::ResourceExt;

use crate::compiler::{compile, Compiled, Diagnostic, Inputs, ObjectKey, ObjectRef, Route, SecretsAndEnv};
use crate::crd::{LLMProvider, ModelAlias};
use crate::kubernetes::{secret_data, wait_synced, Changes, Synced};

/// The reflector stores and the compiled view of them.
pub struct World {
    pub providers: Store<LLMProvider>,
    pub aliases: Store<ModelAlias>,
    pub secrets: Store<Secret>,
    pub changes: Changes,
    synced: [Synced; 3],
    snapshot: Mutex<Option<Arc<Snapshot>>>,
}

/// One compilation of the whole world, indexed for reconciles.
pub struct Snapshot {
    pub version: u64,
    pub compiled: Compiled,
    routes_by_source: HashMap<ObjectKey, String>,
    diagnostics: HashMap<ObjectRef, Vec<Diagnostic>>,
}

impl Snapshot {
    fn new(version: u64, compiled: Compiled) -> Self {
        let routes_by_source = compiled
            .table
            .routes
            .iter()
            .map(|(name, route)| (route.source.clone(), name.clone()))
            .collect();
        let mut diagnostics: HashMap<ObjectRef, Vec<Diagnostic>> = HashMap::new();
        for d in &compiled.diagnostics {
            diagnostics.entry(d.object.clone()).or_default().push(d.clone());
        }
        Snapshot {
            version,
            compiled,
            routes_by_source,
            diagnostics,
        }
    }

    /// The route an alias object owns, if it compiled.
    pub fn route_of(&self, key: &ObjectKey) -> Option<&Route> {
        self.routes_by_source
            .get(key)
            .and_then(|name| self.compiled.table.routes.get(name))
    }

    pub fn diagnostics_of(&self, object: &ObjectRef) -> &[Diagnostic] {
        self.diagnostics.get(object).map(Vec::as_slice).unwrap_or(&[])
    }
}

impl World {
    pub fn new(
        providers: Store<LLMProvider>,
        aliases: Store<ModelAlias>,
        secrets: Store<Secret>,
        synced: [Synced; 3],
        changes: Changes,
    ) -> Self {
        World {
            providers,
            aliases,
            secrets,
            changes,
            synced,
            snapshot: Mutex::new(None),
        }
    }

    /// Waits until every store holds its initial list: before that, missing objects would be
    /// reported as errors.
    pub async fn wait_ready(&self) {
        wait_synced(&self.synced).await;
    }

    /// The compiled world for the current version (compiled now if it moved).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let version = self.changes.version();
        let mut cached = self.snapshot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(snapshot) = cached.as_ref().filter(|s| s.version == version) {
            return snapshot.clone();
        }
        let snapshot = Arc::new(Snapshot::new(version, self.compile()));
        *cached = Some(snapshot.clone());
        snapshot
    }

    fn compile(&self) -> Compiled {
        let mut providers: Vec<LLMProvider> = self.providers.state().iter().map(|p| (**p).clone()).collect();
        providers.sort_by_key(|p| (p.namespace(), p.name_any()));
        let mut aliases: Vec<ModelAlias> = self.aliases.state().iter().map(|a| (**a).clone()).collect();
        aliases.sort_by_key(|a| (a.namespace(), a.name_any()));
        let secrets = secret_data(&self.secrets);
        // The controller cannot see the gateway's environment: `env` keys are not checked.
        let credentials = SecretsAndEnv {
            secrets: &secrets,
            env: None,
        };
        compile(&Inputs {
            providers: &providers,
            aliases: &aliases,
            credentials: &credentials,
            unreadable: &[],
            previous: None,
        })
    }
}
