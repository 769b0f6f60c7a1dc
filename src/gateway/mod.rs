//! The OpenAI-compatible gateway: routes requests by alias to providers, from an atomically
//! swapped routing table.

mod api;
pub(crate) mod body;
pub mod cluster;
pub mod error;
mod h1pool;
mod live;
pub mod metrics;
mod mock;
mod proxy;
pub mod standalone;
mod upstream;
pub(crate) mod usage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use api::Api;
pub use error::ApiError;
pub use live::{prepare, LiveTable, PrepareError};
use metrics::Metrics;
pub use upstream::ClientPool;

/// Default request body limit: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;

/// State shared by every request.
pub struct Shared {
    pub live: ArcSwap<LiveTable>,
    pub metrics: Metrics,
    pub clients: ClientPool,
    pub max_body_bytes: usize,
    ready: AtomicBool,
}

impl Shared {
    pub fn new(max_body_bytes: usize) -> Self {
        Shared {
            live: ArcSwap::from_pointee(LiveTable::default()),
            metrics: Metrics::new(),
            clients: ClientPool::default(),
            max_body_bytes,
            ready: AtomicBool::new(false),
        }
    }

    /// Swaps in a prepared table (infallible) and marks the gateway ready.
    pub fn install(&self, live: LiveTable, routes: usize, errors: usize) {
        self.metrics.retain(|alias, provider| {
            live.routes
                .get(alias)
                .is_some_and(|r| r.targets.iter().any(|t| &*t.upstream.name == provider))
        });
        self.live.store(Arc::new(live));
        self.metrics.routes.set(i64::try_from(routes).unwrap_or(i64::MAX));
        self.metrics
            .config_errors
            .set(i64::try_from(errors).unwrap_or(i64::MAX));
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn admin_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(shared)
}

/// Stops the in-cluster watch task when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no routing table loaded yet\n",
        )
            .into_response()
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

/// How often [`anchor_timers`] wakes.
const TIMER_ANCHOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps a timer due within [`TIMER_ANCHOR`] at all times. Every proxied request arms a
/// timeout (its provider's `idle`, 2 minutes by default); when that is the runtime's earliest
/// timer, registering it wakes the I/O driver: an eventfd write and an extra `epoll_wait` per
/// request. With an earlier timer always pending, registering one costs no system call.
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
}

/// A gateway serving in the background; dropping it shuts it down.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), GatewayError>>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn shutdown(mut self) -> Result<(), GatewayError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }

    /// Serves until the process is asked to stop (Ctrl-C or SIGTERM).
    pub async fn until_signal(self) -> Result<(), GatewayError> {
        crate::signal::shutdown().await;
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Loads the routing table (from files, failing with every problem listed, or from the
/// cluster), binds both ports and starts serving.
pub async fn start(options: GatewayOptions) -> Result<Running, GatewayError> {
    let shared = Arc::new(Shared::new(options.max_body_bytes));
    // Whatever keeps the table current lives as long as the server.
    let background: Box<dyn std::any::Any + Send> = if options.config.is_empty() {
        let client = kube::Client::try_default().await.map_err(GatewayError::Kubernetes)?;
        let task = tokio::spawn(cluster::follow(client, options.scope.clone(), shared.clone()));
        Box::new(AbortOnDrop(task))
    } else {
        let table = standalone::initial(&options.config)?;
        let live = prepare(&table, &shared.clients).map_err(standalone::StartupError::from)?;
        shared.install(live, table.routes.len(), 0);
        Box::new(standalone::watch(shared.clone(), options.config.clone(), table)?)
    };

    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })
    };
    let listener = bind(options.listen).await?;
    let admin = bind(options.admin_listen).await?;
    let addr = listener.local_addr().map_err(GatewayError::Serve)?;
    let admin_addr = admin.local_addr().map_err(GatewayError::Serve)?;

    let (stop, stopped) = oneshot::channel::<()>();
    let anchor = AbortOnDrop(tokio::spawn(anchor_timers()));
    let api = Api::new(shared.clone());
    let admin_app = admin_router(shared.clone());
    let task = tokio::spawn(async move {
        let _background = background;
        let _anchor = anchor;
        let (admin_stop, admin_stopped) = oneshot::channel::<()>();
        let admin_task = tokio::spawn(async move {
            axum::serve(admin, admin_app)
                .with_graceful_shutdown(async {
                    let _ = admin_stopped.await;
                })
                .await
        });
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let served = axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service(api),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await;
        let _ = admin_stop.send(());
        let _ = admin_task.await;
        served.map_err(GatewayError::Serve)
    });
    Ok(Running {
        addr,
        admin_addr,
        shared,
        stop: Some(stop),
        task: Some(task),
    })
}
