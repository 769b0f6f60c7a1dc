//! The attempt loop against a scripted fake caller: no sockets, paused time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::Response;
use tokio::time::Instant;

use super::attempt::{run, Caller, Env};
use super::budget::RetryBudget;
use super::commit::{failure, Committed};
use super::{LiveTier, Registry, Resilience};
use crate::compiler::{ObjectKey, OutlierPolicy, RetryPolicy, RoutePolicy, RouteTarget};
use crate::crd::{FailureCondition, LoadBalancing};
use crate::gateway::error::ApiError;
use crate::gateway::live::LiveTarget;
use crate::gateway::metrics::{Endpoint, Metrics};
use crate::gateway::providers::{Failed, Upstream, UpstreamKind};
use crate::llm::{FailureClass, UpstreamError};

/// What a scripted target does on one try.
#[derive(Clone, Debug)]
enum Step {
    Ok,
    Fail(u16, Option<Duration>),
    Class(FailureClass, u16),
    Request,
    Hang,
}

/// Answers each target's tries from its script (the last step repeats) and records the tries.
#[derive(Default)]
struct Script {
    steps: Mutex<HashMap<String, VecDeque<Step>>>,
    tries: Mutex<Vec<String>>,
}

impl Script {
    fn new(steps: &[(&str, &[Step])]) -> Self {
        let script = Script::default();
        for (model, steps) in steps {
            script
                .lock_steps()
                .insert(model.to_string(), steps.iter().cloned().collect());
        }
        script
    }

