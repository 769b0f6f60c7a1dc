//! Gateway metrics in the Prometheus exposition format (via the official `prometheus-client`).
//!
//! Labels are low-cardinality by construction: `alias` and `provider` take values only from
//! the compiled routing table (never from a request's `model`), and every other label is a
//! fixed enum. Requests refused before routing are counted by error code alone.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Seconds: 1 ms to 2 min.
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Endpoint {
    chat_completions,
    completions,
    embeddings,
    /// Anthropic's `/v1/messages`.
    messages,
    /// Anthropic's `/v1/messages/count_tokens`.
    count_tokens,
    /// OpenAI's `/v1/responses`.
    responses,
}

impl Endpoint {
    /// Every endpoint, in slot order.
    pub const ALL: [Endpoint; 6] = [
        Endpoint::chat_completions,
        Endpoint::completions,
        Endpoint::embeddings,
        Endpoint::messages,
        Endpoint::count_tokens,
        Endpoint::responses,
    ];

    /// Position in [`Endpoint::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    ClientError,
    ServerError,
    Other,
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let text = match self {
            StatusClass::Success => "2xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Other => "other",
        };
        EncodeLabelValue::encode(&text, encoder)
    }
}

impl StatusClass {
    pub fn of(status: u16) -> Self {
        match status {
            200..=299 => StatusClass::Success,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => StatusClass::Other,
        }
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Direction {
    input,
    output,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReloadResult {
    applied,
    applied_with_errors,
    rejected,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    alias: String,
    provider: String,
    endpoint: Endpoint,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    alias: String,
    provider: String,
    endpoint: Endpoint,
    status_class: StatusClass,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    alias: String,
    provider: String,
    direction: Direction,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: ReloadResult,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RouteLabels>,
    upstream: HistogramFamily<RouteLabels>,
    first_chunk: HistogramFamily<RouteLabels>,
    tokens: Family<TokenLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    pub routes: Gauge,
    pub config_errors: Gauge,
    /// Client connections, per listener.
    pub connections: super::server::ConnectionMetrics,
    /// Usage by team and alias, and the usage store's health.
    pub tenancy: Arc<super::tenancy::metrics::TenancyMetrics>,
    /// Alias and provider pairs that have series.
    seen: Mutex<HashSet<(String, String)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("modelgate");
        let requests = Family::default();
        let duration = HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let upstream = HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let first_chunk = HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let tokens = Family::default();
        let rejected = Family::default();
        let reloads = Family::default();
        let routes = Gauge::default();
        let config_errors = Gauge::default();
        registry.register(
            "requests",
            "Requests routed to a provider, by alias, provider, endpoint and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from receiving a request to sending the last byte of its response",
            duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to receiving the response headers",
            upstream.clone(),
        );
        registry.register(
            "stream_first_chunk_seconds",
            "Time from receiving a streaming request to sending its first chunk",
            first_chunk.clone(),
        );
        registry.register(
            "tokens",
            "Tokens reported in upstream `usage`, by direction",
            tokens.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests refused before routing, by error code",
            rejected.clone(),
        );
        registry.register("config_reloads", "Configuration reloads, by result", reloads.clone());
        registry.register("routes", "Aliases in the routing table being served", routes.clone());
        registry.register(
            "config_errors",
            "Errors in the current configuration",
            config_errors.clone(),
        );
        let connections = super::server::ConnectionMetrics::register(&mut registry);
        let tenancy = Arc::new(super::tenancy::metrics::TenancyMetrics::register(&mut registry));
        Metrics {
            tenancy,
            registry,
            requests,
            duration,
            upstream,
            first_chunk,
            tokens,
            rejected,
            reloads,
            routes,
            config_errors,
            connections,
            seen: Mutex::default(),
        }
    }

    /// The handles for one alias, provider and endpoint (created on first use).
    pub fn route(&self, alias: &str, provider: &str, endpoint: Endpoint) -> RouteMetrics {
        self.seen().insert((alias.to_string(), provider.to_string()));
        let labels = RouteLabels {
            alias: alias.to_string(),
            provider: provider.to_string(),
            endpoint,
        };
        let count = |status_class| {
            self.requests.get_or_create_owned(&RequestLabels {
                alias: alias.to_string(),
                provider: provider.to_string(),
                endpoint,
                status_class,
            })
        };
        let tokens = |direction| {
            self.tokens.get_or_create_owned(&TokenLabels {
                alias: alias.to_string(),
                provider: provider.to_string(),
                direction,
            })
        };
        RouteMetrics {
            success: count(StatusClass::Success),
            client_error: count(StatusClass::ClientError),
            server_error: count(StatusClass::ServerError),
            other: count(StatusClass::Other),
            duration: self.duration.get_or_create_owned(&labels),
            upstream: self.upstream.get_or_create_owned(&labels),
            first_chunk: self.first_chunk.get_or_create_owned(&labels),
            tokens_in: tokens(Direction::input),
            tokens_out: tokens(Direction::output),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops the series of every alias and provider pair `keep` rejects (an alias deleted or
    /// re-routed), so a long-running gateway exports only what it serves.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let gone: Vec<(String, String)> = self.seen().iter().filter(|(a, p)| !keep(a, p)).cloned().collect();
        for (alias, provider) in gone {
            for endpoint in Endpoint::ALL {
                let labels = RouteLabels {
                    alias: alias.clone(),
                    provider: provider.clone(),
                    endpoint,
                };
                for family in [&self.duration, &self.upstream, &self.first_chunk] {
                    family.remove(&labels);
                }
                for status_class in [
                    StatusClass::Success,
                    StatusClass::ClientError,
                    StatusClass::ServerError,
                    StatusClass::Other,
                ] {
                    self.requests.remove(&RequestLabels {
                        alias: alias.clone(),
                        provider: provider.clone(),
                        endpoint,
                        status_class,
                    });
                }
            }
            for direction in [Direction::input, Direction::output] {
                self.tokens.remove(&TokenLabels {
                    alias: alias.clone(),
                    provider: provider.clone(),
                    direction,
                });
            }
            self.seen().remove(&(alias, provider));
        }
    }

    pub fn rejected(&self, code: &'static str) {
        self.rejected.get_or_create(&RejectLabels { code }).inc();
    }

    pub fn reloaded(&self, result: ReloadResult) {
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    /// The exposition text served at `/metrics`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Metric handles for one alias, provider and endpoint.
#[derive(Clone)]
pub struct RouteMetrics {
    success: Counter,
    client_error: Counter,
    server_error: Counter,
    other: Counter,
    pub duration: Histogram,
    pub upstream: Histogram,
    pub first_chunk: Histogram,
    pub tokens_in: Counter,
    pub tokens_out: Counter,
}

impl RouteMetrics {
    pub fn count(&self, status: u16) {
        match StatusClass::of(status) {
            StatusClass::Success => self.success.inc(),
            StatusClass::ClientError => self.client_error.inc(),
            StatusClass::ServerError => self.server_error.inc(),
            StatusClass::Other => self.other.inc(),
        };
    }
}

/// Lazily created metric handles, one slot per endpoint, kept with each live target so the
/// hot path touches no lock after the first request.
#[derive(Default)]
pub struct LazyRouteMetrics([OnceLock<Arc<RouteMetrics>>; Endpoint::ALL.len()]);

impl LazyRouteMetrics {
    pub fn get(&self, metrics: &Metrics, alias: &str, provider: &str, endpoint: Endpoint) -> &Arc<RouteMetrics> {
        self.0[endpoint.index()].get_or_init(|| Arc::new(metrics.route(alias, provider, endpoint)))
    }
}
