//! Anthropic Messages requests read into the canonical form, for clients calling
//! `/v1/messages` on an alias whose provider is not Anthropic. A field that cannot be carried
//! is refused by name; `cache_control` (a caching hint with no effect on the answer) and
//! thinking blocks of earlier turns (which Anthropic itself leaves out of the context) are the
//! only things left behind.

use serde_json::{Map, Value};

use super::types::{
    ContentBlock, DocumentSource, ImageSource, InputMessage, MessageContent, MessagesRequest, Role, System, ToolDef,
    ToolResultContent,
};
use crate::llm::chat::{
    self, ChatRequest, Content, ContentPart, FunctionCall, FunctionDef, ImageUrl, Message, NamedFunction,
    NamedToolChoice, Stop, Tool, ToolCall,
};
use crate::llm::TranslateError;

/// Reads a `/v1/messages` body.
pub fn parse_request(body: &[u8]) -> Result<MessagesRequest, TranslateError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = format!("The request is not a valid Anthropic Messages request: {}.", e.inner());
        match path.as_str() {
            "" | "." => TranslateError::invalid(message),
            _ => TranslateError::new(path, message),
        }
    })
}

fn refuse(param: impl Into<String>, why: &str) -> TranslateError {
    let param = param.into();
    TranslateError::new(
        param.clone(),
        format!("The field '{param}' cannot be translated for this model's provider (it does not speak the Anthropic API): {why}."),
    )
}

/// An Anthropic Messages request as a canonical chat request.
pub fn to_chat_request(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let request = parse_request(body)?;
    if let Some(key) = request.rest.keys().next() {
        return Err(refuse(key.as_str(), "it has no equivalent outside Anthropic"));
    }
    match &request.thinking {
        None => {}
        Some(thinking) if thinking.get("type").and_then(Value::as_str) == Some("disabled") => {}
        Some(_) => {
            return Err(refuse(
                "thinking",
                "extended thinking is Anthropic's; remove 'thinking' (in Claude Code, set MAX_THINKING_TOKENS=0)",
            ))
        }
    }
    if request.top_k.is_some() {
        return Err(refuse("top_k", "OpenAI-style APIs have no top_k"));
    }
    let mut user = None;
    if let Some(metadata) = &request.metadata {
        if let Some(key) = metadata.rest.keys().next() {
            return Err(refuse(format!("metadata.{key}"), "only metadata.user_id is translated"));
        }
        user.clone_from(&metadata.user_id);
    }
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = &request.system {
        messages.push(Message::text(chat::Role::System, system_text(system)?));
    }
    for (i, message) in request.messages.iter().enumerate() {
        turn(message, i, &mut messages)?;
    }
    let tools = request.tools.as_deref().map(tools).transpose()?;
    let (tool_choice, parallel_tool_calls) = match &request.tool_choice {
        None => (None, None),
        Some(choice) => {
            if let Some(key) = choice.rest.keys().next() {
                return Err(refuse(format!("tool_choice.{key}"), "it is not part of tool_choice"));
            }
            let mode = |m: &str| Some(chat::ToolChoice::Mode(m.to_string()));
            let picked = match (choice.kind.as_str(), &choice.name) {
                ("auto", _) => mode("auto"),
                ("any", _) => mode("required"),
                ("none", _) => mode("none"),
                ("tool", Some(name)) => Some(chat::ToolChoice::Named(NamedToolChoice {
                    kind: "function".to_string(),
                    function: NamedFunction { name: name.clone() },
                })),
                _ => {
                    return Err(TranslateError::new(
                        "tool_choice",
                        "tool_choice must be auto, any, none, or tool with a name",
                    ))
                }
            };
            let parallel = (choice.disable_parallel_tool_use == Some(true) && tools.is_some()).then_some(false);
            (picked, parallel)
        }
    };
    Ok(ChatRequest {
        model: request.model,
        messages,
        stream: request.stream,
        stream_options: None,
        max_tokens: request.max_tokens,
        max_completion_tokens: None,
        temperature: request.temperature,
        top_p: request.top_p,
        stop: request.stop_sequences.filter(|s| !s.is_empty()).map(Stop::Many),
        tools,
        tool_choice,
        parallel_tool_calls,
        response_format: None,
        user,
        n: None,
        rest: Map::new(),
    })
}

fn system_text(system: &System) -> Result<String, TranslateError> {
    match system {
        System::Text(text) => Ok(text.clone()),
        System::Blocks(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                match block {
                    ContentBlock::Text { text, .. } => texts.push(text.as_str()),
                    _ => {
                        return Err(TranslateError::new(
                            format!("system[{i}]"),
                            "system blocks must be text",
                        ))
                    }
                }
            }
            Ok(texts.join("\n\n"))
        }
    }
}

fn tools(tools: &[ToolDef]) -> Result<Vec<Tool>, TranslateError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
            return Err(refuse(
                format!("tools[{i}]"),
                &format!("'{kind}' is one of Anthropic's server tools, which run only on Anthropic"),
            ));
        }
        if let Some(key) = tool.rest.keys().next() {
            return Err(refuse(
                format!("tools[{i}].{key}"),
                "it has no equivalent outside Anthropic",
            ));
        }
        out.push(Tool {
            kind: "function".to_string(),
            function: FunctionDef {
                name: tool.name.clone(),
                description: tool.description.clone(),
                parameters: tool.input_schema.clone(),
                strict: None,
            },
        });
    }
    Ok(out)
}

