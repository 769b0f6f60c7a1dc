//! A Responses request (`POST /v1/responses`) read into the canonical chat request.
//!
//! Every field is mapped, passed on under its Chat Completions name (the provider's translator
//! then maps or refuses it), echoed in the answer only (`metadata`, `store`), or refused by
//! name. Refusals come in two kinds: what a stateless gateway can never do (a stored response,
//! conversation or prompt, background mode) is always a 400; what only the provider cannot
//! honour goes through [`Unsupported`], so `dropUnsupportedParams` may drop it.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::input::{input_messages, Input};
use crate::llm::chat::{
    ChatRequest, FunctionDef, JsonSchemaFormat, Message, NamedFunction, NamedToolChoice, ResponseFormat, Role, Tool,
    ToolChoice,
};
use crate::llm::{TranslateError, TranslateOptions, Unsupported};

/// The fields of a Responses request this gateway reads; the rest stays in `rest`.
#[derive(Deserialize, Debug, Default)]
pub struct ResponsesRequest {
    pub model: String,
    #[serde(default)]
    pub input: Option<Input>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<Map<String, Value>>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub text: Option<Map<String, Value>>,
    #[serde(default)]
    pub reasoning: Option<Map<String, Value>>,
    #[serde(default)]
    pub include: Option<Vec<String>>,
    #[serde(default)]
    pub truncation: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Everything else, checked by [`to_chat`].
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Fields a stateless gateway cannot serve, whatever the provider: always a 400.
const STATEFUL: [(&str, &str); 4] = [
    ("previous_response_id", "it continues a response stored by OpenAI, and this gateway stores no responses; send the whole conversation in 'input' instead"),
    ("conversation", "it names a conversation stored by OpenAI, and this gateway stores none; send the whole conversation in 'input' instead"),
    ("prompt", "it names a prompt template stored by OpenAI; send the prompt's text in 'instructions' and 'input' instead"),
    ("background", "background responses are stored and polled, and this gateway stores no responses; stream the response instead"),
];

/// Chat Completions parameters with the same name and meaning: passed on for the provider's
/// translator to map or refuse.
const SAME_IN_CHAT: [&str; 4] = [
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "prompt_cache_retention",
];

/// Fields that shape only the answer object (echoed there), never the model's input.
const ECHO_ONLY: [&str; 2] = ["metadata", "store"];

/// Reads a Responses request into the canonical form for a provider with `options`.
pub fn to_chat(body: &[u8], options: &TranslateOptions) -> Result<ChatRequest, TranslateError> {
    let request: ResponsesRequest = serde_json::from_slice(body)
        .map_err(|e| TranslateError::invalid(format!("The request is not a valid Responses API request: {e}.")))?;
    let mut unsupported = Unsupported::new(options);
    let mut chat = ChatRequest {
        model: request.model.clone(),
        stream: request.stream,
        max_tokens: request.max_output_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        parallel_tool_calls: request.parallel_tool_calls,
        user: request.user.clone(),
        ..ChatRequest::default()
    };
    refuse_rest(&request.rest, &mut chat, &mut unsupported)?;

    if let Some(instructions) = &request.instructions {
        chat.messages.push(Message::text(Role::System, instructions.clone()));
    }
    match &request.input {
        None => {}
        Some(Input::Text(text)) => chat.messages.push(Message::text(Role::User, text.clone())),
        Some(Input::Items(items)) => input_messages(items, &mut chat.messages, &mut unsupported)?,
    }
    if chat.messages.is_empty() {
        return Err(TranslateError::new(
            "input",
            "The request has no 'input' (and no 'instructions'): send the user's message in 'input'.",
        ));
    }

    let mut tools = tools(request.tools.as_deref().unwrap_or_default())?;
    chat.tool_choice = match &request.tool_choice {
        None => None,
        Some(choice) => Some(tool_choice(choice, &mut tools)?),
    };
    chat.tools = (!tools.is_empty()).then_some(tools);
    if let Some(text) = &request.text {
        text_config(text, &mut chat, &mut unsupported)?;
    }
    if let Some(reasoning) = &request.reasoning {
        reasoning_config(reasoning, &mut chat, &mut unsupported)?;
    }
    for (index, include) in request.include.iter().flatten().enumerate() {
        // Encrypted reasoning is included only where a reasoning item exists; translated
        // answers have none, so asking for it asks for nothing.
        if include != "reasoning.encrypted_content" {
            unsupported.param(
                &format!("include[{index}]"),
                &format!("the gateway cannot produce '{include}' from a translated answer"),
            )?;
        }
    }
    if request.truncation.as_deref().is_some_and(|t| t != "disabled") {
        unsupported.param(
            "truncation",
            "the gateway does not shorten a conversation to fit the model; send what fits, or 'disabled'",
        )?;
    }
    Ok(chat)
}

/// The fields the typed request does not know: stateful ones refused, Chat Completions ones
/// passed on, echo-only ones left for the answer, anything else unsupported.
fn refuse_rest(
    rest: &Map<String, Value>,
    chat: &mut ChatRequest,
    unsupported: &mut Unsupported<'_>,
) -> Result<(), TranslateError> {
    for (key, value) in rest {
        if value.is_null() || (key == "background" && value == &Value::Bool(false)) {
            continue;
        }
        if let Some((_, why)) = STATEFUL.iter().find(|(name, _)| name == key) {
            return Err(TranslateError::new(
                key.as_str(),
                format!("The parameter '{key}' is not supported for this model: {why}. (Only models served by an openai or azure-openai provider pass it through.)"),
            ));
        }
        if SAME_IN_CHAT.contains(&key.as_str()) {
            chat.rest.insert(key.clone(), value.clone());
        } else if !ECHO_ONLY.contains(&key.as_str()) {
            unsupported.param(key, "the gateway cannot translate it to the provider's API")?;
        }
    }
    Ok(())
}

/// Function tools, in the Chat Completions shape; any other tool type is refused by name.
fn tools(tools: &[Value]) -> Result<Vec<Tool>, TranslateError> {
    #[derive(Deserialize)]
    struct FunctionTool {
        name: String,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        parameters: Option<Value>,
        #[serde(default)]
        strict: Option<bool>,
    }
    let mut out = Vec::with_capacity(tools.len());
    for (index, tool) in tools.iter().enumerate() {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind != "function" {
            return Err(TranslateError::new(
                format!("tools[{index}]"),
                format!("The tool type '{kind}' is not supported for this model: built-in tools (web search, file search, code interpreter, MCP, ...) run at OpenAI, and only models served by an openai or azure-openai provider can use them. Define a function tool instead."),
            ));
        }
        let function: FunctionTool = serde_json::from_value(tool.clone()).map_err(|e| {
            TranslateError::new(
                format!("tools[{index}]"),
                format!("tools[{index}] is not a valid function tool: {e}."),
            )
        })?;
        out.push(Tool {
            kind: "function".to_string(),
            function: FunctionDef {
                name: function.name,
                description: function.description,
                parameters: function.parameters,
                strict: function.strict,
            },
        });
    }
    Ok(out)
}

/// `tool_choice`: a mode, one function, or `allowed_tools` (the tools not allowed are left
/// out of the request, which is what the constraint means).
fn tool_choice(choice: &Value, tools: &mut Vec<Tool>) -> Result<ToolChoice, TranslateError> {
    let refuse = |why: String| TranslateError::new("tool_choice", why);
    if let Some(mode) = choice.as_str() {
        return match mode {
            "none" | "auto" | "required" => Ok(ToolChoice::Mode(mode.to_string())),
            other => Err(refuse(format!(
                "The tool_choice '{other}' is not one of 'none', 'auto' or 'required'."
            ))),
        };
    }
    let kind = choice.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "function" => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| refuse("A function tool_choice needs the function's 'name'.".to_string()))?;
            Ok(ToolChoice::Named(NamedToolChoice {
                kind: "function".to_string(),
                function: NamedFunction { name: name.to_string() },
            }))
        }
        "allowed_tools" => {
            let mode = choice.get("mode").and_then(Value::as_str).unwrap_or("auto");
            if !matches!(mode, "auto" | "required") {
                return Err(refuse(format!(
                    "The allowed_tools mode '{mode}' is not 'auto' or 'required'."
                )));
            }
            let mut allowed = Vec::new();
            for tool in choice.get("tools").and_then(Value::as_array).into_iter().flatten() {
                match (tool.get("type").and_then(Value::as_str), tool.get("name").and_then(Value::as_str)) {
                    (Some("function"), Some(name)) => allowed.push(name),
                    _ => return Err(refuse(format!(
                        "allowed_tools may only list function tools for this model (found {tool})."
                    ))),
                }
            }
            tools.retain(|t| allowed.contains(&t.function.name.as_str()));
            Ok(ToolChoice::Mode(mode.to_string()))
        }
        other => Err(refuse(format!(
            "The tool_choice type '{other}' names a built-in tool; only models served by an openai or azure-openai provider can use them."
        ))),
    }
}

