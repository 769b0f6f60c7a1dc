//! `LLMProvider`: where a model is served and with which credentials.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An upstream that serves models: its API flavour, endpoint and credentials.
// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelgate.dev",
    version = "v1alpha1",
    kind = "LLMProvider",
    plural = "llmproviders",
    singular = "llmprovider",
    shortname = "llmp",
    shortname = "provider",
    category = "modelgate",
    namespaced,
    status = "LLMProviderStatus",
    doc = "An upstream LLM API (OpenAI, Anthropic, Gemini, Azure OpenAI, Bedrock, an OpenAI-compatible server such as Ollama or vLLM, or a local mock) that ModelAliases route to.",
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = ".spec.type",
        description = "API flavour"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        description = "Resolved base URL"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether aliases can be served through this provider"
    ),
    printcolumn(
        name = "Programmed",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Programmed\")].status",
        description = "Whether every running gateway serves the current generation"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.type != 'openai-compatible' || has(self.baseUrl)").message("baseUrl is required when type is openai-compatible (for example http://ollama.ollama.svc:11434/v1)"))]
#[x_kube(validation = Rule::new("self.type != 'mock' || !has(self.baseUrl)").message("a mock provider answers locally: remove baseUrl or choose another type"))]
#[x_kube(validation = Rule::new("self.type != 'azure-openai' || has(self.baseUrl)").message("baseUrl is required when type is azure-openai (for example https://my-resource.openai.azure.com)"))]
#[x_kube(validation = Rule::new("self.type != 'bedrock' || (has(self.bedrock) && has(self.bedrock.region))").message("bedrock.region is required when type is bedrock (for example bedrock: {region: us-east-1})"))]
#[x_kube(validation = Rule::new("!has(self.anthropic) || self.type == 'anthropic'").message("anthropic settings apply only to type anthropic"))]
#[x_kube(validation = Rule::new("!has(self.azure) || self.type == 'azure-openai'").message("azure settings apply only to type azure-openai"))]
#[x_kube(validation = Rule::new("!has(self.bedrock) || self.type == 'bedrock'").message("bedrock settings apply only to type bedrock"))]
#[x_kube(validation = Rule::new("!has(self.tls) || self.type != 'mock'").message("a mock provider answers locally: remove tls or choose another type"))]
#[x_kube(validation = Rule::new("!has(self.tls) || !has(self.baseUrl) || self.baseUrl.startsWith('https://')").message("tls applies only to an https:// baseUrl: use https:// or remove tls"))]
#[serde(rename_all = "camelCase")]
pub struct LLMProviderSpec {
    /// API flavour of the upstream: `openai` (the public OpenAI API or any server that
    /// speaks it exactly), `openai-compatible` (Ollama, vLLM, Groq, Mistral, DeepSeek,
    /// Together, OpenRouter, ...: needs `baseUrl`), `anthropic` (the Anthropic Messages API),
    /// `gemini` (the Google Gemini API), `azure-openai` (Azure OpenAI: needs `baseUrl`; the
    /// target's model id is the deployment name), `bedrock` (Amazon Bedrock Converse: needs
    /// `bedrock.region`), or `mock` (answers locally and deterministically, naming the provider
    /// and model that served the request; for quickstarts and tests). Requests in the OpenAI
    /// or Anthropic format are translated to and from the provider's own API.
    #[serde(rename = "type")]
    pub provider_type: ProviderType,

    /// Base URL of the API, as the provider's own SDK takes it; it overrides the default
    /// endpoint (regional endpoints, corporate proxies, tests). `openai`: up to and including
    /// the version prefix (default `https://api.openai.com/v1`; the gateway appends
    /// `/chat/completions`, ...); `openai-compatible`: the same, required (e.g.
    /// `http://ollama.ollama.svc:11434/v1`); `anthropic`: default `https://api.anthropic.com`;
    /// `gemini`: default `https://generativelanguage.googleapis.com`; `azure-openai`: required,
    /// `https://RESOURCE.openai.azure.com`; `bedrock`: default
    /// `https://bedrock-runtime.{region}.amazonaws.com`. Not allowed for `mock`. http(s) only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#\\\\s]+([/?#].*)?$')").message("baseUrl must be an absolute http:// or https:// URL, for example https://api.openai.com/v1"))]
    #[schemars(length(max = 2048))]
    pub base_url: Option<String>,

    /// Where the API key comes from; omit it for upstreams that need none (e.g. a local
    /// Ollama). Set exactly one of `secretRef` or `env`. The key is sent as
    /// `Authorization: Bearer <key>` (`openai`, `openai-compatible`), `x-api-key`
    /// (`anthropic`), `x-goog-api-key` (`gemini`) or `api-key` (`azure-openai`); on a `bedrock`
    /// provider it is a Bedrock API key sent as a Bearer token instead of SigV4 signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeySource>,

    /// Allow-list of upstream model ids this provider serves. Empty or absent means any model.
    /// A ModelAlias may name a listed model without a provider prefix (`target: gpt-4o-mini`)
    /// when exactly one provider in its namespace lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), inner(length(min = 1, max = 256)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub models: Option<Vec<String>>,

    /// Static extra HTTP headers sent upstream with every request (e.g. `OpenAI-Organization`,
    /// `HTTP-Referer` for OpenRouter). Never put credentials here: use `apiKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Za-z0-9!#$%&*+.^_`|~-]+$'))").message("header names may contain only letters, digits and !#$%&*+.^_`|~-"))]
    #[x_kube(validation = Rule::new("self.all(k, !(k.lowerAscii() in ['authorization', 'proxy-authorization', 'api-key', 'x-api-key', 'x-goog-api-key', 'cookie', 'x-amz-security-token', 'x-amz-date', 'x-amz-content-sha256']))").message("headers must not carry credentials or signing headers: put the key in apiKey (or bedrock.credentials) instead"))]
    #[schemars(extend("maxProperties" = 64))]
    pub headers: Option<BTreeMap<String, String>>,

    /// Timeouts for calls to this provider, as durations such as `500ms`, `10s`, `5m`, `1h30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,

    /// Settings of an `anthropic` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic: Option<AnthropicSettings>,

    /// Settings of an `azure-openai` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureSettings>,

    /// Settings of a `bedrock` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bedrock: Option<BedrockSettings>,

    /// How the provider's HTTPS certificate is verified. Without it the gateway trusts the
    /// system's roots (the public CAs), as for every public provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ProviderTls>,

    /// When a request translated for this provider uses a parameter the provider cannot
    /// honour (e.g. `logit_bias` for Anthropic), drop it instead of answering 400 naming it.
    /// Default `false`: nothing is dropped silently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_unsupported_params: Option<bool>,
}

/// Settings of an `anthropic` provider.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnthropicSettings {
    /// The `anthropic-version` header sent upstream. Default `2023-06-01`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}$')").message("version must be a date such as 2023-06-01"))]
    #[schemars(length(max = 10))]
    pub version: Option<String>,
    /// `max_tokens` sent when a translated request sets none (Anthropic requires it).
    /// Default 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub default_max_tokens: Option<u32>,
}

/// Settings of an `azure-openai` provider.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AzureSettings {
    /// `v1` (default): the `/openai/v1/...` API with the deployment as `model`; a dated
    /// version such as `2024-10-21` uses `/openai/deployments/{deployment}/...?api-version=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 'v1' || self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?$')").message("apiVersion must be v1 or a dated version such as 2024-10-21"))]
    #[schemars(length(max = 32))]
    pub api_version: Option<String>,
}

