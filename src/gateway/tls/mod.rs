//! TLS to providers: which certificates a provider is verified against, and what a failed
//! handshake means for the client.
//!
//! A provider without `tls.caSecretRef` is verified by the platform verifier against the
//! system's roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` included), as before. A provider with one is
//! verified against that CA only: a private CA for an in-cluster vLLM or a corporate TLS proxy
//! should not be one more root among the public ones, and a public CA should not vouch for an
//! in-cluster name. There is deliberately no way to skip verification.
//!
//! Every client config keeps rustls's defaults for reuse: an in-memory cache of 256 sessions
//! (TLS 1.3 tickets, TLS 1.2 session ids and tickets) shared by every connection of the
//! client, and ALPN `h2, http/1.1` (set by hyper-rustls), so an HTTP/2 provider gets one
//! multiplexed connection and an HTTP/1.1 one a pool of keep-alive connections.

mod pool;

use std::sync::Arc;

use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector, HttpsConnectorBuilder, ResolveServerName as _};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

pub use pool::TlsPool;

use super::egress::{GuardedConnector, TlsServerName};
use crate::compiler::TrustedCa;

/// Why a client for a provider cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("cannot load the system's trusted roots: {0}")]
    Platform(#[source] rustls::Error),
    #[error("the host in the base URL cannot be checked against a TLS certificate: {0}")]
    ServerName(String),
    #[error("the CA from {source_name} cannot be used: {error}")]
    Ca {
        source_name: String,
        #[source]
        error: rustls::Error,
    },
}

/// The rustls client config for providers that trust `ca` (`None`: the system's roots).
pub fn client_config(ca: Option<&TrustedCa>) -> Result<ClientConfig, ClientTlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientTlsError::Platform)?;
    let config = match ca {
        None => builder
            .try_with_platform_verifier()
            .map_err(ClientTlsError::Platform)?
            .with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in ca.certificates.iter() {
                roots.add(certificate.clone()).map_err(|error| ClientTlsError::Ca {
                    source_name: ca.source.clone(),
                    error,
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

/// Has aws-lc draw its first random bytes now, while the gateway starts. Its generator seeds
/// itself once a process from CPU jitter (`tree_jitter_initialize_once`), 40–75 ms of CPU on
/// the bench's machine; left to the first TLS handshake to a provider, that was added to the
/// first proxied request after every start (`bench/https.py`, "first request").
pub fn warm_up() {
    let mut seed = [0u8; 32];
    if rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut seed)
        .is_err()
    {
        tracing::warn!("the TLS random generator did not start; handshakes with HTTPS providers will fail");
    }
}

/// The client config of the HTTPS pools ([`TlsPool`]) that trust `ca`: ALPN `h2, http/1.1`.
pub fn pool_config(ca: Option<&TrustedCa>) -> Result<ClientConfig, ClientTlsError> {
    let mut config = client_config(ca)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The name a provider's certificate must be valid for.
pub fn server_name(uri: &http::Uri) -> Result<ServerName<'static>, ClientTlsError> {
    TlsServerName
        .resolve(uri)
        .map_err(|error| ClientTlsError::ServerName(error.to_string()))
}

/// The connector of a provider client: TLS with `config` over a connection the egress policy
/// checked; plain HTTP too (guardrail webhooks may use it).
pub fn connector(config: ClientConfig, http: GuardedConnector) -> HttpsConnector<GuardedConnector> {
    HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .with_server_name_resolver(TlsServerName)
        .enable_http1()
        .enable_http2()
        .wrap_connector(http)
}

/// The TLS failure in a connection error's chain, if the connection failed in its handshake.
pub fn find_tls_error<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // `io::Error::source` skips the error it wraps (often another `io::Error` around the
        // rustls error): look inside instead.
        current = match error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// What a TLS failure means, for the client's error message: no secrets, no certificate
/// contents, and the fix an operator would apply.
pub fn explain(error: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    match error {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => "its TLS certificate failed verification: it is signed by a CA the gateway does not trust (for a private CA, set tls.caSecretRef on the LLMProvider)".to_string(),
        Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => "its TLS certificate failed verification: it is not valid for the host name in the provider's baseUrl".to_string(),
        Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => "its TLS certificate failed verification: it has expired".to_string(),
        Error::InvalidCertificate(CertificateError::BadSignature) => "its TLS certificate failed verification: its signature does not verify with the key of the trusted CA of that name (a look-alike or rotated CA: check tls.caSecretRef holds the CA that signed it)".to_string(),
        Error::InvalidCertificate(CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }) => "its TLS certificate failed verification: it is not valid yet (check the clocks)".to_string(),
        Error::InvalidCertificate(other) => format!("its TLS certificate failed verification: {other:?}"),
        other => format!("the TLS handshake failed: {other}"),
    }
}
