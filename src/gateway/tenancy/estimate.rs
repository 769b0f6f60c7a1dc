//! An upper-ish estimate of a call's tokens before it is made, for reservations: about four
//! bytes of request per prompt token, and the request's own output cap (`max_tokens`,
//! `max_completion_tokens`, the Responses API's `max_output_tokens`) or [`DEFAULT_COMPLETION`] for the completion.

use crate::compiler::tenancy::Tokens;
use crate::gateway::metrics::Endpoint;

/// Completion tokens reserved for a request that sets no cap.
pub const DEFAULT_COMPLETION: u64 = 256;

/// `body_len`: the request body's size; `output_cap`: its output cap, read by the body probe
/// ([`crate::gateway::body::Probe::output_cap`]), so the body is parsed once per request.
pub fn tokens(body_len: usize, output_cap: Option<u64>, endpoint: Endpoint) -> Tokens {
    if endpoint == Endpoint::count_tokens {
        // Counting generates nothing and is not billed: nothing to reserve or charge.
        return Tokens::default();
    }
    let prompt = (body_len as u64).div_ceil(4).max(1);
    let completion = match endpoint {
        Endpoint::embeddings => 0,
        _ => output_cap.unwrap_or(DEFAULT_COMPLETION),
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

    fn tokens(body: &[u8], endpoint: Endpoint) -> Tokens {
        let cap = crate::gateway::body::probe(body).ok().and_then(|p| p.output_cap);
        super::tokens(body.len(), cap, endpoint)
    }

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
        let responses = br#"{"model":"m","input":"hi","max_output_tokens":40}"#;
        assert_eq!(tokens(responses, Endpoint::responses).completion, 40);
        assert_eq!(
            tokens(br#"{"max_tokens": 9, "messages": []}"#, Endpoint::count_tokens),
            Tokens::default()
        );
    }
}
