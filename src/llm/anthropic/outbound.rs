//! Canonical (OpenAI Chat Completions) requests written as Anthropic Messages requests, for
//! `type: anthropic` providers. Every field is mapped or refused by name.

use serde_json::{json, Map, Value};

use super::content::parts_to_blocks;
use super::types::{
    ContentBlock, InputMessage, MessageContent, MessagesRequest, Metadata, Role, System, ToolChoice, ToolDef,
    ToolInput, ToolResultContent,
};
use crate::llm::chat::{self, ChatRequest, Content, ContentPart, Message, ResponseFormat};
use crate::llm::is_neutral;
use crate::llm::{TranslateError, TranslateOptions, Unsupported};

/// The Anthropic request for a canonical request, for the upstream model `model`.
pub fn to_messages_request(
    request: &ChatRequest,
    model: &str,
    options: &TranslateOptions,
) -> Result<MessagesRequest, TranslateError> {
    let mut unsupported = Unsupported::new(options);
    if request.n.is_some_and(|n| n > 1) {
        unsupported.param(
            "n",
            "Anthropic returns one completion per request; send several requests",
        )?;
    }
    if matches!(
        request.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    ) {
        unsupported.param(
            "response_format",
            "Anthropic has no JSON mode; describe the format in the prompt, or define a tool whose parameters are the format and name it in tool_choice",
        )?;
    }
    if let Some(temperature) = request.temperature {
        if !(0.0..=1.0).contains(&temperature) {
            return Err(TranslateError::new(
                "temperature",
                format!("temperature must be between 0 and 1 for Anthropic models (the request has {temperature}); Anthropic's scale is not OpenAI's 0 to 2"),
            ));
        }
    }

    let mut out = MessagesRequest {
        model: model.to_string(),
        max_tokens: Some(request.max_output_tokens().unwrap_or(options.default_max_tokens)),
        stream: request.is_stream().then_some(true),
        temperature: request.temperature,
        top_p: request.top_p,
        stop_sequences: request.stop.as_ref().map(chat::Stop::to_vec).filter(|s| !s.is_empty()),
        ..MessagesRequest::default()
    };
    let mut user_id = request.user.clone();
    for (key, value) in &request.rest {
        if is_neutral(value) {
            continue;
        }
        match (key.as_str(), value) {
            ("top_k", Value::Number(n)) if n.as_u64().is_some() => out.top_k = n.as_u64(),
            ("safety_identifier", Value::String(id)) => {
                user_id.get_or_insert_with(|| id.clone());
            }
            _ => unsupported.param(key, why_unsupported(key))?,
        }
    }
    out.metadata = user_id.map(|user_id| Metadata {
        user_id: Some(user_id),
        rest: Map::new(),
    });
    out.tools = tools(request, &mut unsupported)?;
    out.tool_choice = tool_choice(request, out.tools.is_some())?;
    let (system, messages) = conversation(&request.messages, &mut unsupported)?;
    out.system = system;
    out.messages = messages;
    if out.messages.is_empty() {
        return Err(TranslateError::new(
            "messages",
            "Anthropic needs at least one user or assistant message besides system messages",
        ));
    }
    Ok(out)
}

fn why_unsupported(key: &str) -> &'static str {
    match key {
        "logit_bias" => "Anthropic has no token biasing",
        "logprobs" | "top_logprobs" => "Anthropic returns no log probabilities",
        "presence_penalty" | "frequency_penalty" => "Anthropic has no repetition penalties",
        "seed" => "Anthropic has no seeded sampling",
        "reasoning_effort" => "the gateway does not map it to Anthropic's extended thinking",
        "functions" | "function_call" => "the deprecated functions API is not translated; use tools and tool_choice",
        "audio" | "modalities" => "Anthropic answers in text only",
        "store" | "metadata" => "Anthropic does not store completions",
        _ => "the gateway cannot translate it for the Anthropic Messages API",
    }
}

