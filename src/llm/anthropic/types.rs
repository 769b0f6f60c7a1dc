//! The Anthropic Messages API's bodies, as serde types (request, response, usage, errors).
//!
//! Requests are read (clients calling `/v1/messages` on a non-Anthropic alias) and written
//! (canonical requests for `type: anthropic` providers) with the same types. Unknown request
//! fields land in `rest`, so the inbound translation can refuse them by name.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// `POST /v1/messages` (and `/v1/messages/count_tokens`, which has no `max_tokens`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<InputMessage>,
    /// Required by Anthropic; always written by the outbound translation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolDef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Top-level prompt caching (a marker on the last cacheable block): a hint with no
    /// effect on the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    /// Extended thinking: `{"type": "enabled", "budget_tokens": N}` or `{"type": "disabled"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
    /// Every other field.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `system`: a string, or text blocks (which may carry `cache_control`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum System {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One turn of the conversation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct InputMessage {
    pub role: Role,
    pub content: MessageContent,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A turn's content: a string, or content blocks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

impl MessageContent {
    /// The content as blocks, a string being one text block.
    pub fn into_blocks(self) -> Vec<ContentBlock> {
        match self {
            MessageContent::Text(text) => vec![ContentBlock::text(text)],
            MessageContent::Blocks(blocks) => blocks,
        }
    }
}

/// A content block of a request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
    },
    Image {
        source: ImageSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    Document {
        source: DocumentSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    ToolUse {
        id: String,
        name: String,
        input: ToolInput,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<ToolResultContent>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    /// A block type this gateway does not translate (server tool results, search results,
    /// container uploads, ...).
    #[serde(other)]
    Other,
}

impl ContentBlock {
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text {
            text: text.into(),
            cache_control: None,
            citations: None,
        }
    }
}

/// A tool call's `input`: a JSON object, kept as the text it was written in (so the
/// arguments of a canonical tool call travel with their key order and spacing intact).
#[derive(Serialize, Clone, Debug)]
#[serde(transparent)]
pub struct ToolInput(pub Box<RawValue>);

impl ToolInput {
    /// Input from JSON text; `None` unless it is a JSON object.
    pub fn from_json(text: &str) -> Option<Self> {
        let trimmed = text.trim();
        if !trimmed.starts_with('{') {
            return None;
        }
        RawValue::from_string(trimmed.to_string()).ok().map(ToolInput)
    }

    /// The empty object.
    pub fn empty() -> Self {
        ToolInput::from_json("{}").unwrap_or_else(|| ToolInput(RawValue::NULL.to_owned()))
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for ToolInput {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl<'de> Deserialize<'de> for ToolInput {
    /// Read through a `Value` (request blocks are an internally tagged enum, which serde
    /// buffers, and a `RawValue` cannot be read from a buffer).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let text = serde_json::to_string(&value).map_err(serde::de::Error::custom)?;
        RawValue::from_string(text)
            .map(ToolInput)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    Base64 {
        media_type: String,
        data: String,
    },
    /// Fetched by Anthropic itself.
    Url {
        url: String,
    },
    /// A file uploaded with Anthropic's Files API.
    File {
        file_id: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocumentSource {
    /// A PDF.
    Base64 {
        media_type: String,
        data: String,
    },
    /// Plain text.
    Text {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    /// Content blocks as the document.
    Content {
        content: Value,
    },
    File {
        file_id: String,
    },
    #[serde(other)]
    Other,
}

/// A tool result's content: a string, or text and image blocks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum ToolResultContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

/// A tool definition. Client tools have no `type` (or `custom`); Anthropic's server tools
/// (`web_search_20250305`, `bash_20250124`, ...) have one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ToolDef {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `tool_choice`: `auto`, `any`, `tool` (with `name`) or `none`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A non-streamed answer (`"type": "message"`). No `rest` map: a flattened map would make
/// serde buffer the body, and tool inputs are read as raw text.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct MessagesResponse {
    pub id: String,
    #[serde(rename = "type", default = "message_type")]
    pub kind: String,
    #[serde(default = "assistant")]
    pub role: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub content: Vec<ResponseBlock>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Usage,
}

fn message_type() -> String {
    "message".to_string()
}

fn assistant() -> String {
    "assistant".to_string()
}

/// A content block of an answer: one flat struct for every block type (`text`, `tool_use`,
/// `thinking`, ...), so that `input` can be read as raw JSON text.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ResponseBlock {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl ResponseBlock {
    pub fn text(text: impl Into<String>) -> Self {
        ResponseBlock {
            kind: "text".to_string(),
            text: Some(text.into()),
            id: None,
            name: None,
            input: None,
            thinking: None,
            signature: None,
        }
    }
}

/// Token counts, Anthropic shape: `input_tokens` excludes the cached input, which is counted
/// in `cache_read_input_tokens` (read from the cache) and `cache_creation_input_tokens`
/// (written to it).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

/// Usage as an Anthropic stream reports it: every count cumulative (the counts so far), any
/// of them possibly absent from an event.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageCounts {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

impl UsageCounts {
    /// Later counts replace earlier ones: they are totals, never increments.
    pub fn merge(&mut self, later: UsageCounts) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later.cache_read_input_tokens.or(self.cache_read_input_tokens);
    }

    /// The counts as a message's usage.
    pub fn usage(self) -> Usage {
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0),
            output_tokens: self.output_tokens.unwrap_or(0),
            cache_creation_input_tokens: self.cache_creation_input_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens,
        }
    }
}

/// `{"type": "error", "error": {"type", "message"}}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ErrorBody {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}
