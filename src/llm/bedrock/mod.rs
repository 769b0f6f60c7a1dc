//! Amazon Bedrock: the Converse and ConverseStream APIs, their errors, the AWS event stream
//! that carries ConverseStream, and Titan text embeddings — as pure translations to and from
//! the canonical form (the gateway's `providers::bedrock` does the I/O and the signing).
//!
//! Decisions a user can notice, in one place:
//! - `system` and `developer` messages become Converse's top-level `system` blocks, in order,
//!   wherever they stand in the conversation (Converse has no system turn).
//! - Consecutive messages of one Converse role are merged into one turn: several `tool`
//!   results (and a user message after them) become one user turn, as Converse requires.
//! - Images: `data:` URLs become inline bytes (png, jpeg, gif, webp); an http(s) URL is a 400
//!   naming the part, because Converse does not fetch URLs and the gateway never does.
//! - `tool_choice: "none"` omits the tools when the conversation has no tool calls (the model
//!   then cannot call one, which is what `none` means); with tool calls in the history Converse
//!   needs the tool definitions, so `none` is refused by name (or dropped with
//!   `dropUnsupportedParams`, leaving the model free to call tools).
//! - `response_format: json_schema` becomes `outputConfig.textFormat` (Converse's structured
//!   output); `json_object` has no Converse equivalent and is refused by name.
//! - `user` becomes `requestMetadata.user` (it shows in Bedrock's invocation logs).
//! - Usage: Bedrock reports `inputTokens` without the cache reads and writes, so
//!   `prompt_tokens` = `inputTokens + cacheReadInputTokens + cacheWriteInputTokens` and
//!   `cached_tokens` = `cacheReadInputTokens`.
//! - Titan embeddings take one text per call: a list is sent as sequential calls (at most
//!   [`titan::MAX_INPUTS`] texts), and usage is their sum.

pub mod error;
pub mod eventstream;
pub mod request;
pub mod response;
pub mod stream;
pub mod titan;

pub use error::{classify, classify_error};
pub use eventstream::EventStreamFramer;
pub use request::converse_request;
pub use response::{chat_response, finish_reason, usage};
pub use stream::ConverseStreamDecoder;
