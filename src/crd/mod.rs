//! The custom resources (`LLMProvider`, `ModelAlias`, `AccessGroup`, `Team`) with their status
//! types, and `GatewayReplica`, the gateways' reports of what they serve.
//!
//! These Rust types are the single source of the API: `modelgate crds` renders the
//! CustomResourceDefinition YAML in `crds/` from them, and a test fails when that drifts.

mod alias;
mod conditions;
mod generate;
mod guardrails;
mod provider;
mod replica;
mod routing;
mod tenancy;

pub use alias::{
    ModelAlias, ModelAliasSpec, ModelAliasStatus, ResolvedFallback, ResolvedPolicy, ResolvedRoute, ResolvedTarget,
    WeightedTarget,
};
pub use conditions::{condition_type, ConditionStatus};
pub use generate::{crd_documents, render_crds, CrdFile};
pub use guardrails::{
    BuiltinDetector, CapMode, ContentRule, Direction, FailureMode, GuardAction, Guardrails, MaxOutputTokens,
    MessageRole, WebhookGuard,
};
pub use provider::{
    AnthropicSettings, ApiKeySource, AwsCredentials, AzureSettings, BedrockSettings, LLMProvider, LLMProviderSpec,
    LLMProviderStatus, ProviderType, SecretKeyRef, SecretNameRef, Timeouts,
};
pub use replica::{GatewayReplica, GatewayReplicaSpec, ReplicaScope, Served};
pub use routing::{AliasTimeouts, FailureCondition, Fallback, LoadBalancing, OutlierDetection, Retry};
pub use tenancy::{
    AccessGroup, AccessGroupSpec, AccessGroupStatus, Credits, Currency, Limits, Period, Pricing, PublishedPricing,
    Team, TeamSpec, TeamStatus, Usage,
};

/// API group of every modelgate resource.
pub const GROUP: &str = "modelgate.dev";
/// The one served (and stored) version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "modelgate.dev/v1alpha1";
