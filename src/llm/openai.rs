//! The OpenAI wire format, as a translation endpoint: reading OpenAI streams and errors into
//! the canonical form, and writing canonical chunks for OpenAI clients. (OpenAI to OpenAI is a
//! byte pass-through and never comes here.)

use bytes::BytesMut;
use serde::Deserialize;

use super::chat::ChatChunk;
use super::failure::{mentions_context_window, FailureClass, UpstreamError};
use super::stream::{write_sse, Frame, StreamDecoder, StreamEncoder};

/// Reads an OpenAI chat completions stream (`data: {chunk}` ... `data: [DONE]`).
#[derive(Default)]
pub struct OpenAiStreamDecoder {
    finished: bool,
    done: bool,
}

impl OpenAiStreamDecoder {
    pub fn new() -> Self {
        OpenAiStreamDecoder::default()
    }
}

impl StreamDecoder for OpenAiStreamDecoder {
    fn frame(&mut self, frame: Frame<'_>, out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        let Frame::Sse { data, .. } = frame else {
            return Err(UpstreamError::bad_response(
                "the provider sent a frame that is not a server-sent event",
            ));
        };
        let data = data.trim();
        if data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let value: serde_json::Value = serde_json::from_str(data).map_err(|e| {
            UpstreamError::bad_response(format!("the provider sent a stream event that is not JSON ({e})"))
        })?;
        if value.get("error").is_some() {
            return Err(error_from_value(500, &value));
        }
        let chunk: ChatChunk = serde_json::from_value(value).map_err(|e| {
            UpstreamError::bad_response(format!(
                "the provider sent a stream chunk this gateway cannot read ({e})"
            ))
        })?;
        if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
            self.finished = true;
        }
        out.push(chunk);
        Ok(())
    }

    fn end(&mut self, _out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        if self.done || self.finished {
            Ok(())
        } else {
            Err(UpstreamError::new(
                FailureClass::ServerError,
                502,
                "the provider's stream ended before it finished",
            ))
        }
    }
}

/// Writes canonical chunks as an OpenAI chat completions stream.
pub struct OpenAiStreamEncoder {
    include_usage: bool,
}

impl OpenAiStreamEncoder {
    /// `include_usage`: whether the client asked for the final usage chunk.
    pub fn new(include_usage: bool) -> Self {
        OpenAiStreamEncoder { include_usage }
    }
}

impl StreamEncoder for OpenAiStreamEncoder {
    fn chunk(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        if chunk.choices.is_empty() && chunk.usage.is_some() && !self.include_usage {
            return;
        }
        let mut chunk = chunk.clone();
        if !self.include_usage {
            chunk.usage = None;
        }
        if let Ok(text) = serde_json::to_string(&chunk) {
            write_sse(out, None, &text);
        }
    }

    fn done(&mut self, out: &mut BytesMut) {
        write_sse(out, None, "[DONE]");
    }

    fn error(&mut self, error: &UpstreamError, out: &mut BytesMut) {
        write_sse(out, None, &error_json(error).to_string());
    }
}

/// The OpenAI error envelope for an upstream error.
pub fn error_json(error: &UpstreamError) -> serde_json::Value {
    serde_json::json!({"error": {
        "message": error.message,
        "type": openai_type(error),
        "param": error.param,
        "code": error.code.clone().unwrap_or_else(|| default_code(error.class).to_string()),
    }})
}

fn openai_type(error: &UpstreamError) -> &'static str {
    match error.class {
        FailureClass::ClientError | FailureClass::ContextWindowExceeded => "invalid_request_error",
        FailureClass::RateLimited => "rate_limit_error",
        FailureClass::AuthFailed => "upstream_error",
        _ => "upstream_error",
    }
}

fn default_code(class: FailureClass) -> &'static str {
    match class {
        FailureClass::RateLimited => "rate_limit_exceeded",
        FailureClass::Overloaded => "upstream_overloaded",
        FailureClass::ServerError => "upstream_error",
        FailureClass::Timeout => "upstream_timeout",
        FailureClass::Unreachable => "upstream_unreachable",
        FailureClass::ContextWindowExceeded => "context_length_exceeded",
        FailureClass::AuthFailed => "upstream_auth_failed",
        FailureClass::ClientError => "invalid_request",
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    param: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// Classifies an OpenAI-shaped error answer (`{"error": {"message", "type", "param", "code"}}`).
pub fn classify_error(status: u16, body: &[u8]) -> UpstreamError {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => error_from_value(status, &value),
        Err(_) => UpstreamError::from_status(status, String::from_utf8_lossy(body).into_owned()),
    }
}

fn error_from_value(status: u16, value: &serde_json::Value) -> UpstreamError {
    let Ok(envelope) = serde_json::from_value::<Envelope>(value.clone()) else {
        return UpstreamError::from_status(status, value.to_string());
    };
    let body = envelope.error;
    let code = body.code.map(|c| match c {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    });
    let message = body.message.unwrap_or_default();
    let mut class = FailureClass::of_status(status);
    if matches!(status, 400 | 413) && mentions_context_window(code.as_deref(), &message) {
        class = FailureClass::ContextWindowExceeded;
    }
    UpstreamError {
        class,
        status,
        message,
        provider_type: body.kind,
        code,
        param: body.param,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::llm::stream::Framer;

    fn decode(text: &str) -> (Vec<ChatChunk>, Result<(), UpstreamError>) {
        let mut decoder = OpenAiStreamDecoder::new();
        let mut framer = crate::llm::stream::SseFramer::new();
        let mut out = Vec::new();
        let fed = framer.feed(text.as_bytes(), &mut |frame| decoder.frame(frame, &mut out));
        let result = fed.and_then(|()| decoder.end(&mut out));
        (out, result)
    }

    #[test]
    fn a_stream_is_read_until_done() {
        let (chunks, result) = decode(concat!(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n"
        ));
        assert_eq!(result, Ok(()));
        assert_eq!(chunks.len(), 2);
        assert!(chunks[0].has_content());
    }

    #[test]
    fn a_cut_stream_and_an_error_event_are_errors() {
        let (_, result) = decode(
            "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        );
        assert_eq!(result.map_err(|e| e.class), Err(FailureClass::ServerError));
        let (_, result) = decode("data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n");
        assert_eq!(result.map_err(|e| e.message), Err("overloaded".to_string()));
    }

    #[test]
    fn errors_are_classified() {
        let error = classify_error(
            400,
            br#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(error.class, FailureClass::ContextWindowExceeded);
        assert_eq!(error.param.as_deref(), Some("messages"));
        assert_eq!(classify_error(429, b"{}").class, FailureClass::RateLimited);
        assert_eq!(
            classify_error(502, b"<html>bad gateway</html>").class,
            FailureClass::ServerError
        );
    }

    #[test]
    fn the_usage_chunk_reaches_only_clients_that_asked() {
        let usage = ChatChunk::usage_only("c", "m", 0, crate::llm::chat::Usage::new(3, 4, None));
        let mut out = BytesMut::new();
        OpenAiStreamEncoder::new(false).chunk(&usage, &mut out);
        assert!(out.is_empty());
        OpenAiStreamEncoder::new(true).chunk(&usage, &mut out);
        assert!(std::str::from_utf8(&out).expect("utf8").contains("\"prompt_tokens\":3"));
    }
}
