//! The *guard* stage (`ModelAlias.spec.guardrails`): size and output-token caps, content rules
//! that mask or block, and a classifier webhook on the way in; the same content rules over
//! the answer on the way out, streams included.
//!
//! Two entry points, so the stage stays out of the way of the others:
//! - [`check_request`] runs on the client's body after routing and before any call; it may
//!   refuse the request or hand back a new body (masked, clamped);
//! - [`guard_response`] wraps the answer's body.
//!
//! Rules are compiled once per routing table ([`Guard::compile`]) and live with the route.
//! What the text of each client API is lives in [`surface`]; the rest works on plain text.

mod detectors;
mod gate;
mod json_text;
mod keywords;
mod matcher;
pub mod metrics;
mod request;
mod response;
mod scan;
mod splice;
mod strict;
mod surface;
pub mod webhook;
mod window;

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{Response, StatusCode};

use self::matcher::Matcher;
pub use self::metrics::{Action, GuardMetrics};
pub use self::webhook::{Classifier, Verdict, Webhook};
use super::error::ApiError;
use super::metrics::Endpoint;
use super::upstream::ClientPool;
use crate::crd::{CapMode, Direction, Guardrails};

/// Why an alias's guardrails cannot be compiled (the alias is then refused, never unguarded).
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("the pattern of content rule '{rule}' does not compile: {source}")]
    Pattern {
        rule: String,
        #[source]
        source: regex::Error,
    },
    #[error("the content rules' patterns do not compile together: {source}")]
    Patterns {
        #[source]
        source: regex::Error,
    },
    #[error("the content rules' patterns do not compile together: {source}")]
    Group {
        #[source]
        source: Box<regex_automata::meta::BuildError>,
    },
    #[error("the content rules' keywords do not compile: {source}")]
    Keywords {
        #[source]
        source: aho_corasick::BuildError,
    },
    #[error("the literals a content rule's matches contain (its search's gate) do not compile: {source}")]
    Gate {
        #[source]
        source: aho_corasick::BuildError,
    },
    #[error("the webhook guard cannot be set up: {0}")]
    Webhook(String),
}

/// An alias's guardrails, compiled.
pub struct Guard {
    alias: Arc<str>,
    max_input_bytes: Option<u64>,
    cap: Option<(u64, CapMode)>,
    request: Option<Matcher>,
    response: Option<Matcher>,
    webhook: Option<Webhook>,
}

impl Guard {
    /// Compiles an alias's guardrails; `None` when they do nothing.
    pub fn compile(alias: &str, spec: &Guardrails, clients: &ClientPool) -> Result<Option<Guard>, GuardError> {
        let rules = spec.content.as_deref().unwrap_or_default();
        let guard = Guard {
            alias: Arc::from(alias),
            max_input_bytes: spec.max_input_bytes,
            cap: spec
                .max_output_tokens
                .as_ref()
                .map(|m| (m.value, m.mode.unwrap_or_default())),
            request: Matcher::compile(rules, Direction::Request)?,
            response: Matcher::compile(rules, Direction::Response)?,
            webhook: match &spec.webhook {
                Some(webhook) => Some(Webhook::new(webhook, clients).map_err(GuardError::Webhook)?),
                None => None,
            },
        };
        let idle = guard.max_input_bytes.is_none()
            && guard.cap.is_none()
            && guard.request.is_none()
            && guard.response.is_none()
            && guard.webhook.is_none();
        Ok((!idle).then_some(guard))
    }

    /// Replaces the classifier.
    #[cfg(test)]
    pub fn set_classifier(&mut self, classifier: Arc<dyn Classifier>) {
        if let Some(webhook) = &mut self.webhook {
            webhook.classifier = classifier;
        }
    }

    /// Whether the request must be parsed (anything beyond the size limit).
    fn reads_request(&self) -> bool {
        self.cap.is_some() || self.request.is_some() || self.webhook.is_some()
    }
}

/// Checks a request's body against the route's guardrails before anything is sent upstream:
/// `Ok(None)` lets it through as is, `Ok(Some(body))` with a new body (masked or clamped).
pub async fn check_request(
    guard: Option<&Guard>,
    endpoint: Endpoint,
    body: &Bytes,
    metrics: &GuardMetrics,
) -> Result<Option<Bytes>, ApiError> {
    match guard {
        None => Ok(None),
        Some(guard) => request::check(guard, endpoint, body, metrics).await,
    }
}

/// The answer with the route's response rules applied to its body: masked as it passes, or
/// ended with an error event (a refusal, for an answer not streamed) when a blocking rule
/// matches.
pub async fn guard_response(
    guard: Option<&Arc<Guard>>,
    endpoint: Endpoint,
    response: Response<Body>,
    metrics: &Arc<GuardMetrics>,
) -> Response<Body> {
    match guard {
        Some(guard) if guard.response.is_some() && response.status().is_success() => {
            response::wrap(guard.clone(), endpoint, response, metrics.clone()).await
        }
        _ => response,
    }
}

/// A block: 400 `content_policy_violation` naming the rule and never the matched text.
fn violation(alias: &str, rule: &str, direction: Direction) -> ApiError {
    let message = match direction {
        Direction::Response => format!("The answer was withheld: it matched the content rule '{rule}' of the model '{alias}'. Rephrase the request, or ask the platform team about the rule."),
        _ => format!("The request was refused: it matched the content rule '{rule}' of the model '{alias}'. Remove the matching content (the rule's name says what it looks for), or ask the platform team about the rule."),
    };
    ApiError {
        status: StatusCode::BAD_REQUEST,
        kind: "invalid_request_error",
        code: Some("content_policy_violation"),
        param: None,
        message,
        headers: None,
    }
}

/// An answer (or a streamed event of one) the response rules cannot read: JSON that does not
/// parse (a lone surrogate escape, a cut or garbled body). Passed on, it would reach the client
/// unchecked, so it is withheld: 502, the provider's fault, with nothing of the answer.
fn unreadable(alias: &str, what: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_GATEWAY,
        kind: "upstream_error",
        code: Some("upstream_unreadable_answer"),
        param: None,
        message: format!("The answer was withheld: the provider sent {what} that is not valid JSON (or names one member twice in an object, which readers take two ways), so the content rules of the model '{alias}' could not check it. Retry the request; if it keeps failing, ask the platform team about the provider."),
        headers: None,
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "stream_tests.rs"]
mod stream_tests;

#[cfg(test)]
#[path = "tool_stream_tests.rs"]
mod tool_stream_tests;

#[cfg(test)]
#[path = "escape_tests.rs"]
mod escape_tests;
