//! The OpenAI-compatible gateway: routes requests by alias to providers, from an atomically
//! swapped routing table.

mod api;
pub(crate) mod body;
pub mod cluster;
pub(crate) mod coarse;
pub mod egress;
pub mod error;
pub(crate) mod fixed;
pub mod guardrails;
pub(crate) mod h1;
mod h1pool;
mod headers;
mod live;
pub mod metrics;
mod mock;
pub mod providers;
mod proxy;
pub mod report;
mod request_id;
pub mod resilience;
pub mod server;
mod sockio;
pub mod standalone;
pub mod surfaces;
pub mod tenancy;
mod tls;
mod upstream;
pub(crate) mod usage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

pub use api::Api;
pub use error::ApiError;
pub use live::{prepare, LiveTable, PrepareError};
use metrics::Metrics;
pub use server::{DrainReport, ServerOptions, Shutdown};
pub use upstream::ClientPool;

/// Default request body limit: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;

/// State shared by every request.
pub struct Shared {
    pub live: ArcSwap<LiveTable>,
    pub metrics: Metrics,
    pub clients: ClientPool,
    pub max_body_bytes: usize,
    /// Per-target state (in flight, failures, ejections) that outlives table swaps.
    pub targets: resilience::Registry,
    /// The retry budget of this replica.
    pub budget: resilience::RetryBudget,
    /// Whether responses carry `x-modelgate-target`.
    pub target_header: bool,
    pub egress: egress::Egress,
    /// A request's body must arrive within this (`--body-timeout`).
    pub body_timeout: Duration,
    /// Keys, access, limits, credits and usage.
    pub tenancy: tenancy::Tenancy,
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Shared {
    /// A gateway without tenancy (every request served).
    pub fn new(max_body_bytes: usize, egress: egress::Egress) -> Self {
        let metrics = Metrics::new();
        let tenancy = tenancy::Tenancy::open(metrics.tenancy.clone());
        Shared::assemble(max_body_bytes, egress, metrics, tenancy)
    }

    /// A gateway with these tenancy options (a Redis store starts its connection task).
    pub fn with_tenancy(
        max_body_bytes: usize,
        egress: egress::Egress,
        options: tenancy::TenancyOptions,
    ) -> Result<Self, tenancy::TenancyError> {
        let metrics = Metrics::new();
        let tenancy = tenancy::Tenancy::new(options, metrics.tenancy.clone())?;
        Ok(Shared::assemble(max_body_bytes, egress, metrics, tenancy))
    }

    fn assemble(max_body_bytes: usize, egress: egress::Egress, metrics: Metrics, tenancy: tenancy::Tenancy) -> Self {
        Shared {
            live: ArcSwap::from_pointee(LiveTable::default()),
            metrics,
            clients: ClientPool::new(egress.policy.clone()),
            max_body_bytes,
            targets: resilience::Registry::default(),
            budget: resilience::RetryBudget::default(),
            target_header: true,
            egress,
            body_timeout: ServerOptions::default().body_timeout,
            tenancy,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    /// Swaps in a prepared table (infallible) and marks the gateway ready.
    pub fn install(&self, live: LiveTable, routes: usize, errors: usize) {
        self.metrics.retain(|alias, provider| {
            live.routes
                .get(alias)
                .is_some_and(|r| r.all_targets().any(|t| &*t.upstream.name == provider))
        });
        self.metrics.guardrails.retain(|alias| live.routes.contains_key(alias));
        self.live.store(Arc::new(live));
        self.targets.prune();
        self.metrics.routes.set(i64::try_from(routes).unwrap_or(i64::MAX));
        self.metrics
            .config_errors
            .set(i64::try_from(errors).unwrap_or(i64::MAX));
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Shutting down: `/readyz` fails from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn admin_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/debug/targets", get(debug_targets))
        .with_state(shared.clone())
        .merge(tenancy::admin::router(shared))
        .method_not_allowed_fallback(|| async { ApiError::admin_method_not_allowed() })
        .fallback(|uri: axum::http::Uri| async move { ApiError::unknown_admin_path(uri.path()) })
}

/// Stops the in-cluster watch task when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.draining.load(Ordering::Acquire) {
        ApiError::not_ready("shutting down").into_response()
    } else if shared.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::not_ready("no routing table loaded yet").into_response()
    }
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    let mut response = shared.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

async fn debug_targets(State(shared): State<Arc<Shared>>) -> Response {
    let body = resilience::debug::targets_json(&shared.targets);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// How often [`anchor_timers`] wakes.
const TIMER_ANCHOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps a timer due within [`TIMER_ANCHOR`] at all times. Some requests arm a timer of their
/// own (an alias's `firstToken` or `total` timeout, a body slow to arrive; the provider's
/// `request` and `idle` limits are kept by `upstream::Watch` without one); when that is the
/// runtime's earliest timer, registering it wakes the I/O driver: an eventfd write and an
/// extra `epoll_wait` per request. With an earlier timer always pending, registering one costs
/// no system call.
async fn anchor_timers() {
    let mut tick = tokio::time::interval(TIMER_ANCHOR);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// How to run a gateway.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// Manifest files (standalone mode); empty means in-cluster mode.
    pub config: Vec<PathBuf>,
    /// In-cluster mode: which LLMProviders and ModelAliases to serve.
    pub scope: crate::kubernetes::Scope,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_body_bytes: usize,
    /// Standalone mode: how objects removed from the files settle.
    pub settle: crate::manifest::SettleOptions,
    /// Whether responses name the target that served them (`x-modelgate-target`).
    pub target_header: bool,
    /// Where upstream requests may go.
    pub egress: egress::EgressOptions,
    /// Client connection timeouts and limits, and the shutdown sequence.
    pub server: ServerOptions,
    /// API keys, access, limits, credits and their store.
    pub tenancy: tenancy::TenancyOptions,
}

/// Errors that stop the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] standalone::StartupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("cannot reach the Kubernetes API (no --config given, so the gateway reads the cluster): {0}")]
    Kubernetes(#[source] kube::Error),
    #[error(transparent)]
    Tenancy(#[from] tenancy::TenancyError),
}

/// A gateway serving in the background; dropping it closes every connection at once.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    api: server::Server,
    admin: server::Server,
    shutdown: Shutdown,
    /// Whatever keeps the table current, and the timer anchor: they live as long as this.
    _background: (Box<dyn std::any::Any + Send>, AbortOnDrop),
    /// In-cluster: this replica's report of what it serves, withdrawn when it shuts down.
    reporting: Option<report::Reporting>,
}

/// How the gateway stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Drained after a signal.
    Drained(DrainReport),
    /// A second signal came during the drain: everything still open was cut.
    Forced(crate::signal::Received),
}

impl Running {
    /// Drains now, without the shutdown delay: stops accepting, lets in-flight requests
    /// finish within the grace period, then ends the rest.
    pub async fn shutdown(mut self) -> DrainReport {
        self.shared.set_draining();
        if let Some(reporting) = self.reporting.take() {
            reporting.finish().await;
        }
        let shutdown = Shutdown {
            delay: Duration::ZERO,
            ..self.shutdown
        };
        server::drain::drain(&mut self.api, &mut self.admin, shutdown).await
    }

    /// Serves until SIGTERM or SIGINT, then drains: `/readyz` fails at once, new connections
    /// are still accepted for the shutdown delay, in-flight requests get the grace period,
    /// and what is left is ended. A second signal during the drain ends it at once. Create
    /// `signals` before starting the gateway, so no signal finds the default action.
    pub async fn until_signal(mut self, mut signals: crate::signal::Signals) -> Stopped {
        let first = signals.recv().await;
        self.shared.set_draining();
        tracing::info!(
            signal = %first,
            delay = ?self.shutdown.delay,
            grace = ?self.shutdown.grace,
            "shutting down: /readyz now fails; a second signal exits at once"
        );
        let shutdown = self.shutdown;
        // The replica stops counting for `Programmed` at once, while it drains.
        let withdraw = async {
            if let Some(reporting) = self.reporting.take() {
                reporting.finish().await;
            }
        };
        let drained = async {
            let (report, ()) = tokio::join!(server::drain::drain(&mut self.api, &mut self.admin, shutdown), withdraw);
            report
        };
        tokio::select! {
            report = drained => {
                tracing::info!(
                    took = ?report.took,
                    open_at_deadline = report.open_at_deadline,
                    streams_ended_with_an_error = report.streams_cut,
                    connections_cut = report.connections_cut,
                    "drained"
                );
                Stopped::Drained(report)
            }
            second = signals.recv() => {
                tracing::warn!(
                    signal = %second,
                    open = self.api.open(),
                    "second signal during the drain: exiting at once"
                );
                Stopped::Forced(second)
            }
        }
    }
}

/// Loads the routing table (from files, failing with every problem listed, or from the
/// cluster), binds both ports and starts serving.
pub async fn start(options: GatewayOptions) -> Result<Running, GatewayError> {
    start_reporting(options, None).await
}

/// [`start`]; in-cluster, with `report`, the replica also reports what it serves.
pub async fn start_reporting(
    options: GatewayOptions,
    report: Option<report::ReportOptions>,
) -> Result<Running, GatewayError> {
    tls::warm_up();
    let egress = egress::Egress::new(
        &options.egress,
        options.config.is_empty(),
        &[options.listen, options.admin_listen],
    );
    let mut shared = Shared::with_tenancy(options.max_body_bytes, egress, options.tenancy.clone())?;
    shared.body_timeout = options.server.body_timeout;
    shared.target_header = options.target_header;
    let shared = Arc::new(shared);
    let mut reporting = None;
    // Whatever keeps the table current lives as long as the server.
    let background: Box<dyn std::any::Any + Send> = if options.config.is_empty() {
        let client = kube::Client::try_default().await.map_err(GatewayError::Kubernetes)?;
        let served = match report {
            Some(report) => {
                let (served, running) = report::start(client.clone(), report, &options.scope);
                reporting = Some(running);
                served
            }
            None => report::ServedTx::default(),
        };
        let task = tokio::spawn(cluster::follow(client, options.scope.clone(), shared.clone(), served));
        Box::new(AbortOnDrop(task))
    } else {
        let (files, access) = standalone::Files::initial(&options.config, options.settle)?;
        let live = prepare(files.table(), &shared.clients, &shared.targets).map_err(standalone::StartupError::from)?;
        shared.install(live, files.table().routes.len(), 0);
        shared.tenancy.install(access);
        Box::new(standalone::watch(shared.clone(), files)?)
    };

    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })
    };
    let listener = bind(options.listen).await?;
    let admin = bind(options.admin_listen).await?;

    let fds = server::fd::raise_fd_limit();
    let (cap, warning) = server::fd::connection_cap(options.server.max_connections, fds);
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        max_connections = cap,
        fd_limit = fds.map(|f| f.soft),
        raised_from = fds.and_then(|f| f.raised_from),
        "client connection limit"
    );
    let connections = &shared.metrics.connections;
    let api = server::serve(
        listener,
        Api::new(shared.clone()),
        &options.server,
        cap,
        connections.listener(server::ListenerName::api),
    )
    .map_err(GatewayError::Serve)?;
    let admin = server::serve(
        admin,
        admin_router(shared.clone()),
        &options.server,
        server::fd::ADMIN_CONNECTIONS,
        connections.listener(server::ListenerName::admin),
    )
    .map_err(GatewayError::Serve)?;
    Ok(Running {
        addr: api.local_addr(),
        admin_addr: admin.local_addr(),
        shared,
        api,
        admin,
        shutdown: options.server.shutdown,
        _background: (background, AbortOnDrop(tokio::spawn(anchor_timers()))),
        reporting,
    })
}
