//! The conversation: system and developer messages become `systemInstruction`; user and
//! assistant messages become `user` and `model` turns; tool calls become `functionCall` parts
//! and tool results `functionResponse` parts, named after the call they answer (Gemini matches
//! results to calls by function name, so the call ids of the conversation are mapped to names).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::types::{Blob, Content, FileData, FunctionCall, FunctionResponse, Part};
use crate::llm::chat::{Content as ChatContent, ContentPart, ImageUrl, Message, Role};
use crate::llm::is_neutral;
use crate::llm::{TranslateError, Unsupported};

/// The signature Gemini documents for function calls whose real thought signature is not
/// known (a conversation from another model, or a client that keeps only OpenAI fields):
/// Gemini 3 refuses a function call turn without one.
pub const UNKNOWN_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

/// `(systemInstruction, contents)` for the canonical messages.
pub fn conversation(
    messages: &[Message],
    unsupported: &mut Unsupported<'_>,
) -> Result<(Option<Content>, Vec<Content>), TranslateError> {
    let mut system: Vec<Part> = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    // The function name of each tool call id seen so far.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (i, message) in messages.iter().enumerate() {
        for (key, value) in &message.rest {
            // An earlier answer's reasoning (another provider's thinking): Gemini reads none back.
            let reasoning = key == "reasoning_content" && message.role == Role::Assistant;
            if !is_neutral(value) && !reasoning {
                unsupported.param(
                    &format!("messages[{i}].{key}"),
                    "the gateway cannot translate it for the Gemini API",
                )?;
            }
        }
        // A tool message's name is its function's (sent by LangChain, among others).
        if message.name.as_deref().is_some_and(|n| !n.is_empty()) && message.role != Role::Tool {
            unsupported.param(&format!("messages[{i}].name"), "Gemini turns have no author names")?;
        }
        let (role, parts) = match message.role {
            Role::System | Role::Developer => {
                let text = system_text(message, i)?;
                if !text.is_empty() {
                    system.push(Part::text(text));
                }
                continue;
            }
            Role::User => ("user", user_parts(message.content.as_ref(), i, unsupported)?),
            Role::Assistant => ("model", model_parts(message, i, &mut names)?),
            Role::Tool => ("user", vec![tool_result(message, i, &names)?]),
            Role::Function => {
                return Err(TranslateError::new(
                    format!("messages[{i}].role"),
                    "the deprecated function role is not translated; use tool messages that answer tool_calls",
                ))
            }
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => contents.push(Content {
                role: Some(role.to_string()),
                parts,
            }),
        }
    }
    let system = (!system.is_empty()).then_some(Content {
        role: None,
        parts: system,
    });
    Ok((system, contents))
}

/// A system or developer message's text (Gemini's system instruction takes text only).
fn system_text(message: &Message, i: usize) -> Result<String, TranslateError> {
    if let Some(ChatContent::Parts(parts)) = &message.content {
        if let Some(j) = parts.iter().position(|p| !matches!(p, ContentPart::Text { .. })) {
            return Err(TranslateError::new(
                format!("messages[{i}].content[{j}]"),
                "system and developer messages to Gemini take text parts only",
            ));
        }
    }
    Ok(message
        .content
        .as_ref()
        .map(ChatContent::joined_text)
        .unwrap_or_default())
}

/// A user message's parts: text, images, audio and files.
fn user_parts(
    content: Option<&ChatContent>,
    i: usize,
    unsupported: &mut Unsupported<'_>,
) -> Result<Vec<Part>, TranslateError> {
    let Some(content) = content else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (j, part) in content.parts().into_iter().enumerate() {
        let at = || format!("messages[{i}].content[{j}]");
        match part {
            ContentPart::Text { text } if text.is_empty() => {}
            ContentPart::Text { text } => out.push(Part::text(text)),
            ContentPart::ImageUrl { image_url } => {
                if image_url.detail.as_deref().is_some_and(|d| d != "auto") {
                    unsupported.param(
                        &format!("{}.image_url.detail", at()),
                        "Gemini sets the image resolution per request, not per image",
                    )?;
                }
                out.push(image(&image_url, &at())?);
            }
            ContentPart::InputAudio { input_audio } => out.push(audio(&input_audio, &at())?),
            ContentPart::File { file } => out.push(file_part(&file, &at())?),
            ContentPart::Refusal { .. } => {
                return Err(TranslateError::new(
                    at(),
                    "a refusal part belongs to assistant messages",
                ))
            }
        }
    }
    Ok(out)
}

/// An image: a data URL inline; an https or `gs://` URL as file data, which Gemini fetches
/// itself. The gateway never fetches a URL.
fn image(image_url: &ImageUrl, at: &str) -> Result<Part, TranslateError> {
    if let Some((mime_type, data)) = image_url.as_data() {
        return Ok(inline(mime_type, data));
    }
    let url = image_url.url.as_str();
    if url.starts_with("https://") || url.starts_with("gs://") {
        return Ok(Part {
            file_data: Some(FileData {
                mime_type: image_type(url).map(str::to_string),
                file_uri: url.to_string(),
            }),
            ..Part::default()
        });
    }
    Err(TranslateError::new(
        format!("{at}.image_url.url"),
        "Gemini fetches only https:// and gs:// URLs itself, and the gateway never fetches a URL: send the image as a base64 data URL (data:image/png;base64,...)",
    ))
}

