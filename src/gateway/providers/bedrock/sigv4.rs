//! SigV4 signing of Bedrock requests with `aws-sigv4`, with static keys or credentials from the
//! standard AWS chain. The canonical URI of a non-S3 service is double-encoded (the library's
//! default): a model id's `%3A` is signed as `%253A`, as AWS computes it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};

use super::chain::ChainCredentials;
use crate::compiler::AwsKeys;
use crate::gateway::providers::{RequestSigner, SignError};

/// The SigV4 signing name of the Bedrock runtime.
const SERVICE: &str = "bedrock";

/// Where the keys come from.
enum Source {
    /// From the provider's Secret; a new Secret arrives with the next table, and with it a new
    /// signer.
    Static(Credentials),
    /// The standard AWS chain, shared by every provider of the region and refreshed before
    /// the credentials expire.
    Chain(Arc<ChainCredentials>),
}

/// Signs Bedrock requests with SigV4.
pub struct SigV4Signer {
    region: String,
    source: Source,
}

impl SigV4Signer {
    pub fn with_keys(region: &str, keys: &AwsKeys) -> Self {
        let credentials = Credentials::new(
            keys.access_key_id.clone(),
            keys.secret_access_key.expose().to_string(),
            keys.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "modelgate-secret",
        );
        SigV4Signer {
            region: region.to_string(),
            source: Source::Static(credentials),
        }
    }

    pub fn with_chain(region: &str) -> Self {
        SigV4Signer {
            region: region.to_string(),
            source: Source::Chain(ChainCredentials::for_region(region)),
        }
    }
}

impl RequestSigner for SigV4Signer {
    fn sign<'a>(
        &'a self,
        request: &'a mut Request<Full<Bytes>>,
        authority: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), SignError>> + Send + 'a>> {
        Box::pin(async move {
            let credentials = match &self.source {
                Source::Static(credentials) => credentials.clone(),
                Source::Chain(chain) => chain.credentials().await?,
            };
            // A `Full` body is one frame, ready at once.
            let body = match request.body().clone().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let scope = Scope {
                region: &self.region,
                service: SERVICE,
                time: SystemTime::now(),
            };
            sign_request(request, authority, &body, &credentials, &scope)
        })
    }
}

/// What a signature is for: the region, the service's signing name, and the time.
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub time: SystemTime,
}

/// Adds SigV4 headers (`x-amz-date`, `x-amz-security-token` for temporary credentials,
/// `authorization`) to `request`, signing its method, URI (origin-form or absolute), headers
/// and `body`. `authority` is the upstream's `host[:port]`.
pub fn sign_request<B>(
    request: &mut Request<B>,
    authority: &str,
    body: &[u8],
    credentials: &Credentials,
    scope: &Scope<'_>,
) -> Result<(), SignError> {
    let uri = request.uri();
    // The library reads the host from the URI when no Host header is set (HTTPS upstreams),
    // so it signs an absolute URI.
    let url = match uri.scheme() {
        Some(_) => uri.to_string(),
        None => format!("http://{authority}{}", uri.path_and_query().map_or("/", |p| p.as_str())),
    };
    let mut headers = Vec::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        let value = value
            .to_str()
            .map_err(|_| SignError(format!("the header {name} is not text and cannot be signed")))?;
        headers.push((name.as_str(), value));
    }
    let signable = SignableRequest::new(
        request.method().as_str(),
        url,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| SignError(format!("the request cannot be signed: {e}")))?;
    let identity = Identity::from(credentials.clone());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(scope.region)
        .name(scope.service)
        .time(scope.time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SignError(format!("the request cannot be signed: {e}")))?
        .into();
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| SignError(format!("the request cannot be signed: {e}")))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    if let Some(value) = request.headers_mut().get_mut("x-amz-security-token") {
        value.set_sensitive(true);
    }
    if let Some(value) = request.headers_mut().get_mut(http::header::AUTHORIZATION) {
        value.set_sensitive(true);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// The example keys of AWS's SigV4 test suite.
    fn example(token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_string),
            None,
            "test",
        )
    }

    fn signed(method: &str, path: &str, host: &str, token: Option<&str>, scope: &Scope<'_>) -> Request<()> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .body(())
            .expect("request");
        sign_request(&mut request, host, b"", &example(token), scope)
            .map_err(|e| e.0)
            .expect("signed");
        request
    }

    fn header(request: &Request<()>, name: &str) -> String {
        request.headers()[name].to_str().expect("text").to_string()
    }

    /// AWS's published SigV4 test vector `double-url-encode`: a path with percent-encoded `:`
    /// (as in a Bedrock model id) is signed with each `%` encoded again (`%3A` is `%253A` in
    /// the canonical URI), and the signature is exactly the vector's.
    #[test]
    fn the_aws_double_url_encode_vector_is_reproduced() {
        let scope = Scope {
            region: "us-east-2",
            service: "lambda",
            time: UNIX_EPOCH + Duration::from_secs(1_620_747_645), // 20210511T154045Z
        };
        let request = signed(
            "POST",
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A892717189312%3Afunction%3Amy-rusty-fun/invocations",
            "lambda.us-east-2.amazonaws.com",
            None,
            &scope,
        );
        assert_eq!(header(&request, "x-amz-date"), "20210511T154045Z");
        assert_eq!(
            header(&request, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20210511/us-east-2/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=4b93abbcc68be32bd64c18e2c71150660ab4c29bbd6c32a383a7517a88fc1804"
        );
        assert!(request.headers()["authorization"].is_sensitive());
    }

    /// AWS's vector `get-vanilla-with-session-token`: the token is sent, signed, and never
    /// printable.
    #[test]
    fn the_aws_session_token_vector_is_reproduced() {
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let scope = Scope {
            region: "us-east-1",
            service: "service",
            time: UNIX_EPOCH + Duration::from_secs(1_440_938_160), // 20150830T123600Z
        };
        let request = signed("GET", "/", "example.amazonaws.com", Some(token), &scope);
        assert_eq!(header(&request, "x-amz-security-token"), token);
        assert!(request.headers()["x-amz-security-token"].is_sensitive());
        assert_eq!(
            header(&request, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
        );
    }
}
