//! Which upstream addresses a gateway connects to: the rules, built once at startup, checked
//! on every resolved address of every new upstream connection.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::compiler::address::{canonical, classify, classify_name, AddressClass, NamedHost};

/// Why an address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A special address (link-local, metadata, loopback in a cluster, …).
    Address(AddressClass),
    /// A special host name (a metadata service, the API server).
    Name(NamedHost),
    /// An address of the gateway's own pod (in a cluster).
    Own,
    /// The cluster's API server (`KUBERNETES_SERVICE_HOST`).
    ApiServer,
}

/// An upstream the policy refused: the host as configured, the address it resolved to, and
/// why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe(true))]
pub struct Blocked {
    pub host: String,
    pub address: Option<IpAddr>,
    pub refusal: Refusal,
}

impl Blocked {
    /// Why, in words. `detailed` (for the gateway's log) names the gateway's own addresses;
    /// the client's version never does.
    pub fn describe(&self, detailed: bool) -> String {
        let host = &self.host;
        let at = match self.address {
            Some(ip) => {
                let reached = match canonical(ip) {
                    same if same == ip => ip.to_string(),
                    other => format!("{ip}, that is {other}"),
                };
                if host.trim_matches(['[', ']']) == ip.to_string() {
                    format!("its address {reached}")
                } else {
                    format!("its host '{host}' resolves to {reached}")
                }
            }
            None => format!("its host '{host}'"),
        };
        let hidden = match self.address {
            Some(ip) if detailed => format!("its host '{host}' ({ip})"),
            _ => "its baseUrl".to_string(),
        };
        match self.refusal {
            Refusal::Address(class) if class.always_refused() => {
                format!("{at}: {}; modelgate never connects to it", class.describe())
            }
            Refusal::Address(class) => format!(
                "{at}: {}; a gateway in a cluster does not connect to it",
                class.describe()
            ),
            Refusal::Name(name) => format!(
                "its host '{host}' is {}; the gateway does not connect to it",
                name.describe()
            ),
            Refusal::Own => format!("{hidden} points at this gateway's own pod"),
            Refusal::ApiServer => format!("{hidden} points at the cluster's Kubernetes API server"),
        }
    }
}

/// The rules. Standalone gateways (`--config`) refuse what is always dangerous; gateways in a
/// cluster, where tenants write LLMProviders, also refuse loopback, the pod's own addresses
/// and the API server. An allowed network (`--allow-upstream-cidr`) overrides both.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    allow: Vec<IpNet>,
    in_cluster: bool,
    own: Vec<IpAddr>,
    api_server: Vec<IpAddr>,
}

impl Policy {
    /// A policy with these rules; `own` and `api_server` only count `in_cluster`.
    pub fn new(allow: Vec<IpNet>, in_cluster: bool, own: Vec<IpAddr>, api_server: Vec<IpAddr>) -> Self {
        Policy {
            allow,
            in_cluster,
            own: own.into_iter().map(canonical).collect(),
            api_server: api_server.into_iter().map(canonical).collect(),
        }
    }

    /// The rules for this process: in a cluster, its own addresses come from its network
    /// interfaces, `POD_IP`/`POD_IPS`/`HOST_IP`/`HOST_IPS` (set by the Deployment from the
    /// downward API) and the addresses it listens on; the API server from
    /// `KUBERNETES_SERVICE_HOST`.
    pub fn from_environment(allow: Vec<IpNet>, in_cluster: bool, listen: &[SocketAddr]) -> Self {
        if !in_cluster {
            return Policy::new(allow, false, Vec::new(), Vec::new());
        }
        let mut own: Vec<IpAddr> = match if_addrs::get_if_addrs() {
            Ok(interfaces) => interfaces.into_iter().map(|i| i.ip()).collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot list the network interfaces; the pod's own addresses are known only from POD_IP and HOST_IP");
                Vec::new()
            }
        };
        for var in ["POD_IP", "POD_IPS", "HOST_IP", "HOST_IPS"] {
            own.extend(env_ips(var));
        }
        own.extend(listen.iter().map(SocketAddr::ip).filter(|ip| !ip.is_unspecified()));
        own.sort_unstable();
        own.dedup();
        Policy::new(allow, true, own, env_ips("KUBERNETES_SERVICE_HOST"))
    }

    pub fn in_cluster(&self) -> bool {
        self.in_cluster
    }

    pub fn allowed_networks(&self) -> &[IpNet] {
        &self.allow
    }

    /// Whether an allowed network holds `ip` (in any spelling).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let canonical = canonical(ip);
        self.allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    /// Whether a connection to `ip` is refused, and why.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.allows(ip) {
            return Ok(());
        }
        if let Some(class) = classify(ip) {
            if class.always_refused() || self.in_cluster {
                return Err(Refusal::Address(class));
            }
        }
        if self.in_cluster {
            let ip = canonical(ip);
            if self.own.contains(&ip) {
                return Err(Refusal::Own);
            }
            if self.api_server.contains(&ip) {
                return Err(Refusal::ApiServer);
            }
        }
        Ok(())
    }

    /// Whether a host name is refused before its addresses are known (those in an allowed
    /// network are let through all the same). Loopback names are judged by their addresses.
    pub fn check_name(&self, name: &str) -> Result<(), Refusal> {
        match classify_name(name) {
            Some(NamedHost::Metadata) => Err(Refusal::Name(NamedHost::Metadata)),
            Some(NamedHost::ApiServer) if self.in_cluster => Err(Refusal::Name(NamedHost::ApiServer)),
            _ => Ok(()),
        }
    }
}

