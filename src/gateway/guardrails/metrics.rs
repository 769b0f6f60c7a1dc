//! `modelgate_guardrail_actions_total{alias,rule,action,direction}`. Alias and rule names come
//! from the compiled configuration (the rule's name, or `maxInputBytes`, `maxOutputTokens`,
//! `webhook`), never from a request; action and direction are fixed sets.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Action {
    /// Matches replaced by placeholders.
    mask,
    /// Refused, or a stream ended.
    block,
    /// `maxOutputTokens` lowered or set.
    clamp,
    /// `maxOutputTokens` exceeded in `reject` mode, or `maxInputBytes` exceeded.
    reject,
    /// The classifier failed and `failureMode: open` let the request through.
    fail_open,
    /// The classifier failed and `failureMode: closed` refused the request.
    fail_closed,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Side {
    request,
    response,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    alias: String,
    rule: String,
    action: Action,
    direction: Side,
}

/// The guardrail family, registered in the gateway's registry.
pub struct GuardMetrics {
    actions: Family<ActionLabels, Counter>,
    /// The series that exist, so a deleted alias's can be dropped.
    seen: Mutex<HashSet<ActionLabels>>,
}

impl GuardMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let actions = Family::default();
        registry.register(
            "guardrail_actions",
            "Guardrail actions taken, by alias, rule (a content rule's name, maxInputBytes, maxOutputTokens or webhook), action and direction",
            actions.clone(),
        );
        GuardMetrics {
            actions,
            seen: Mutex::default(),
        }
    }

    /// A metrics family outside any registry (tests, benchmarks).
    pub fn unregistered() -> Self {
        GuardMetrics {
            actions: Family::default(),
            seen: Mutex::default(),
        }
    }

    pub fn count(&self, alias: &str, rule: &str, action: Action, direction: Side) {
        let labels = ActionLabels {
            alias: alias.to_string(),
            rule: rule.to_string(),
            action,
            direction,
        };
        self.actions.get_or_create(&labels).inc();
        self.lock().insert(labels);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ActionLabels>> {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The count of one series (tests).
    pub fn get(&self, alias: &str, rule: &str, action: Action, direction: Side) -> u64 {
        self.actions
            .get(&ActionLabels {
                alias: alias.to_string(),
                rule: rule.to_string(),
                action,
                direction,
            })
            .map_or(0, |c| c.get())
    }

    /// Drops the series of aliases no longer configured.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut seen = self.lock();
        seen.retain(|labels| {
            let kept = keep(&labels.alias);
            if !kept {
                self.actions.remove(labels);
            }
            kept
        });
    }
}
