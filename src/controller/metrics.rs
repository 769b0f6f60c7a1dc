//! Controller metrics: reconciles, durations, status writes and errors, by kind and reason.
//! No label is ever an object's name.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Kind {
    ModelAlias,
    LLMProvider,
    Team,
    AccessGroup,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    unchanged,
    written,
    error,
}

/// What became of an Event.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum EventOutcome {
    created,
    /// The API refused it or could not be reached.
    failed,
    /// The queue was full; it was never sent.
    dropped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    outcome: EventOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: Kind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: Kind,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: Kind,
    reason: &'static str,
}

type Histograms = Family<KindLabels, Histogram, fn() -> Histogram>;

fn reconcile_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

pub struct ControllerMetrics {
    registry: Registry,
    reconciles: Family<OutcomeLabels, Counter>,
    durations: Histograms,
    errors: Family<ErrorLabels, Counter>,
    events: Family<EventLabels, Counter>,
    pub leader: Gauge,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("modelgate_controller");
        let reconciles = Family::default();
        let durations = Histograms::new_with_constructor(reconcile_histogram as fn() -> Histogram);
        let errors = Family::default();
        let events = Family::default();
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and outcome (unchanged: no write)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            durations.clone(),
        );
        registry.register("errors", "Reconcile errors by kind and reason", errors.clone());
        registry.register(
            "events",
            "Events by outcome (dropped: the queue was full)",
            events.clone(),
        );
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        ControllerMetrics {
            registry,
            reconciles,
            durations,
            errors,
            events,
            leader,
        }
    }
}

impl ControllerMetrics {
    pub fn reconciled(&self, kind: Kind, outcome: Outcome, seconds: f64) {
        self.reconciles.get_or_create(&OutcomeLabels { kind, outcome }).inc();
        self.durations.get_or_create(&KindLabels { kind }).observe(seconds);
    }

    pub fn error(&self, kind: Kind, reason: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind, reason }).inc();
    }

    pub fn event(&self, outcome: EventOutcome) {
        self.events.get_or_create(&EventLabels { outcome }).inc();
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
