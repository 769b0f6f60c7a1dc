//! Canonical content parts (text, images, files) as Anthropic content blocks: data URLs
//! inline, http(s) image URLs as URL sources (Anthropic fetches them; the gateway never
//! does), PDF and plain-text files as documents. What Anthropic cannot take is refused naming
//! the part.

use base64::Engine;
use serde_json::Value;

use super::types::{ContentBlock, DocumentSource, ImageSource};
use crate::llm::chat::{self, Content, ContentPart};
use crate::llm::TranslateError;

/// Image media types Anthropic accepts.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// User (and tool) content parts as Anthropic blocks. `path` names the content for errors.
pub fn parts_to_blocks(content: &Content, path: &str) -> Result<Vec<ContentBlock>, TranslateError> {
    let parts = match content {
        Content::Text(text) => return Ok(vec![ContentBlock::text(text.clone())]),
        Content::Parts(parts) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let at = || format!("{path}[{j}]");
        match part {
            ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                if !text.is_empty() {
                    blocks.push(ContentBlock::text(text.clone()));
                }
            }
            ContentPart::ImageUrl { image_url } => blocks.push(image_block(image_url, &at())?),
            ContentPart::InputAudio { .. } => {
                return Err(TranslateError::new(at(), "Anthropic models take no audio input"))
            }
            ContentPart::File { file } => blocks.push(file_block(file, &at())?),
        }
    }
    Ok(blocks)
}

fn image_block(image: &chat::ImageUrl, at: &str) -> Result<ContentBlock, TranslateError> {
    let source = if let Some((media_type, data)) = image.as_data() {
        if !IMAGE_TYPES.contains(&media_type) {
            return Err(TranslateError::new(
                at,
                format!("Anthropic takes JPEG, PNG, GIF and WebP images; this image is {media_type}"),
            ));
        }
        ImageSource::Base64 {
            media_type: media_type.to_string(),
            data: data.to_string(),
        }
    } else if image.url.starts_with("https://") || image.url.starts_with("http://") {
        // Anthropic fetches the URL itself; the gateway never does.
        ImageSource::Url { url: image.url.clone() }
    } else {
        return Err(TranslateError::new(
            at,
            "an image must be a base64 data URL (data:image/png;base64,...) or an http(s) URL",
        ));
    };
    Ok(ContentBlock::Image {
        source,
        cache_control: None,
    })
}

/// An OpenAI `file` part (`file_data` as a data URL) as a document: PDFs as base64, plain
/// text as text.
fn file_block(file: &Value, at: &str) -> Result<ContentBlock, TranslateError> {
    let data_url = file.get("file_data").and_then(Value::as_str).ok_or_else(|| {
        TranslateError::new(
            at,
            "Anthropic cannot read OpenAI file ids; send the file inline as file_data (a base64 data URL)",
        )
    })?;
    let image = chat::ImageUrl {
        url: data_url.to_string(),
        detail: None,
    };
    let (media_type, data) = image.as_data().ok_or_else(|| {
        TranslateError::new(
            at,
            "file_data must be a base64 data URL (data:application/pdf;base64,...)",
        )
    })?;
    let source = match media_type {
        "application/pdf" => DocumentSource::Base64 {
            media_type: media_type.to_string(),
            data: data.to_string(),
        },
        "text/plain" => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|_| TranslateError::new(at, "file_data is not valid base64"))?;
            let text =
                String::from_utf8(bytes).map_err(|_| TranslateError::new(at, "a text/plain file must be UTF-8"))?;
            DocumentSource::Text {
                media_type: media_type.to_string(),
                data: text,
            }
        }
        other => {
            return Err(TranslateError::new(
                at,
                format!("Anthropic reads PDF and plain-text documents; this file is {other}"),
            ))
        }
    };
    Ok(ContentBlock::Document {
        source,
        title: file.get("filename").and_then(Value::as_str).map(str::to_string),
        context: None,
        citations: None,
        cache_control: None,
    })
}
