//! `input` items into canonical messages: messages with their content parts, function calls
//! (joined into the assistant message they belong to) and function call outputs.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::llm::chat::{Content, ContentPart, FunctionCall, ImageUrl, Message, Role, ToolCall};
use crate::llm::{TranslateError, Unsupported};

/// `input`: one user message as a string, or a list of items.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

/// Fields of an item that describe an earlier answer and carry nothing for the model.
const ITEM_BOOKKEEPING: [&str; 4] = ["id", "status", "type", "phase"];

#[derive(Deserialize)]
struct MessageItem {
    role: String,
    content: MessageContent,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Deserialize)]
struct FunctionCallItem {
    call_id: String,
    name: String,
    arguments: String,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
struct FunctionCallOutputItem {
    call_id: String,
    output: MessageContent,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Appends the messages `items` stand for to `messages`.
pub fn input_messages(
    items: &[Value],
    messages: &mut Vec<Message>,
    unsupported: &mut Unsupported<'_>,
) -> Result<(), TranslateError> {
    for (index, item) in items.iter().enumerate() {
        let at = format!("input[{index}]");
        let kind = match item.get("type") {
            None | Some(Value::Null) if item.get("role").is_some() => "message",
            Some(Value::String(kind)) => kind.as_str(),
            _ => return Err(TranslateError::new(at.clone(), format!("{at} has no 'type'."))),
        };
        match kind {
            "message" => {
                let item: MessageItem = parse(item, &at)?;
                refuse_extra(&item.rest, &at)?;
                messages.push(message(item, &at)?);
            }
            "function_call" => {
                let item: FunctionCallItem = parse(item, &at)?;
                refuse_extra(&item.rest, &at)?;
                let call = ToolCall {
                    id: item.call_id,
                    kind: "function".to_string(),
                    function: FunctionCall {
                        name: item.name,
                        arguments: item.arguments,
                    },
                };
                match messages.last_mut() {
                    // Calls after an assistant message (its text, or calls before them) are
                    // that message's: one assistant turn with parallel calls.
                    Some(last) if last.role == Role::Assistant => last.tool_calls.get_or_insert_with(Vec::new).push(call),
                    _ => {
                        let mut assistant = Message::text(Role::Assistant, "");
                        assistant.content = None;
                        assistant.tool_calls = Some(vec![call]);
                        messages.push(assistant);
                    }
                }
            }
            "function_call_output" => {
                let item: FunctionCallOutputItem = parse(item, &at)?;
                refuse_extra(&item.rest, &at)?;
                let mut tool = Message::text(Role::Tool, "");
                tool.content = Some(content(item.output, &format!("{at}.output"))?);
                tool.tool_call_id = Some(item.call_id);
                messages.push(tool);
            }
            "item_reference" => {
                return Err(TranslateError::new(
                    at.clone(),
                    format!("{at} refers to an item stored by OpenAI, and this gateway stores none (only models served by an openai or azure-openai provider pass it through). Send the item itself instead."),
                ))
            }
            "reasoning" => unsupported.param(
                &at,
                "reasoning items from an earlier OpenAI response mean nothing to this provider's model",
            )?,
            other => {
                return Err(TranslateError::new(
                    at.clone(),
                    format!("{at} is a '{other}' item, which this model cannot take: only messages, function_call and function_call_output items translate (built-in tools run only on models served by an openai or azure-openai provider)."),
                ))
            }
        }
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(item: &Value, at: &str) -> Result<T, TranslateError> {
    serde_json::from_value(item.clone())
        .map_err(|e| TranslateError::new(at, format!("{at} is not a valid input item: {e}.")))
}

fn refuse_extra(rest: &Map<String, Value>, at: &str) -> Result<(), TranslateError> {
    match rest
        .iter()
        .find(|(key, value)| !value.is_null() && !ITEM_BOOKKEEPING.contains(&key.as_str()))
    {
        Some((key, _)) => Err(TranslateError::new(
            format!("{at}.{key}"),
            format!("The field '{key}' of {at} cannot be translated for this model."),
        )),
        None => Ok(()),
    }
}

fn message(item: MessageItem, at: &str) -> Result<Message, TranslateError> {
    let role = match item.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" => Role::System,
        "developer" => Role::Developer,
        other => {
            return Err(TranslateError::new(
                format!("{at}.role"),
                format!("The role '{other}' of {at} is not one of user, assistant, system or developer."),
            ))
        }
    };
    let mut message = Message::text(role, "");
    let content = content(item.content, &format!("{at}.content"))?;
    if role != Role::Assistant {
        message.content = Some(content);
        return Ok(message);
    }
    // An earlier answer: its text, and its refusal apart.
    let mut text = String::new();
    let mut refusal = String::new();
    for part in content.parts() {
        match part {
            ContentPart::Text { text: t } => text.push_str(&t),
            ContentPart::Refusal { refusal: r } => refusal.push_str(&r),
            _ => {
                return Err(TranslateError::new(
                    format!("{at}.content"),
                    format!("An assistant message ({at}) can hold only text and refusals."),
                ))
            }
        }
    }
    message.content = (!text.is_empty()).then_some(Content::Text(text));
    message.refusal = (!refusal.is_empty()).then_some(refusal);
    Ok(message)
}

/// Message or tool-output content: text, images (data or http URLs, passed on for the
/// provider's translator to inline or refuse) and inline files.
fn content(content: MessageContent, at: &str) -> Result<Content, TranslateError> {
    let parts = match content {
        MessageContent::Text(text) => return Ok(Content::Text(text)),
        MessageContent::Parts(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        let at = format!("{at}[{index}]");
        let text = |key: &str| part.get(key).and_then(Value::as_str).map(str::to_string);
        let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
        out.push(match kind {
            "input_text" | "output_text" | "text" => ContentPart::Text {
                text: text("text").ok_or_else(|| TranslateError::new(at.clone(), format!("{at} has no 'text'.")))?,
            },
            "refusal" => ContentPart::Refusal {
                refusal: text("refusal").unwrap_or_default(),
            },
            "input_image" => match (text("image_url"), text("file_id")) {
                (Some(url), _) => ContentPart::ImageUrl {
                    image_url: ImageUrl {
                        url,
                        detail: text("detail"),
                    },
                },
                (None, Some(_)) => return Err(stored_file(&at)),
                (None, None) => {
                    return Err(TranslateError::new(at.clone(), format!("{at} has no 'image_url'.")))
                }
            },
            "input_file" => {
                if text("file_id").is_some() {
                    return Err(stored_file(&at));
                }
                let Some(file_data) = text("file_data") else {
                    return Err(TranslateError::new(
                        at.clone(),
                        format!("{at} has no 'file_data': the gateway never fetches a 'file_url'; send the file inline as a data URL in 'file_data'."),
                    ));
                };
                let mut file = Map::new();
                file.insert("file_data".to_string(), Value::String(file_data));
                if let Some(filename) = text("filename") {
                    file.insert("filename".to_string(), Value::String(filename));
                }
                ContentPart::File {
                    file: Value::Object(file),
                }
            }
            other => {
                return Err(TranslateError::new(
                    at.clone(),
                    format!("{at} is a '{other}' part, which this model cannot take: use input_text, input_image or input_file."),
                ))
            }
        });
    }
    Ok(Content::Parts(out))
}

fn stored_file(at: &str) -> TranslateError {
    TranslateError::new(
        at,
        format!("{at} names a file stored by OpenAI ('file_id'), which this model cannot read; send the data inline instead (a data URL)."),
    )
}
