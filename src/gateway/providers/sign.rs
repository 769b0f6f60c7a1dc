//! Per-request signing, for providers whose credential is not a static header (Bedrock's
//! SigV4 with AWS credentials).

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

/// Why a request could not be signed. The message never contains a credential.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SignError(pub String);

/// Adds the authentication headers to a request just before it is sent.
pub trait RequestSigner: Send + Sync {
    /// Signs `request` (its method, absolute or origin-form URI, headers and body) in place.
    /// `authority` is the upstream's `host[:port]`, for signers that cover the host.
    fn sign<'a>(
        &'a self,
        request: &'a mut Request<Full<Bytes>>,
        authority: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), SignError>> + Send + 'a>>;
}