/// The addresses in a comma-separated environment variable; anything else is ignored.
fn env_ips(var: &str) -> Vec<IpAddr> {
    std::env::var(var)
        .unwrap_or_default()
        .split(',')
        .filter_map(|text| text.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn cluster(allow: &[&str]) -> Policy {
        Policy::new(
            allow.iter().map(|n| n.parse().expect("cidr")).collect(),
            true,
            vec![ip("10.0.0.5")],
            vec![ip("10.96.0.1")],
        )
    }

    #[test]
    fn standalone_refuses_metadata_and_link_local_but_allows_loopback() {
        let policy = Policy::default();
        assert_eq!(
            policy.check(ip("169.254.169.254")),
            Err(Refusal::Address(AddressClass::Metadata))
        );
        assert_eq!(
            policy.check(ip("::ffff:169.254.169.254")),
            Err(Refusal::Address(AddressClass::Metadata))
        );
        assert_eq!(
            policy.check(ip("fe80::1")),
            Err(Refusal::Address(AddressClass::LinkLocal))
        );
        assert_eq!(
            policy.check(ip("0.0.0.0")),
            Err(Refusal::Address(AddressClass::Unspecified))
        );
        assert_eq!(
            policy.check(ip("224.0.0.251")),
            Err(Refusal::Address(AddressClass::Multicast))
        );
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("::1")), Ok(()));
        assert_eq!(policy.check(ip("10.0.0.5")), Ok(()));
        assert_eq!(
            policy.check_name("metadata.google.internal."),
            Err(Refusal::Name(NamedHost::Metadata))
        );
        assert_eq!(policy.check_name("kubernetes.default.svc"), Ok(()));
        assert_eq!(policy.check_name("localhost"), Ok(()));
    }

    #[test]
    fn in_cluster_also_refuses_loopback_the_pod_and_the_api_server() {
        let policy = cluster(&[]);
        assert_eq!(
            policy.check(ip("127.0.0.1")),
            Err(Refusal::Address(AddressClass::Loopback))
        );
        assert_eq!(
            policy.check(ip("::ffff:127.0.0.2")),
            Err(Refusal::Address(AddressClass::Loopback))
        );
        assert_eq!(policy.check(ip("::1")), Err(Refusal::Address(AddressClass::Loopback)));
        assert_eq!(policy.check(ip("10.0.0.5")), Err(Refusal::Own));
        assert_eq!(policy.check(ip("::ffff:10.0.0.5")), Err(Refusal::Own));
        assert_eq!(policy.check(ip("10.96.0.1")), Err(Refusal::ApiServer));
        assert_eq!(policy.check(ip("10.0.0.6")), Ok(()));
        assert_eq!(
            policy.check_name("kubernetes.default.svc.cluster.local"),
            Err(Refusal::Name(NamedHost::ApiServer))
        );
    }

    #[test]
    fn an_allowed_network_overrides_every_rule() {
        let policy = cluster(&["127.0.0.0/8", "169.254.169.254/32", "10.0.0.0/24"]);
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()), "in any spelling");
        assert_eq!(policy.check(ip("169.254.169.254")), Ok(()));
        assert_eq!(policy.check(ip("10.0.0.5")), Ok(()));
        assert_eq!(
            policy.check(ip("169.254.169.253")),
            Err(Refusal::Address(AddressClass::LinkLocal))
        );
        assert_eq!(policy.check(ip("::1")), Err(Refusal::Address(AddressClass::Loopback)));
    }

    #[test]
    fn the_client_never_sees_the_pods_addresses() {
        let own = Blocked {
            host: "10.0.0.5".into(),
            address: Some(ip("10.0.0.5")),
            refusal: Refusal::Own,
        };
        assert_eq!(own.describe(false), "its baseUrl points at this gateway's own pod");
        assert_eq!(
            own.describe(true),
            "its host '10.0.0.5' (10.0.0.5) points at this gateway's own pod"
        );
        let metadata = Blocked {
            host: "2852039166".into(),
            address: Some(ip("169.254.169.254")),
            refusal: Refusal::Address(AddressClass::Metadata),
        };
        assert_eq!(
            metadata.describe(false),
            "its host '2852039166' resolves to 169.254.169.254: a cloud metadata service, which hands out the node's credentials; modelgate never connects to it"
        );
        let loopback = Blocked {
            host: "localhost".into(),
            address: Some(ip("127.0.0.1")),
            refusal: Refusal::Address(AddressClass::Loopback),
        };
        assert_eq!(
            loopback.describe(false),
            "its host 'localhost' resolves to 127.0.0.1: a loopback address (127.0.0.0/8 or ::1); a gateway in a cluster does not connect to it"
        );
    }
}
