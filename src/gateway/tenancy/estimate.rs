//! An upper-ish estimate of a call's tokens before it is made, for reservations: about four
//! bytes of request per prompt token, and the request's own output cap (`max_tokens`,
//! `max_completion_tokens`) or [`DEFAULT_COMPLETION`] for the completion.

use serde::Deserialize;

use crate::compiler::tenancy::Tokens;
use crate::gateway::metrics::Endpoint;

/// Completion tokens reserved for a request that sets no cap.
pub const DEFAULT_COMPLETION: u64 = 256;

#[derive(Deserialize, Default)]
struct Caps {
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

pub fn tokens(body: &[u8], endpoint: Endpoint) -> Tokens {
    let prompt = (body.len() as u64).div_ceil(4).max(1);
    let completion = match endpoint {
        Endpoint::embeddings => 0,
        _ => {
            let caps: Caps = serde_json::from_slice(body).unwrap_or_default();
            caps.max_completion_tokens
                .or(caps.max_tokens)
                .unwrap_or(DEFAULT_COMPLETION)
        }
    };
    Tokens {
        prompt,
        completion,
        cached_prompt: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_follow_the_size_and_the_output_cap() {
        let body = br#"{"model":"m","messages":[],"max_tokens":50}"#;
        assert_eq!(
            tokens(body, Endpoint::chat_completions),
            Tokens {
                prompt: 11,
                completion: 50,
                cached_prompt: 0
            }
        );
        assert_eq!(tokens(b"{}", Endpoint::chat_completions).completion, DEFAULT_COMPLETION);
        assert_eq!(tokens(b"{}", Endpoint::embeddings).completion, 0);
    }
}