/// Settings of a `bedrock` provider.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BedrockSettings {
    /// The AWS region, e.g. `us-east-1`. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]{2}(-[a-z]+)+-[0-9]+$')").message("region must be an AWS region such as us-east-1"))]
    #[schemars(length(max = 32))]
    pub region: Option<String>,
    /// Static AWS credentials. Without them the gateway uses the standard AWS chain
    /// (environment variables, web identity / IRSA, EKS Pod Identity), refreshed before expiry.
    /// With `apiKey` set instead, requests carry a Bedrock API key as a Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<AwsCredentials>,
}

/// AWS credentials from a Secret.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AwsCredentials {
    /// A Secret in the provider's namespace holding `accessKeyId`, `secretAccessKey` and
    /// optionally `sessionToken`.
    pub secret_ref: SecretNameRef,
}

/// TLS settings of a provider reached over HTTPS.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderTls {
    /// A key of a Secret in the provider's namespace holding the PEM certificate(s) of the CA
    /// that signed the provider's certificate (an in-cluster vLLM, a corporate TLS proxy).
    /// The provider is then verified against these certificates only, not the public roots;
    /// a bundle of several CAs (during a rotation, say) is fine. Host names are still checked.
    /// In-cluster the Secret needs the label `modelgate.dev/credential: "true"`; a changed
    /// Secret takes effect without a restart. There is no way to turn verification off.
    pub ca_secret_ref: SecretKeyRef,
}

