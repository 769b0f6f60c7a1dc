//! The Responses API's `response` object, built from a canonical answer.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::llm::chat::{ChatResponse, FinishReason, Usage};
use crate::llm::openai::error_json;
use crate::llm::UpstreamError;

/// Request settings a response object repeats, as the client sent them (OpenAI's defaults
/// where it sent none). The gateway stores nothing, so `store` is always `false` and
/// `previous_response_id` always null.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Echo {
    #[serde(default)]
    instructions: Value,
    #[serde(default)]
    max_output_tokens: Value,
    #[serde(default)]
    parallel_tool_calls: Value,
    #[serde(default, skip_deserializing)]
    previous_response_id: Value,
    #[serde(default)]
    reasoning: Value,
    #[serde(default, skip_deserializing)]
    store: bool,
    #[serde(default)]
    temperature: Value,
    #[serde(default)]
    text: Value,
    #[serde(default)]
    tool_choice: Value,
    #[serde(default)]
    tools: Value,
    #[serde(default)]
    top_p: Value,
    #[serde(default)]
    truncation: Value,
    #[serde(default)]
    user: Value,
    #[serde(default)]
    metadata: Value,
}

impl Echo {
    /// The settings of a Responses request body (defaults for a body that cannot be read: it
    /// was read once already, by `to_chat`).
    pub fn from_body(body: &[u8]) -> Self {
        let mut echo: Echo = serde_json::from_slice(body).unwrap_or_default();
        let default = |value: &mut Value, default: Value| {
            if value.is_null() {
                *value = default;
            }
        };
        default(&mut echo.parallel_tool_calls, Value::Bool(true));
        default(&mut echo.reasoning, json!({"effort": null, "summary": null}));
        default(&mut echo.text, json!({"format": {"type": "text"}}));
        default(&mut echo.tool_choice, json!("auto"));
        default(&mut echo.tools, json!([]));
        default(&mut echo.truncation, json!("disabled"));
        default(&mut echo.metadata, json!({}));
        echo
    }
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

/// A response object. Serialized for the non-streamed answer and for the lifecycle events of
/// a stream (`response.created` ... `response.completed`).
#[derive(Serialize, Debug)]
pub struct ResponseObject<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created_at: i64,
    pub status: Status,
    pub background: bool,
    pub error: Option<Value>,
    pub incomplete_details: Option<Value>,
    pub model: &'a str,
    pub output: &'a [OutputItem],
    pub usage: Option<ResponsesUsage>,
    #[serde(flatten)]
    pub echo: &'a Echo,
}

impl<'a> ResponseObject<'a> {
    pub fn new(id: &'a str, model: &'a str, created_at: i64, echo: &'a Echo) -> Self {
        ResponseObject {
            id,
            object: "response",
            created_at,
            status: Status::InProgress,
            background: false,
            error: None,
            incomplete_details: None,
            model,
            output: &[],
            usage: None,
            echo,
        }
    }

    /// Sets the status a finish reason implies.
    pub fn finished(&mut self, finish: Option<FinishReason>) {
        match incomplete_reason(finish) {
            Some(reason) => {
                self.status = Status::Incomplete;
                self.incomplete_details = Some(json!({ "reason": reason }));
            }
            None => self.status = Status::Completed,
        }
    }

    /// Marks the response failed with `error`.
    pub fn failed(&mut self, error: &UpstreamError) {
        self.status = Status::Failed;
        let code = error_json(error)["error"]["code"].clone();
        self.error = Some(json!({"code": code, "message": error.message}));
    }
}

/// Why an answer stopped short, in the Responses API's words.
pub fn incomplete_reason(finish: Option<FinishReason>) -> Option<&'static str> {
    match finish {
        Some(FinishReason::Length) => Some("max_output_tokens"),
        Some(FinishReason::ContentFilter) => Some("content_filter"),
        _ => None,
    }
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    InProgress,
    Completed,
    Incomplete,
}

/// One item of `output`.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    Message {
        id: String,
        status: ItemStatus,
        role: &'static str,
        content: Vec<OutputContent>,
    },
    FunctionCall {
        id: String,
        status: ItemStatus,
        arguments: String,
        call_id: String,
        name: String,
    },
}

