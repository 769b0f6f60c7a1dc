//! `ModelAlias`: a stable, meaningful model name that clients send as `model`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::guardrails::Guardrails;
use super::routing::{AliasTimeouts, FailureCondition, Fallback, LoadBalancing, OutlierDetection, Retry};

/// A client-facing model name and where it routes.
// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelgate.dev",
    version = "v1alpha1",
    kind = "ModelAlias",
    plural = "modelaliases",
    singular = "modelalias",
    shortname = "ma",
    shortname = "alias",
    category = "modelgate",
    namespaced,
    status = "ModelAliasStatus",
    doc = "A stable model name (fast-model, arch.summarize.v1, prod.chat.v1) that applications send as `model`, and the provider model, split or alias chain it routes to.",
    printcolumn(
        name = "Alias",
        type_ = "string",
        json_path = ".spec.alias",
        description = "Client-facing model name (metadata.name when empty)"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".status.target",
        description = "What it routes to: spec.target, or the weighted split of spec.targets"
    ),
    printcolumn(
        name = "Active",
        type_ = "boolean",
        json_path = ".status.resolved.active",
        description = "Whether requests are served (false: 403 model_disabled, by its own spec.active or an alias it routes through)"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the controller accepted the current generation and published its route"
    ),
    printcolumn(
        name = "Programmed",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Programmed\")].status",
        description = "Whether every running gateway serves the current generation"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.target) != has(self.targets)").message("set exactly one of target (a single model) or targets (a weighted split)"))]
#[serde(rename_all = "camelCase")]
pub struct ModelAliasSpec {
    /// The model name clients send, e.g. `fast-model`, `arch.summarize.v1` or `gpt_4o`.
    /// Defaults to `metadata.name`; set it when the name needs characters Kubernetes names
    /// cannot hold (capitals, `_`). Letters, digits, `.`, `-` and `_` only. Alias names are
    /// global to a gateway: when two ModelAliases claim one name, the older one wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9._-]+$')").message("alias may contain only letters, digits, '.', '-' and '_' (for example arch.summarize.v1)"))]
    #[schemars(length(min = 1, max = 253))]
    pub alias: Option<String>,

    /// What this alias is for; shown to people, not sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// `false` disables the alias without deleting it: requests get 403 `model_disabled`, and
    /// so do requests to aliases that route through it. Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,

    /// `true` keeps the alias out of `GET /v1/models` while still serving it. Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<bool>,

    /// A single target: `<provider>/<model>` (split at the first `/`, so model ids may contain
    /// `/`), or a bare name: another alias (chains are allowed, cycles are rejected), else a
    /// model id listed in `spec.models` of exactly one LLMProvider in this namespace.
    /// Set exactly one of `target` or `targets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.endsWith('/')").message(TARGET_MESSAGE))]
    #[schemars(length(min = 1, max = 512))]
    pub target: Option<String>,

    /// A weighted traffic split (A/B tests, canaries): each entry a target as in `target`, with
    /// a weight; the weights must add up to 100. Set exactly one of `target` or `targets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.map(t, t.weight).sum() == 100").message("the weights of targets must add up to 100"))]
    #[schemars(length(min = 1, max = 32))]
    pub targets: Option<Vec<WeightedTarget>>,

    /// How requests are spread over the targets of a tier: `weighted` (default: at random by
    /// weight), `roundRobin` (each in turn, exactly, per gateway replica) or
    /// `leastConnections` (fewest requests in flight on the replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<LoadBalancing>,

    /// Fallback tiers, tried in order, each only when everything before it failed with one of
    /// its `on` conditions. Once content has reached the client a request never falls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8))]
    pub fallbacks: Option<Vec<Fallback>>,

    /// Retries within each tier, bounded by `timeouts.total` and the gateway's retry budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,

    /// Time limits of a request through this alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<AliasTimeouts>,

    /// Taking a failing target (provider and model) out of rotation for a while. The state is
    /// per gateway replica and shared by every alias that uses the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,