fn tools(request: &ChatRequest, unsupported: &mut Unsupported<'_>) -> Result<Option<Vec<ToolDef>>, TranslateError> {
    let Some(tools) = request.tools.as_ref().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if tool.kind != "function" {
            unsupported.param(&format!("tools[{i}].type"), "Anthropic takes function tools only")?;
            continue;
        }
        if tool.function.strict == Some(true) {
            unsupported.param(
                &format!("tools[{i}].function.strict"),
                "Anthropic does not enforce tool schemas strictly",
            )?;
        }
        out.push(ToolDef {
            kind: None,
            name: tool.function.name.clone(),
            description: tool.function.description.clone(),
            input_schema: Some(
                tool.function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            ),
            cache_control: None,
            rest: Map::new(),
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

fn tool_choice(request: &ChatRequest, has_tools: bool) -> Result<Option<ToolChoice>, TranslateError> {
    let choice = |kind: &str, name: Option<String>| ToolChoice {
        kind: kind.to_string(),
        name,
        disable_parallel_tool_use: None,
        rest: Map::new(),
    };
    let mut out = match &request.tool_choice {
        None => None,
        Some(chat::ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => Some(choice("auto", None)),
            "none" => Some(choice("none", None)),
            "required" => Some(choice("any", None)),
            other => {
                return Err(TranslateError::new(
                    "tool_choice",
                    format!("tool_choice '{other}' is not one of none, auto, required or a named function"),
                ))
            }
        },
        Some(chat::ToolChoice::Named(named)) => Some(choice("tool", Some(named.function.name.clone()))),
    };
    if !has_tools {
        return match out {
            Some(c) if c.kind == "any" || c.kind == "tool" => Err(TranslateError::new(
                "tool_choice",
                "tool_choice asks for a tool call, but the request defines no tools",
            )),
            _ => Ok(None),
        };
    }
    if request.parallel_tool_calls == Some(false) {
        let c = out.get_or_insert_with(|| choice("auto", None));
        if c.kind != "none" {
            c.disable_parallel_tool_use = Some(true);
        }
    }
    Ok(out)
}

/// System and developer messages become `system`; the rest become alternating turns, with
/// tool results in user turns and consecutive turns of one role merged.
fn conversation(
    messages: &[Message],
    unsupported: &mut Unsupported<'_>,
) -> Result<(Option<System>, Vec<InputMessage>), TranslateError> {
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<InputMessage> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        if message.name.is_some() {
            unsupported.param(
                &format!("messages[{i}].name"),
                "Anthropic messages have no author names",
            )?;
        }
        for (key, value) in &message.rest {
            if !is_neutral(value) {
                unsupported.param(
                    &format!("messages[{i}].{key}"),
                    "the gateway cannot translate it for the Anthropic Messages API",
                )?;
            }
        }
        match message.role {
            chat::Role::System | chat::Role::Developer => system.push(system_text(message, i)?),
            chat::Role::User => {
                let blocks = match &message.content {
                    Some(content) => parts_to_blocks(content, &format!("messages[{i}].content"))?,
                    None => Vec::new(),
                };
                push_turn(&mut turns, Role::User, blocks);
            }
            chat::Role::Assistant => push_turn(&mut turns, Role::Assistant, assistant_blocks(message, i)?),
            chat::Role::Tool => {
                let tool_use_id = message.tool_call_id.clone().ok_or_else(|| {
                    TranslateError::new(
                        format!("messages[{i}].tool_call_id"),
                        "a tool message needs tool_call_id, the id of the tool call it answers",
                    )
                })?;
                let content = match &message.content {
                    Some(Content::Text(text)) => Some(ToolResultContent::Text(text.clone())),
                    Some(content @ Content::Parts(_)) => Some(ToolResultContent::Blocks(parts_to_blocks(
                        content,
                        &format!("messages[{i}].content"),
                    )?)),
                    None => None,
                };
                let block = ContentBlock::ToolResult {
                    tool_use_id,
                    content,
                    is_error: None,
                    cache_control: None,
                };
                push_turn(&mut turns, Role::User, vec![block]);
            }
            chat::Role::Function => {
                return Err(TranslateError::new(
                    format!("messages[{i}].role"),
                    "the deprecated function role is not translated; answer tool calls with tool messages",
                ))
            }
        }
    }
    let system = match system.len() {
        0 => None,
        1 => system.pop().map(System::Text),
        _ => Some(System::Blocks(system.into_iter().map(ContentBlock::text).collect())),
    };
    Ok((system, turns))
}

fn system_text(message: &Message, i: usize) -> Result<String, TranslateError> {
    match &message.content {
        None => Ok(String::new()),
        Some(Content::Text(text)) => Ok(text.clone()),
        Some(Content::Parts(parts)) => {
            if let Some(j) = parts.iter().position(|p| !matches!(p, ContentPart::Text { .. })) {
                return Err(TranslateError::new(
                    format!("messages[{i}].content[{j}]"),
                    "Anthropic system prompts hold text only",
                ));
            }
            Ok(message.content.as_ref().map(Content::joined_text).unwrap_or_default())
        }
    }
}

fn push_turn(turns: &mut Vec<InputMessage>, role: Role, blocks: Vec<ContentBlock>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = turns.last_mut().filter(|t| t.role == role) {
        if let MessageContent::Blocks(existing) = &mut last.content {
            existing.extend(blocks);
            return;
        }
    }
    turns.push(InputMessage {
        role,
        content: MessageContent::Blocks(blocks),
        rest: Map::new(),
    });
}

fn assistant_blocks(message: &Message, i: usize) -> Result<Vec<ContentBlock>, TranslateError> {
    let mut blocks = Vec::new();
    if let Some(content) = &message.content {
        for part in content.parts() {
            match part {
                ContentPart::Text { text } | ContentPart::Refusal { refusal: text } if !text.is_empty() => {
                    blocks.push(ContentBlock::text(text))
                }
                ContentPart::Text { .. } | ContentPart::Refusal { .. } => {}
                _ => {
                    return Err(TranslateError::new(
                        format!("messages[{i}].content"),
                        "assistant messages hold text only",
                    ))
                }
            }
        }
    }
    if let Some(refusal) = message.refusal.as_ref().filter(|r| !r.is_empty()) {
        blocks.push(ContentBlock::text(refusal.clone()));
    }
    for (j, call) in message.tool_calls.iter().flatten().enumerate() {
        let arguments = call.function.arguments.trim();
        let input = if arguments.is_empty() {
            ToolInput::empty()
        } else {
            ToolInput::from_json(arguments).ok_or_else(|| {
                TranslateError::new(
                    format!("messages[{i}].tool_calls[{j}].function.arguments"),
                    "tool call arguments must be a JSON object for Anthropic",
                )
            })?
        };
        blocks.push(ContentBlock::ToolUse {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input,
            cache_control: None,
        });
    }
    Ok(blocks)
}
