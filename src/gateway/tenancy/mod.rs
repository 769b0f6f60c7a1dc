//! The `tenant` stage: who calls (API key → team), what it may call (access groups, and what
//! those aliases route through), and whether it may call now (rate limits, credits). The
//! request path sees two calls: [`Tenancy::admit`] after the route lookup, and
//! [`Admission::settle`] when the response body ends.

pub mod admin;
mod admission;
pub(crate) mod auth;
mod estimate;
mod limits;
pub mod live;
pub mod metrics;
mod periods;
mod seen;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderMap;

use admission::Metering;
pub use admission::{Admission, Handoff, LimitValues};
use limits::{Ask, LimitKind, Verdict};
use live::{LiveAccess, LiveTeam};
use metrics::TenancyMetrics;
use periods::PeriodNames;
pub use store::{FailureMode, StoreKind, UsageStore};

use super::error::ApiError;
use super::live::LiveRoute;
use super::metrics::Endpoint;
use crate::compiler::tenancy::AccessTable;
use crate::secret::SecretString;

/// Who may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every request is served, as without tenancy.
    None,
    /// Requests need a team's key.
    ApiKey,
}

/// How a gateway runs its tenant stage.
#[derive(Clone, Debug)]
pub struct TenancyOptions {
    pub auth: AuthMode,
    pub store: StoreKind,
    pub failure: FailureMode,
    /// Longest wait for the usage store on the request path.
    pub store_timeout: Duration,
    /// Bearer token the read API (`/api/...` on the admin port) requires, when set.
    pub admin_token: Option<SecretString>,
}

