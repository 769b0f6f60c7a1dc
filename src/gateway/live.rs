//! The live routing state: a compiled table prepared for serving (HTTP clients, auth headers,
//! pre-encoded model names, the `/v1/models` body), swapped atomically as a whole.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;

use super::guardrails::Guard;
use super::metrics::LazyRouteMetrics;
pub use super::providers::PrepareError;
use super::providers::{self, Upstream};
use super::resilience::{cumulative, LiveTier, Registry, Resilience, TargetState};
use super::upstream::ClientPool;
use crate::compiler::{ObjectKey, RoutePolicy, RouteTarget, RoutingTable};

/// What serves requests right now.
#[derive(Default)]
pub struct LiveTable {
    pub routes: HashMap<String, LiveRoute>,
    /// The `GET /v1/models` body.
    pub models_body: Bytes,
}

pub struct LiveRoute {
    pub alias: Arc<str>,
    pub disabled: Option<Arc<str>>,
    /// The alias's own targets; empty when `resilience` holds them as its first tier.
    pub targets: Vec<LiveTarget>,
    /// Running sums of the targets' weights, for picking.
    cumulative: Vec<f64>,
    pub created: i64,
    /// Whether the route is served from a stale (last good) definition.
    pub stale: bool,
    /// Fallback tiers, retries, timeouts, outlier detection or a load-balancing policy;
    /// `None` keeps the route on the plain path.
    pub resilience: Option<Box<Resilience>>,
    /// Left out of `GET /v1/models`.
    pub hidden: bool,
    /// What a call costs a team, and its prices as written (for the read API).
    pub price: Option<crate::compiler::tenancy::Price>,
    pub pricing: Option<crate::crd::Pricing>,
    pub description: Option<Arc<str>>,
    /// The alias's guardrails, compiled once for this table.
    pub guard: Option<Arc<Guard>>,
}

impl LiveRoute {
    /// Every target of the route, fallback tiers included.
    pub fn all_targets(&self) -> impl Iterator<Item = &LiveTarget> {
        let tiers = self.resilience.iter().flat_map(|r| r.tiers.iter());
        self.targets.iter().chain(tiers.flat_map(|t| t.targets.iter()))
    }

    /// Picks a target by weight; `roll` is uniform in `[0, 1)`.
    pub fn pick(&self, roll: f64) -> Option<&LiveTarget> {
        match self.targets.len() {
            0 => None,
            1 => self.targets.first(),
            _ => {
                let total = self.cumulative.last().copied().unwrap_or(0.0);
                let point = roll * total;
                let index = self
                    .cumulative
                    .iter()
                    .position(|&c| point < c)
                    .unwrap_or(self.targets.len() - 1);
                self.targets.get(index)
            }
        }
    }
}

pub struct LiveTarget {
    pub upstream: Arc<Upstream>,
    /// Model id sent upstream.
    pub model: Arc<str>,
    /// The model id as a JSON string literal, spliced into request bodies.
    pub model_json: Bytes,
    pub metrics: LazyRouteMetrics,
    /// Share of the tier's traffic in percent.
    pub weight: f64,
    /// In-flight count, failures and ejection: shared by every alias using this provider and
    /// model, and kept across table swaps.
    pub state: Arc<TargetState>,
    /// `x-modelgate-target`: `<provider>/<model>`.
    pub served_by: HeaderValue,
}

impl LiveTarget {
    pub(crate) fn new(upstream: &Arc<Upstream>, target: &RouteTarget, registry: &Registry) -> Self {
        let served_by = format!("{}/{}", target.provider.name, target.model);
        LiveTarget {
            upstream: upstream.clone(),
            model: Arc::from(target.model.as_str()),
            model_json: Bytes::from(serde_json::Value::from(target.model.as_str()).to_string()),
            metrics: LazyRouteMetrics::default(),
            weight: target.weight,
            state: registry.target(&upstream.name, &target.model),
            served_by: HeaderValue::from_str(&served_by).unwrap_or_else(|_| HeaderValue::from_static("unprintable")),
        }
    }
}

fn live_targets(
    targets: &[RouteTarget],
    upstreams: &HashMap<&ObjectKey, Arc<Upstream>>,
    registry: &Registry,
) -> Vec<LiveTarget> {
    targets
        .iter()
        .filter_map(|t| Some(LiveTarget::new(upstreams.get(&t.provider)?, t, registry)))
        .collect()
}

