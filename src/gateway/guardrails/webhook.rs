//! Model-based categories (jailbreak, toxicity) through a classifier: the gateway asks, the
//! classifier answers flagged or not. [`Classifier`] is the seam; [`HttpClassifier`] POSTs
//! `{"categories": [...], "text": "..."}` and reads `{"flagged": bool, "categories": [...]}`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Deserialize, Serialize};

use crate::compiler::ResolvedTimeouts;
use crate::crd::{FailureMode, WebhookGuard};
use crate::gateway::upstream::{self, ClientPool, Limits, UpstreamClient, Watch};

/// Default wait for the classifier.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest classifier answer read.
const MAX_ANSWER: usize = 64 << 10;

/// What the classifier is asked.
#[derive(Serialize, Debug)]
pub struct Question<'a> {
    pub categories: &'a [String],
    pub text: &'a str,
}

/// The classifier's answer.
#[derive(Deserialize, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub flagged: bool,
    /// The categories found (shown to the client when flagged).
    #[serde(default)]
    pub categories: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("the classifier did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the classifier cannot be reached ({0})")]
    Unreachable(String),
    #[error("the classifier answered with status {0}")]
    Status(u16),
    #[error("the classifier's answer is not {{\"flagged\": bool, \"categories\": [...]}}: {0}")]
    Answer(String),
}

pub type Classified<'a> = Pin<Box<dyn Future<Output = Result<Verdict, ClassifierError>> + Send + 'a>>;

/// Anything that can classify a request's text.
pub trait Classifier: Send + Sync {
    fn classify<'a>(&'a self, question: &'a Question<'a>) -> Classified<'a>;
}

/// A configured webhook guard.
pub struct Webhook {
    pub classifier: Arc<dyn Classifier>,
    pub categories: Vec<String>,
    pub timeout: Duration,
    pub fail_open: bool,
}

impl Webhook {
    /// The guard a spec configures (its URL and timeout were checked by the compiler).
    pub fn new(spec: &WebhookGuard, clients: &ClientPool) -> Result<Self, String> {
        let timeout = spec
            .timeout
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT);
        Ok(Webhook {
            classifier: Arc::new(HttpClassifier::new(&spec.url, timeout, clients)?),
            categories: spec.categories.clone().unwrap_or_default(),
            timeout,
            fail_open: spec.failure_mode == Some(FailureMode::Open),
        })
    }

    /// Asks about `text`, within the timeout.
    pub async fn ask(&self, text: &str) -> Result<Verdict, ClassifierError> {
        let question = Question {
            categories: &self.categories,
            text,
        };
        match tokio::time::timeout(self.timeout, self.classifier.classify(&question)).await {
            Ok(answer) => answer,
            Err(_) => Err(ClassifierError::Timeout(self.timeout)),
        }
    }
}

/// A classifier over HTTP, through the gateway's egress policy.
pub struct HttpClassifier {
    client: UpstreamClient,
    watch: Watch,
    uri: Uri,
    host: Option<HeaderValue>,
    timeouts: ResolvedTimeouts,
}

impl HttpClassifier {
    pub fn new(url: &str, timeout: Duration, clients: &ClientPool) -> Result<Self, String> {
        let parsed = Uri::try_from(url).map_err(|e| format!("the webhook URL '{url}' is not a URL: {e}"))?;
        let timeouts = ResolvedTimeouts {
            connect: timeout,
            request: timeout,
            idle: timeout,
        };
        let plain = parsed.scheme() == Some(&http::uri::Scheme::HTTP);
        match parsed.authority().filter(|_| plain) {
            Some(authority) => {
                let (host, port) = (authority.host(), authority.port_u16());
                let path = parsed.path_and_query().map_or("/", |p| p.as_str());
                Ok(HttpClassifier {
                    client: UpstreamClient::H1(clients.h1(host, port.unwrap_or(80), &timeouts)),
                    watch: clients.watch(),
                    uri: Uri::try_from(path).map_err(|e| e.to_string())?,
                    host: HeaderValue::from_str(authority.as_str()).ok(),
                    timeouts,
                })
            }
            None => Ok(HttpClassifier {
                client: UpstreamClient::Pooled(Box::new(clients.client(&timeouts, None).map_err(|e| e.to_string())?)),
                watch: clients.watch(),
                uri: parsed,
                host: None,
                timeouts,
            }),
        }
    }

    async fn ask(&self, question: &Question<'_>) -> Result<Verdict, ClassifierError> {
        let body = serde_json::to_vec(question).map_err(|e| ClassifierError::Answer(e.to_string()))?;
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(host) = &self.host {
            headers.insert(header::HOST, host.clone());
        }
        let response = upstream::send(&self.client, &self.watch, request, None, Limits::new(&self.timeouts))
            .await
            .map_err(|e| match e {
                upstream::SendError::Timeout => ClassifierError::Timeout(self.timeouts.request),
                other => ClassifierError::Unreachable(other.to_string()),
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(ClassifierError::Status(status.as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| ClassifierError::Unreachable(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| ClassifierError::Answer(e.to_string()))
    }
}

impl Classifier for HttpClassifier {
    fn classify<'a>(&'a self, question: &'a Question<'a>) -> Classified<'a> {
        Box::pin(self.ask(question))
    }
}
