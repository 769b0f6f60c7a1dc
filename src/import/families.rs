//! The provider prefixes Arch and LiteLLM write (`openai/`, `azure/`, `groq/`, ...) and the
//! modelgate provider type, default endpoint and key variable each one means.

use crate::crd::ProviderType;

/// What a provider prefix stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    /// The canonical short name, used to name the LLMProvider.
    pub name: &'static str,
    pub kind: ProviderType,
    /// The endpoint when the input gives none (`openai-compatible` needs one).
    pub base_url: Option<&'static str>,
    /// The variable LiteLLM reads the key from when the config names none.
    pub key_env: Option<&'static str>,
}

const fn family(
    name: &'static str,
    kind: ProviderType,
    base_url: Option<&'static str>,
    key_env: Option<&'static str>,
) -> Family {
    Family {
        name,
        kind,
        base_url,
        key_env,
    }
}

use ProviderType::{Anthropic, AzureOpenai, Bedrock, Gemini, Openai, OpenaiCompatible};

/// Prefixes (both Arch's and LiteLLM's spellings) and their families.
const FAMILIES: &[(&[&str], Family)] = &[
    (&["openai"], family("openai", Openai, None, Some("OPENAI_API_KEY"))),
    (
        &["anthropic"],
        family("anthropic", Anthropic, None, Some("ANTHROPIC_API_KEY")),
    ),
    (&["gemini"], family("gemini", Gemini, None, Some("GEMINI_API_KEY"))),
    (
        &["azure", "azure_openai"],
        family("azure", AzureOpenai, None, Some("AZURE_API_KEY")),
    ),
    (&["bedrock", "amazon_bedrock"], family("bedrock", Bedrock, None, None)),
    (
        &["ollama", "ollama_chat"],
        family("ollama", OpenaiCompatible, Some("http://localhost:11434/v1"), None),
    ),
    (
        &["hosted_vllm", "vllm", "custom_openai", "openai_like", "local", "custom"],
        family("vllm", OpenaiCompatible, None, None),
    ),
    (
        &["lm_studio"],
        family("lm-studio", OpenaiCompatible, Some("http://localhost:1234/v1"), None),
    ),
    (
        &["groq"],
        family(
            "groq",
            OpenaiCompatible,
            Some("https://api.groq.com/openai/v1"),
            Some("GROQ_API_KEY"),
        ),
    ),
    (
        &["mistral"],
        family(
            "mistral",
            OpenaiCompatible,
            Some("https://api.mistral.ai/v1"),
            Some("MISTRAL_API_KEY"),
        ),
    ),
    (
        &["deepseek"],
        family(
            "deepseek",
            OpenaiCompatible,
            Some("https://api.deepseek.com/v1"),
            Some("DEEPSEEK_API_KEY"),
        ),
    ),
    (
        &["together_ai"],
        family(
            "together",
            OpenaiCompatible,
            Some("https://api.together.xyz/v1"),
            Some("TOGETHERAI_API_KEY"),
        ),
    ),
    (
        &["xai"],
        family(
            "xai",
            OpenaiCompatible,
            Some("https://api.x.ai/v1"),
            Some("XAI_API_KEY"),
        ),
    ),
    (
        &["openrouter"],
        family(
            "openrouter",
            OpenaiCompatible,
            Some("https://openrouter.ai/api/v1"),
            Some("OPENROUTER_API_KEY"),
        ),
    ),
    (
        &["fireworks_ai"],
        family(
            "fireworks",
            OpenaiCompatible,
            Some("https://api.fireworks.ai/inference/v1"),
            Some("FIREWORKS_AI_API_KEY"),
        ),
    ),
    (
        &["deepinfra"],
        family(
            "deepinfra",
            OpenaiCompatible,
            Some("https://api.deepinfra.com/v1/openai"),
            Some("DEEPINFRA_API_KEY"),
        ),
    ),
    (
        &["perplexity"],
        family(
            "perplexity",
            OpenaiCompatible,
            Some("https://api.perplexity.ai"),
            Some("PERPLEXITYAI_API_KEY"),
        ),
    ),
    (
        &["moonshotai", "moonshot"],
        family(
            "moonshot",
            OpenaiCompatible,
            Some("https://api.moonshot.ai/v1"),
            Some("MOONSHOT_API_KEY"),
        ),
    ),
    (
        &["zhipu"],
        family(
            "zhipu",
            OpenaiCompatible,
            Some("https://open.bigmodel.cn/api/paas/v4"),
            Some("ZHIPU_API_KEY"),
        ),
    ),
    (
        &["qwen", "dashscope"],
        family(
            "qwen",
            OpenaiCompatible,
            Some("https://dashscope.aliyuncs.com/compatible-mode/v1"),
            Some("DASHSCOPE_API_KEY"),
        ),
    ),
];

