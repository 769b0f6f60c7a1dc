//! In-cluster gateways tell the controller what they serve, for the `Programmed` condition.
//!
//! Each replica keeps one `GatewayReplica` (named after its pod, in its own namespace): the
//! newest ModelAlias and LLMProvider resourceVersions its serving table includes, its scope,
//! and a lease it renews. Writes are bounded whatever the load: one after a new table is
//! served, at most one per [`MIN_INTERVAL`] (a burst of rebuilds is one write), plus one renewal
//! per third of the lease; never one per request, and always the same small size, whether the
//! table holds ten aliases or ten thousand. On shutdown the replica deletes its report; a
//! replica that crashed stops counting when its lease runs out.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::crd::{GatewayReplica, API_VERSION};
use crate::kubernetes::Scope;

/// The field manager of the gateways' writes.
pub const FIELD_MANAGER: &str = "modelgate-gateway";
/// The shortest time between two writes of a report.
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// How long a shutdown waits for the report's deletion.
const DELETE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how a replica reports.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// The report's name: the pod's name.
    pub name: String,
    /// The gateway's own namespace, where the controller reads the reports.
    pub namespace: String,
    /// How long a report stands without renewal.
    pub lease: Duration,
    /// The pod's uid, when the report is named after its pod: the pod then owns the report, so
    /// Kubernetes deletes the report of a pod that is gone.
    pub pod_uid: Option<String>,
}

/// What the table being served includes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    pub aliases: u64,
    pub providers: u64,
    pub routes: usize,
}

/// Where the table builder announces each table it starts serving.
#[derive(Clone, Default)]
pub struct ServedTx(Option<watch::Sender<Option<Served>>>);

impl ServedTx {
    pub fn send(&self, served: Served) {
        if let Some(tx) = &self.0 {
            tx.send_replace(Some(served));
        }
    }
}

/// The reporting task; [`Reporting::finish`] deletes the report and ends it.
pub struct Reporting {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Reporting {
    /// Deletes the report (so the replica stops counting at once) and waits for that, bounded.
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(DELETE_TIMEOUT, &mut self.task).await;
    }
}

/// Starts reporting what the gateway serves.
pub fn start(client: Client, options: ReportOptions, scope: &Scope) -> (ServedTx, Reporting) {
    let (tx, rx) = watch::channel(None);
    let (stop, stopped) = oneshot::channel();
    let api: Api<GatewayReplica> = Api::namespaced(client, &options.namespace);
    let task = tokio::spawn(run(api, options, scope.clone(), rx, stopped));
    (ServedTx(Some(tx)), Reporting { stop: Some(stop), task })
}

async fn run(
    api: Api<GatewayReplica>,
    options: ReportOptions,
    scope: Scope,
    mut served: watch::Receiver<Option<Served>>,
    mut stop: oneshot::Receiver<()>,
) {
    let renew_every = (options.lease / 3).max(Duration::from_secs(1));
    let mut failures: u32 = 0;
    loop {
        // Nothing is reported before the first table is served.
        let current = *served.borrow_and_update();
        if let Some(current) = current {
            let written = write(&api, &options, &scope, current).await;
            match (&written, failures) {
                (Ok(()), 1..) => tracing::info!(report = %options.name, "reporting what this gateway serves again"),
                (Err(e), 0) => tracing::warn!(
                    report = %format!("{}/{}", options.namespace, options.name),
                    error = %e,
                    "cannot report what this gateway serves (gatewayreplicas.modelgate.dev: are the CRDs and the gateway's RBAC installed?); the controller's Programmed conditions do not count this replica until it can"
                ),
                _ => {}
            }
            failures = if written.is_ok() { 0 } else { failures.saturating_add(1) };
        }
        // After a failure, retry soon, then less and less often, at most every renewal period.
        let wait = match failures {
            0 => renew_every,
            n => (Duration::from_secs(1) * 2u32.saturating_pow(n.min(16))).min(renew_every),
        };
        tokio::select! {
            _ = &mut stop => break,
            changed = served.changed() => {
                if changed.is_err() {
                    break;
                }
                // Coalesce: a burst of new tables is one write.
                tokio::select! {
                    _ = &mut stop => break,
                    () = tokio::time::sleep(MIN_INTERVAL) => {},
                }
            }
            () = tokio::time::sleep(wait) => {},
        }
    }
    match api.delete(&options.name, &DeleteParams::default()).await {
        Ok(_) => tracing::info!(report = %options.name, "deleted this gateway's report"),
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => {
            tracing::warn!(report = %options.name, error = %e, "cannot delete this gateway's report; it expires with its lease")
        }
    }
}

async fn write(api: &Api<GatewayReplica>, options: &ReportOptions, scope: &Scope, served: Served) -> kube::Result<()> {
    let mut metadata = serde_json::json!({"name": options.name});
    if let Some(uid) = &options.pod_uid {
        metadata["ownerReferences"] =
            serde_json::json!([{"apiVersion": "v1", "kind": "Pod", "name": options.name, "uid": uid}]);
    }
    let mut scope_fields = serde_json::Map::new();
    if let Some(namespace) = &scope.namespace {
        scope_fields.insert("namespace".into(), namespace.clone().into());
    }
    if let Some(selector) = &scope.selector {
        scope_fields.insert("selector".into(), selector.clone().into());
    }
    let lease = i32::try_from(options.lease.as_secs()).unwrap_or(i32::MAX);
    let report = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "GatewayReplica",
        "metadata": metadata,
        "spec": {
            "leaseDurationSeconds": lease,
            "renewTime": MicroTime(jiff::Timestamp::now()),
            "scope": scope_fields,
            "served": {
                "modelAliases": served.aliases.to_string(),
                "llmProviders": served.providers.to_string(),
                "routes": served.routes,
            },
        },
    });
    api.patch(
        &options.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&report),
    )
    .await
    .map(|_| ())
}
