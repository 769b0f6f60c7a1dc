//! LLM API formats and the translations between them, as pure functions over typed messages
//! (no I/O): the gateway's `providers` and `surfaces` call these.
//!
//! Every translation goes through one canonical form, OpenAI Chat Completions ([`chat`]):
//! an inbound API (Anthropic Messages, OpenAI Responses) is read into it, and a provider's API
//! (Anthropic, Gemini, Bedrock Converse) is written from it and read back into it. Three
//! inbound and six outbound formats thus need nine translators, not eighteen. Same-format
//! paths (OpenAI to OpenAI, Anthropic to Anthropic) never come here: they stay byte
//! pass-through.

pub mod anthropic;
pub mod bedrock;
pub mod chat;
pub mod compact;
pub mod embeddings;
pub mod failure;
pub mod gemini;
pub mod json_string;
pub mod openai;
pub mod openai_json;
pub mod responses;
pub mod stream;
mod unsupported;

pub use failure::{FailureClass, UpstreamError};
pub use stream::{Accumulator, Frame, Framer, SseFramer, StreamDecoder, StreamEncoder};
pub use unsupported::{is_neutral, TranslateError, TranslateOptions, Unsupported};
