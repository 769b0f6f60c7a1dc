//! The OpenAI Responses API (`POST /v1/responses`) as an inbound API: a request read into the
//! canonical chat request ([`request`], [`input`]), and a canonical answer written back as a
//! response object ([`response`]) or as the Responses event stream ([`stream`]).
//!
//! The translation is stateless: nothing is stored, so what needs a stored response
//! (`previous_response_id`, `conversation`, `item_reference` items, background mode) is
//! refused by name. Requests to `openai` and `azure-openai` providers never come here: they
//! pass through untouched but for `model`.

mod input;
pub mod request;
pub mod response;
pub mod stream;

#[cfg(test)]
mod tests;

pub use request::to_chat;
pub use response::{response_json, Echo};
pub use stream::ResponsesStreamEncoder;
