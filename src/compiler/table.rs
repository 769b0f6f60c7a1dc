//! The routing table: the immutable result of compiling providers and aliases.

use std::collections::HashMap;
use std::time::Duration;

use super::diagnostic::ObjectKey;
use super::rules::parse_duration;
use super::tenancy::Price;
use crate::crd::{
    AliasTimeouts, FailureCondition, Guardrails, LoadBalancing, OutlierDetection, ProviderType, ResolvedFallback,
    ResolvedPolicy, Retry,
};
use crate::secret::SecretString;

/// Every servable alias by client-facing name, and every provider its routes use.
/// Built once per configuration change and never mutated; lookups are O(1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoutingTable {
    pub routes: HashMap<String, Route>,
    pub providers: HashMap<ObjectKey, ProviderEndpoint>,
}

impl RoutingTable {
    /// The route for a client-facing model name.
    pub fn route(&self, alias: &str) -> Option<&Route> {
        self.routes.get(alias)
    }

    /// Routes in name order, for listings and stable output.
    pub fn sorted_routes(&self) -> Vec<&Route> {
        let mut routes: Vec<&Route> = self.routes.values().collect();
        routes.sort_by(|a, b| a.alias.cmp(&b.alias));
        routes
    }
}

/// How an alias is served.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Client-facing name.
    pub alias: String,
    /// The ModelAlias this route came from.
    pub source: ObjectKey,
    /// The ModelAlias generation it was compiled from (absent for files).
    pub generation: Option<i64>,
    pub description: Option<String>,
    pub hidden: bool,
    /// `None` when requests are served; otherwise why they get 403 `model_disabled`.
    pub disabled: Option<String>,
    /// Concrete destinations; weights add up to 100 (empty only for a disabled route).
    pub targets: Vec<RouteTarget>,
    /// Set when the current spec is broken and this is the last accepted route.
    pub stale: Option<String>,
    /// When the ModelAlias was created (Unix seconds), for `created` in `/v1/models`.
    pub created: Option<i64>,
    /// What a call costs a Team (`spec.pricing`, or that of the one alias it routes to),
    /// as written and as parsed.
    pub pricing: Option<(crate::crd::Pricing, Price)>,
    /// Fallbacks, policy and guardrails; boxed, so the many routes without them stay small.
    pub extras: Option<Box<RouteExtras>>,
}

/// What a route does beyond picking a target.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RouteExtras {
    /// Tiers tried in order after the route's own targets.
    pub fallbacks: Vec<FallbackTier>,
    pub policy: RoutePolicy,
    pub guardrails: Option<Guardrails>,
}

/// One compiled fallback tier.
#[derive(Clone, Debug, PartialEq)]
pub struct FallbackTier {
    /// The failures that move on to this tier.
    pub on: Vec<FailureCondition>,
    pub targets: Vec<RouteTarget>,
    /// The fallback's target as written, and the aliases it was reached through.
    pub via: String,
}

/// Load balancing, retries, timeouts and outlier detection, with defaults applied.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RoutePolicy {
    pub load_balancing: LoadBalancing,
    pub retry: Option<RetryPolicy>,
    /// Longest wait for a try's first content.
    pub first_token: Option<Duration>,
    /// Longest time for the whole request.
    pub total: Option<Duration>,
    pub outlier: Option<OutlierPolicy>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try, per tier.
    pub attempts: u32,
    pub on: Vec<FailureCondition>,
    pub backoff: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierPolicy {
    pub consecutive_failures: u32,
    pub ejection_time: Duration,
}

/// Default wait before the first retry.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// Default failures in a row that eject a target.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// Default time an ejected target stays out.
pub const DEFAULT_EJECTION_TIME: Duration = Duration::from_secs(30);

