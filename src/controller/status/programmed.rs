//! `Programmed`: whether every running gateway replica serves what the controller published
//! for an object's current generation.
//!
//! Gateways report the newest resourceVersion of each kind their routing table includes
//! (`GatewayReplica`). What the controller published is in the object's version it wrote (or,
//! for a provider, the version that carried the new generation): a gateway whose table
//! includes that version serves it. That version is the object's *reference*; it stays fixed
//! while the controller writes `Programmed` itself (see `rollout`).
//!
//! Once every replica serves a generation, a replica that starts later serves it too (it
//! builds its table from a full list), so `Programmed=True` stays as written until the
//! published route or the generation changes: gateways scaling or restarting cause no writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::{condition, Env, MAX_LAGGARDS_NAMED};
use crate::controller::gateways::ServingReplica;
use crate::crd::{condition_type, ConditionStatus, ModelAlias, ModelAliasStatus, ResolvedRoute};

/// Which of a gateway's served versions applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    Aliases,
    Providers,
}

impl Served {
    fn of(self, replica: &ServingReplica) -> Option<u64> {
        match self {
            Served::Aliases => replica.aliases,
            Served::Providers => replica.providers,
        }
    }
}

/// What `Programmed` says, before it becomes a condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: ConditionStatus,
    pub reason: &'static str,
    pub message: String,
}

impl Verdict {
    fn not(reason: &'static str, message: String) -> Self {
        Verdict {
            status: ConditionStatus::False,
            reason,
            message,
        }
    }
}

/// Whether `previous` already says the current generation is programmed: then it stays.
pub fn already(previous: &[Condition], generation: i64) -> Option<&Condition> {
    previous.iter().find(|c| {
        c.type_ == condition_type::PROGRAMMED
            && c.status == ConditionStatus::True.as_str()
            && c.observed_generation == Some(generation)
    })
}

/// The rollout of a published generation to the gateways serving `namespace`. `reference` is
/// the version a gateway must have read; `None` when the object the controller sees does not
/// carry the route yet (it is about to be written), so no gateway can serve it.
pub fn rollout(env: &Env, served: Served, namespace: &str, generation: i64, reference: Option<u64>) -> Verdict {
    let mut count = 0usize;
    let mut laggards: Vec<&str> = Vec::new();
    for replica in env.gateways.serving(namespace) {
        count += 1;
        let up_to_date = matches!((served.of(replica), reference), (Some(have), Some(need)) if have >= need);
        if !up_to_date {
            laggards.push(&replica.name);
        }
    }
    if count == 0 {
        return Verdict::not(
            "NoGateways",
            format!(
                "no running gateway replica serving namespace '{namespace}' reports what it serves (none runs, or the gateways cannot write their gatewayreplicas.modelgate.dev); generation {generation} is published"
            ),
        );
    }
    if laggards.is_empty() {
        return Verdict {
            status: ConditionStatus::True,
            reason: "Programmed",
            message: format!("served by {count}/{count} gateways at generation {generation}"),
        };
    }
    let named = laggards.len().min(MAX_LAGGARDS_NAMED);
    let mut waiting = laggards[..named].join(", ");
    if laggards.len() > named {
        waiting.push_str(&format!(" and {} more", laggards.len() - named));
    }
    Verdict::not(
        "Pending",
        format!(
            "served by {}/{count} gateways at generation {generation}; waiting for {waiting}",
            count - laggards.len()
        ),
    )
}

/// `Programmed` of an alias: whether the gateways serve the route published for its current
/// generation.
pub(super) fn alias_programmed(
    previous: &ModelAliasStatus,
    resolved: Option<&ResolvedRoute>,
    generation: i64,
    alias: &ModelAlias,
    env: &Env,
    reference: Option<u64>,
) -> Condition {
    let prev = previous.conditions.as_slice();
    let cond = |verdict: Verdict| {
        condition(
            condition_type::PROGRAMMED,
            verdict.status,
            verdict.reason,
            verdict.message,
            generation,
            prev,
            env.now,
        )
    };
    let verdict = match resolved {
        None => Verdict {
            status: ConditionStatus::False,
            reason: "NotServed",
            message: "no route is published for this alias (see Ready)".to_string(),
        },
        Some(route) if route.generation != generation => Verdict {
            status: ConditionStatus::False,
            reason: "NotPublished",
            message: format!(
                "generation {generation} is not published (see Ready); the gateways keep serving generation {}",
                route.generation
            ),
        },
        Some(route) => {
            let published = previous.resolved.as_ref() == Some(route);
            if let Some(done) = already(prev, generation).filter(|_| published) {
                return done.clone();
            }
            let namespace = alias.metadata.namespace.as_deref().unwrap_or("default");
            rollout(
                env,
                Served::Aliases,
                namespace,
                generation,
                reference.filter(|_| published),
            )
        }
    };
    cond(verdict)
}
