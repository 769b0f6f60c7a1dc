//! The shared store: one Redis for every replica. Each request is one `EVALSHA` of an atomic
//! Lua script (one round trip); settlements are batched into pipelines off the request path.
//! Redis down: the request path is answered by the local counters (or refused, with
//! `--usage-store-failure closed`), the gauge `modelgate_usage_store_up` says 0, one log line
//! marks each transition, and settlements wait (bounded) to be replayed on reconnection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};
use tokio::sync::mpsc;

use super::super::limits::{Ask, BucketView, LimitKind, Verdict};
use super::memory::Totals;
use super::Settlement;

const ADMIT: &str = include_str!("admit.lua");
const SETTLE: &str = include_str!("settle.lua");
/// Settlements kept while Redis is away; beyond this the oldest are dropped (and counted).
const MAX_PENDING: usize = 100_000;
/// How long a replica's in-flight calls and reservations outlive its last heartbeat.
const HEARTBEAT_TTL: u64 = 15;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

pub struct RedisStore {
    client: redis::Client,
    /// The URL without its password, for logs.
    shown: String,
    conn: ArcSwapOption<MultiplexedConnection>,
    up: AtomicBool,
    replica: String,
    timeout: Duration,
    admit: Script,
    settle: Script,
    queue: mpsc::Sender<(Settlement, bool)>,
    pending: Mutex<VecDeque<(Settlement, bool)>>,
    gauge: Gauge,
}

fn team_keys(team: &str, period: &str) -> [String; 4] {
    [
        format!("mg:t:{team}:rl"),
        format!("mg:t:{team}:par"),
        format!("mg:t:{team}:rsv"),
        crate::compiler::tenancy::team_usage_key(team, period),
    ]
}

fn alias_key(alias: &str) -> String {
    crate::compiler::tenancy::alias_usage_key(alias)
}

impl RedisStore {
    /// Creates the store and its background task (connection, heartbeat, settlements).
    /// Serving starts at once: until Redis answers, the local counters decide.
    pub fn start(url: &str, timeout: Duration, gauge: Gauge) -> Result<Arc<RedisStore>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let shown = match url::Url::parse(url) {
            Ok(mut parsed) => {
                let _ = parsed.set_password(None);
                parsed.to_string()
            }
            Err(_) => "redis".to_string(),
        };
        let mut id = [0u8; 8];
        let _ = getrandom::fill(&mut id);
        let replica = id.iter().map(|b| format!("{b:02x}")).collect();
        let (queue, settlements) = mpsc::channel(65_536);
        let store = Arc::new(RedisStore {
            client,
            shown,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            replica,
            timeout,
            admit: Script::new(ADMIT),
            settle: Script::new(SETTLE),
            queue,
            pending: Mutex::default(),
            gauge,
        });
        tokio::spawn(store.clone().run(settlements));
        Ok(store)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn down(&self, why: &str) {
        self.conn.store(None);
        if self.up.swap(false, Ordering::AcqRel) {
            // Logged before the gauge moves, so whoever sees the gauge can find the line.
            tracing::warn!(store = %self.shown, error = %why, "usage store unreachable: serving on this replica's own counters until it is back");
            self.gauge.set(0);
        }
    }

