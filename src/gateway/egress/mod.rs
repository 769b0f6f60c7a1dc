//! Egress: where the gateway may send requests. Every new upstream connection, from both
//! upstream clients, goes through [`connect`], which resolves the host and checks every
//! address against the [`Policy`] (link-local, metadata and other special addresses in any
//! spelling; in a cluster also loopback, the pod itself and the API server) before
//! connecting. Requests carry a hop count ([`HOPS`]) so that one that comes back to a
//! modelgate gateway is refused instead of looping. Pooled connections are reused without a
//! new check: the cost is per connection, not per request.

mod answers;
mod connect;
mod hops;
mod policy;

use std::net::SocketAddr;
use std::sync::Arc;

pub use answers::unfollowed;
pub use connect::{connect, find_blocked, resolve, ConnectError, GuardedConnector, TlsServerName};
pub use hops::{hops_value, HOPS};
pub use ipnet::IpNet;
pub use policy::{Blocked, Policy, Refusal};

/// How a gateway treats its upstreams (command-line flags).
#[derive(Clone, Debug, Default)]
pub struct EgressOptions {
    /// Networks upstreams may be in even when the policy would refuse them
    /// (`--allow-upstream-cidr`).
    pub allow: Vec<IpNet>,
    /// How many modelgate gateways a request may already have passed (`--max-hops`); 0
    /// refuses any request that comes from a modelgate gateway.
    pub max_hops: u32,
    /// Whether the in-cluster rules apply; `None`: when the gateway reads the cluster (no
    /// `--config`), where tenants write LLMProviders.
    pub in_cluster: Option<bool>,
}

/// The egress state of a running gateway.
pub struct Egress {
    pub policy: Arc<Policy>,
    pub max_hops: u32,
}

impl Egress {
    /// The policy for a gateway in this process; `reads_cluster` when it has no `--config`.
    pub fn new(options: &EgressOptions, reads_cluster: bool, listen: &[SocketAddr]) -> Self {
        let in_cluster = options.in_cluster.unwrap_or(reads_cluster);
        let policy = Policy::from_environment(options.allow.clone(), in_cluster, listen);
        let allowed: Vec<String> = options.allow.iter().map(ToString::to_string).collect();
        tracing::info!(
            rules = if in_cluster {
                "in-cluster: refuses link-local, metadata, loopback, the pod's own addresses and the API server"
            } else {
                "standalone: refuses link-local and metadata addresses"
            },
            allowed = %allowed.join(","),
            max_hops = options.max_hops,
            "upstream egress policy"
        );
        Egress {
            policy: Arc::new(policy),
            max_hops: options.max_hops,
        }
    }

    /// A policy given directly (tests, embedding).
    pub fn with_policy(policy: Policy, max_hops: u32) -> Self {
        Egress {
            policy: Arc::new(policy),
            max_hops,
        }
    }
}
