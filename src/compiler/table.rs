//! The routing table: the immutable result of compiling providers and aliases.

use std::collections::HashMap;
use std::time::Duration;

use super::diagnostic::ObjectKey;
use super::tenancy::Price;
use crate::crd::ProviderType;
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
            targets: self
                .targets
                .iter()
                .map(|t| crate::crd::ResolvedTarget {
                    provider: t.provider.to_string(),
                    model: t.model.clone(),
                    weight: t.weight,
                    chain: t.chain.clone(),
                })
                .collect(),
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
            targets: resolved
                .targets
                .iter()
                .filter_map(|t| {
                    Some(RouteTarget {
                        provider: ObjectKey::parse(&t.provider)?,
                        model: t.model.clone(),
                        weight: t.weight,
                        chain: t.chain.clone(),
                    })
                })
                .collect(),
            stale: None,
            created,
            pricing: resolved.pricing.as_ref().and_then(|p| {
                let pricing = crate::crd::Pricing::from(p);
                let price = Price::parse(&pricing).ok()?;
                Some((pricing, price))
            }),
        }
    }
}