/// The family of a provider prefix, if modelgate can serve it.
pub fn by_prefix(prefix: &str) -> Option<Family> {
    FAMILIES
        .iter()
        .find(|(prefixes, _)| prefixes.contains(&prefix))
        .map(|(_, f)| *f)
}

/// The prefixes modelgate understands, for error messages.
pub fn known_prefixes() -> String {
    FAMILIES
        .iter()
        .map(|(prefixes, _)| prefixes[0])
        .collect::<Vec<_>>()
        .join(", ")
}

/// The family of a model id written without a prefix, as LiteLLM infers it.
pub fn by_model_name(model: &str) -> Option<Family> {
    let openai = [
        "gpt-",
        "o1",
        "o3",
        "o4",
        "chatgpt-",
        "text-embedding-",
        "dall-e",
        "whisper",
        "tts-",
    ];
    if openai.iter().any(|p| model.starts_with(p)) {
        by_prefix("openai")
    } else if model.starts_with("claude-") {
        by_prefix("anthropic")
    } else {
        None
    }
}

/// Splits `provider/model` at the first `/`; `None` when there is no prefix.
pub fn split_model(model: &str) -> Option<(&str, &str)> {
    model.split_once('/').filter(|(p, m)| !p.is_empty() && !m.is_empty())
}

/// The base URL modelgate needs from one given without a path (`http://host:11434`): the
/// family's default path (`/v1`) is appended for OpenAI-style APIs, as Arch does.
pub fn with_default_path(family: &Family, base_url: &str) -> String {
    let trimmed = base_url.trim_end_matches('/');
    let has_path = trimmed
        .split_once("://")
        .map(|(_, rest)| rest.contains('/'))
        .unwrap_or(false);
    if has_path || !matches!(family.kind, ProviderType::Openai | ProviderType::OpenaiCompatible) {
        return trimmed.to_string();
    }
    let default_path = family
        .base_url
        .and_then(|u| u.split_once("://"))
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/v1");
    format!("{trimmed}{default_path}")
}

/// Whether a URL is one modelgate accepts as `baseUrl` (absolute http or https).
pub fn is_http_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.starts_with('/')
        && !rest.contains(char::is_whitespace)
}

/// The AWS region of a Bedrock runtime URL (`https://bedrock-runtime.us-west-2.amazonaws.com`).
pub fn bedrock_region(url: &str) -> Option<String> {
    let host = url.split_once("://")?.1.split('/').next()?;
    let rest = host.strip_prefix("bedrock-runtime.")?;
    let region = rest.split('.').next()?;
    is_aws_region(region).then(|| region.to_string())
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`.
pub fn is_aws_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// Where a credential in the input comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeySource {
    /// An environment variable (`$OPENAI_API_KEY`, `${OPENAI_API_KEY}`,
    /// `os.environ/OPENAI_API_KEY`).
    Env(String),
    /// A key written into the file; never printed. `location` says where it was.
    Literal { location: String },
}

/// Reads a credential value: a variable reference, or a literal (which is never kept).
pub fn key_source(value: &str, location: &str) -> KeySource {
    let value = value.trim();
    let name = value
        .strip_prefix("os.environ/")
        .or_else(|| value.strip_prefix("${").and_then(|v| v.strip_suffix('}')))
        .or_else(|| value.strip_prefix('$'));
    match name {
        Some(name) if is_env_name(name) => KeySource::Env(name.to_string()),
        _ => KeySource::Literal {
            location: location.to_string(),
        },
    }
}

pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A variable reference written for a non-secret setting (`os.environ/AZURE_API_BASE`).
pub fn env_reference(value: &str) -> Option<&str> {
    value
        .strip_prefix("os.environ/")
        .or_else(|| value.strip_prefix("${").and_then(|v| v.strip_suffix('}')))
        .or_else(|| value.strip_prefix('$'))
        .filter(|n| is_env_name(n))
}
