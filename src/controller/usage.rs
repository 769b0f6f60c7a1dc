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

/// The last figures read: by Team (this period) and by alias name (all time).
#[derive(Default)]
pub struct UsageBook {
    teams: Mutex<HashMap<ObjectKey, TeamFigures>>,
    aliases: Mutex<HashMap<String, TeamFigures>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl UsageBook {
    pub fn get(&self, key: &ObjectKey) -> Option<TeamFigures> {
        lock(&self.teams).get(key).cloned()
    }

    /// An alias's summary, as `ModelAlias.status.usage` shows it.
    pub fn alias(&self, name: &str) -> Option<crate::crd::Usage> {
        lock(&self.aliases).get(name).map(|f| crate::crd::Usage {
            period: Some(f.period.clone()),
            requests: f.requests,
            prompt_tokens: f.prompt_tokens,
            completion_tokens: f.completion_tokens,
            cached_prompt_tokens: f.cached_prompt_tokens,
            cost_usd: crate::compiler::tenancy::format_usd(f.cost),
        })
    }

    /// Records figures; true when they changed.
    fn put(&self, key: ObjectKey, figures: TeamFigures) -> bool {
        lock(&self.teams).insert(key, figures.clone()).as_ref() != Some(&figures)
    }

    fn put_alias(&self, name: String, figures: TeamFigures) -> bool {
        lock(&self.aliases).insert(name, figures.clone()).as_ref() != Some(&figures)
    }
}

/// Reads every Team's usage every `every` (30 s by default) and queues the Teams whose figures changed.
pub async fn poll(
    source: UsageSource,
    every: Duration,
    world: Arc<World>,
    book: Arc<super::reconcile::Context>,
    queue: mpsc::Sender<KubeRef<Team>>,
    alias_queue: mpsc::Sender<KubeRef<crate::crd::ModelAlias>>,
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
        // Aliases some team may call (the only ones with usage), in one request.
        let Some(snapshot) = world.snapshot().await else {
            continue;
        };
        let granted: std::collections::BTreeSet<String> = snapshot
            .compiled
            .access
            .teams
            .iter()
            .flat_map(|t| t.aliases.iter().cloned())
            .collect();
        match reader.aliases(&granted).await {
            Ok(all) => {
                for (name, figures) in all {
                    if !book.usage.put_alias(name.clone(), figures) {
                        continue;
                    }
                    let owner = world.aliases.state().into_iter().find(|a| {
                        snapshot
                            .route_of(a, &ObjectKey::of(&a.metadata))
                            .is_some_and(|r| r.alias == name)
                    });
                    if let Some(alias) = owner {
                        if alias_queue.send(KubeRef::from_obj(alias.as_ref())).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the aliases' usage"),
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

    /// All-time figures of these aliases: one pipeline, or one read API call.
    async fn aliases(
        &mut self,
        names: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<(String, TeamFigures)>, String> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        match self.source.clone() {
            UsageSource::Redis(url) => {
                self.connect(&url).await?;
                let Some(conn) = self.redis.as_mut() else {
                    return Err("no connection".to_string());
                };
                let mut pipe = redis::pipe();
                for name in names {
                    pipe.cmd("HGETALL").arg(crate::compiler::tenancy::alias_usage_key(name));
                }
                let hashes: Vec<HashMap<String, i64>> = pipe.query_async(conn).await.map_err(|e| {
                    self.redis = None;
                    e.to_string()
                })?;
                Ok(names
                    .iter()
                    .cloned()
                    .zip(hashes.iter().map(|h| figures_of(h, "all")))
                    .collect())
            }
            UsageSource::Gateway(base, token) => {
                let value = get_json(
                    &format!("{}/api/model-aliases", base.trim_end_matches('/')),
                    token.as_ref(),
                )
                .await?;
                Ok(value["aliases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| {
                        let name = a["alias"].as_str()?.to_string();
                        names.contains(&name).then(|| (name, figures_json(&a["usage"])))
                    })
                    .collect())
            }
        }
    }

    async fn connect(&mut self, url: &str) -> Result<(), String> {
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
        Ok(())
    }

    async fn read_redis(&mut self, url: &str, team: &ObjectKey, period: &str) -> Result<TeamFigures, String> {
        self.connect(url).await?;
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
        Ok(figures_of(&hash, period))
    }
}

/// Figures from a usage hash of the shared store.
fn figures_of(hash: &HashMap<String, i64>, period: &str) -> TeamFigures {
    let count = |k: &str| u64::try_from(hash.get(k).copied().unwrap_or(0)).unwrap_or(0);
    TeamFigures {
        period: period.to_string(),
        requests: count("requests"),
        prompt_tokens: count("prompt"),
        completion_tokens: count("completion"),
        cached_prompt_tokens: count("cached"),
        cost: hash.get("spent").copied().unwrap_or(0),
    }
}

/// Figures from a `usage` object of the gateway's read API.
fn figures_json(usage: &serde_json::Value) -> TeamFigures {
    let count = |k: &str| usage[k].as_u64().unwrap_or(0);
    TeamFigures {
        period: usage["period"].as_str().unwrap_or("all").to_string(),
        requests: count("requests"),
        prompt_tokens: count("prompt_tokens"),
        completion_tokens: count("completion_tokens"),
        cached_prompt_tokens: count("cached_prompt_tokens"),
        cost: usage["cost_usd"]
            .as_str()
            .and_then(crate::compiler::tenancy::parse_amount)
            .unwrap_or(0),
    }
}

async fn from_gateway(base: &str, token: Option<&SecretString>, team: &ObjectKey) -> Result<TeamFigures, String> {
    let url = format!(
        "{}/api/teams/{}?namespace={}",
        base.trim_end_matches('/'),
        team.name,
        team.namespace
    );
    let value = get_json(&url, token).await?;
    Ok(figures_json(&value["usage"]))
}

async fn get_json(url: &str, token: Option<&SecretString>) -> Result<serde_json::Value, String> {
    let mut request = http::Request::get(url);
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
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}
