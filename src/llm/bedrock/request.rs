//! Chat Completions to a Bedrock Converse request body.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::llm::chat::{
    ChatRequest, Content, ContentPart, ImageUrl, Message, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
};
use crate::llm::{TranslateError, TranslateOptions, Unsupported};

/// The body of `POST /model/{modelId}/converse` (and `/converse-stream`).
#[derive(Serialize, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest {
    pub messages: Vec<BedrockMessage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<SystemBlock>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<InferenceConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub request_metadata: BTreeMap<String, String>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct BedrockMessage {
    pub role: &'static str,
    pub content: Vec<Block>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct SystemBlock {
    pub text: String,
}

/// A content block (a union: exactly one key).
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum Block {
    Text(String),
    Image(ImageBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ImageBlock {
    /// `png`, `jpeg`, `gif` or `webp`.
    pub format: &'static str,
    pub source: ImageSource,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ImageSource {
    /// The image, base64 (how a blob travels in Converse's JSON).
    pub bytes: String,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlock {
    pub tool_use_id: String,
    pub name: String,
    pub input: Value,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    pub content: Vec<Block>,
}

#[derive(Serialize, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    pub tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
}

/// Reads a canonical request into a Converse request: every field is mapped, or refused by
/// name through [`Unsupported`] (see the module documentation of [`super`] for the choices).
pub fn converse_request(request: &ChatRequest, options: &TranslateOptions) -> Result<ConverseRequest, TranslateError> {
    let mut unsupported = Unsupported::new(options);
    let mut out = ConverseRequest::default();
    let mut history_has_tools = false;
    for (i, message) in request.messages.iter().enumerate() {
        history_has_tools |= message.tool_calls.as_ref().is_some_and(|c| !c.is_empty()) || message.role == Role::Tool;
        add_message(&mut out, message, i, &mut unsupported)?;
    }

    let inference = InferenceConfig {
        max_tokens: request.max_output_tokens(),
        temperature: request.temperature,
        top_p: request.top_p,
        stop_sequences: request.stop.as_ref().map(|s| s.to_vec()).unwrap_or_default(),
    };
    if inference != InferenceConfig::default() {
        out.inference_config = Some(inference);
    }

    out.tool_config = tool_config(request, history_has_tools, &mut unsupported)?;
    if let Some(format) = &request.response_format {
        out.output_config = output_config(format, &mut unsupported)?;
    }
    if request.parallel_tool_calls == Some(false) {
        unsupported.param(
            "parallel_tool_calls",
            "Converse has no switch to forbid parallel tool calls",
        )?;
    }
    if request.n.is_some_and(|n| n != 1) {
        unsupported.param("n", "Converse returns one choice per request")?;
    }
    if let Some(user) = &request.user {
        out.request_metadata.insert("user".to_string(), user.clone());
    }
    refuse_rest(&mut unsupported, "", &request.rest)?;
    Ok(out)
}

/// Fields the canonical form does not know are refused by name; a `null` is the same as an
/// absent field.
fn refuse_rest(
    unsupported: &mut Unsupported<'_>,
    prefix: &str,
    rest: &Map<String, Value>,
) -> Result<(), TranslateError> {
    if rest.values().all(Value::is_null) {
        return Ok(());
    }
    let set: Map<String, Value> = rest
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    unsupported.rest(prefix, &set)
}

/// Appends a message's blocks, merging into the previous turn when the Converse role repeats.
fn add_message(
    out: &mut ConverseRequest,
    message: &Message,
    i: usize,
    unsupported: &mut Unsupported<'_>,
) -> Result<(), TranslateError> {
    let prefix = format!("messages[{i}]");
    refuse_rest(unsupported, &prefix, &message.rest)?;
    if message.name.is_some() {
        unsupported.param(&format!("{prefix}.name"), "Converse messages have no participant names")?;
    }
    let (role, blocks) = match message.role {
        Role::System | Role::Developer => {
            let text = message.content.as_ref().map(Content::joined_text).unwrap_or_default();
            if !text.is_empty() {
                out.system.push(SystemBlock { text });
            }
            return Ok(());
        }
        Role::User => ("user", user_blocks(message.content.as_ref(), &prefix, unsupported)?),
        Role::Assistant => ("assistant", assistant_blocks(message, &prefix)?),
        Role::Tool => {
            let tool_use_id = message.tool_call_id.clone().ok_or_else(|| {
                TranslateError::new(
                    format!("{prefix}.tool_call_id"),
                    format!("{prefix} has role tool but no tool_call_id; set it to the id of the tool call it answers"),
                )
            })?;
            let content = user_blocks(message.content.as_ref(), &prefix, unsupported)?;
            (
                "user",
                vec![Block::ToolResult(ToolResultBlock { tool_use_id, content })],
            )
        }
        Role::Function => {
            return Err(TranslateError::new(
                format!("{prefix}.role"),
                format!(
                    "{prefix} has the deprecated role 'function'; send tool results with role 'tool' and tool_call_id"
                ),
            ))
        }
    };
    if blocks.is_empty() {
        return Ok(());
    }
    match out.messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => out.messages.push(BedrockMessage { role, content: blocks }),
    }
    Ok(())
}

/// User (and tool result) content: text and images.
fn user_blocks(
    content: Option<&Content>,
    prefix: &str,
    unsupported: &mut Unsupported<'_>,
) -> Result<Vec<Block>, TranslateError> {
    let mut blocks = Vec::new();
    let Some(content) = content else {
        return Ok(blocks);
    };
    match content {
        Content::Text(text) => blocks.push(Block::Text(text.clone())),
        Content::Parts(parts) => {
            for (j, part) in parts.iter().enumerate() {
                let name = format!("{prefix}.content[{j}]");
                match part {
                    ContentPart::Text { text } => blocks.push(Block::Text(text.clone())),
                    ContentPart::ImageUrl { image_url } => blocks.push(Block::Image(image(image_url, &name)?)),
                    ContentPart::InputAudio { .. } => {
                        unsupported.param(&name, "Converse takes no audio input")?;
                    }
                    ContentPart::File { .. } => {
                        unsupported.param(&name, "file parts are not translated for Converse")?;
                    }
                    ContentPart::Refusal { refusal } => blocks.push(Block::Text(refusal.clone())),
                }
            }
        }
    }
    Ok(blocks)
}

/// An image part: a `data:` URL becomes inline bytes.
fn image(image_url: &ImageUrl, name: &str) -> Result<ImageBlock, TranslateError> {
    let Some((media_type, data)) = image_url.as_data() else {
        return Err(TranslateError::new(
            format!("{name}.image_url"),
            format!("{name} is an image URL; Bedrock Converse does not fetch URLs and the gateway never does: send the image inline as a data URL (data:image/png;base64,...)"),
        ));
    };
    let format = match media_type.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(TranslateError::new(
                format!("{name}.image_url"),
                format!("{name} is an image of type '{other}'; Bedrock Converse takes png, jpeg, gif and webp"),
            ))
        }
    };
    Ok(ImageBlock {
        format,
        source: ImageSource {
            bytes: data.to_string(),
        },
    })
}

/// Assistant content: its text, then its tool calls.
fn assistant_blocks(message: &Message, prefix: &str) -> Result<Vec<Block>, TranslateError> {
    let mut blocks = Vec::new();
    let text = message.content.as_ref().map(Content::joined_text).unwrap_or_default();
    // Converse refuses blank text blocks; an assistant turn with only tool calls has none.
    if !text.trim().is_empty() {
        blocks.push(Block::Text(text));
    }
    for (j, call) in message.tool_calls.iter().flatten().enumerate() {
        blocks.push(Block::ToolUse(tool_use(call, &format!("{prefix}.tool_calls[{j}]"))?));
    }
    Ok(blocks)
}

fn tool_use(call: &ToolCall, name: &str) -> Result<ToolUseBlock, TranslateError> {
    let arguments = call.function.arguments.trim();
    let input = if arguments.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_str::<Value>(arguments).map_err(|e| {
            TranslateError::new(
                format!("{name}.function.arguments"),
                format!("{name}.function.arguments is not JSON ({e}); Converse needs the arguments as a JSON object"),
            )
        })?
    };
    if !input.is_object() {
        return Err(TranslateError::new(
            format!("{name}.function.arguments"),
            format!("{name}.function.arguments is not a JSON object; Converse needs the arguments as a JSON object"),
        ));
    }
    Ok(ToolUseBlock {
        tool_use_id: call.id.clone(),
        name: call.function.name.clone(),
        input,
    })
}