/// The image type a URL's file extension names.
fn image_type(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url).to_ascii_lowercase();
    let extension = path.rsplit_once('.').map(|(_, e)| e)?;
    Some(match extension {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}

fn inline(mime_type: &str, data: &str) -> Part {
    Part {
        inline_data: Some(Blob {
            mime_type: mime_type.to_string(),
            data: data.to_string(),
        }),
        ..Part::default()
    }
}

/// `input_audio: {data, format}` (base64 wav or mp3) inline.
fn audio(input_audio: &Value, at: &str) -> Result<Part, TranslateError> {
    let data = input_audio["data"].as_str();
    let mime_type = match input_audio["format"].as_str() {
        Some("wav") => "audio/wav",
        Some("mp3") => "audio/mp3",
        _ => {
            return Err(TranslateError::new(
                format!("{at}.input_audio.format"),
                "input_audio.format must be wav or mp3",
            ))
        }
    };
    match data {
        Some(data) => Ok(inline(mime_type, data)),
        None => Err(TranslateError::new(
            format!("{at}.input_audio.data"),
            "input_audio.data must be the base64 audio",
        )),
    }
}

/// `file: {file_data}` (a base64 data URL) inline; an OpenAI `file_id` means nothing to Gemini.
fn file_part(file: &Value, at: &str) -> Result<Part, TranslateError> {
    if file.get("file_id").is_some_and(|v| !v.is_null()) {
        return Err(TranslateError::new(
            format!("{at}.file.file_id"),
            "an OpenAI file id means nothing to Gemini: send the file as file_data (a base64 data URL)",
        ));
    }
    let url = ImageUrl {
        url: file["file_data"].as_str().unwrap_or_default().to_string(),
        detail: None,
    };
    match url.as_data() {
        Some((mime_type, data)) => Ok(inline(mime_type, data)),
        None => Err(TranslateError::new(
            format!("{at}.file.file_data"),
            "file.file_data must be a base64 data URL (data:application/pdf;base64,...)",
        )),
    }
}

/// An assistant message's parts: its text, then its tool calls as function calls.
fn model_parts<'m>(
    message: &'m Message,
    i: usize,
    names: &mut HashMap<&'m str, &'m str>,
) -> Result<Vec<Part>, TranslateError> {
    let mut out = Vec::new();
    if let Some(content) = &message.content {
        for part in content.parts() {
            match part {
                ContentPart::Text { text } | ContentPart::Refusal { refusal: text } if !text.is_empty() => {
                    out.push(Part::text(text))
                }
                ContentPart::Text { .. } | ContentPart::Refusal { .. } => {}
                _ => {
                    return Err(TranslateError::new(
                        format!("messages[{i}].content"),
                        "assistant messages take text and refusal parts only",
                    ))
                }
            }
        }
    }
    if let Some(refusal) = message.refusal.as_deref().filter(|r| !r.is_empty()) {
        if out.is_empty() {
            out.push(Part::text(refusal));
        }
    }
    for (j, call) in message.tool_calls.iter().flatten().enumerate() {
        let arguments = call.function.arguments.trim();
        let args: Value = if arguments.is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments).map_err(|e| {
                TranslateError::new(
                    format!("messages[{i}].tool_calls[{j}].function.arguments"),
                    format!("the arguments are not JSON ({e})"),
                )
            })?
        };
        if !args.is_object() {
            return Err(TranslateError::new(
                format!("messages[{i}].tool_calls[{j}].function.arguments"),
                "Gemini takes function arguments as a JSON object",
            ));
        }
        names.insert(&call.id, &call.function.name);
        out.push(Part {
            function_call: Some(FunctionCall {
                id: Some(call.id.clone()),
                name: call.function.name.clone(),
                args: Some(args),
            }),
            // Only the first call of a turn carries the signature.
            thought_signature: (j == 0).then(|| UNKNOWN_THOUGHT_SIGNATURE.to_string()),
            ..Part::default()
        });
    }
    Ok(out)
}

/// A tool message as a function response. Gemini wants an object: a result that is a JSON
/// object is passed as is, anything else as `{"content": <the text>}`.
fn tool_result(message: &Message, i: usize, names: &HashMap<&str, &str>) -> Result<Part, TranslateError> {
    let id = message.tool_call_id.as_deref().unwrap_or_default();
    let Some(name) = names
        .get(id)
        .copied()
        .or(message.name.as_deref().filter(|n| !n.is_empty()))
    else {
        return Err(TranslateError::new(
            format!("messages[{i}].tool_call_id"),
            format!("the tool message answers the call '{id}', which no earlier assistant message made; Gemini needs the function name of each result"),
        ));
    };
    if let Some(ChatContent::Parts(parts)) = &message.content {
        if let Some(j) = parts.iter().position(|p| !matches!(p, ContentPart::Text { .. })) {
            return Err(TranslateError::new(
                format!("messages[{i}].content[{j}]"),
                "tool results to Gemini take text parts only",
            ));
        }
    }
    let text = message
        .content
        .as_ref()
        .map(ChatContent::joined_text)
        .unwrap_or_default();
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({ "content": text }),
    };
    Ok(Part {
        function_response: Some(FunctionResponse {
            id: (!id.is_empty()).then(|| id.to_string()),
            name: name.to_string(),
            response,
        }),
        ..Part::default()
    })
}
