//! `modelgate controller`: validates LLMProviders and ModelAliases with the shared compiler,
//! writes their status (conditions and the compiled route) and publishes Events. One replica
//! leads (a Lease); the others wait to take over.

mod dependents;
mod events;
pub mod gateways;
mod metrics;
mod pacing;
pub mod reconcile;
mod references;
pub mod status;
pub mod usage;
mod world;
mod written;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::ObjectRef as KubeRef;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::crd::{AccessGroup, LLMProvider, ModelAlias, Team};
use crate::kubernetes::{drive, reflectors, Changes, Scope};
use events::{Events, Reporter};
use metrics::ControllerMetrics;
use reconcile::{error_policy, reconcile_alias, reconcile_group, reconcile_provider, reconcile_team, Context};
use world::World;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    pub scope: Scope,
    pub admin_listen: SocketAddr,
    /// `None` runs without leader election (a single replica).
    pub lease: Option<LeaseOptions>,
    /// How long an object waits for a missing provider, Secret, key or target alias before
    /// it is reported `Stalled`.
    pub stall_after: Duration,
    /// Where the gateways' `GatewayReplica` reports are.
    pub gateway_namespace: String,
    /// Where Teams' usage is read from for their status; `None`: not reported.
    pub usage: Option<usage::UsageSource>,
    /// How often usage is read (and so at most how often it changes a Team's status).
    pub usage_interval: std::time::Duration,
}

#[derive(Clone, Debug)]
pub struct LeaseOptions {
    pub name: String,
    pub namespace: String,
    pub identity: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election failed: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
}

struct Health {
    metrics: Arc<ControllerMetrics>,
    ready: AtomicBool,
}

