//! Kubernetes Events, off the reconcile path: a reconcile queues an Event and returns; a
//! background task creates queued Events a few at a time. Events are only published on
//! transitions (see `reconcile::transition_event`), so unlike kube-runtime's `Recorder` there
//! is no cache for series or deduplication: each Event is created once and forgotten.
//! When the queue is full the Event is dropped and counted; status writes never wait for it,
//! and Events wait for a pause in status writes (see `pacing`).

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::Client;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::metrics::{ControllerMetrics, EventOutcome};
use super::pacing::Pacing;

/// Events waiting to be created; beyond this, new ones are dropped. Large enough for a bulk
/// apply of a few thousand objects, whose Events wait until their status writes are done.
pub const QUEUE: usize = 4096;
/// Events created at the same time.
pub const CONCURRENCY: usize = 4;

/// Who reports the Events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reporter {
    /// `reportingController`.
    pub controller: String,
    /// `reportingInstance`: the pod's name, else the controller's.
    pub instance: String,
}

impl Reporter {
    /// The instance from `POD_NAME`, when set.
    pub fn from_env(controller: &str) -> Self {
        Reporter {
            controller: controller.to_string(),
            instance: std::env::var("POD_NAME")
                .ok()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| controller.to_string()),
        }
    }
}

/// The sending side, shared by every reconcile.
pub struct Events {
    reporter: Reporter,
    queue: mpsc::Sender<KubeEvent>,
    metrics: Arc<ControllerMetrics>,
    pacing: Arc<Pacing>,
}

impl Events {
    /// A queue of `capacity` Events and the receiver that [`deliver`] serves.
    pub fn new(reporter: Reporter, capacity: usize, metrics: Arc<ControllerMetrics>) -> (Self, Queued) {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let pacing = Arc::new(Pacing::new(capacity));
        (
            Events {
                reporter,
                queue,
                metrics,
                pacing: pacing.clone(),
            },
            Queued { receiver, pacing },
        )
    }

    /// Status writes register here, so Events wait for a pause in them.
    pub fn pacing(&self) -> &Arc<Pacing> {
        &self.pacing
    }

    /// Queues `event` about `regarding`; never waits. A full (or closed) queue drops it.
    pub fn enqueue(&self, event: &Event, regarding: &ObjectReference) {
        let built = build(&self.reporter, event, regarding, jiff::Timestamp::now());
        if self.queue.try_send(built).is_ok() {
            self.pacing.queued();
        } else {
            self.metrics.event(EventOutcome::dropped);
            tracing::debug!(reason = %event.reason, "event queue full: dropped an Event");
        }
    }
}

/// The receiving side, for [`deliver`].
pub struct Queued {
    receiver: mpsc::Receiver<KubeEvent>,
    pacing: Arc<Pacing>,
}

/// Creates queued Events, [`CONCURRENCY`] at a time, each after a pause in status writes,
/// until every sender is gone.
pub async fn deliver(client: Client, queued: Queued, metrics: Arc<ControllerMetrics>) {
    let Queued { receiver, pacing } = queued;
    ReceiverStream::new(receiver)
        .map(|event| {
            let client = client.clone();
            let pacing = pacing.clone();
            async move {
                pacing.taken();
                pacing.pause().await;
                let namespace = event
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_string());
                let api: Api<KubeEvent> = Api::namespaced(client, &namespace);
                let reason = event.reason.clone().unwrap_or_default();
                api.create(&PostParams::default(), &event)
                    .await
                    .map_err(|e| (reason, e))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|result| {
            match result {
                Ok(_) => metrics.event(EventOutcome::created),
                Err((reason, error)) => {
                    metrics.event(EventOutcome::failed);
                    tracing::warn!(error = %error, reason = %reason, "cannot publish an Event");
                }
            }
            std::future::ready(())
        })
        .await;
}

/// An `events.k8s.io/v1` Event about `regarding`, named as kube-runtime names them
/// (`<object>.<nanoseconds, hex>`), in the object's namespace.
pub fn build(reporter: &Reporter, event: &Event, regarding: &ObjectReference, now: jiff::Timestamp) -> KubeEvent {
    let object = regarding.name.as_deref().unwrap_or(&reporter.controller);
    KubeEvent {
        metadata: ObjectMeta {
            name: Some(format!("{object}.{:x}", now.as_nanosecond())),
            namespace: regarding.namespace.clone(),
            ..ObjectMeta::default()
        },
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: event.note.clone(),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        related: event.secondary.clone(),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        series: None,
        deprecated_count: None,
        deprecated_first_timestamp: None,
        deprecated_last_timestamp: None,
        deprecated_source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter() -> Reporter {
        Reporter {
            controller: "modelgate-controller".into(),
            instance: "modelgate-controller-7d9f-abcde".into(),
        }
    }

    fn regarding() -> ObjectReference {
        ObjectReference {
            api_version: Some("modelgate.dev/v1alpha1".into()),
            kind: Some("ModelAlias".into()),
            name: Some("gpt".into()),
            namespace: Some("ml".into()),
            uid: Some("8c1f".into()),
            resource_version: Some("42".into()),
            field_path: None,
        }
    }

    fn accepted() -> Event {
        Event {
            type_: EventType::Normal,
            reason: "Accepted".into(),
            note: Some("serving 'gpt'".into()),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    #[test]
    fn builds_an_events_v1_event() {
        let now = jiff::Timestamp::from_nanosecond(1_700_000_000_123_456_789).expect("time");
        let built = build(&reporter(), &accepted(), &regarding(), now);
        assert_eq!(
            built,
            KubeEvent {
                metadata: ObjectMeta {
                    name: Some(format!("gpt.{:x}", 1_700_000_000_123_456_789_i128)),
                    namespace: Some("ml".into()),
                    ..ObjectMeta::default()
                },
                action: Some("Reconcile".into()),
                reason: Some("Accepted".into()),
                note: Some("serving 'gpt'".into()),
                type_: Some("Normal".into()),
                event_time: Some(MicroTime(now)),
                regarding: Some(regarding()),
                related: None,
                reporting_controller: Some("modelgate-controller".into()),
                reporting_instance: Some("modelgate-controller-7d9f-abcde".into()),
                series: None,
                deprecated_count: None,
                deprecated_first_timestamp: None,
                deprecated_last_timestamp: None,
                deprecated_source: None,
            }
        );
        let warning = Event {
            type_: EventType::Warning,
            ..accepted()
        };
        assert_eq!(
            build(&reporter(), &warning, &regarding(), now).type_.as_deref(),
            Some("Warning")
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let metrics = Arc::new(ControllerMetrics::default());
        let (events, mut receiving) = Events::new(reporter(), 2, metrics.clone());
        for _ in 0..5 {
            events.enqueue(&accepted(), &regarding());
        }
        let text = metrics.encode();
        assert!(
            text.contains("modelgate_controller_events_total{outcome=\"dropped\"} 3"),
            "{text}"
        );
        let mut queued = 0;
        while receiving.receiver.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 2);
        assert!(
            receiving.pacing.backlogged(),
            "two queued of two: Events no longer wait"
        );
    }
}
