//! How the controller learns each Team's usage for `Team.status`: from the shared Redis store
//! the gateways write (`--usage-store redis://...`), or, with the memory store and one gateway
//! replica, from that gateway's read API (`--gateway-admin-url`). Read every 30 s; a Team whose
//! figures changed is queued for a status write, one that did not costs nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use kube::runtime::reflector::ObjectRef as KubeRef;
use tokio::sync::mpsc;

use super::status::TeamFigures;
use super::world::World;
use crate::compiler::tenancy::{period::now_seconds, period::window, team_usage_key};
use crate::compiler::ObjectKey;
use crate::crd::{Period, Team};
use crate::secret::SecretString;

/// Where usage comes from.
#[derive(Clone, Debug)]
pub enum UsageSource {
    Redis(String),
    /// The gateway's admin base URL and its admin token.
    Gateway(String, Option<SecretString>),
}

/// The last figures read, by Team.
#[derive(Default)]
pub struct UsageBook(Mutex<HashMap<ObjectKey, TeamFigures>>);

impl UsageBook {
    pub fn get(&self, key: &ObjectKey) -> Option<TeamFigures> {
        self.lock().get(key).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, TeamFigures>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records figures; true when they changed.
    fn put(&self, key: ObjectKey, figures: TeamFigures) -> bool {
        self.lock().insert(key, figures.clone()).as_ref() != Some(&figures)
    }
}

/// Reads every Team's usage every `every` (30 s by default) and queues the Teams whose figures changed.
pub async fn poll(
    source: UsageSource,
    every: Duration,
    world: Arc<World>,
    book: Arc<super::reconcile::Context>,
    queue: mpsc::Sender<KubeRef<Team>>,
) {
    let mut reader = Reader::new(source);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    world.wait_ready().await;
    loop {
        tick.tick().await;
        for team in world.teams.state() {
            let key = ObjectKey::of(&team.metadata);
            let period = team
                .spec
                .credits
                .as_ref()
                .and_then(|c| c.period)
                .unwrap_or(Period::Never);
            let name = window(period, now_seconds()).name;
            match reader.read(&key, &name).await {
                Ok(figures) => {
                    if book.usage.put(key, figures) && queue.send(KubeRef::from_obj(team.as_ref())).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!(team = %key, error = %e, "cannot read the team's usage"),
            }
        }
    }
}

struct Reader {
    source: UsageSource,
    redis: Option<redis::aio::MultiplexedConnection>,
}

impl Reader {
    fn new(source: UsageSource) -> Self {
        Reader { source, redis: None }
    }

    async fn read(&mut self, team: &ObjectKey, period: &str) -> Result<TeamFigures, String> {
        let source = self.source.clone();
        match source {
            UsageSource::Redis(url) => self.read_redis(&url, team, period).await,
            UsageSource::Gateway(base, token) => from_gateway(&base, token.as_ref(), team).await,
        }
    }

    async fn read_redis(&mut self, url: &str, team: &ObjectKey, period: &str) -> Result<TeamFigures, String> {
        if self.redis.is_none() {
            let client = redis::Client::open(url).map_err(|e| e.to_string())?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)));
            self.redis = Some(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let Some(conn) = self.redis.as_mut() else {
            return Err("no connection".to_string());
        };
        let hash: Result<HashMap<String, i64>, _> = redis::cmd("HGETALL")
            .arg(team_usage_key(&team.to_string(), period))
            .query_async(conn)
            .await;
        let hash = hash.map_err(|e| {
            self.redis = None;
            e.to_string()
        })?;
        let count = |k: &str| u64::try_from(hash.get(k).copied().unwrap_or(0)).unwrap_or(0);
        Ok(TeamFigures {
            period: period.to_string(),
            requests: count("requests"),
            prompt_tokens: count("prompt"),
            completion_tokens: count("completion"),
            cached_prompt_tokens: count("cached"),
            cost: hash.get("spent").copied().unwrap_or(0),
        })
    }
}

async fn from_gateway(base: &str, token: Option<&SecretString>, team: &ObjectKey) -> Result<TeamFigures, String> {
    let url = format!(
        "{}/api/teams/{}?namespace={}",
        base.trim_end_matches('/'),
        team.name,
        team.namespace
    );
    let mut request = http::Request::get(&url);
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let request = request.body(Empty::<bytes::Bytes>::new()).map_err(|e| e.to_string())?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url}: {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let usage = &value["usage"];
    let count = |k: &str| usage[k].as_u64().unwrap_or(0);
    Ok(TeamFigures {
        period: usage["period"].as_str().unwrap_or("all").to_string(),
        requests: count("requests"),
        prompt_tokens: count("prompt_tokens"),
        completion_tokens: count("completion_tokens"),
        cached_prompt_tokens: count("cached_prompt_tokens"),
        cost: usage["cost_usd"]
            .as_str()
            .and_then(crate::compiler::tenancy::parse_amount)
            .unwrap_or(0),
    })
}
