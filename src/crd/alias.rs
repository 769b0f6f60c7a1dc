//! `ModelAlias`: a stable, meaningful model name that clients send as `model`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

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
        json_path = ".spec.target",
        description = "Single target (empty for a weighted split)"
    ),
    printcolumn(
        name = "Active",
        type_ = "boolean",
        json_path = ".spec.active",
        description = "false disables the alias (empty means true)"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the gateway serves this alias"
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
    /// provider with its key), `Ready` (served by the gateway), and `Stalled` when only an edit
    /// can help.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The last accepted route, compiled to concrete provider models. It stays in place when a
    /// later generation is invalid, so gateways keep serving the last good route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<ResolvedRoute>,
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
