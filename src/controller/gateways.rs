//! Which gateway replicas run and what each serves, from their `GatewayReplica` reports.
//!
//! A report counts from when it appears until it is deleted (a gateway stopping) or its lease
//! runs out (a gateway that crashed). The view is a pure function of the reports and the time;
//! the watch below republishes it only when it changes, so a gateway renewing its report
//! (every few seconds) costs the controller nothing.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::crd::GatewayReplica;
use futures_util::StreamExt;

use crate::kubernetes::{reflect, Bump, Changes, Synced};

/// A running gateway replica, as counted for `Programmed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingReplica {
    pub name: String,
    /// The one namespace it serves, if it serves only one.
    pub namespace: Option<String>,
    /// The newest ModelAlias and LLMProvider resourceVersions its table includes (`None`:
    /// unreadable, so it never counts as up to date).
    pub aliases: Option<u64>,
    pub providers: Option<u64>,
}

/// The gateway replicas running at one moment, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayView {
    replicas: Vec<ServingReplica>,
}

impl GatewayView {
    /// The replicas whose reports stand at `now` and that serve what this controller serves
    /// (the same `--selector`, or none), and the first moment one of them expires.
    pub fn at(reports: &[Arc<GatewayReplica>], selector: Option<&str>, now: Timestamp) -> (Self, Option<Timestamp>) {
        let mut replicas = Vec::new();
        let mut next_expiry: Option<Timestamp> = None;
        for report in reports {
            let spec = &report.spec;
            if spec.scope.selector.is_some() && spec.scope.selector.as_deref() != selector {
                continue;
            }
            let lease = Duration::from_secs(u64::try_from(spec.lease_duration_seconds).unwrap_or(0));
            let Ok(expires) = spec.renew_time.0.checked_add(lease) else {
                continue;
            };
            if expires <= now || report.metadata.deletion_timestamp.is_some() {
                continue;
            }
            next_expiry = Some(next_expiry.map_or(expires, |e| e.min(expires)));
            replicas.push(ServingReplica {
                name: report.name_any(),
                namespace: spec.scope.namespace.clone(),
                aliases: spec.served.model_aliases.parse().ok(),
                providers: spec.served.llm_providers.parse().ok(),
            });
        }
        replicas.sort_by(|a, b| a.name.cmp(&b.name));
        (GatewayView { replicas }, next_expiry)
    }

    /// The replicas that serve objects of `namespace`.
    pub fn serving<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a ServingReplica> {
        self.replicas
            .iter()
            .filter(move |r| r.namespace.as_deref().is_none_or(|ns| ns == namespace))
    }

    #[cfg(test)]
    pub fn of(replicas: Vec<ServingReplica>) -> Self {
        GatewayView { replicas }
    }

    /// Replicas serving every namespace, each with its alias and provider tables at one version.
    #[cfg(test)]
    pub fn at_versions(replicas: &[(&str, u64)]) -> Self {
        let serving = |&(name, version): &(&str, u64)| ServingReplica {
            name: name.into(),
            namespace: None,
            aliases: Some(version),
            providers: Some(version),
        };
        GatewayView::of(replicas.iter().map(serving).collect())
    }
}

/// The current view, republished when it changes.
pub struct Gateways {
    pub view: watch::Receiver<Arc<GatewayView>>,
    ready: watch::Receiver<bool>,
}

impl Gateways {
    /// Waits for the first list of reports, or for the watch to fail once (the CRD not
    /// installed yet, no permission): the controller then goes on, every object saying
    /// `NoGateways`, and the watch keeps retrying.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

/// Watches the `GatewayReplica`s in `namespace` and keeps the view current, including when a
/// lease runs out with no event. Returns the view and the task that must be polled.
pub fn watch(
    client: &Client,
    namespace: &str,
    selector: Option<String>,
) -> (Gateways, impl std::future::Future<Output = ()> + Send + 'static) {
    let changes = Changes::default();
    let api: Api<GatewayReplica> = Api::namespaced(client.clone(), namespace);
    let (store, synced, _, stream) = reflect(
        api,
        kube::runtime::watcher::Config::default(),
        changes.clone(),
        Bump::OnAny,
        |_| {},
    );
    let (sender, view) = watch::channel(Arc::new(GatewayView::default()));
    let (ready_tx, ready) = watch::channel(false);
    let listed = {
        let (synced, ready_tx) = (synced.clone(), ready_tx.clone());
        async move {
            synced.wait().await;
            ready_tx.send_replace(true);
        }
    };
    let publisher = publish(store, synced, changes, selector, sender);
    let namespace = namespace.to_string();
    let driver = async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(item) = stream.next().await {
            match item {
                Err(e) if !failing => {
                    failing = true;
                    ready_tx.send_replace(true);
                    tracing::error!(
                        error = %e,
                        namespace = %namespace,
                        "cannot watch the gateways' reports (gatewayreplicas.modelgate.dev): until this works, Programmed says NoGateways; install the CRDs (kubectl apply --server-side -f crds/) and the controller's RBAC, or point --gateway-namespace at the gateways' namespace"
                    );
                }
                Err(e) => tracing::debug!(error = %e, "gateway reports: watch error; retrying with backoff"),
                Ok(_) => failing = false,
            }
        }
    };
    let task = async move {
        tokio::join!(driver, listed, publisher);
    };
    (Gateways { view, ready }, task)
}

