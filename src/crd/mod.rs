//! The two custom resources, `LLMProvider` and `ModelAlias`, with their status types.
//!
//! These Rust types are the single source of the API: `modelgate crds` renders the
//! CustomResourceDefinition YAML in `crds/` from them, and a test fails when that drifts.

mod alias;
mod conditions;
mod generate;
mod provider;

pub use alias::{ModelAlias, ModelAliasSpec, ModelAliasStatus, ResolvedRoute, ResolvedTarget, WeightedTarget};
pub use conditions::{condition_type, ConditionStatus};
pub use generate::{crd_documents, render_crds, CrdFile};
pub use provider::{
    ApiKeySource, LLMProvider, LLMProviderSpec, LLMProviderStatus, ProviderType, SecretKeyRef, Timeouts,
};

/// API group of every modelgate resource.
pub const GROUP: &str = "modelgate.dev";
/// The one served (and stored) version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "modelgate.dev/v1alpha1";
/// Label that marks a Secret as a provider credential. Only Secrets with it are read, by the
/// controller and the gateway alike: a Secret an LLMProvider references must carry it.
pub const CREDENTIAL_LABEL: &str = "modelgate.dev/credential";
