//! Guarded connections: resolve the host, check every address against the [`Policy`], and
//! connect to exactly the addresses checked (so a DNS answer that changes between a check and
//! the connection cannot slip through). Used by both upstream clients: our HTTP/1.1 pool and,
//! through [`GuardedConnector`], hyper-util's client for HTTPS.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::policy::{Blocked, Policy};
use crate::compiler::address::{canonical, parse_host, Host};

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("refused by the egress policy: {0}")]
    Blocked(Box<Blocked>),
    #[error("'{host}' is not a valid host")]
    BadHost { host: String },
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("no connection to {host}:{port} within {timeout:?}")]
    Timeout { host: String, port: u16, timeout: Duration },
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

impl ConnectError {
    /// The policy's refusal, if that is what this is.
    pub fn blocked(&self) -> Option<&Blocked> {
        match self {
            ConnectError::Blocked(blocked) => Some(blocked),
            _ => None,
        }
    }
}

/// The policy's refusal anywhere in an error's chain of causes.
pub fn find_blocked<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Blocked> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(blocked) = error.downcast_ref::<ConnectError>().and_then(ConnectError::blocked) {
            return Some(blocked);
        }
        current = error.source();
    }
    None
}

/// The addresses of `host` (a URL host: a name, an IPv4 address in any spelling, or a
/// bracketed IPv6 address), every one allowed by `policy`. One refused address refuses the
/// host: a name that resolves to the metadata service among others is not an upstream.
pub async fn resolve(policy: &Policy, host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
    let blocked = |address, refusal| {
        ConnectError::Blocked(Box::new(Blocked {
            host: host.to_string(),
            address,
            refusal,
        }))
    };
    let (addresses, by_name) = match parse_host(host) {
        None => return Err(ConnectError::BadHost { host: host.to_string() }),
        Some(Host::Ip(ip)) => (vec![SocketAddr::new(ip, port)], Ok(())),
        Some(Host::Name(name)) => {
            let by_name = policy.check_name(&name);
            // Without an allowed network nothing could let the name through: no DNS query.
            if let (Err(refusal), []) = (by_name, policy.allowed_networks()) {
                return Err(blocked(None, refusal));
            }
            let resolved =
                tokio::net::lookup_host((name.as_str(), port))
                    .await
                    .map_err(|source| ConnectError::Resolve {
                        host: host.to_string(),
                        source,
                    })?;
            (resolved.collect(), by_name)
        }
    };
    let mut checked = Vec::with_capacity(addresses.len());
    for address in addresses {
        let ip = address.ip();
        match (by_name, policy.allows(ip)) {
            (Err(refusal), false) => return Err(blocked(Some(ip), refusal)),
            _ => policy.check(ip).map_err(|refusal| blocked(Some(ip), refusal))?,
        }
        checked.push(SocketAddr::new(canonical(ip), port));
    }
    if checked.is_empty() {
        return Err(ConnectError::NoAddress { host: host.to_string() });
    }
    Ok(checked)
}

/// A TCP connection (`TCP_NODELAY` set) to `host:port`, resolved and checked first, within
/// `timeout` for the whole of it. Addresses are tried in the resolver's order.
pub async fn connect(policy: &Policy, host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let attempt = async {
        let mut last = None;
        for address in resolve(policy, host, port).await? {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(error) => last = Some(error),
            }
        }
        Err(ConnectError::Connect {
            host: host.to_string(),
            port,
            source: last.unwrap_or_else(|| std::io::Error::other("no address")),
        })
    };
    tokio::time::timeout(timeout, attempt).await.unwrap_or_else(|_| {
        Err(ConnectError::Timeout {
            host: host.to_string(),
            port,
            timeout,
        })
    })
}

/// The name TLS verifies for a provider URL: its host, or for an address written as a
/// number (`https://2852039166/`), the address, so that such a URL reaches [`connect`] and
/// its policy check instead of failing as an invalid name.
pub struct TlsServerName;

