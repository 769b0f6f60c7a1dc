//! The Anthropic Messages API (`/v1/messages`), both ways:
//! - as a provider's API (`type: anthropic`): canonical requests written as Messages requests
//!   ([`to_messages_request`]), answers and streams read back ([`from_messages_response`],
//!   [`AnthropicStreamDecoder`]), errors classified ([`classify_error`]);
//! - as a client API (Anthropic clients of a non-Anthropic alias): Messages requests read into
//!   the canonical form ([`to_chat_request`]), canonical answers and streams written back
//!   ([`to_messages_response`], [`AnthropicStreamEncoder`]).
//!
//! Anthropic to Anthropic never comes here: it is a byte pass-through.

mod content;
mod decode;
mod encode;
mod error;
mod estimate;
mod inbound;
mod outbound;
mod response;
pub mod types;

#[cfg(test)]
mod tests;

pub use decode::AnthropicStreamDecoder;
pub use encode::AnthropicStreamEncoder;
pub use error::{classify_error, error_json, error_text, status_of_type, type_of_status};
pub use estimate::estimate_input_tokens;
pub use inbound::{parse_request, to_chat_request};
pub use outbound::to_messages_request;
pub use response::{chat_usage, finish_reason, from_messages_response, stop_reason, to_messages_response};
