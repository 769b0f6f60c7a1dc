//! Connection metrics of the listeners. Every label is a fixed enum.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Which port.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ListenerName {
    api,
    admin,
}

/// Why the gateway closed a client connection.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CloseReason {
    /// The request headers did not arrive within the header timeout.
    header_timeout,
    /// Nothing arrived on a keep-alive connection within the idle timeout.
    idle_timeout,
    /// The client read nothing of its response for the idle timeout.
    write_stalled,
    /// Closed to make room for new connections at the connection cap.
    shed,
    /// Still open at the end of the shutdown grace period.
    shutdown,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: ListenerName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    listener: ListenerName,
    reason: CloseReason,
}

/// The connection metrics of every listener.
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    open: Family<ListenerLabels, Gauge>,
    limit: Family<ListenerLabels, Gauge>,
    closed: Family<ClosedLabels, Counter>,
    accept_errors: Family<ListenerLabels, Counter>,
}

impl ConnectionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ConnectionMetrics::default();
        registry.register(
            "connections",
            "Open client connections, by listener",
            metrics.open.clone(),
        );
        registry.register(
            "connection_limit",
            "Client connections a listener holds at most (--max-connections)",
            metrics.limit.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections the gateway closed, by listener and reason",
            metrics.closed.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts (e.g. out of file descriptors), by listener",
            metrics.accept_errors.clone(),
        );
        metrics
    }

    pub fn listener(&self, listener: ListenerName) -> ListenerMetrics {
        ListenerMetrics {
            listener,
            all: self.clone(),
        }
    }
}

/// The metrics of one listener.
#[derive(Clone)]
pub struct ListenerMetrics {
    listener: ListenerName,
    all: ConnectionMetrics,
}

impl ListenerMetrics {
    fn labels(&self) -> ListenerLabels {
        ListenerLabels {
            listener: self.listener,
        }
    }

    pub fn open(&self) -> Gauge {
        self.all.open.get_or_create_owned(&self.labels())
    }

    pub fn limit(&self) -> Gauge {
        self.all.limit.get_or_create_owned(&self.labels())
    }

    pub fn accept_error(&self) {
        self.all.accept_errors.get_or_create(&self.labels()).inc();
    }

    pub fn closed(&self, reason: CloseReason) -> Counter {
        self.all.closed.get_or_create_owned(&ClosedLabels {
            listener: self.listener,
            reason,
        })
    }

    pub fn name(&self) -> ListenerName {
        self.listener
    }
}