/// A Secret in the same namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretNameRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The API flavour of a provider.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderType {
    /// The public OpenAI API (or a server that behaves exactly like it).
    Openai,
    /// Any server speaking the OpenAI API: Ollama, vLLM, Groq, Mistral, DeepSeek, Together, OpenRouter.
    OpenaiCompatible,
    /// The Anthropic Messages API.
    Anthropic,
    /// The Google Gemini API.
    Gemini,
    /// Azure OpenAI (the target's model id is the deployment name).
    AzureOpenai,
    /// Amazon Bedrock (Converse).
    Bedrock,
    /// Answers locally and deterministically; names the provider and model that served the request.
    Mock,
}

impl ProviderType {
    /// The name users write in `spec.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Openai => "openai",
            ProviderType::OpenaiCompatible => "openai-compatible",
            ProviderType::Anthropic => "anthropic",
            ProviderType::Gemini => "gemini",
            ProviderType::AzureOpenai => "azure-openai",
            ProviderType::Bedrock => "bedrock",
            ProviderType::Mock => "mock",
        }
    }
}

/// The source of a provider's API key: exactly one of `secretRef` or `env`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.env)").message("apiKey needs exactly one of secretRef or env"))]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySource {
    /// A key of a Secret in the provider's namespace. In standalone mode the Secret is a
    /// manifest in the config files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Name of an environment variable of the gateway process that holds the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]*$')").message("env must be an environment variable name such as OPENAI_API_KEY"))]
    #[schemars(length(max = 256))]
    pub env: Option<String>,
}

/// A key inside a Secret in the same namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Per-provider timeouts. Durations are written like `500ms`, `10s`, `5m` or `1h30m`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Time allowed to open a connection to the upstream. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub connect: Option<String>,
    /// Time allowed for a whole request, including a streamed response. Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub request: Option<String>,
    /// Longest silence allowed while reading the upstream's response, e.g. between two
    /// streamed chunks. Default `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub idle: Option<String>,
}

/// CEL form of the duration grammar that `compiler::rules::parse_duration` accepts.
const DURATION_RULE: &str = "self.matches('^([0-9]+(ms|s|m|h))+$')";
const DURATION_MESSAGE: &str = "must be a duration such as 500ms, 10s, 5m or 1h30m";

/// What the controller observed about a provider. Never contains the key itself.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LLMProviderStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`, `ResolvedRefs`, `Ready`, `Reconciling` (while it waits for its key),
    /// `Stalled` and `Programmed` conditions, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The base URL requests are sent to (the default one when `spec.baseUrl` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The provider type the endpoint was resolved for.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub provider_type: Option<String>,
    /// Whether the configured API key was found (false when the Secret or key is missing;
    /// absent when the provider needs no key). The key itself is never published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_present: Option<bool>,
}