/// `text`: `format` becomes `response_format`, `verbosity` passes on.
fn text_config(
    text: &Map<String, Value>,
    chat: &mut ChatRequest,
    unsupported: &mut Unsupported<'_>,
) -> Result<(), TranslateError> {
    for (key, value) in text {
        match key.as_str() {
            _ if value.is_null() => {}
            "format" => chat.response_format = text_format(value)?,
            "verbosity" => {
                chat.rest.insert("verbosity".to_string(), value.clone());
            }
            other => unsupported.param(&format!("text.{other}"), "the gateway cannot translate it")?,
        }
    }
    Ok(())
}

fn text_format(format: &Value) -> Result<Option<ResponseFormat>, TranslateError> {
    #[derive(Deserialize)]
    struct SchemaFormat {
        name: String,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        schema: Option<Value>,
        #[serde(default)]
        strict: Option<bool>,
    }
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => {
            let schema: SchemaFormat = serde_json::from_value(format.clone()).map_err(|e| {
                TranslateError::new(
                    "text.format",
                    format!("text.format is not a valid json_schema format: {e}."),
                )
            })?;
            Ok(Some(ResponseFormat::JsonSchema {
                json_schema: JsonSchemaFormat {
                    name: schema.name,
                    description: schema.description,
                    schema: schema.schema,
                    strict: schema.strict,
                },
            }))
        }
        other => Err(TranslateError::new(
            "text.format",
            format!(
                "The text format {} is not one of 'text', 'json_object' or 'json_schema'.",
                other.map_or_else(|| "without a type".to_string(), |t| format!("'{t}'"))
            ),
        )),
    }
}

/// `reasoning`: `effort` passes on as `reasoning_effort`; summaries have no Chat Completions
/// equivalent.
fn reasoning_config(
    reasoning: &Map<String, Value>,
    chat: &mut ChatRequest,
    unsupported: &mut Unsupported<'_>,
) -> Result<(), TranslateError> {
    for (key, value) in reasoning {
        match key.as_str() {
            _ if value.is_null() => {}
            "effort" => {
                chat.rest.insert("reasoning_effort".to_string(), value.clone());
            }
            other => unsupported.param(
                &format!("reasoning.{other}"),
                "reasoning summaries come only from OpenAI's own Responses API",
            )?,
        }
    }
    Ok(())
}