    async fn connect(&self) -> Result<(), String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout * 4))
            .set_response_timeout(Some(self.timeout));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        for script in [&self.admit, &self.settle] {
            let _: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(script_text(script, self))
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.heartbeat_on(&mut conn).await?;
        self.conn.store(Some(Arc::new(conn)));
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!(store = %self.shown, replica = %self.replica, "usage store connected: limits and credits are shared by every replica");
            self.gauge.set(1);
        }
        Ok(())
    }

    async fn heartbeat_on(&self, conn: &mut MultiplexedConnection) -> Result<(), String> {
        let _: () = redis::cmd("SET")
            .arg(format!("mg:replica:{}", self.replica))
            .arg(1)
            .arg("EX")
            .arg(HEARTBEAT_TTL)
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The background task: connects (and reconnects), beats the heart, flushes settlements.
    async fn run(self: Arc<Self>, mut settlements: mpsc::Receiver<(Settlement, bool)>) {
        let mut tick = tokio::time::interval(RECONNECT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat = tokio::time::Instant::now();
        loop {
            tokio::select! {
                received = settlements.recv() => {
                    let Some(first) = received else { return };
                    let mut batch = vec![first];
                    while batch.len() < 512 {
                        match settlements.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    self.flush(batch).await;
                }
                _ = tick.tick() => {
                    match self.conn.load_full() {
                        None => {
                            if let Err(e) = self.connect().await {
                                tracing::debug!(store = %self.shown, error = %e, "usage store still unreachable");
                                continue;
                            }
                            last_beat = tokio::time::Instant::now();
                            let replay: Vec<(Settlement, bool)> = self.lock_pending().drain(..).collect();
                            if !replay.is_empty() {
                                tracing::info!(settlements = replay.len(), "replaying usage recorded while the store was away");
                                for chunk in replay.chunks(512) {
                                    self.flush(chunk.to_vec()).await;
                                }
                            }
                        }
                        Some(conn) if last_beat.elapsed() >= HEARTBEAT_EVERY => {
                            last_beat = tokio::time::Instant::now();
                            let mut conn = (*conn).clone();
                            match tokio::time::timeout(self.timeout, self.heartbeat_on(&mut conn)).await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => self.down(&e),
                                Err(_) => self.down("timed out"),
                            }
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, VecDeque<(Settlement, bool)>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn keep_pending(&self, batch: Vec<(Settlement, bool)>) {
        let mut pending = self.lock_pending();
        for item in batch {
            if pending.len() >= MAX_PENDING {
                pending.pop_front();
            }
            pending.push_back(item);
        }
    }

    async fn flush(&self, batch: Vec<(Settlement, bool)>) {
        let Some(conn) = self.conn.load_full() else {
            return self.keep_pending(batch);
        };
        let mut pipe = redis::pipe();
        for (s, remote) in &batch {
            let [rl, par, rsv, usage] = team_keys(&s.team, &s.period_name);
            let used = s.tokens.prompt + s.tokens.completion;
            pipe.cmd("EVALSHA")
                .arg(self.settle.get_hash())
                .arg(5)
                .arg(rl)
                .arg(par)
                .arg(rsv)
                .arg(usage)
                .arg(alias_key(&s.alias))
                .arg(&self.replica)
                .arg(if *remote { 1 } else { 0 })
                .arg(-s.reserved_cost)
                .arg(if s.answered { 1 } else { 0 })
                .arg(s.cost)
                .arg(s.tokens.prompt)
                .arg(s.tokens.completion)
                .arg(s.tokens.cached_prompt)
                .arg(used as i64 - s.estimated_tokens as i64)
                .arg(s.tokens_per_minute.unwrap_or(0))
                .arg(s.usage_ttl)
                .ignore();
        }
        let mut conn = (*conn).clone();
        match tokio::time::timeout(self.timeout * 4, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.down(&e.to_string());
                self.keep_pending(batch);
            }
            Err(_) => {
                self.down("timed out");
                self.keep_pending(batch);
            }
        }
    }

    /// One round trip. `None` when Redis did not answer in time (it is then marked down).
    pub async fn admit(&self, team: &str, period: &str, ask: &Ask) -> Option<(Verdict, i64)> {
        let conn = self.conn.load_full()?;
        let mut conn = (*conn).clone();
        let [rl, par, rsv, usage] = team_keys(team, period);
        let limits = &ask.limits;
        let rpm = limits.requests_per_minute.map_or(0, u64::from);
        let tpm = limits.tokens_per_minute.unwrap_or(0);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.admit.get_hash())
            .arg(4)
            .arg(rl)
            .arg(par)
            .arg(rsv)
            .arg(usage)
            .arg(&self.replica)
            .arg(rpm)
            .arg(tpm)
            .arg(limits.max_parallel_requests.unwrap_or(0))
            .arg(ask.allocated.unwrap_or(-1))
            .arg(ask.estimated_tokens)
            .arg(ask.estimated_cost);
        let reply: Vec<i64> = match tokio::time::timeout(self.timeout, cmd.query_async(&mut conn)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                self.down(&e.to_string());
                return None;
            }
            Err(_) => {
                self.down("no answer within the timeout");
                return None;
            }
        };
        let [verdict, kind, wait, spent, r, t] = reply.as_slice() else {
            self.down("unexpected reply from the admission script");
            return None;
        };
        let view = |capacity: u64, level: i64| {
            (capacity > 0).then(|| {
                let level = level as f64 / 1000.0;
                BucketView {
                    limit: capacity,
                    remaining: level.max(0.0).floor() as u64,
                    reset: Duration::from_secs_f64(((capacity as f64 - level) * 60.0 / capacity as f64).max(0.0)),
                }
            })
        };
        let (requests, tokens) = (view(rpm, *r), view(tpm, *t));
        let answer = match verdict {
            0 => Verdict::Admitted { requests, tokens },
            2 => Verdict::NoCredits {
                allocated: ask.allocated.unwrap_or(0),
                spent: *spent,
            },
            _ => Verdict::RateLimited {
                kind: match kind {
                    1 => LimitKind::Requests,
                    2 => LimitKind::Tokens,
                    _ => LimitKind::Parallel,
                },
                retry_after: Duration::from_millis(u64::try_from(*wait).unwrap_or(1000)),
                requests,
                tokens,
            },
        };
        Some((answer, *spent))
    }

    /// Queues a settlement for the next pipeline; never waits.
    pub fn settle(&self, settlement: Settlement, remote: bool) {
        if let Err(mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item)) =
            self.queue.try_send((settlement, remote))
        {
            self.keep_pending(vec![item]);
        }
    }

    async fn hash(&self, key: String) -> Option<std::collections::HashMap<String, i64>> {
        let conn = self.conn.load_full()?;
        let mut conn = (*conn).clone();
        let cmd = redis::cmd("HGETALL").arg(key).clone();
        tokio::time::timeout(self.timeout, cmd.query_async(&mut conn))
            .await
            .ok()?
            .ok()
    }

    pub async fn alias_totals(&self, alias: &str) -> Option<Totals> {
        self.hash(alias_key(alias)).await.map(|h| totals(&h))
    }

    pub async fn team_usage(&self, team: &str, period: &str) -> Option<Totals> {
        let [_, _, _, usage] = team_keys(team, period);
        self.hash(usage).await.map(|h| totals(&h))
    }
}

fn totals(hash: &std::collections::HashMap<String, i64>) -> Totals {
    let get = |k: &str| hash.get(k).copied().unwrap_or(0);
    let count = |k: &str| u64::try_from(get(k)).unwrap_or(0);
    Totals {
        requests: count("requests"),
        prompt_tokens: count("prompt"),
        completion_tokens: count("completion"),
        cached_prompt_tokens: count("cached"),
        cost: get("spent"),
    }
}

/// The source of a script (kept by `Script` only as its hash).
fn script_text(script: &Script, store: &RedisStore) -> &'static str {
    if std::ptr::eq(script, &store.admit) {
        ADMIT
    } else {
        SETTLE
    }
}