/// One Anthropic turn as canonical messages: a user turn's tool results become tool messages
/// (first, as OpenAI wants them right after the assistant's calls) and the rest a user
/// message; an assistant turn becomes one assistant message.
fn turn(message: &InputMessage, i: usize, out: &mut Vec<Message>) -> Result<(), TranslateError> {
    if let Some(key) = message.rest.keys().next() {
        return Err(refuse(
            format!("messages[{i}].{key}"),
            "messages have only role and content",
        ));
    }
    let blocks = match (&message.content, message.role) {
        (MessageContent::Text(text), Role::User) => {
            out.push(Message::text(chat::Role::User, text.clone()));
            return Ok(());
        }
        (MessageContent::Text(text), Role::Assistant) => {
            out.push(Message::text(chat::Role::Assistant, text.clone()));
            return Ok(());
        }
        (MessageContent::Blocks(blocks), _) => blocks,
    };
    match message.role {
        Role::User => user_turn(blocks, i, out),
        Role::Assistant => {
            out.push(assistant_turn(blocks, i)?);
            Ok(())
        }
    }
}

fn user_turn(blocks: &[ContentBlock], i: usize, out: &mut Vec<Message>) -> Result<(), TranslateError> {
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        match block {
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } => {
                let mut text = String::new();
                if *is_error == Some(true) {
                    text.push_str("Error: ");
                }
                match content {
                    None => {}
                    Some(ToolResultContent::Text(t)) => text.push_str(t),
                    Some(ToolResultContent::Blocks(inner)) => {
                        for (k, block) in inner.iter().enumerate() {
                            match block {
                                ContentBlock::Text { text: t, .. } => text.push_str(t),
                                // Tool messages hold text only: images a tool returned go to
                                // the user message that follows the tool messages.
                                other => parts.push(part(other, &format!("{at}.content[{k}]"))?),
                            }
                        }
                    }
                }
                let mut message = Message::text(chat::Role::Tool, text);
                message.tool_call_id = Some(tool_use_id.clone());
                out.push(message);
            }
            other => parts.push(part(other, &at)?),
        }
    }
    match parts.as_slice() {
        [] => {}
        [ContentPart::Text { text }] => out.push(Message::text(chat::Role::User, text.clone())),
        _ => {
            let mut message = Message::text(chat::Role::User, String::new());
            message.content = Some(Content::Parts(parts));
            out.push(message);
        }
    }
    Ok(())
}

/// A user content block as a canonical content part.
fn part(block: &ContentBlock, at: &str) -> Result<ContentPart, TranslateError> {
    match block {
        ContentBlock::Text { text, .. } => Ok(ContentPart::Text { text: text.clone() }),
        ContentBlock::Image { source, .. } => match source {
            ImageSource::Base64 { media_type, data } => Ok(image(format!("data:{media_type};base64,{data}"))),
            ImageSource::Url { url } => Ok(image(url.clone())),
            _ => Err(refuse(
                format!("{at}.source"),
                "only base64 and url image sources are translated (Anthropic file ids mean nothing elsewhere)",
            )),
        },
        ContentBlock::Document { source, title, .. } => match source {
            DocumentSource::Base64 { media_type, data } => Ok(ContentPart::File {
                file: serde_json::json!({
                    "filename": title.clone().unwrap_or_else(|| "document.pdf".to_string()),
                    "file_data": format!("data:{media_type};base64,{data}"),
                }),
            }),
            DocumentSource::Text { data, .. } => Ok(ContentPart::Text { text: data.clone() }),
            _ => Err(refuse(
                format!("{at}.source"),
                "only base64 (PDF) and text documents are translated; the gateway never fetches URLs",
            )),
        },
        ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } | ContentBlock::ToolUse { .. } => Err(
            TranslateError::new(at, "user messages cannot hold thinking or tool_use blocks"),
        ),
        ContentBlock::ToolResult { .. } | ContentBlock::Other => Err(refuse(
            at,
            "this content block type is Anthropic's own (server tools, search results, containers)",
        )),
    }
}

fn image(url: String) -> ContentPart {
    ContentPart::ImageUrl {
        image_url: ImageUrl { url, detail: None },
    }
}

fn assistant_turn(blocks: &[ContentBlock], i: usize) -> Result<Message, TranslateError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block {
            ContentBlock::Text { text: t, .. } => text.push_str(t),
            ContentBlock::ToolUse { id, name, input, .. } => calls.push(ToolCall {
                id: id.clone(),
                kind: "function".to_string(),
                function: FunctionCall {
                    name: name.clone(),
                    arguments: input.get().to_string(),
                },
            }),
            // Anthropic leaves earlier turns' thinking out of the context too.
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            _ => {
                return Err(refuse(
                    format!("messages[{i}].content[{j}]"),
                    "assistant turns are translated with text and tool_use blocks only",
                ))
            }
        }
    }
    let mut message = Message::text(chat::Role::Assistant, text);
    if !calls.is_empty() {
        if message.content.as_ref().is_some_and(|c| c.joined_text().is_empty()) {
            message.content = None;
        }
        message.tool_calls = Some(calls);
    }
    Ok(message)
}