impl RoutePolicy {
    /// The policy a spec sets (fields already checked by the compiler's rules).
    pub fn from_spec(
        load_balancing: Option<LoadBalancing>,
        retry: Option<&Retry>,
        timeouts: Option<&AliasTimeouts>,
        outlier: Option<&OutlierDetection>,
    ) -> Self {
        let duration = |text: Option<&String>| text.and_then(|t| parse_duration(t));
        RoutePolicy {
            load_balancing: load_balancing.unwrap_or_default(),
            retry: retry.map(|r| RetryPolicy {
                attempts: r.attempts,
                on: r
                    .conditions()
                    .cloned()
                    .unwrap_or_else(|| vec![FailureCondition::ServerError, FailureCondition::Unreachable]),
                backoff: duration(r.backoff.as_ref()).unwrap_or(DEFAULT_RETRY_BACKOFF),
            }),
            first_token: duration(timeouts.and_then(|t| t.first_token.as_ref())),
            total: duration(timeouts.and_then(|t| t.total.as_ref())),
            outlier: outlier.map(|o| OutlierPolicy {
                consecutive_failures: o.consecutive_failures.unwrap_or(DEFAULT_CONSECUTIVE_FAILURES),
                ejection_time: duration(o.ejection_time.as_ref()).unwrap_or(DEFAULT_EJECTION_TIME),
            }),
        }
    }
}

/// One concrete destination of a route.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteTarget {
    pub provider: ObjectKey,
    /// Model id sent upstream.
    pub model: String,
    /// Share of traffic in percent.
    pub weight: f64,
    /// Aliases this target was reached through, starting with the route's own alias.
    pub chain: Vec<String>,
}

/// A provider ready to receive requests: endpoint, credentials and limits resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderEndpoint {
    pub key: ObjectKey,
    pub provider_type: ProviderType,
    /// Base URL without a trailing `/` (`mock://namespace/name` for mocks).
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub headers: Vec<(String, String)>,
    pub timeouts: ResolvedTimeouts,
    /// What only some provider types have.
    pub settings: ProviderSettings,
    /// Drop parameters a translated request cannot carry instead of refusing the request.
    pub drop_unsupported_params: bool,
    /// The CA the provider's certificate is verified against (`tls.caSecretRef`); `None`
    /// means the system's roots.
    pub trusted_ca: Option<super::tls::TrustedCa>,
}

/// Provider-type settings, defaults applied.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum ProviderSettings {
    /// `openai`, `openai-compatible`, `gemini` and `mock` have none.
    #[default]
    None,
    Anthropic {
        /// `anthropic-version`.
        version: String,
        /// `max_tokens` for translated requests that set none.
        default_max_tokens: u32,
    },
    Azure {
        /// `v1`, or a dated version for the deployments API.
        api_version: String,
    },
    Bedrock {
        region: String,
        auth: BedrockAuth,
    },
}

/// How a Bedrock provider authenticates.
#[derive(Clone, Debug, PartialEq)]
pub enum BedrockAuth {
    /// A Bedrock API key (`apiKey`), sent as a Bearer token.
    ApiKey,
    /// Static credentials from a Secret, signed with SigV4.
    Static(AwsKeys),
    /// The standard AWS credential chain of the gateway, signed with SigV4.
    Chain,
}

/// AWS credentials. The secret parts never print.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

/// Timeouts with defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedTimeouts {
    pub connect: Duration,
    pub request: Duration,
    pub idle: Duration,
}

impl Default for ResolvedTimeouts {
    fn default() -> Self {
        ResolvedTimeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(600),
            idle: Duration::from_secs(120),
        }
    }
}

impl Route {
    /// The route as published in `ModelAlias.status.resolved`.
    pub fn to_resolved(&self, generation: i64) -> crate::crd::ResolvedRoute {
        crate::crd::ResolvedRoute {
            alias: self.alias.clone(),
            generation,
            active: self.disabled.is_none(),
            disabled_reason: self.disabled.clone(),
            hidden: self.hidden,
            description: self.description.clone(),
            targets: resolved_targets(&self.targets),
            fallbacks: self
                .extras
                .iter()
                .flat_map(|e| &e.fallbacks)
                .map(|tier| ResolvedFallback {
                    on: tier.on.clone(),
                    targets: resolved_targets(&tier.targets),
                    via: tier.via.clone(),
                })
                .collect(),
            policy: self.extras.as_ref().and_then(|e| e.policy.to_resolved()),
            guardrails: self.extras.as_ref().and_then(|e| e.guardrails.clone()),
            pricing: self.pricing.as_ref().map(|(pricing, _)| pricing.into()),
        }
    }