impl hyper_rustls::ResolveServerName for TlsServerName {
    fn resolve(&self, uri: &Uri) -> Result<ServerName<'static>, Box<dyn std::error::Error + Sync + Send>> {
        hyper_rustls::DefaultServerNameResolver::default()
            .resolve(uri)
            .or_else(|error| match uri.host().and_then(parse_host) {
                Some(Host::Ip(ip)) => Ok(ServerName::IpAddress(ip.into())),
                _ => Err(error),
            })
    }
}

/// hyper-util's connector for provider URLs, through [`connect`].
#[derive(Clone)]
pub struct GuardedConnector {
    policy: Arc<Policy>,
    timeout: Duration,
}

impl GuardedConnector {
    pub fn new(policy: Arc<Policy>, timeout: Duration) -> Self {
        GuardedConnector { policy, timeout }
    }
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (policy, timeout) = (self.policy.clone(), self.timeout);
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| ConnectError::BadHost { host: uri.to_string() })?;
            let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
                443
            } else {
                80
            };
            let port = uri.port_u16().unwrap_or(default_port);
            connect(&policy, host, port, timeout).await.map(TokioIo::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::address::{AddressClass, NamedHost};
    use crate::gateway::egress::Refusal;

    fn refusal(result: Result<Vec<SocketAddr>, ConnectError>) -> Option<Refusal> {
        match result {
            Err(ConnectError::Blocked(blocked)) => Some(blocked.refusal),
            Err(other) => panic!("not a refusal: {other}"),
            Ok(_) => None,
        }
    }

    #[tokio::test]
    async fn every_spelling_of_the_metadata_address_is_refused_before_any_connection() {
        let policy = Policy::default();
        for host in [
            "169.254.169.254",
            "2852039166",
            "0xa9fea9fe",
            "0251.0376.0251.0376",
            "169.254.169.254.",
            "[::ffff:169.254.169.254]",
            "[64:ff9b::a9fe:a9fe]",
        ] {
            assert_eq!(
                refusal(resolve(&policy, host, 80).await),
                Some(Refusal::Address(AddressClass::Metadata)),
                "{host}"
            );
        }
        assert_eq!(
            refusal(resolve(&policy, "Metadata.Google.Internal.", 80).await),
            Some(Refusal::Name(NamedHost::Metadata)),
            "refused by name, with no DNS query"
        );
    }

    #[tokio::test]
    async fn a_name_is_judged_by_the_addresses_it_resolves_to() {
        let cluster = Policy::new(Vec::new(), true, Vec::new(), Vec::new());
        assert_eq!(
            refusal(resolve(&cluster, "localhost", 80).await),
            Some(Refusal::Address(AddressClass::Loopback))
        );
        let allowed = Policy::new(
            vec!["127.0.0.0/8".parse().expect("cidr"), "::1/128".parse().expect("cidr")],
            true,
            Vec::new(),
            Vec::new(),
        );
        let addresses = resolve(&allowed, "localhost", 8080).await.expect("allowed");
        assert!(
            addresses.iter().all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{addresses:?}"
        );
        let mapped = resolve(&allowed, "[::ffff:127.0.0.1]", 80).await.expect("allowed");
        assert_eq!(
            mapped,
            vec!["127.0.0.1:80".parse().expect("addr")],
            "connects to the canonical address"
        );
    }

    #[tokio::test]
    async fn a_refusal_is_found_through_wrapping_errors() {
        let error = connect(&Policy::default(), "169.254.169.254", 80, Duration::from_secs(1))
            .await
            .expect_err("refused");
        let wrapped: Box<dyn std::error::Error + Send + Sync> = Box::new(error);
        let blocked = find_blocked(wrapped.as_ref()).expect("found");
        assert_eq!(blocked.address, Some("169.254.169.254".parse().expect("ip")));
    }
}