/// Runs until SIGTERM or Ctrl-C; a leader releases its lease on the way out.
pub async fn run(options: ControllerOptions) -> Result<(), ControllerError> {
    let client = Client::try_default().await.map_err(ControllerError::Client)?;
    let health = Arc::new(Health {
        metrics: Arc::new(ControllerMetrics::default()),
        ready: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind(options.admin_listen)
        .await
        .map_err(|source| ControllerError::Bind {
            addr: options.admin_listen,
            source,
        })?;
    tracing::info!(admin = %format!("http://{}", listener.local_addr().unwrap_or(options.admin_listen)), "modelgate controller starting");
    let admin = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(health.clone());
    tokio::spawn(async move { axum::serve(listener, admin).await });

    let shutdown = crate::signal::shutdown();
    tokio::pin!(shutdown);
    let Some(lease) = options.lease.clone() else {
        health.ready.store(true, Ordering::Release);
        health.metrics.leader.set(1);
        tokio::select! {
            _ = lead(client, &options, &health) => {},
            _ = &mut shutdown => {},
        }
        return Ok(());
    };

    let manager = LeaseManagerBuilder::new(client.clone(), &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(10)
        .with_grace(3)
        .build()
        .await?;
    let (mut leading, task) = manager.watch().await;
    health.ready.store(true, Ordering::Release);
    tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity, "waiting for leadership");
    loop {
        while !*leading.borrow_and_update() {
            tokio::select! {
                changed = leading.changed() => if changed.is_err() { break },
                _ = &mut shutdown => return release(leading, task).await,
            }
        }
        tracing::info!(identity = %lease.identity, "leading: reconciling");
        health.metrics.leader.set(1);
        let lost = async {
            while *leading.borrow_and_update() {
                if leading.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            _ = lead(client.clone(), &options, &health) => {},
            _ = lost => tracing::warn!("lost leadership: standing by"),
            _ = &mut shutdown => {
                health.metrics.leader.set(0);
                return release(leading, task).await;
            }
        }
        health.metrics.leader.set(0);
    }
}

async fn release(
    leading: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
) -> Result<(), ControllerError> {
    drop(leading);
    if let Ok(Ok(manager)) = task.await {
        manager.release().await?;
        tracing::info!("released the lease");
    }
    Ok(())
}

/// Everything a leader does; returns only if the watches end.
async fn lead(client: Client, options: &ControllerOptions, health: &Health) {
    let scope: &Scope = &options.scope;
    let changes = Changes::default();
    let reflectors = reflectors(&client, scope, &changes, crate::kubernetes::Reader::Controller);
    let (gateways, gateway_watch) = gateways::watch(&client, &options.gateway_namespace, scope.selector.clone());
    let tenancy =
        crate::kubernetes::tenancy::reflectors(&client, scope, &changes, crate::kubernetes::Reader::Controller);
    let [s0, s1, s2] = reflectors.synced.clone();
    let [s3, s4, s5] = tenancy.synced.clone();
    let stores = world::Stores {
        providers: reflectors.providers.clone(),
        aliases: reflectors.aliases.clone(),
        secrets: reflectors.secrets.clone(),
        teams: tenancy.teams.clone(),
        groups: tenancy.groups.clone(),
        keys: tenancy.keys.clone(),
    };
    let world = Arc::new(World::new(
        stores,
        [s0, s1, s2, s3, s4, s5],
        changes,
        gateways,
        options.stall_after,
    ));
    let (events, queued_events) = Events::new(
        Reporter::from_env(reconcile::FIELD_MANAGER),
        events::QUEUE,
        health.metrics.clone(),
    );
    let pacing = events.pacing().clone();
    let ctx = Arc::new(Context::new(
        client.clone(),
        world.clone(),
        events,
        health.metrics.clone(),
    ));
    let events = events::deliver(client, queued_events, health.metrics.clone());

    let (alias_tx, alias_rx) = mpsc::channel::<KubeRef<ModelAlias>>(4096);
    let (provider_tx, provider_rx) = mpsc::channel::<KubeRef<LLMProvider>>(1024);
    let config = Config::default().concurrency(16);
    let aliases = Controller::for_stream(reflectors.alias_stream, reflectors.aliases)
        .with_config(config.clone())
        .reconcile_on(ReceiverStream::new(alias_rx))
        .run(reconcile_alias, error_policy, ctx.clone())
        .for_each(|_| async {});
    let providers = Controller::for_stream(reflectors.provider_stream, reflectors.providers)
        .with_config(config)
        .reconcile_on(ReceiverStream::new(provider_rx))
        .run(reconcile_provider, error_policy, ctx.clone())
        .for_each(|_| async {});
    let secrets = drive("Secret", reflectors.secret_stream);
    let (team_tx, team_rx) = mpsc::channel::<KubeRef<Team>>(1024);
    let (group_tx, group_rx) = mpsc::channel::<KubeRef<AccessGroup>>(1024);
    let teams = Controller::for_stream(tenancy.team_stream, tenancy.teams)
        .with_config(Config::default().concurrency(16))
        .reconcile_on(ReceiverStream::new(team_rx))
        .run(reconcile_team, error_policy, ctx.clone())
        .for_each(|_| async {});
    let groups = Controller::for_stream(tenancy.group_stream, tenancy.groups)
        .with_config(Config::default().concurrency(16))
        .reconcile_on(ReceiverStream::new(group_rx))
        .run(reconcile_group, error_policy, ctx.clone())
        .for_each(|_| async {});
    let keys = drive("API key Secret", tenancy.key_stream);
    let usage = {
        let (source, world, ctx, team_tx) = (options.usage.clone(), world.clone(), ctx.clone(), team_tx.clone());
        let (every, alias_tx) = (options.usage_interval, alias_tx.clone());
        async move {
            if let Some(source) = source {
                usage::poll(source, every, world, ctx, team_tx, alias_tx).await;
            }
        }
    };
    let compiler = world.clone().compile_on_change();
    let dependents = dependents::trigger(
        world,
        ctx.clone(),
        dependents::Queues {
            aliases: alias_tx,
            providers: provider_tx,
            teams: team_tx,
            groups: group_tx,
        },
        pacing,
    );
    tokio::join!(
        aliases,
        providers,
        secrets,
        compiler,
        dependents,
        events,
        gateway_watch,
        teams,
        groups,
        keys,
        usage
    );
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    if health.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn metrics_text(State(health): State<Arc<Health>>) -> Response {
    health.metrics.encode().into_response()
}