    fn lock_steps(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Step>>> {
        self.steps.lock().expect("lock")
    }

    fn tries(&self) -> Vec<String> {
        self.tries.lock().expect("lock").clone()
    }

    fn count(&self, model: &str) -> usize {
        self.tries().iter().filter(|m| *m == model).count()
    }

    fn next(&self, model: &str) -> Step {
        self.tries.lock().expect("lock").push(model.to_string());
        let mut steps = self.lock_steps();
        let queue = steps.get_mut(model).expect("a script for every target");
        match queue.len() {
            0 => Step::Ok,
            1 => queue[0].clone(),
            _ => queue.pop_front().unwrap_or(Step::Ok),
        }
    }
}

impl Caller for Script {
    async fn attempt(&self, target: &LiveTarget) -> Result<Committed, Failed> {
        match self.next(&target.model) {
            Step::Ok => Ok(Committed::whole(Response::new(Body::from(target.model.to_string())))),
            Step::Fail(status, retry_after) => {
                let mut error = UpstreamError::from_status(status, format!("{} failed", target.model));
                error.retry_after = retry_after;
                Err(failure(error))
            }
            Step::Class(class, status) => Err(failure(UpstreamError::new(class, status, "scripted"))),
            Step::Request => Err(Failed::Request(ApiError::untranslatable(Some("tools"), "no".into()))),
            Step::Hang => std::future::pending().await,
        }
    }
}

struct Fixture {
    registry: Registry,
    metrics: Metrics,
    budget: RetryBudget,
    plan: Resilience,
}

fn tier(registry: &Registry, targets: &[(&str, f64)], on: &[FailureCondition], n: usize) -> LiveTier {
    let upstream = Arc::new(Upstream {
        name: Arc::from("ns/p"),
        kind: UpstreamKind::Mock,
    });
    let targets = targets
        .iter()
        .map(|(model, weight)| {
            let target = RouteTarget {
                provider: ObjectKey::new("ns", "p"),
                model: model.to_string(),
                weight: *weight,
                chain: Vec::new(),
            };
            LiveTarget::new(&upstream, &target, registry)
        })
        .collect();
    LiveTier::new(
        targets,
        on.to_vec(),
        Arc::from("via"),
        registry.counter(&Arc::from("alias"), n),
    )
}

type Tier<'a> = (&'a [(&'a str, f64)], &'a [FailureCondition]);

fn fixture(tiers: &[Tier<'_>], policy: RoutePolicy) -> Fixture {
    let registry = Registry::default();
    let tiers = tiers
        .iter()
        .enumerate()
        .map(|(n, (targets, on))| tier(&registry, targets, on, n))
        .collect();
    Fixture {
        metrics: Metrics::new(),
        budget: RetryBudget::default(),
        plan: Resilience { tiers, policy },
        registry,
    }
}

impl Fixture {
    async fn serve(&self, script: &Script) -> Result<String, (u16, FailureClass)> {
        let env = Env {
            alias: "alias",
            endpoint: Endpoint::chat_completions,
            metrics: &self.metrics,
            budget: &self.budget,
            clock: self.registry.clock(),
        };
        match run(&env, &self.plan, script).await {
            Ok(served) => Ok(served.target.model.to_string()),
            Err(Failed::Upstream(f)) => Err((f.error.status, f.error.class)),
            Err(Failed::Request(e)) => Err((e.status.as_u16(), FailureClass::ClientError)),
        }
    }

    fn metric(&self, series: &str) -> f64 {
        self.metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

fn retry(attempts: u32, on: &[FailureCondition]) -> Option<RetryPolicy> {
    Some(RetryPolicy {
        attempts,
        on: on.to_vec(),
        backoff: Duration::from_millis(200),
    })
}

use FailureCondition as C;

const ONE_A: &[(&str, f64)] = &[("a", 100.0)];
const ONE_B: &[(&str, f64)] = &[("b", 100.0)];
const ONE_C: &[(&str, f64)] = &[("c", 100.0)];

#[tokio::test(start_paused = true)]
async fn a_failed_try_is_retried_on_the_listed_classes_with_backoff() {
    let f = fixture(
        &[(ONE_A, &[])],
        RoutePolicy {
            retry: retry(2, &[C::ServerError]),
            ..RoutePolicy::default()
        },
    );
    let script = Script::new(&[("a", &[Step::Fail(500, None), Step::Fail(502, None), Step::Ok])]);
    let started = Instant::now();
    assert_eq!(f.serve(&script).await, Ok("a".to_string()));
    assert_eq!(script.count("a"), 3);
    let waited = started.elapsed();
    // 100-200 ms, then 200-400 ms of jittered backoff.
    assert!(
        waited >= Duration::from_millis(300) && waited <= Duration::from_millis(600),
        "{waited:?}"
    );
    assert_eq!(
        f.metric("modelgate_attempts_total{alias=\"alias\",provider=\"ns/p\",outcome=\"serverError\"}"),
        2.0
    );
    assert_eq!(
        f.metric("modelgate_attempts_total{alias=\"alias\",provider=\"ns/p\",outcome=\"success\"}"),
        1.0
    );

    // A class retry.on does not list is not retried.
    let script = Script::new(&[("a", &[Step::Fail(503, None), Step::Ok])]);
    assert_eq!(f.serve(&script).await, Err((503, FailureClass::Overloaded)));
    assert_eq!(script.count("a"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fallback_tier_is_taken_only_for_the_failures_it_names() {
    let f = fixture(
        &[
            (ONE_A, &[]),
            (ONE_B, &[C::RateLimited, C::ServerError]),
            (ONE_C, &[C::ContextWindowExceeded]),
        ],
        RoutePolicy::default(),
    );
    let script = Script::new(&[
        ("a", &[Step::Class(FailureClass::ContextWindowExceeded, 400)]),
        ("b", &[Step::Ok]),
        ("c", &[Step::Ok]),
    ]);
    assert_eq!(f.serve(&script).await, Ok("c".to_string()));
    assert_eq!(script.tries(), ["a", "c"]);
    assert_eq!(
        f.metric("modelgate_fallbacks_total{alias=\"alias\",reason=\"contextWindowExceeded\"}"),
        1.0
    );

    let script = Script::new(&[("a", &[Step::Fail(429, None)]), ("b", &[Step::Ok]), ("c", &[Step::Ok])]);
    assert_eq!(f.serve(&script).await, Ok("b".to_string()));
    assert_eq!(script.tries(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_final_and_never_count_against_the_target() {
    let f = fixture(
        &[(ONE_A, &[]), (ONE_B, &[C::Any])],
        RoutePolicy {
            retry: retry(3, &[C::Any]),
            outlier: Some(OutlierPolicy {
                consecutive_failures: 1,
                ejection_time: Duration::from_secs(30),
            }),
            ..RoutePolicy::default()
        },
    );
    let script = Script::new(&[("a", &[Step::Fail(400, None)]), ("b", &[Step::Ok])]);
    assert_eq!(f.serve(&script).await, Err((400, FailureClass::ClientError)));
    let script2 = Script::new(&[("a", &[Step::Request]), ("b", &[Step::Ok])]);
    assert_eq!(f.serve(&script2).await, Err((400, FailureClass::ClientError)));
    assert_eq!(script.tries(), ["a"]);
    assert_eq!(script2.tries(), ["a"]);
    let a = &f.plan.tiers[0].targets[0].state;
    assert_eq!(a.consecutive_failures(), 0);
    assert!(a.in_rotation(f.registry.clock().now()));
}

#[tokio::test(start_paused = true)]
async fn when_everything_fails_the_client_gets_the_last_upstream_status() {
    let f = fixture(&[(ONE_A, &[]), (ONE_B, &[C::ServerError])], RoutePolicy::default());
    let script = Script::new(&[("a", &[Step::Fail(500, None)]), ("b", &[Step::Fail(503, None)])]);
    assert_eq!(f.serve(&script).await, Err((503, FailureClass::Overloaded)));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_try_is_abandoned_at_the_first_token_deadline_and_the_total_deadline_ends_all() {
    let policy = RoutePolicy {
        first_token: Some(Duration::from_millis(300)),
        total: Some(Duration::from_secs(1)),
        retry: retry(5, &[C::Timeout]),
        ..RoutePolicy::default()
    };
    let f = fixture(&[(ONE_A, &[]), (ONE_B, &[C::Timeout])], policy);
    let script = Script::new(&[("a", &[Step::Hang, Step::Ok]), ("b", &[Step::Ok])]);
    let started = Instant::now();
    assert_eq!(f.serve(&script).await, Ok("a".to_string()), "the retry got content");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited <= Duration::from_millis(500),
        "{waited:?}"
    );

    // Everything hangs: the answer comes at the total deadline, never later.
    let script = Script::new(&[("a", &[Step::Hang]), ("b", &[Step::Hang])]);
    let started = Instant::now();
    assert_eq!(f.serve(&script).await, Err((504, FailureClass::Timeout)));
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_deadline_moves_to_the_next_tier_at_once() {
    let policy = RoutePolicy {
        total: Some(Duration::from_secs(5)),
        retry: retry(3, &[C::RateLimited]),
        ..RoutePolicy::default()
    };
    let f = fixture(&[(ONE_A, &[]), (ONE_B, &[C::RateLimited])], policy);
    let script = Script::new(&[
        ("a", &[Step::Fail(429, Some(Duration::from_secs(30)))]),
        ("b", &[Step::Ok]),
    ]);
    let started = Instant::now();
    assert_eq!(f.serve(&script).await, Ok("b".to_string()));
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(script.tries(), ["a", "b"]);

    // The next request does not even try the held target.
    assert_eq!(f.serve(&script).await, Ok("b".to_string()));
    assert_eq!(script.tries(), ["a", "b", "b"]);
}

#[tokio::test(start_paused = true)]
async fn a_short_retry_after_is_waited_for_within_the_deadline() {
    let policy = RoutePolicy {
        total: Some(Duration::from_secs(10)),
        retry: retry(1, &[C::RateLimited]),
        ..RoutePolicy::default()
    };
    let f = fixture(&[(ONE_A, &[])], policy);
    let script = Script::new(&[("a", &[Step::Fail(429, Some(Duration::from_secs(2))), Step::Ok])]);
    let started = Instant::now();
    assert_eq!(f.serve(&script).await, Ok("a".to_string()));
    let waited = started.elapsed();
    // Timers fire on the millisecond after.
    assert!(
        waited >= Duration::from_secs(2) && waited <= Duration::from_millis(2_001),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_held_target_with_no_tier_left_is_a_429_with_retry_after() {
    let f = fixture(
        &[(ONE_A, &[])],
        RoutePolicy {
            total: Some(Duration::from_secs(5)),
            ..RoutePolicy::default()
        },
    );
    let script = Script::new(&[("a", &[Step::Fail(429, Some(Duration::from_secs(60))), Step::Ok])]);
    assert_eq!(f.serve(&script).await, Err((429, FailureClass::RateLimited)));
    assert_eq!(f.serve(&script).await, Err((429, FailureClass::RateLimited)));
    assert_eq!(script.count("a"), 1, "the held target is not called again");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(f.serve(&script).await, Ok("a".to_string()));
}

fn outlier(failures: u32) -> Option<OutlierPolicy> {
    Some(OutlierPolicy {
        consecutive_failures: failures,
        ejection_time: Duration::from_secs(30),
    })
}

#[tokio::test(start_paused = true)]
async fn a_failing_target_is_ejected_skipped_and_returns_after_the_ejection_time() {
    let f = fixture(
        &[(&[("a", 50.0), ("b", 50.0)], &[])],
        RoutePolicy {
            load_balancing: LoadBalancing::RoundRobin,
            outlier: outlier(2),
            ..RoutePolicy::default()
        },
    );
    let script = Script::new(&[("a", &[Step::Fail(500, None)]), ("b", &[Step::Ok])]);
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(f.serve(&script).await.is_ok());
    }
    assert_eq!(script.count("a"), 2, "ejected after two failures in a row");
    assert_eq!(answers.iter().filter(|ok| !**ok).count(), 2);
    assert_eq!(f.metric("modelgate_ejections_total{provider=\"ns/p\"}"), 1.0);
    tokio::time::advance(Duration::from_secs(30)).await;
    for _ in 0..2 {
        let _ = f.serve(&script).await;
    }
    assert_eq!(script.count("a"), 3, "back in rotation after 30 s");
}

#[tokio::test(start_paused = true)]
async fn when_every_target_is_ejected_the_least_recently_ejected_is_tried() {
    let f = fixture(
        &[(&[("a", 50.0), ("b", 50.0)], &[])],
        RoutePolicy {
            load_balancing: LoadBalancing::RoundRobin,
            outlier: outlier(1),
            ..RoutePolicy::default()
        },
    );
    let script = Script::new(&[
        ("a", &[Step::Fail(500, None), Step::Ok]),
        ("b", &[Step::Fail(500, None)]),
    ]);
    assert!(f.serve(&script).await.is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(f.serve(&script).await.is_err());
    assert_eq!(script.tries(), ["a", "b"]);
    assert_eq!(f.serve(&script).await, Ok("a".to_string()), "a went out first");
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_keeps_an_outage_from_multiplying_traffic() {
    let f = fixture(
        &[(ONE_A, &[])],
        RoutePolicy {
            retry: retry(3, &[C::ServerError]),
            ..RoutePolicy::default()
        },
    );
    let script = Script::new(&[("a", &[Step::Fail(500, None)])]);
    const REQUESTS: usize = 200;
    let started = Instant::now();
    let all = futures_util::future::join_all((0..REQUESTS).map(|_| f.serve(&script))).await;
    assert!(all.iter().all(Result::is_err));
    let tries = script.count("a");
    let elapsed = started.elapsed().as_secs_f64();
    // Each request: its own try, plus retries from 20 % of requests, the initial floor of 10
    // and ten a second while the backoffs ran.
    let bound = REQUESTS as f64 * 1.2 + 10.0 + 10.0 * elapsed.ceil();
    assert!((tries as f64) <= bound, "{tries} tries, bound {bound}");
    assert!(tries < REQUESTS * 3 / 2, "{tries}");
}

#[tokio::test(start_paused = true)]
async fn round_robin_is_exact_and_weighted_skips_ejected_targets() {
    let f = fixture(
        &[(&[("a", 20.0), ("b", 30.0), ("c", 50.0)], &[])],
        RoutePolicy {
            load_balancing: LoadBalancing::RoundRobin,
            ..RoutePolicy::default()
        },
    );
    let script = Script::new(&[("a", &[Step::Ok]), ("b", &[Step::Ok]), ("c", &[Step::Ok])]);
    for _ in 0..9 {
        f.serve(&script).await.expect("served");
    }
    assert_eq!(script.tries(), ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);

    let f = fixture(
        &[(&[("a", 90.0), ("b", 10.0)], &[])],
        RoutePolicy {
            outlier: outlier(1),
            ..RoutePolicy::default()
        },
    );
    let script = Script::new(&[("a", &[Step::Fail(500, None)]), ("b", &[Step::Ok])]);
    while script.count("a") == 0 {
        let _ = f.serve(&script).await;
    }
    let before = script.count("b");
    for _ in 0..50 {
        assert_eq!(f.serve(&script).await, Ok("b".to_string()));
    }
    assert_eq!(script.count("b"), before + 50);
}

#[tokio::test(start_paused = true)]
async fn least_connections_picks_the_target_with_fewest_requests_in_flight() {
    let f = fixture(
        &[(&[("a", 50.0), ("b", 50.0)], &[])],
        RoutePolicy {
            load_balancing: LoadBalancing::LeastConnections,
            ..RoutePolicy::default()
        },
    );
    let tier = &f.plan.tiers[0];
    let now = f.registry.clock().now();
    let _busy = [
        super::InFlight::new(&tier.targets[0].state),
        super::InFlight::new(&tier.targets[0].state),
    ];
    let _one = super::InFlight::new(&tier.targets[1].state);
    for _ in 0..5 {
        match tier.pick(LoadBalancing::LeastConnections, now, 0.0) {
            super::balance::Pick::Ready(t) => assert_eq!(&*t.model, "b"),
            _ => panic!("a target"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_tier_whose_targets_are_all_ejected_is_skipped_when_a_later_tier_takes_the_failure() {
    let f = fixture(
        &[(ONE_A, &[]), (ONE_B, &[C::ServerError])],
        RoutePolicy {
            outlier: outlier(1),
            ..RoutePolicy::default()
        },
    );
    let script = Script::new(&[("a", &[Step::Fail(500, None)]), ("b", &[Step::Ok])]);
    for _ in 0..3 {
        assert_eq!(f.serve(&script).await, Ok("b".to_string()));
    }
    assert_eq!(script.tries(), ["a", "b", "b", "b"]);
    assert_eq!(
        f.metric("modelgate_fallbacks_total{alias=\"alias\",reason=\"serverError\"}"),
        3.0
    );
}
