//! The live routing state: a compiled table prepared for serving (HTTP clients, auth headers,
//! pre-encoded model names, the `/v1/models` body), swapped atomically as a whole.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::metrics::LazyRouteMetrics;
pub use super::providers::PrepareError;
use super::providers::{self, Upstream};
use super::upstream::ClientPool;
use crate::compiler::{ObjectKey, RoutingTable};

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
    pub targets: Vec<LiveTarget>,
    /// Running sums of the targets' weights, for picking.
    cumulative: Vec<f64>,
    pub created: i64,
    /// Whether the route is served from a stale (last good) definition.
    pub stale: bool,
    /// Left out of `GET /v1/models`.
    pub hidden: bool,
    /// What a call costs a team, and its prices as written (for the read API).
    pub price: Option<crate::compiler::tenancy::Price>,
    pub pricing: Option<crate::crd::Pricing>,
    pub description: Option<Arc<str>>,
}

impl LiveRoute {
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
}

/// Prepares a compiled table for serving. Fallible; the swap that follows is not.
pub fn prepare(table: &RoutingTable, clients: &ClientPool) -> Result<LiveTable, PrepareError> {
    let mut upstreams: HashMap<&ObjectKey, Arc<Upstream>> = HashMap::with_capacity(table.providers.len());
    for (key, endpoint) in &table.providers {
        upstreams.insert(key, Arc::new(providers::prepare(endpoint, clients)?));
    }
    let mut routes = HashMap::with_capacity(table.routes.len());
    for (name, route) in &table.routes {
        let mut targets = Vec::with_capacity(route.targets.len());
        let mut cumulative = Vec::with_capacity(route.targets.len());
        let mut sum = 0.0;
        for target in &route.targets {
            let Some(upstream) = upstreams.get(&target.provider) else {
                continue;
            };
            sum += target.weight;
            cumulative.push(sum);
            targets.push(LiveTarget {
                upstream: upstream.clone(),
                model: Arc::from(target.model.as_str()),
                model_json: Bytes::from(serde_json::Value::from(target.model.as_str()).to_string()),
                metrics: LazyRouteMetrics::default(),
            });
        }
        routes.insert(
            name.clone(),
            LiveRoute {
                alias: Arc::from(name.as_str()),
                disabled: route.disabled.as_deref().map(Arc::from),
                targets,
                cumulative,
                created: route.created.unwrap_or(0),
                stale: route.stale.is_some(),
                hidden: route.hidden,
                price: route.pricing.as_ref().map(|(_, price)| *price),
                pricing: route.pricing.as_ref().map(|(pricing, _)| pricing.clone()),
                description: route.description.as_deref().map(Arc::from),
            },
        );
    }
    Ok(LiveTable {
        models_body: models_body(table),
        routes,
    })
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
        let mut sum = 0.0;
        LiveRoute {
            alias: Arc::from("a"),
            disabled: None,
            targets: weights
                .iter()
                .enumerate()
                .map(|(i, _)| LiveTarget {
                    upstream: upstream.clone(),
                    model: Arc::from(i.to_string()),
                    model_json: Bytes::new(),
                    metrics: LazyRouteMetrics::default(),
                })
                .collect(),
            cumulative: weights
                .iter()
                .map(|w| {
                    sum += w;
                    sum
                })
                .collect(),
            created: 0,
            stale: false,
            hidden: false,
            price: None,
            pricing: None,
            description: None,
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
