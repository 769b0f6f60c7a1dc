//! `streamGenerateContent?alt=sse`: each server-sent event is a whole `GenerateContentResponse`
//! holding the next piece of each candidate. Text arrives in pieces, a function call whole
//! (one tool-call delta with its complete arguments), the finish reason with the last piece,
//! and usage in every event (the last one counts; it is emitted once, at the end). A stream
//! that ends before every candidate has a finish reason was cut.

use serde_json::{Map, Value};

use super::error::error_event;
use super::response::{arguments, blocked, call_id, completion_id, finish_reason, now, usage, Read};
use super::types::{GenerateContentResponse, UsageMetadata};
use crate::llm::chat::{ChatChunk, ChunkChoice, Delta, FinishReason, FunctionCallDelta, ToolCallDelta};
use crate::llm::{FailureClass, Frame, StreamDecoder, UpstreamError};

/// More candidates than Gemini ever generates (`candidateCount` is at most 8).
const MAX_CANDIDATES: u32 = 64;

/// Reads Gemini's event stream into canonical chunks.
pub struct GeminiStreamDecoder {
    /// The model asked for, until an event names its version.
    model: String,
    id: Option<String>,
    created: i64,
    candidates: Vec<CandidateState>,
    usage: Option<UsageMetadata>,
}

#[derive(Clone, Copy, Default)]
struct CandidateState {
    started: bool,
    calls: u32,
    finished: bool,
}

impl GeminiStreamDecoder {
    pub fn new(model: &str) -> Self {
        GeminiStreamDecoder {
            model: model.to_string(),
            id: None,
            created: now(),
            candidates: Vec::new(),
            usage: None,
        }
    }

    fn chunk(&self, index: u32, delta: Delta, finish_reason: Option<FinishReason>) -> ChatChunk {
        let choice = ChunkChoice {
            index,
            delta,
            finish_reason,
            logprobs: None,
        };
        ChatChunk::with_choice(
            self.id.as_deref().unwrap_or_default(),
            &self.model,
            self.created,
            choice,
        )
    }

    fn state(&mut self, index: u32) -> &mut CandidateState {
        let index = index as usize;
        if self.candidates.len() <= index {
            self.candidates.resize(index + 1, CandidateState::default());
        }
        &mut self.candidates[index]
    }

    /// The first chunk of a candidate names the role.
    fn start(&mut self, index: u32, out: &mut Vec<ChatChunk>) {
        if !self.state(index).started {
            self.state(index).started = true;
            let role = Delta {
                role: Some("assistant".to_string()),
                ..Delta::default()
            };
            out.push(self.chunk(index, role, None));
        }
    }

    fn finished(&self) -> bool {
        self.candidates.iter().any(|c| c.started) && self.candidates.iter().all(|c| c.finished || !c.started)
    }

    fn event(&mut self, event: GenerateContentResponse, out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        if self.id.is_none() {
            self.id = Some(completion_id(event.response_id.as_deref()));
        }
        if let Some(version) = &event.model_version {
            self.model.clone_from(version);
        }
        if event.usage_metadata.is_some() {
            self.usage = event.usage_metadata;
        }
        if event.candidates.is_empty() {
            if let Some(reason) = blocked(&event) {
                self.start(0, out);
                let delta = Delta {
                    refusal: Some(reason),
                    ..Delta::default()
                };
                out.push(self.chunk(0, delta, Some(FinishReason::ContentFilter)));
                self.state(0).finished = true;
            }
            return Ok(());
        }
        for (position, candidate) in event.candidates.iter().enumerate() {
            let index = candidate.index.unwrap_or(position as u32);
            if index >= MAX_CANDIDATES {
                return Err(UpstreamError::bad_response(format!(
                    "Gemini sent a stream event for candidate {index}, beyond any candidateCount"
                )));
            }
            if self.state(index).finished {
                continue;
            }
            self.start(index, out);
            let read = Read::parts(candidate.parts());
            let mut delta = Delta::default();
            if !read.text.is_empty() {
                delta.content = Some(read.text);
            }
            if !read.reasoning.is_empty() {
                let mut rest = Map::new();
                rest.insert("reasoning_content".to_string(), Value::String(read.reasoning));
                delta.rest = rest;
            }
            if !read.calls.is_empty() {
                let state = self.state(index);
                let first = state.calls;
                state.calls += read.calls.len() as u32;
                let calls = read.calls.iter().zip(first..).map(|(call, index)| ToolCallDelta {
                    index,
                    id: Some(call_id(call)),
                    kind: Some("function".to_string()),
                    function: Some(FunctionCallDelta {
                        name: Some(call.name.clone()),
                        arguments: Some(arguments(call)),
                    }),
                });
                delta.tool_calls = Some(calls.collect());
            }
            if delta != Delta::default() {
                out.push(self.chunk(index, delta, None));
            }
            if let Some(reason) = candidate.finish_reason.as_deref() {
                let called = self.state(index).calls > 0;
                let finish = finish_reason(reason, called, candidate)?;
                out.push(self.chunk(index, Delta::default(), Some(finish)));
                self.state(index).finished = true;
            }
        }
        Ok(())
    }
}

impl StreamDecoder for GeminiStreamDecoder {
    fn frame(&mut self, frame: Frame<'_>, out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        let Frame::Sse { data, .. } = frame else {
            return Err(UpstreamError::bad_response(
                "Gemini sent a frame that is not a server-sent event",
            ));
        };
        let data = data.trim();
        if data.is_empty() {
            return Ok(());
        }
        let event: GenerateContentResponse = serde_json::from_str(data).map_err(|e| {
            UpstreamError::bad_response(format!("Gemini sent a stream event this gateway cannot read ({e})"))
        })?;
        // An event with nothing of an answer in it may be an error (rare: read it again).
        if event.candidates.is_empty() && event.prompt_feedback.is_none() {
            if let Some(error) = error_event(data) {
                return Err(error);
            }
        }
        self.event(event, out)
    }

    fn end(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), UpstreamError> {
        if !self.finished() {
            return Err(UpstreamError::new(
                FailureClass::ServerError,
                502,
                "Gemini's stream ended before the answer finished (no finishReason)",
            ));
        }
        if let Some(metadata) = self.usage.take() {
            let id = self.id.clone().unwrap_or_default();
            out.push(ChatChunk::usage_only(&id, &self.model, self.created, usage(&metadata)));
        }
        Ok(())
    }
}