/// `tools` and `tool_choice` as `toolConfig`.
fn tool_config(
    request: &ChatRequest,
    history_has_tools: bool,
    unsupported: &mut Unsupported<'_>,
) -> Result<Option<ToolConfig>, TranslateError> {
    let tools = request.tools.as_deref().unwrap_or_default();
    let choice = match &request.tool_choice {
        None => None,
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => Some(serde_json::json!({"auto": {}})),
            "required" => Some(serde_json::json!({"any": {}})),
            "none" if !history_has_tools => return Ok(None),
            "none" => {
                unsupported.param(
                    "tool_choice",
                    "Converse cannot forbid tool calls in a conversation that already has tool calls (it needs the tool definitions then)",
                )?;
                None
            }
            other => {
                return Err(TranslateError::new(
                    "tool_choice",
                    format!("tool_choice '{other}' is not one of none, auto or required"),
                ))
            }
        },
        Some(ToolChoice::Named(named)) => Some(serde_json::json!({"tool": {"name": named.function.name}})),
    };
    if tools.is_empty() {
        if choice.is_some() {
            return Err(TranslateError::new(
                "tool_choice",
                "tool_choice is set but there are no tools",
            ));
        }
        return Ok(None);
    }
    let specs = tools
        .iter()
        .enumerate()
        .map(|(i, tool)| tool_spec(tool, i, unsupported))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(ToolConfig {
        tools: specs,
        tool_choice: choice,
    }))
}

