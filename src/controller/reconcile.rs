//! Reconcilers: compute the status from the compiled world, write it only when it differs,
//! and publish an Event on each transition.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;

use super::events::Events;
use super::metrics::{ControllerMetrics, Kind, Outcome};
use super::status::{stall_deadline, Env};
use super::world::World;
use super::written::{fingerprint, Written};
use crate::compiler::ObjectKey;
use crate::crd::{condition_type, AccessGroup, LLMProvider, ModelAlias, Team, API_VERSION};

/// The one field manager that writes status.
pub const FIELD_MANAGER: &str = "modelgate-controller";

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub world: Arc<World>,
    pub events: Events,
    pub metrics: Arc<ControllerMetrics>,
    written: Written,
    failures: Mutex<HashMap<(Kind, ObjectKey), ExponentialBackoff>>,
    /// Teams' usage this period, as last read from the usage store.
    pub usage: super::usage::UsageBook,
}

impl Context {
    pub fn new(client: Client, world: Arc<World>, events: Events, metrics: Arc<ControllerMetrics>) -> Self {
        Context {
            client,
            world,
            events,
            metrics,
            written: Written::default(),
            failures: Mutex::default(),
            usage: Default::default(),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<(Kind, ObjectKey), ExponentialBackoff>> {
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot write the status of {kind:?} {object}: {source}")]
    WriteStatus {
        kind: Kind,
        object: ObjectKey,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError {
    /// A fixed label value for metrics.
    fn reason(&self) -> &'static str {
        match self {
            ReconcileError::WriteStatus {
                source: kube::Error::Api(status),
                ..
            } if status.code == 409 => "conflict",
            ReconcileError::WriteStatus {
                source: kube::Error::Api(status),
                ..
            } if status.code == 404 => "not_found",
            ReconcileError::WriteStatus {
                source: kube::Error::Api(status),
                ..
            } if status.code == 403 => "forbidden",
            ReconcileError::WriteStatus {
                source: kube::Error::Api(_),
                ..
            } => "api",
            ReconcileError::WriteStatus { .. } => "transport",
        }
    }
}

/// Now, to the second (the precision the API stores).
pub(super) fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

fn key_of<K: ResourceExt>(object: &K) -> ObjectKey {
    ObjectKey::of(object.meta())
}

pub async fn reconcile_alias(alias: Arc<ModelAlias>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    ctx.world.wait_ready().await;
    let Some(snapshot) = ctx.world.snapshot().await else {
        return Ok(Action::await_change());
    };
    let key = key_of(alias.as_ref());
    let (now, gateways) = (now(), ctx.world.gateway_view());
    let env = Env {
        now: &now,
        stall_after: ctx.world.stall_after,
        gateways: &gateways,
    };
    let desired = snapshot.alias_status(&alias, &env, &ctx.world.references, &ctx.usage);
    let current = alias.status.as_ref().map(|s| (s, s.conditions.as_slice()));
    settle(
        &ctx,
        alias.as_ref(),
        Kind::ModelAlias,
        key,
        current,
        (&desired, &desired.conditions),
        started,
    )
    .await?;
    Ok(next_look(&desired.conditions, &ctx, &now))
}

pub async fn reconcile_provider(provider: Arc<LLMProvider>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    ctx.world.wait_ready().await;
    let Some(snapshot) = ctx.world.snapshot().await else {
        return Ok(Action::await_change());
    };
    let key = key_of(provider.as_ref());
    let (now, gateways) = (now(), ctx.world.gateway_view());
    let env = Env {
        now: &now,
        stall_after: ctx.world.stall_after,
        gateways: &gateways,
    };
    let desired = snapshot.provider_status(&provider, &env, &ctx.world.references);
    let current = provider.status.as_ref().map(|s| (s, s.conditions.as_slice()));
    settle(
        &ctx,
        provider.as_ref(),
        Kind::LLMProvider,
        key,
        current,
        (&desired, &desired.conditions),
        started,
    )
    .await?;
    Ok(next_look(&desired.conditions, &ctx, &now))
}

/// An object waiting for what it refers to is looked at again when its wait ends, to stall
/// it; nothing is written in between. Everything else waits for a change.
fn next_look(conditions: &[Condition], ctx: &Context, now: &Time) -> Action {
    match stall_deadline(conditions, ctx.world.stall_after) {
        Some(deadline) => {
            let left = Duration::try_from(deadline.duration_since(now.0)).unwrap_or_default();
            // To the second, as the deadline is stored: a little late rather than early.
            Action::requeue(left + Duration::from_secs(1))
        }
        None => Action::await_change(),
    }
}

pub async fn reconcile_team(team: Arc<Team>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    ctx.world.wait_ready().await;
    let Some(snapshot) = ctx.world.snapshot().await else {
        return Ok(Action::await_change());
    };
    let key = key_of(team.as_ref());
    let figures = ctx.usage.get(&key);
    let desired = snapshot.team_status(&team, figures.as_ref(), &now());
    let current = team.status.as_ref().map(|s| (s, s.conditions.as_slice()));
    settle(
        &ctx,
        team.as_ref(),
        Kind::Team,
        key,
        current,
        (&desired, &desired.conditions),
        started,
    )
    .await
}

pub async fn reconcile_group(group: Arc<AccessGroup>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    ctx.world.wait_ready().await;
    let Some(snapshot) = ctx.world.snapshot().await else {
        return Ok(Action::await_change());
    };
    let key = key_of(group.as_ref());
    let desired = snapshot.group_status(&group, &now());
    let current = group.status.as_ref().map(|s| (s, s.conditions.as_slice()));
    settle(
        &ctx,
        group.as_ref(),
        Kind::AccessGroup,
        key,
        current,
        (&desired, &desired.conditions),
        started,
    )
    .await
}

/// Writes `desired` (a status and its conditions) if it differs from `current`, and queues an
/// Event on a transition (sent in the background); an unchanged status writes nothing, and
/// neither does the same status already written over this version of the object (the store
/// has not caught up yet).
async fn settle<K, S>(
    ctx: &Context,
    object: &K,
    kind: Kind,
    key: ObjectKey,
    current: Option<(&S, &[Condition])>,
    desired: (&S, &[Condition]),
    started: Instant,
) -> Result<Action, ReconcileError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: PartialEq + Serialize,
{
    let changed = current.map(|(status, _)| status) != Some(desired.0);
    let written = if changed {
        let version = object.meta().resource_version.clone().unwrap_or_default();
        let sent = fingerprint(desired.0);
        if ctx.written.already(kind, &key, &version, sent) {
            false
        } else {
            write_status::<K, S>(ctx, kind, &key, desired.0).await?;
            ctx.written.record(kind, key.clone(), version, sent);
            if let Some(event) = transition_event(current.map(|(_, conditions)| conditions), desired.1) {
                ctx.events.enqueue(&event, &object.object_ref(&()));
            }
            true
        }
    } else {
        ctx.written.forget(kind, &key);
        false
    };
    tracing::debug!(kind = ?kind, object = %key, changed, written, "reconciled");
    ctx.failures().remove(&(kind, key));
    let outcome = if written { Outcome::written } else { Outcome::unchanged };
    ctx.metrics.reconciled(kind, outcome, started.elapsed().as_secs_f64());
    Ok(Action::await_change())
}

/// Server-side apply of the whole status, by the one field manager.
async fn write_status<K, S>(ctx: &Context, kind: Kind, key: &ObjectKey, status: &S) -> Result<(), ReconcileError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let patch = serde_json::json!({"apiVersion": API_VERSION, "kind": K::kind(&()), "status": status});
    let _writing = ctx.events.pacing().writing();
    api.patch_status(
        &key.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| ReconcileError::WriteStatus {
        kind,
        object: key.clone(),
        source,
    })
}

/// Invalid objects wait for a change (reconciles return `await_change`); API errors land here
/// and retry with exponential backoff and jitter (`backon`): from 1 s, doubling, up to 5 min.
pub fn error_policy<K: ResourceExt>(object: Arc<K>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let kind = match error {
        ReconcileError::WriteStatus { kind, .. } => *kind,
    };
    ctx.metrics.error(kind, error.reason());
    let delay = ctx
        .failures()
        .entry((kind, key_of(object.as_ref())))
        .or_insert_with(retry_delays)
        .next()
        .unwrap_or(MAX_RETRY_DELAY);
    tracing::warn!(error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// Delays between retries of one object: 1 s, 2 s, 4 s … 5 min, each plus up to 100 % jitter.
fn retry_delays() -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(MAX_RETRY_DELAY)
        .with_jitter()
        .without_max_times()
        .build()
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The Event for a change of conditions, if it is a transition worth telling: accepted (first
/// time served), rejected, a name conflict, recovered, stalled after waiting in vain for what
/// it refers to. Unchanged conditions give none, so reconciles do not repeat Events.
pub fn transition_event(previous: Option<&[Condition]>, next: &[Condition]) -> Option<Event> {
    let (ready, accepted) = (
        find(next, condition_type::READY)?,
        find(next, condition_type::ACCEPTED)?,
    );
    let before = |type_| {
        previous
            .and_then(|p| find(p, type_))
            .map(|c| (c.status.as_str(), c.reason.as_str()))
    };
    let note = |c: &Condition| {
        let mut text = c.message.clone();
        if text.len() > 1000 {
            let mut end = 1000;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        Some(text)
    };
    let event = |type_, reason: &str, c: &Condition| Event {
        type_,
        reason: reason.to_string(),
        note: note(c),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if accepted.reason == "AliasConflict" {
        return (before(condition_type::ACCEPTED) != Some(("False", "AliasConflict")))
            .then(|| event(EventType::Warning, "AliasConflict", accepted));
    }
    match (before(condition_type::READY), ready.status.as_str()) {
        (Some(("False", _)), "True") => Some(event(EventType::Normal, "Recovered", ready)),
        (None, "True") => Some(event(EventType::Normal, "Accepted", ready)),
        (Some((was, reason)), "False") if was != "False" || reason != ready.reason => {
            Some(event(EventType::Warning, "Rejected", ready))
        }
        (None, "False") => Some(event(EventType::Warning, "Rejected", ready)),
        // Still not ready for the same reason, but the wait for what it refers to is over.
        (Some(("False", _)), "False") => {
            let stalled = find(next, condition_type::STALLED).filter(|c| c.status == "True")?;
            (before(condition_type::STALLED).map(|(status, _)| status) != Some("True"))
                .then(|| event(EventType::Warning, "Stalled", stalled))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{type_} {reason}"),
            observed_generation: Some(1),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        }
    }

    fn reason(previous: Option<&[Condition]>, next: &[Condition]) -> Option<String> {
        transition_event(previous, next).map(|e| e.reason)
    }

    #[test]
    fn events_mark_transitions_only() {
        let ok = [c("Accepted", "True", "Accepted"), c("Ready", "True", "Serving")];
        let broken = [
            c("Accepted", "True", "Accepted"),
            c("Ready", "False", "ProviderNotFound"),
        ];
        let other = [c("Accepted", "True", "Accepted"), c("Ready", "False", "KeyNotFound")];
        let conflict = [
            c("Accepted", "False", "AliasConflict"),
            c("Ready", "False", "AliasConflict"),
        ];
        assert_eq!(reason(None, &ok).as_deref(), Some("Accepted"));
        assert_eq!(reason(Some(&ok), &ok), None, "no event when nothing changed");
        assert_eq!(reason(Some(&ok), &broken).as_deref(), Some("Rejected"));
        assert_eq!(reason(Some(&broken), &broken), None);
        assert_eq!(
            reason(Some(&broken), &other).as_deref(),
            Some("Rejected"),
            "a new reason is news"
        );
        assert_eq!(reason(Some(&broken), &ok).as_deref(), Some("Recovered"));
        assert_eq!(reason(None, &conflict).as_deref(), Some("AliasConflict"));
        assert_eq!(reason(Some(&conflict), &conflict), None);
        let waiting = [
            c("Accepted", "True", "Accepted"),
            c("Ready", "False", "ProviderNotFound"),
            c("Reconciling", "True", "ProviderNotFound"),
            c("Stalled", "False", "Waiting"),
        ];
        let gave_up = [
            c("Accepted", "True", "Accepted"),
            c("Ready", "False", "ProviderNotFound"),
            c("Stalled", "True", "ProviderNotFound"),
        ];
        assert_eq!(reason(Some(&ok), &waiting).as_deref(), Some("Rejected"));
        assert_eq!(reason(Some(&waiting), &waiting), None, "waiting is no news");
        assert_eq!(reason(Some(&waiting), &gave_up).as_deref(), Some("Stalled"));
        assert_eq!(reason(Some(&gave_up), &gave_up), None);
        assert_eq!(reason(Some(&gave_up), &ok).as_deref(), Some("Recovered"));
    }

    #[test]
    fn retries_back_off_up_to_the_cap() {
        let delays: Vec<Duration> = retry_delays().take(12).collect();
        assert!(
            delays[0] >= Duration::from_secs(1) && delays[0] < Duration::from_secs(2),
            "{delays:?}"
        );
        assert!(delays[3] >= Duration::from_secs(8), "{delays:?}");
        assert!(delays.iter().all(|d| *d < MAX_RETRY_DELAY * 2), "{delays:?}");
    }
}
