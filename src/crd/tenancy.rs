//! Tenancy: `AccessGroup` (which aliases), `Team` (who, with what credits and limits), and the
//! pricing of a ModelAlias. Client API keys are Secrets of type `modelgate.dev/api-key`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// CEL form of the decimal grammar `compiler::tenancy::money` accepts for prices.
const PRICE_RULE: &str = "self.matches('^[0-9]{1,9}([.][0-9]{1,6})?$')";
const PRICE_MESSAGE: &str = "must be a decimal number of US dollars such as 2.50 or 0.075 (at most 6 decimals)";
/// CEL form of the decimal grammar for credit amounts.
const AMOUNT_RULE: &str = "self.matches('^[0-9]{1,12}([.][0-9]{1,9})?$')";
const AMOUNT_MESSAGE: &str = "must be a decimal number of US dollars such as 1000.00 (at most 9 decimals)";

/// What a call through an alias costs a team, in US dollars per million tokens.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    /// Price of a million prompt (input) tokens, e.g. `"2.50"`.
    #[x_kube(validation = Rule::new(PRICE_RULE).message(PRICE_MESSAGE))]
    #[schemars(length(max = 20))]
    pub input_per_million_tokens: String,
    /// Price of a million completion (output) tokens, e.g. `"10.00"`; `"0"` for embeddings.
    #[x_kube(validation = Rule::new(PRICE_RULE).message(PRICE_MESSAGE))]
    #[schemars(length(max = 20))]
    pub output_per_million_tokens: String,
    /// Price of a million prompt tokens the provider served from its prompt cache
    /// (`usage.prompt_tokens_details.cached_tokens`), e.g. `"1.25"`. Default: the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(PRICE_RULE).message(PRICE_MESSAGE))]
    #[schemars(length(max = 20))]
    pub cached_input_per_million_tokens: Option<String>,
}

/// Prices as the controller accepted them, published in `status.resolved` (same fields as
/// [`Pricing`], already validated).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PublishedPricing {
    /// US dollars per million prompt tokens.
    pub input_per_million_tokens: String,
    /// US dollars per million completion tokens.
    pub output_per_million_tokens: String,
    /// US dollars per million cached prompt tokens (absent: the input price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_million_tokens: Option<String>,
}

impl From<&Pricing> for PublishedPricing {
    fn from(p: &Pricing) -> Self {
        PublishedPricing {
            input_per_million_tokens: p.input_per_million_tokens.clone(),
            output_per_million_tokens: p.output_per_million_tokens.clone(),
            cached_input_per_million_tokens: p.cached_input_per_million_tokens.clone(),
        }
    }
}

impl From<&PublishedPricing> for Pricing {
    fn from(p: &PublishedPricing) -> Self {
        Pricing {
            input_per_million_tokens: p.input_per_million_tokens.clone(),
            output_per_million_tokens: p.output_per_million_tokens.clone(),
            cached_input_per_million_tokens: p.cached_input_per_million_tokens.clone(),
        }
    }
}

/// A named set of aliases that Teams are granted (the SaaS document's model access group).
// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelgate.dev",
    version = "v1alpha1",
    kind = "AccessGroup",
    plural = "accessgroups",
    singular = "accessgroup",
    shortname = "ag",
    category = "modelgate",
    namespaced,
    status = "AccessGroupStatus",
    doc = "A named set of model aliases (by name and/or by label) that Teams in the same namespace are granted.",
    printcolumn(
        name = "Aliases",
        type_ = "string",
        json_path = ".status.aliases",
        description = "The aliases this group grants, as resolved by the controller"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every alias the group names exists"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.aliases) || has(self.aliasSelector)").message("set aliases (alias names), aliasSelector (ModelAlias labels), or both"))]
#[serde(rename_all = "camelCase")]
pub struct AccessGroupSpec {
    /// What the group is for, e.g. `Models for starter plan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// Client-facing alias names (what clients send as `model`), in any namespace: alias
    /// names are global to a gateway. A team granted an alias may also reach whatever that
    /// alias routes through (chains, splits), without being granted those aliases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.all(a, a.matches('^[A-Za-z0-9._-]+$'))").message("aliases may contain only letters, digits, '.', '-' and '_'"))]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub aliases: Option<Vec<String>>,

    /// ModelAliases in this namespace whose labels match, e.g. `{matchLabels: {tier: starter}}`.
    /// An empty selector (`{}`) matches every ModelAlias in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias_selector: Option<LabelSelector>,
}