    /// A route read back from `ModelAlias.status.resolved`; targets whose provider cannot be
    /// parsed are dropped.
    pub fn from_resolved(resolved: &crate::crd::ResolvedRoute, source: ObjectKey, created: Option<i64>) -> Route {
        Route {
            alias: resolved.alias.clone(),
            source,
            generation: Some(resolved.generation),
            description: resolved.description.clone(),
            hidden: resolved.hidden,
            disabled: (!resolved.active).then(|| {
                resolved
                    .disabled_reason
                    .clone()
                    .unwrap_or_else(|| format!("alias '{}' is disabled", resolved.alias))
            }),
            targets: route_targets(&resolved.targets),
            stale: None,
            created,
            extras: extras_from_resolved(resolved),
            pricing: resolved.pricing.as_ref().and_then(|p| {
                let pricing = crate::crd::Pricing::from(p);
                let price = Price::parse(&pricing).ok()?;
                Some((pricing, price))
            }),
        }
    }
}

fn resolved_targets(targets: &[RouteTarget]) -> Vec<crate::crd::ResolvedTarget> {
    targets
        .iter()
        .map(|t| crate::crd::ResolvedTarget {
            provider: t.provider.to_string(),
            model: t.model.clone(),
            weight: t.weight,
            chain: t.chain.clone(),
        })
        .collect()
}

/// Targets read back from `status.resolved`; those whose provider cannot be parsed are dropped.
fn route_targets(targets: &[crate::crd::ResolvedTarget]) -> Vec<RouteTarget> {
    targets
        .iter()
        .filter_map(|t| {
            Some(RouteTarget {
                provider: ObjectKey::parse(&t.provider)?,
                model: t.model.clone(),
                weight: t.weight,
                chain: t.chain.clone(),
            })
        })
        .collect()
}

fn extras_from_resolved(resolved: &crate::crd::ResolvedRoute) -> Option<Box<RouteExtras>> {
    if resolved.fallbacks.is_empty() && resolved.policy.is_none() && resolved.guardrails.is_none() {
        return None;
    }
    let policy = resolved.policy.clone().unwrap_or_default();
    Some(Box::new(RouteExtras {
        fallbacks: resolved
            .fallbacks
            .iter()
            .map(|tier| FallbackTier {
                on: tier.on.clone(),
                targets: route_targets(&tier.targets),
                via: tier.via.clone(),
            })
            .collect(),
        policy: RoutePolicy::from_spec(
            policy.load_balancing,
            policy.retry.as_ref(),
            policy.timeouts.as_ref(),
            policy.outlier_detection.as_ref(),
        ),
        guardrails: resolved.guardrails.clone(),
    }))
}

impl RoutePolicy {
    /// The policy as published; `None` when it is all defaults. Durations are written back in
    /// the grammar the spec uses.
    fn to_resolved(&self) -> Option<ResolvedPolicy> {
        if *self == RoutePolicy::default() {
            return None;
        }
        let text = |d: Duration| format!("{}ms", d.as_millis());
        Some(ResolvedPolicy {
            load_balancing: (self.load_balancing != LoadBalancing::default()).then_some(self.load_balancing),
            retry: self.retry.as_ref().map(|r| Retry {
                attempts: r.attempts,
                on: Some(r.on.clone()),
                on_yaml11: None,
                backoff: Some(text(r.backoff)),
            }),
            timeouts: (self.first_token.is_some() || self.total.is_some()).then(|| AliasTimeouts {
                first_token: self.first_token.map(text),
                total: self.total.map(text),
            }),
            outlier_detection: self.outlier.map(|o| OutlierDetection {
                consecutive_failures: Some(o.consecutive_failures),
                ejection_time: Some(text(o.ejection_time)),
            }),
        })
    }
}