impl Default for TenancyOptions {
    fn default() -> Self {
        TenancyOptions {
            auth: AuthMode::None,
            store: StoreKind::Memory,
            failure: FailureMode::Open,
            store_timeout: store::DEFAULT_TIMEOUT,
            admin_token: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("--usage-store: {0}")]
    Store(#[from] redis::RedisError),
}

/// The tenant stage of one gateway.
pub struct Tenancy {
    pub options: TenancyOptions,
    pub live: ArcSwap<LiveAccess>,
    pub store: Arc<UsageStore>,
    pub metrics: Arc<TenancyMetrics>,
    periods: PeriodNames,
}

impl Tenancy {
    /// Every request served, counted in memory (no keys, no Redis): cannot fail.
    pub fn open(metrics: Arc<TenancyMetrics>) -> Self {
        Tenancy {
            options: TenancyOptions::default(),
            live: ArcSwap::from_pointee(LiveAccess::default()),
            store: Arc::new(UsageStore::memory()),
            metrics,
            periods: PeriodNames::default(),
        }
    }

    /// Needs a Tokio runtime when the store is Redis (it starts its connection task).
    pub fn new(options: TenancyOptions, metrics: Arc<TenancyMetrics>) -> Result<Self, TenancyError> {
        let mut store = UsageStore::memory();
        store.failure = options.failure;
        if let StoreKind::Redis(url) = &options.store {
            metrics.store_up.set(0);
            store.redis = Some(store::RedisStore::start(
                url,
                options.store_timeout,
                metrics.store_up.clone(),
            )?);
        }
        Ok(Tenancy {
            options,
            live: ArcSwap::from_pointee(LiveAccess::default()),
            store: Arc::new(store),
            metrics,
            periods: PeriodNames::default(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.options.auth == AuthMode::ApiKey
    }

    /// Serves a newly compiled access table.
    pub fn install(&self, table: AccessTable) {
        self.live
            .store(Arc::new(live::prepare(table, &self.store, &self.metrics)));
    }

    /// Raises each team's local spend to what its status last reported for the current
    /// period, so a restarted gateway on the memory store does not give a team its spent
    /// credits back (at most one usage interval is lost). `seeds`: team `namespace/name`,
    /// credit period, the status's period name, spent nano-dollars.
    pub fn seed(&self, seeds: &[(String, crate::crd::Period, String, i64)]) {
        let now = crate::compiler::tenancy::period::now_seconds();
        for (team, period, name, spent) in seeds {
            if crate::compiler::tenancy::period::window(*period, now).name == *name {
                let counters = self.store.local.team(team, *period);
                self.store.local.observe_spent(&counters, *spent);
            }
        }
    }

    /// The team a request's key belongs to; 401 `invalid_api_key` without a known key.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<LiveTeam>, ApiError> {
        let key = auth::presented_bytes(headers).ok_or_else(|| ApiError::invalid_api_key(false))?;
        let access = self.live.load();
        let team = access
            .keys
            .team_of_presented(key)
            .ok_or_else(|| ApiError::invalid_api_key(true))?;
        access
            .teams
            .get(team)
            .cloned()
            .ok_or_else(|| ApiError::invalid_api_key(true))
    }

    /// Admits a request for `route`, or refuses it with the error the client gets. `body_len`
    /// and `output_cap` (the body's size and output cap, from the body probe) make the estimate.
    pub async fn admit(
        &self,
        headers: &HeaderMap,
        route: &LiveRoute,
        (body_len, output_cap): (usize, Option<u64>),
        endpoint: Endpoint,
    ) -> Result<Admission, ApiError> {
        if !self.enabled() {
            return Ok(Admission::open());
        }
        let team = self.authenticate(headers)?;
        let Some(grant) = team.grants.get(&*route.alias) else {
            self.metrics.rejected(&team.label, "model_access_denied");
            return Err(ApiError::model_access_denied(&route.alias, &team.label));
        };
        let estimate = if team.metered() {
            estimate::tokens(body_len, output_cap, endpoint)
        } else {
            Default::default()
        };
        let estimated_cost = route.price.map_or(0, |p| p.cost(estimate));
        let period = team.period();
        let now = crate::compiler::tenancy::period::now_seconds();
        let period_name = self.periods.name(period, now);
        let ask = Ask {
            limits: team.limits.clone(),
            allocated: team.credits.map(|c| c.allocated),
            estimated_tokens: estimate.prompt + estimate.completion,
            estimated_cost,
            now,
        };
        let (verdict, remote) = if team.metered() {
            self.store
                .admit(&team.label, &team.counters, period, &period_name, &ask)
                .await
                .map_err(|_| {
                    self.metrics.rejected(&team.label, "usage_store_unavailable");
                    ApiError::usage_store_unavailable()
                })?
        } else {
            (
                Verdict::Admitted {
                    requests: None,
                    tokens: None,
                },
                false,
            )
        };
        match verdict {
            Verdict::Admitted { requests, tokens } => Ok(Admission::metered(Metering {
                store: self.store.clone(),
                alias: grant.alias.clone(),
                alias_counters: grant.counters.clone(),
                metrics: grant.metrics(&self.metrics, &team.label),
                price: route.price,
                period,
                period_name,
                admitted_at: now,
                reserved_cost: estimated_cost,
                estimate,
                remote,
                requests,
                tokens,
                team,
            })),
            Verdict::NoCredits { allocated, spent } => {
                self.metrics.rejected(&team.label, "insufficient_credits");
                Err(ApiError::insufficient_credits(&team.label, allocated, spent, period))
            }
            Verdict::RateLimited {
                kind,
                retry_after,
                requests,
                tokens,
            } => {
                self.metrics.rejected(&team.label, "rate_limit_exceeded");
                let limit = match kind {
                    LimitKind::Requests => {
                        format!("{} requests per minute", team.limits.requests_per_minute.unwrap_or(0))
                    }
                    LimitKind::Tokens => format!("{} tokens per minute", team.limits.tokens_per_minute.unwrap_or(0)),
                    LimitKind::Parallel => {
                        format!("{} parallel requests", team.limits.max_parallel_requests.unwrap_or(0))
                    }
                };
                let mut headers = HeaderMap::new();
                admission::rate_headers(&mut headers, requests, tokens, &team.limit_values);
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                if let Ok(value) = seconds.to_string().parse() {
                    headers.insert(http::header::RETRY_AFTER, value);
                }
                Err(ApiError::rate_limit_exceeded(&team.label, &limit, retry_after).with_headers(headers))
            }
        }
    }

    /// For `GET /v1/models`: the aliases the request's key may call (`None`: every alias).
    pub fn visible(&self, headers: &HeaderMap) -> Result<Option<Arc<LiveTeam>>, ApiError> {
        if !self.enabled() {
            return Ok(None);
        }
        self.authenticate(headers).map(Some)
    }
}