/// What the controller observed about an AccessGroup.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessGroupStatus {
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`, `ResolvedRefs` (every named alias exists) and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The alias names the group grants: those of `spec.aliases` that exist, and those the
    /// selector matches, sorted. In-cluster gateways grant exactly these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Vec<String>>,
}

/// A set of API keys with its granted aliases, credits and rate limits (the SaaS document's team).
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelgate.dev",
    version = "v1alpha1",
    kind = "Team",
    plural = "teams",
    singular = "team",
    category = "modelgate",
    namespaced,
    status = "TeamStatus",
    doc = "A team of API clients: the access groups it may call, its credits and its rate limits. Its keys are Secrets of type modelgate.dev/api-key labelled modelgate.dev/team=<name>.",
    printcolumn(
        name = "Organization",
        type_ = "string",
        json_path = ".spec.organization",
        description = "The organization the team belongs to"
    ),
    printcolumn(
        name = "Allocated",
        type_ = "string",
        json_path = ".spec.credits.allocated",
        description = "Credits per period, USD"
    ),
    printcolumn(
        name = "Remaining",
        type_ = "string",
        json_path = ".status.creditsRemaining",
        description = "Credits left this period, USD"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the team's keys are served"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TeamSpec {
    /// A name for people (the SaaS document's `team_alias`), e.g. `Production`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub display_name: Option<String>,

    /// The organization the team belongs to, e.g. `org_newclient`. Informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub organization: Option<String>,

    /// Names of AccessGroups in this namespace. The team's keys may call every alias of these
    /// groups (and whatever those aliases route through); anything else is 403
    /// `model_access_denied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub access_groups: Option<Vec<String>>,

    /// Money the team may spend per period. Absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<Credits>,

    /// Rate limits over all the team's keys and all gateway replicas. Absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// Credits of a team.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Credits {
    /// Amount per period, e.g. `"1000.00"`. Calls cost tokens times the called alias's
    /// `spec.pricing`; a team with nothing left gets 402 `insufficient_credits`.
    #[x_kube(validation = Rule::new(AMOUNT_RULE).message(AMOUNT_MESSAGE))]
    #[schemars(length(max = 24))]
    pub allocated: String,
    /// Currency of `allocated` and of every price: `USD` (the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// When the credits are restored in full: `Never` (the default: a one-off budget),
    /// `Daily`, `Weekly` (Mondays) or `Monthly`, at 00:00 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

/// The currency of credits and prices.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Currency {
    /// US dollars.
    USD,
}

/// How often credits reset.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Period {
    /// A one-off budget: never restored.
    #[default]
    Never,
    /// Restored at 00:00 UTC every day.
    Daily,
    /// Restored at 00:00 UTC every Monday.
    Weekly,
    /// Restored at 00:00 UTC on the first day of each month.
    Monthly,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Never => "Never",
            Period::Daily => "Daily",
            Period::Weekly => "Weekly",
            Period::Monthly => "Monthly",
        }
    }
}

/// Rate limits of a team. Each is enforced across all gateway replicas that share a usage
/// store; exceeding one gives 429 `rate_limit_exceeded` with `Retry-After`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Requests per minute (a token bucket holding a minute's worth, refilled continuously).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000000))]
    pub requests_per_minute: Option<u32>,
    /// Prompt plus completion tokens per minute. A request is let through while the bucket
    /// is not empty, with an estimate of its tokens; the real count is settled afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000000000u64))]
    pub tokens_per_minute: Option<u64>,
    /// Requests of this team being answered at one time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_parallel_requests: Option<u32>,
}

/// What the controller observed about a Team, and its usage.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TeamStatus {
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`, `ResolvedRefs` (every access group exists) and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The aliases the team may call, sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Vec<String>>,
    /// How many API key Secrets name this team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u32>,
    /// Usage in the current credit period, summed over every gateway replica (updated at
    /// most every 30 s, and only when it changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Credits left in the current period, USD (absent without `spec.credits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits_remaining: Option<String>,
}

/// Usage figures, over a period or all time.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// The period these figures cover, e.g. `2026-05` (Monthly), `2026-W19` (Weekly),
    /// `2026-05-11` (Daily) or `all` (Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// Calls answered.
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache (charged at the cached price).
    #[serde(default)]
    pub cached_prompt_tokens: u64,
    /// Money spent, USD.
    pub cost_usd: String,
}
