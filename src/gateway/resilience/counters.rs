//! The resilience stage's metrics: `modelgate_attempts_total{alias,provider,outcome}`,
//! `modelgate_fallbacks_total{alias,reason}` and `modelgate_ejections_total{provider}`. Alias
//! and provider come from the routing table; outcome and reason are failure classes.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::llm::FailureClass;

/// How a try ended: `success`, or its failure class.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Outcome(pub Option<FailureClass>);

impl Outcome {
    const ALL: [Outcome; 9] = [
        Outcome(None),
        Outcome(Some(FailureClass::RateLimited)),
        Outcome(Some(FailureClass::Overloaded)),
        Outcome(Some(FailureClass::ServerError)),
        Outcome(Some(FailureClass::Timeout)),
        Outcome(Some(FailureClass::Unreachable)),
        Outcome(Some(FailureClass::ContextWindowExceeded)),
        Outcome(Some(FailureClass::AuthFailed)),
        Outcome(Some(FailureClass::ClientError)),
    ];
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let text = self.0.map_or("success", FailureClass::as_str);
        EncodeLabelValue::encode(&text, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    alias: String,
    provider: String,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    alias: String,
    reason: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

/// The counters, registered with the gateway's registry.
pub struct Counters {
    attempts: Family<AttemptLabels, Counter>,
    fallbacks: Family<FallbackLabels, Counter>,
    ejections: Family<ProviderLabels, Counter>,
}

impl Counters {
    pub fn new(registry: &mut Registry) -> Self {
        let counters = Counters {
            attempts: Family::default(),
            fallbacks: Family::default(),
            ejections: Family::default(),
        };
        registry.register(
            "attempts",
            "Tries of requests at a provider, by alias, provider and outcome (success or failure class)",
            counters.attempts.clone(),
        );
        registry.register(
            "fallbacks",
            "Requests that moved on to a fallback tier, by alias and the failure that moved them",
            counters.fallbacks.clone(),
        );
        registry.register(
            "ejections",
            "Targets ejected from rotation after failures in a row, by provider",
            counters.ejections.clone(),
        );
        counters
    }

    /// The counter of one outcome (kept by callers on the hot path).
    pub fn attempt(&self, alias: &str, provider: &str, outcome: Option<FailureClass>) -> Counter {
        self.attempts
            .get_or_create(&AttemptLabels {
                alias: alias.to_string(),
                provider: provider.to_string(),
                outcome: Outcome(outcome),
            })
            .clone()
    }

    pub fn fallback(&self, alias: &str, reason: FailureClass) {
        self.fallbacks
            .get_or_create(&FallbackLabels {
                alias: alias.to_string(),
                reason: Outcome(Some(reason)),
            })
            .inc();
    }

    pub fn ejected(&self, provider: &str) {
        self.ejections
            .get_or_create(&ProviderLabels {
                provider: provider.to_string(),
            })
            .inc();
    }

    /// Drops the series of an alias and provider pair no longer served; `alias_gone` when the
    /// alias has no pair left.
    pub fn forget(&self, alias: &str, provider: &str, alias_gone: bool) {
        for outcome in Outcome::ALL {
            self.attempts.remove(&AttemptLabels {
                alias: alias.to_string(),
                provider: provider.to_string(),
                outcome,
            });
            if alias_gone {
                self.fallbacks.remove(&FallbackLabels {
                    alias: alias.to_string(),
                    reason: outcome,
                });
            }
        }
    }
}