impl OutputItem {
    pub fn message(id: String) -> Self {
        OutputItem::Message {
            id,
            status: ItemStatus::InProgress,
            role: "assistant",
            content: Vec::new(),
        }
    }

    pub fn id(&self) -> &str {
        match self {
            OutputItem::Message { id, .. } | OutputItem::FunctionCall { id, .. } => id,
        }
    }

    pub fn set_status(&mut self, to: ItemStatus) {
        match self {
            OutputItem::Message { status, .. } | OutputItem::FunctionCall { status, .. } => *status = to,
        }
    }
}

/// A part of a message item.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputContent {
    OutputText {
        text: String,
        /// Always empty: translated answers carry no citations.
        annotations: Vec<Value>,
        /// Always empty: log probabilities are not translated.
        logprobs: Vec<Value>,
    },
    Refusal {
        refusal: String,
    },
}

impl OutputContent {
    pub fn text(text: String) -> Self {
        OutputContent::OutputText {
            text,
            annotations: Vec::new(),
            logprobs: Vec::new(),
        }
    }
}

/// The id of the output item at `index` of response `id` (`msg_...`, `fc_...`).
pub fn item_id(prefix: &str, response_id: &str, index: usize) -> String {
    let suffix = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{prefix}_{suffix}_{index}")
}

/// Token counts, Responses shape.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct ResponsesUsage {
    pub input_tokens: u64,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u64,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct InputTokensDetails {
    pub cached_tokens: u64,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u64,
}

impl From<&Usage> for ResponsesUsage {
    fn from(usage: &Usage) -> Self {
        let total = match usage.total_tokens {
            0 => usage.prompt_tokens + usage.completion_tokens,
            total => total,
        };
        ResponsesUsage {
            input_tokens: usage.prompt_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens: usage.cached_tokens(),
            },
            output_tokens: usage.completion_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: usage
                    .completion_tokens_details
                    .as_ref()
                    .and_then(|d| d.reasoning_tokens)
                    .unwrap_or(0),
            },
            total_tokens: total,
        }
    }
}

/// The output items of a non-streamed answer: a message (text, refusal), then a
/// `function_call` item per tool call; the last item is `incomplete` when the answer is.
pub fn output_items(answer: &ChatResponse, id: &str) -> Vec<OutputItem> {
    let mut items = Vec::new();
    let Some(choice) = answer.choices.first() else {
        return items;
    };
    let message = &choice.message;
    let text = message.content.as_deref().unwrap_or_default();
    let refusal = message.refusal.as_deref().unwrap_or_default();
    let calls = message.tool_calls.as_deref().unwrap_or_default();
    if !text.is_empty() || !refusal.is_empty() || calls.is_empty() {
        let mut content = Vec::new();
        if !text.is_empty() || refusal.is_empty() {
            content.push(OutputContent::text(text.to_string()));
        }
        if !refusal.is_empty() {
            content.push(OutputContent::Refusal {
                refusal: refusal.to_string(),
            });
        }
        items.push(OutputItem::Message {
            id: item_id("msg", id, 0),
            status: ItemStatus::Completed,
            role: "assistant",
            content,
        });
    }
    for call in calls {
        items.push(OutputItem::FunctionCall {
            id: item_id("fc", id, items.len()),
            status: ItemStatus::Completed,
            arguments: call.function.arguments.clone(),
            call_id: call.id.clone(),
            name: call.function.name.clone(),
        });
    }
    if incomplete_reason(choice.finish_reason).is_some() {
        if let Some(last) = items.last_mut() {
            last.set_status(ItemStatus::Incomplete);
        }
    }
    items
}

/// A non-streamed answer as a Responses response object. `model` is the model the client
/// asked for; `created_at` is used when the answer has no time of its own.
pub fn response_json(answer: &ChatResponse, id: &str, model: &str, created_at: i64, echo: &Echo) -> Vec<u8> {
    let output = output_items(answer, id);
    let created = if answer.created > 0 { answer.created } else { created_at };
    let mut object = ResponseObject::new(id, model, created, echo);
    object.output = &output;
    object.finished(answer.choices.first().and_then(|c| c.finish_reason));
    object.usage = answer.usage.as_ref().map(ResponsesUsage::from);
    serde_json::to_vec(&object).unwrap_or_default()
}