fn tool_spec(tool: &Tool, i: usize, unsupported: &mut Unsupported<'_>) -> Result<Value, TranslateError> {
    if tool.kind != "function" {
        unsupported.param(
            &format!("tools[{i}].type"),
            &format!("Converse tools are functions, not '{}'", tool.kind),
        )?;
    }
    let function = &tool.function;
    let schema = function
        .parameters
        .clone()
        .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
    let mut spec = serde_json::json!({"name": function.name, "inputSchema": {"json": schema}});
    if let (Some(description), Some(map)) = (&function.description, spec.as_object_mut()) {
        map.insert("description".to_string(), Value::from(description.as_str()));
    }
    if let (Some(true), Some(map)) = (function.strict, spec.as_object_mut()) {
        map.insert("strict".to_string(), Value::Bool(true));
    }
    Ok(serde_json::json!({ "toolSpec": spec }))
}

/// `response_format` as Converse's structured output.
fn output_config(format: &ResponseFormat, unsupported: &mut Unsupported<'_>) -> Result<Option<Value>, TranslateError> {
    match format {
        ResponseFormat::Text => Ok(None),
        ResponseFormat::JsonObject => {
            unsupported.param(
                "response_format",
                "Converse has no JSON mode without a schema; use response_format json_schema",
            )?;
            Ok(None)
        }
        ResponseFormat::JsonSchema { json_schema } => {
            let Some(schema) = &json_schema.schema else {
                return Err(TranslateError::new(
                    "response_format.json_schema.schema",
                    "response_format json_schema needs a schema",
                ));
            };
            let mut definition = serde_json::json!({"name": json_schema.name, "schema": schema.to_string()});
            if let (Some(description), Some(map)) = (&json_schema.description, definition.as_object_mut()) {
                map.insert("description".to_string(), Value::from(description.as_str()));
            }
            Ok(Some(serde_json::json!({"textFormat": {
                "type": "json_schema",
                "structure": {"jsonSchema": definition},
            }})))
        }
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