    /// Size and output caps, content rules and a classifier webhook, checked by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<Guardrails>,

    /// What a call through this alias costs a Team, in US dollars per million tokens
    /// (decimal strings). Without it, an alias that routes to exactly one other alias costs
    /// what that alias costs; otherwise calls are free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<super::Pricing>,
}

const TARGET_MESSAGE: &str =
    "target must be <provider>/<model> (for example openai/gpt-4o-mini) or the bare name of an alias or listed model";

/// One leg of a weighted split.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct WeightedTarget {
    /// `<provider>/<model>`, or the bare name of another alias or of a listed model.
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.endsWith('/')").message(TARGET_MESSAGE))]
    #[schemars(length(min = 1, max = 512))]
    pub target: String,
    /// Share of traffic, 0 to 100. The weights of all targets add up to 100; 0 drains a target.
    #[schemars(range(min = 0, max = 100))]
    pub weight: u32,
}

impl ModelAliasSpec {
    /// Whether the alias is enabled (`active` defaults to true).
    pub fn is_active(&self) -> bool {
        self.active.unwrap_or(true)
    }

    /// Whether the alias is listed in `/v1/models` (`hidden` defaults to false).
    pub fn is_hidden(&self) -> bool {
        self.hidden.unwrap_or(false)
    }
}

/// What the controller observed about an alias, and the route the gateway serves for it.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelAliasStatus {
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (spec valid, no name conflict), `ResolvedRefs` (every target reaches a
    /// provider with its key), `Ready` (accepted and published for the gateways),
    /// `Reconciling` while it waits for an object it refers to, `Stalled` when only an edit can
    /// help or what it waited for did not come, and `Programmed` (every running gateway serves
    /// the current generation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The last accepted route, compiled to concrete provider models. It stays in place when a
    /// later generation is invalid, so gateways keep serving the last good route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<ResolvedRoute>,
    /// What the alias routes to, as its spec says: `spec.target`, or a weighted split as
    /// `a 80%, b 20%`. Shown by `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Calls through this alias since the usage store was created, summed over every gateway
    /// replica (updated at most every 30 s, and only when it changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<super::Usage>,
}

/// A compiled route: the concrete provider models an alias sends traffic to.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedRoute {
    /// The client-facing alias name this route serves.
    pub alias: String,
    /// The `metadata.generation` of the ModelAlias this route was compiled from.
    pub generation: i64,
    /// Whether requests are served (false when the alias, or an alias it routes through, is disabled).
    pub active: bool,
    /// Why requests get 403 `model_disabled`, when `active` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Whether the alias is left out of `/v1/models`.
    pub hidden: bool,
    /// The alias's description, for `/v1/models`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Concrete targets with their effective share of traffic.
    pub targets: Vec<ResolvedTarget>,
    /// The price the gateways charge for a call, as accepted by the controller (the alias's
    /// own `spec.pricing`, or the one of the single alias it routes to). Absent: free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<super::PublishedPricing>,
    /// Fallback tiers in the order they are tried, compiled to concrete targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<ResolvedFallback>,
    /// Load balancing, retries, timeouts and outlier detection, as the spec sets them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ResolvedPolicy>,
    /// The guardrails, as the spec sets them (checked by the compiler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<Guardrails>,
}

/// One compiled fallback tier.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedFallback {
    /// The failures that move on to this tier.
    pub on: Vec<FailureCondition>,
    /// The tier's concrete targets.
    pub targets: Vec<ResolvedTarget>,
    /// Where this tier came from: the fallback's target, and the aliases it was reached through.
    pub via: String,
}

/// The routing policy of a compiled route.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<LoadBalancing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<AliasTimeouts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
}

/// One concrete destination of a compiled route.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedTarget {
    /// The LLMProvider serving this target, as `namespace/name`.
    pub provider: String,
    /// The model id sent upstream.
    pub model: String,
    /// Effective share of traffic in percent (nested splits multiply out).
    pub weight: f64,
    /// The aliases this target was reached through, starting with the alias itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
}