async fn publish(
    store: Store<GatewayReplica>,
    synced: Synced,
    changes: Changes,
    selector: Option<String>,
    sender: watch::Sender<Arc<GatewayView>>,
) {
    let mut changed = changes.subscribe();
    synced.wait().await;
    loop {
        let (view, next_expiry) = GatewayView::at(&store.state(), selector.as_deref(), Timestamp::now());
        if **sender.borrow() != view {
            tracing::debug!(replicas = view.replicas.len(), "gateway replicas changed");
            sender.send_replace(Arc::new(view));
        }
        let until_expiry = next_expiry.map(|at| {
            let left = at.duration_since(Timestamp::now());
            Duration::try_from(left).unwrap_or_default() + Duration::from_millis(10)
        });
        tokio::select! {
            result = changed.changed() => if result.is_err() { return },
            () = sleep_or_forever(until_expiry) => {},
        }
    }
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{GatewayReplicaSpec, ReplicaScope, Served};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn report(name: &str, renewed: &str, lease: i32, scope: ReplicaScope, aliases: &str) -> Arc<GatewayReplica> {
        let mut replica = GatewayReplica::new(
            name,
            GatewayReplicaSpec {
                lease_duration_seconds: lease,
                renew_time: MicroTime(renewed.parse().expect("time")),
                scope,
                served: Served {
                    model_aliases: aliases.into(),
                    llm_providers: "7".into(),
                    routes: 1,
                },
            },
        );
        replica.metadata.namespace = Some("modelgate-system".into());
        Arc::new(replica)
    }

    #[test]
    fn live_reports_in_scope_count_until_their_lease_runs_out() {
        let all = ReplicaScope::default();
        let team = ReplicaScope {
            namespace: Some("team".into()),
            selector: None,
        };
        let other_selector = ReplicaScope {
            namespace: None,
            selector: Some("shard=b".into()),
        };
        let reports = vec![
            report("gw-b", "2026-01-01T10:00:00Z", 30, all.clone(), "100"),
            report("gw-a", "2026-01-01T10:00:10Z", 30, team, "not-a-number"),
            report("gw-old", "2026-01-01T09:59:00Z", 30, all, "90"),
            report("gw-shard-b", "2026-01-01T10:00:00Z", 30, other_selector, "100"),
        ];
        let now: Timestamp = "2026-01-01T10:00:20Z".parse().expect("time");
        let (view, next) = GatewayView::at(&reports, None, now);
        let names: Vec<&str> = view.replicas.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["gw-a", "gw-b"],
            "expired and other-selector reports do not count"
        );
        assert_eq!(
            next,
            Some("2026-01-01T10:00:30Z".parse().expect("time")),
            "gw-b expires first"
        );
        assert_eq!(
            view.replicas[0].aliases, None,
            "an unreadable version never counts as served"
        );
        assert_eq!(
            view.serving("team").map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["gw-a", "gw-b"]
        );
        assert_eq!(
            view.serving("elsewhere").map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["gw-b"],
            "a namespaced gateway serves only its namespace"
        );
        let (later, _) = GatewayView::at(&reports, None, "2026-01-01T10:00:30Z".parse().expect("time"));
        assert_eq!(later.replicas.len(), 1, "gw-b's lease ran out at 10:00:30");
        let (sharded, _) = GatewayView::at(&reports, Some("shard=b"), now);
        assert_eq!(
            sharded.replicas.len(),
            3,
            "a controller with --selector counts its own shard's gateways"
        );
    }
}
