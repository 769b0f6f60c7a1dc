//! What an alias does beyond naming: fallbacks with conditions, retries, timeouts, outlier
//! ejection and load balancing (`ModelAlias.spec`).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// How an alias spreads requests over the targets of one tier.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub enum LoadBalancing {
    /// At random, in proportion to the targets' weights (the default).
    #[default]
    Weighted,
    /// Each target in turn, exactly, per gateway replica (weights are ignored; a weight of 0
    /// still drains a target).
    RoundRobin,
    /// The target with the fewest requests in flight on this replica (ties go by weight).
    LeastConnections,
}

/// A class of upstream failure, as `fallbacks[].on` and `retry.on` name them.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum FailureCondition {
    /// 429: a rate limit or quota (the `quota_exceeded` of other gateways).
    RateLimited,
    /// 503, or Anthropic's 529.
    Overloaded,
    /// Any other 5xx.
    ServerError,
    /// No answer in time: connect, first token, idle, or the alias's total timeout.
    Timeout,
    /// Connection refused, or reset before a response.
    Unreachable,
    /// The request is longer than the model's context window (recognised per provider).
    ContextWindowExceeded,
    /// The provider rejected the gateway's credentials.
    AuthFailed,
    /// Any of the above.
    Any,
}

impl FailureCondition {
    /// The conditions a fallback or retry acts on when `on` is not given.
    pub const TRANSIENT: [FailureCondition; 5] = [
        FailureCondition::RateLimited,
        FailureCondition::Overloaded,
        FailureCondition::ServerError,
        FailureCondition::Timeout,
        FailureCondition::Unreachable,
    ];

    /// The name users write.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCondition::RateLimited => "rateLimited",
            FailureCondition::Overloaded => "overloaded",
            FailureCondition::ServerError => "serverError",
            FailureCondition::Timeout => "timeout",
            FailureCondition::Unreachable => "unreachable",
            FailureCondition::ContextWindowExceeded => "contextWindowExceeded",
            FailureCondition::AuthFailed => "authFailed",
            FailureCondition::Any => "any",
        }
    }
}

/// One fallback tier: tried only when everything before it failed, and the last failure is
/// one of `on`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!has(self.on) || !has(self.__true__)").message(ON_TWICE))]
pub struct Fallback {
    /// A target as in `spec.target`: `<provider>/<model>`, or the bare name of an alias (whose
    /// targets, and then its own fallbacks, become tiers here) or of a listed model.
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.endsWith('/')").message("target must be <provider>/<model> (for example anthropic/claude-sonnet-4-5) or the bare name of an alias or listed model"))]
    #[schemars(length(min = 1, max = 512))]
    pub target: String,
    /// The failures that move on to this tier. Default: `[rateLimited, overloaded,
    /// serverError, timeout, unreachable]`. Client errors (400, 404, 422) never fall back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub on: Option<Vec<FailureCondition>>,
    /// `on` as kubectl, Helm and Argo CD send an unquoted `on:` key: they read YAML 1.1, where
    /// `on` means `true`. Accepted so that the YAML in the documentation works as written; set
    /// one of the two, never both.
    #[serde(rename = "true", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub on_yaml11: Option<Vec<FailureCondition>>,
}

impl Fallback {
    /// `on`, whichever way it was spelled.
    pub fn conditions(&self) -> Option<&Vec<FailureCondition>> {
        self.on.as_ref().or(self.on_yaml11.as_ref())
    }
}

/// The message of the CEL rule refusing `on` spelled both ways.
pub(super) const ON_TWICE: &str =
    "set on once: a quoted \"on\" key and an unquoted on: key (which YAML 1.1 readers such as kubectl turn into true) are the same field";

/// Retries within a tier.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.on) || !has(self.__true__)").message(ON_TWICE))]
pub struct Retry {
    /// How many times a failed try is retried within a tier (as in Istio: `attempts: 2` means
    /// up to three tries), each on a target picked afresh. Bounded by the total timeout and
    /// by the gateway's retry budget.
    #[schemars(range(min = 0, max = 10))]
    pub attempts: u32,
    /// The failures that are retried. Default: `[serverError, unreachable]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub on: Option<Vec<FailureCondition>>,
    /// `on` as YAML 1.1 readers (kubectl, Helm, Argo CD) send an unquoted `on:` key; see
    /// `fallbacks[].true`.
    #[serde(rename = "true", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub on_yaml11: Option<Vec<FailureCondition>>,
    /// Wait before the first retry, doubled for each next one, with jitter. Default `200ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')").message("backoff must be a duration such as 200ms or 1s"))]
    #[schemars(length(max = 32))]
    pub backoff: Option<String>,
}

impl Retry {
    /// `on`, whichever way it was spelled.
    pub fn conditions(&self) -> Option<&Vec<FailureCondition>> {
        self.on.as_ref().or(self.on_yaml11.as_ref())
    }
}

/// Time limits of a request through the alias (the `max_latency` of other gateways). A miss is
/// the `timeout` failure class.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AliasTimeouts {
    /// Longest wait for the first content (a streamed token, or a whole non-streamed answer)
    /// from one try; a try that misses it is abandoned and may be retried or fall back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')").message("firstToken must be a duration such as 10s"))]
    #[schemars(length(max = 32))]
    pub first_token: Option<String>,
    /// Longest time for the whole request, every try and the full streamed answer included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')").message("total must be a duration such as 120s or 2m"))]
    #[schemars(length(max = 32))]
    pub total: Option<String>,
}

/// Ejecting a failing target from rotation for a while.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Failures in a row (client errors do not count) that eject a target. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub consecutive_failures: Option<u32>,
    /// How long an ejected target stays out of rotation. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')").message("ejectionTime must be a duration such as 30s"))]
    #[schemars(length(max = 32))]
    pub ejection_time: Option<String>,
}