/// Prepares a compiled table for serving. Fallible; the swap that follows is not. Target
/// state comes from `registry`, so it outlives the table.
pub fn prepare(table: &RoutingTable, clients: &ClientPool, registry: &Registry) -> Result<LiveTable, PrepareError> {
    let mut upstreams: HashMap<&ObjectKey, Arc<Upstream>> = HashMap::with_capacity(table.providers.len());
    for (key, endpoint) in &table.providers {
        upstreams.insert(key, Arc::new(providers::prepare(endpoint, clients)?));
    }
    let mut routes = HashMap::with_capacity(table.routes.len());
    for (name, route) in &table.routes {
        let alias: Arc<str> = Arc::from(name.as_str());
        let mut targets = live_targets(&route.targets, &upstreams, registry);
        let mut resilience = None;
        let extras = route.extras.as_deref();
        if let Some(extras) = extras.filter(|e| !e.fallbacks.is_empty() || e.policy != RoutePolicy::default()) {
            let mut tiers = Vec::with_capacity(1 + extras.fallbacks.len());
            let own = std::mem::take(&mut targets);
            tiers.push(LiveTier::new(
                own,
                Vec::new(),
                alias.clone(),
                registry.counter(&alias, 0),
            ));
            for (i, tier) in extras.fallbacks.iter().enumerate() {
                tiers.push(LiveTier::new(
                    live_targets(&tier.targets, &upstreams, registry),
                    tier.on.clone(),
                    Arc::from(tier.via.as_str()),
                    registry.counter(&alias, i + 1),
                ));
            }
            resilience = Some(Box::new(Resilience {
                tiers,
                policy: extras.policy.clone(),
            }));
        }
        let (guard, unguarded) = compile_guard(route, clients);
        routes.insert(
            name.clone(),
            LiveRoute {
                cumulative: cumulative(targets.iter().map(|t| t.weight)),
                alias,
                disabled: route.disabled.as_deref().or(unguarded.as_deref()).map(Arc::from),
                targets,
                created: route.created.unwrap_or(0),
                stale: route.stale.is_some(),
                resilience,
                hidden: route.hidden,
                price: route.pricing.as_ref().map(|(_, price)| *price),
                pricing: route.pricing.as_ref().map(|(pricing, _)| pricing.clone()),
                description: route.description.as_deref().map(Arc::from),
                guard,
            },
        );
    }
    Ok(LiveTable {
        models_body: models_body(table),
        routes,
    })
}

/// An alias's compiled guardrails; guardrails that cannot be compiled disable the alias (with
/// the reason) rather than let its requests through unguarded.
fn compile_guard(route: &crate::compiler::Route, clients: &ClientPool) -> (Option<Arc<Guard>>, Option<String>) {
    let Some(spec) = route.extras.as_ref().and_then(|e| e.guardrails.as_ref()) else {
        return (None, None);
    };
    match Guard::compile(&route.alias, spec, clients) {
        Ok(guard) => (guard.map(Arc::new), None),
        Err(e) => {
            tracing::error!(alias = %route.alias, error = %e, "the alias's guardrails cannot be compiled; it refuses requests");
            (
                None,
                Some(format!(
                    "its guardrails cannot be applied: {}",
                    e.to_string().trim_end_matches('.')
                )),
            )
        }
    }
}

/// `GET /v1/models`: active, non-hidden aliases in name order, OpenAI list shape.
fn models_body(table: &RoutingTable) -> Bytes {
    let data: Vec<serde_json::Value> = table
        .sorted_routes()
        .into_iter()
        .filter(|r| r.disabled.is_none() && !r.hidden)
        .map(|r| model_object(&r.alias, r.created.unwrap_or(0), r.description.as_deref()))
        .collect();
    Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string())
}

/// `GET /v1/models` for a key: the active, listed aliases it may call.
pub fn models_body_for(table: &LiveTable, allowed: impl Fn(&str) -> bool) -> Bytes {
    let mut routes: Vec<&LiveRoute> = table
        .routes
        .values()
        .filter(|r| r.disabled.is_none() && !r.hidden && allowed(&r.alias))
        .collect();
    routes.sort_by(|a, b| a.alias.cmp(&b.alias));
    let data: Vec<serde_json::Value> = routes
        .into_iter()
        .map(|r| model_object(&r.alias, r.created, r.description.as_deref()))
        .collect();
    Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string())
}

/// One entry of `/v1/models`.
pub fn model_object(alias: &str, created: i64, description: Option<&str>) -> serde_json::Value {
    let mut object = serde_json::json!({"id": alias, "object": "model", "created": created, "owned_by": "modelgate"});
    if let (Some(text), Some(map)) = (description, object.as_object_mut()) {
        map.insert("description".to_string(), serde_json::Value::from(text));
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(weights: &[f64]) -> LiveRoute {
        let upstream = Arc::new(Upstream {
            name: Arc::from("ns/p"),
            kind: crate::gateway::providers::UpstreamKind::Mock,
        });
        let registry = Registry::default();
        LiveRoute {
            alias: Arc::from("a"),
            disabled: None,
            targets: weights
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let target = RouteTarget {
                        provider: ObjectKey::new("ns", "p"),
                        model: i.to_string(),
                        weight: *w,
                        chain: Vec::new(),
                    };
                    LiveTarget::new(&upstream, &target, &registry)
                })
                .collect(),
            cumulative: cumulative(weights.iter().copied()),
            created: 0,
            stale: false,
            resilience: None,
            hidden: false,
            price: None,
            pricing: None,
            description: None,
            guard: None,
        }
    }

    #[test]
    fn picking_follows_the_weights() {
        let route = route(&[80.0, 0.0, 20.0]);
        let mut counts = [0usize; 3];
        let mut rng = fastrand::Rng::with_seed(7);
        const N: usize = 100_000;
        for _ in 0..N {
            let target = route.pick(rng.f64()).expect("a target");
            counts[target.model.parse::<usize>().expect("index")] += 1;
        }
        assert_eq!(counts[1], 0, "a zero-weight target is never picked");
        let share = counts[0] as f64 / N as f64;
        // 80% ± 1% (the standard deviation at N = 100k is 0.13%).
        assert!((share - 0.8).abs() < 0.01, "share {share}");
    }

    #[test]
    fn edges_of_the_roll_stay_in_range() {
        let route = route(&[50.0, 50.0]);
        assert_eq!(&*route.pick(0.0).expect("t").model, "0");
        assert_eq!(&*route.pick(0.999_999).expect("t").model, "1");
    }
}
