//! Guardrails on an alias (`ModelAlias.spec.guardrails`): size and output caps, content rules
//! over requests and responses, and a webhook classifier for model-based categories.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Deterministic guardrails, checked by the gateway on every request through the alias.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Guardrails {
    /// Largest request body accepted for this alias, in bytes (a 413 beyond it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1073741824))]
    pub max_input_bytes: Option<u64>,
    /// A cap on the output tokens a request may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<MaxOutputTokens>,
    /// Content rules, applied in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub content: Option<Vec<ContentRule>>,
    /// A classifier called over HTTP for model-based categories (jailbreak, toxicity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookGuard>,
}

/// A cap on `max_tokens` / `max_completion_tokens` (`max_output_tokens`, Anthropic's
/// `max_tokens`).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct MaxOutputTokens {
    /// The cap.
    #[schemars(range(min = 1, max = 10000000))]
    pub value: u64,
    /// `clamp` (default): lower a larger request to the cap, and set it when the request sets
    /// none; `reject`: answer 400 to a request that asks for more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CapMode>,
}

#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum CapMode {
    #[default]
    Clamp,
    Reject,
}

/// A content rule: what to look for, where, and what to do about a match.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("has(self.builtin) || has(self.patterns) || has(self.keywords)").message("a content rule needs at least one of builtin, patterns or keywords"))]
#[x_kube(validation = Rule::new("!has(self.on) || !has(self.__true__)").message(super::routing::ON_TWICE))]
pub struct ContentRule {
    /// The rule's name, shown in errors (`content_policy_violation`) and metrics.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$')").message("name must be lowercase letters, digits and '-' (for example pii)"))]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Built-in detectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub builtin: Option<Vec<BuiltinDetector>>,
    /// Regular expressions (Rust `regex` syntax, linear time; `(?i)` for case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub patterns: Option<Vec<String>>,
    /// Literal words or phrases, matched case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 256)))]
    pub keywords: Option<Vec<String>>,
    /// Where the rule applies: `request`, `response`, or `both`. Default `[request]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 3))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub on: Option<Vec<Direction>>,
    /// `on` as YAML 1.1 readers (kubectl, Helm, Argo CD) send an unquoted `on:` key; see
    /// `ModelAlias.spec.fallbacks[].true`.
    #[serde(rename = "true", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 3))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub on_yaml11: Option<Vec<Direction>>,
    /// `mask` replaces each match with a typed placeholder (`[EMAIL]`); `block` refuses the
    /// request (400 `content_policy_violation`) or ends the response. Default `block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<GuardAction>,
    /// The message roles scanned in requests. Default `[user, tool]`, so a system prompt is not
    /// flagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 5))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub roles: Option<Vec<MessageRole>>,
}

impl ContentRule {
    /// `on`, whichever way it was spelled.
    pub fn directions(&self) -> Option<&Vec<Direction>> {
        self.on.as_ref().or(self.on_yaml11.as_ref())
    }
}

#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum BuiltinDetector {
    Email,
    CreditCard,
    #[serde(rename = "usSSN")]
    UsSsn,
    Phone,
    IpAddress,
    Iban,
    AwsAccessKey,
    PrivateKey,
    OpenaiKey,
    GithubToken,
}

impl BuiltinDetector {
    /// Every built-in detector.
    pub const ALL: [BuiltinDetector; 10] = [
        BuiltinDetector::Email,
        BuiltinDetector::CreditCard,
        BuiltinDetector::UsSsn,
        BuiltinDetector::Phone,
        BuiltinDetector::IpAddress,
        BuiltinDetector::Iban,
        BuiltinDetector::AwsAccessKey,
        BuiltinDetector::PrivateKey,
        BuiltinDetector::OpenaiKey,
        BuiltinDetector::GithubToken,
    ];
}

#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    Request,
    Response,
    Both,
}

#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum GuardAction {
    Mask,
    #[default]
    Block,
}

#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum MessageRole {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

/// A classifier webhook: the gateway POSTs the request's text and blocks on a flagged answer.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookGuard {
    /// The classifier's URL (http or https).
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#\\\\s]+([/?#].*)?$')").message("url must be an absolute http:// or https:// URL"))]
    #[schemars(length(max = 2048))]
    pub url: String,
    /// The categories to ask about (e.g. `jailbreak`, `toxicity`); sent to the classifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 63)))]
    pub categories: Option<Vec<String>>,
    /// Longest wait for the classifier. Default `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')").message("timeout must be a duration such as 500ms or 2s"))]
    #[schemars(length(max = 32))]
    pub timeout: Option<String>,
    /// What a classifier that fails or times out means: `closed` (default) refuses the request
    /// with 503, `open` lets it through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_mode: Option<FailureMode>,
}

#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    #[default]
    Closed,
    Open,
}
