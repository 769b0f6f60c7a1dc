//! The client APIs' request reading (`gateway::surfaces::Inbound::to_chat`) and every provider
//! API's request writing (`Wire::chat_request`), on any request body.
//!
//! Surfaces are found through `surfaces::inbound` for every endpoint, and wires as in
//! [`super::wire`], so a new surface (Anthropic Messages, Responses) or translator is fuzzed
//! here as soon as the gateway serves it, with no change to this file.

use crate::gateway::body::probe;
use crate::gateway::metrics::Endpoint;
use crate::gateway::surfaces::{inbound, OpenAiChat};
use crate::llm::chat::ChatRequest;

use super::wire::wires;

/// Input: one byte picking the endpoint (by its position in `Endpoint::ALL`), then the body.
///
/// Properties: never panics; a request a surface reads has the `model` and `stream` the
/// gateway's request probe reads from the same body (the probe routes and meters it; the
/// translation serves it); the canonical request written as JSON reads back the same; and
/// every provider API writes it (or refuses it with an error) as a JSON body.
pub fn surface_request(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let endpoint = Endpoint::ALL[usize::from(first) % Endpoint::ALL.len()];
    let Some(surface) = inbound(endpoint) else {
        return;
    };
    let Ok(request) = surface.to_chat(body) else {
        return;
    };
    if let Ok(probed) = probe(body) {
        assert_eq!(
            probed.model, request.model,
            "{endpoint:?}: the probe and the surface read another model"
        );
        assert_eq!(
            probed.stream,
            request.is_stream(),
            "{endpoint:?}: the probe and the surface disagree on streaming"
        );
    }

    let text = serde_json::to_vec(&request).expect("a canonical request serializes");
    let again: ChatRequest = crate::gateway::surfaces::Inbound::to_chat(&OpenAiChat, &text)
        .unwrap_or_else(|e| panic!("{endpoint:?}: a canonical request does not read back: {}", e.message));
    assert_eq!(
        again, request,
        "{endpoint:?}: a canonical request changes when written and read"
    );

    for wired in wires().iter().flatten() {
        if let Ok(wire) = wired.wire.chat_request(&request, "fuzz-model", &wired.options) {
            assert!(!wire.path.is_empty(), "{}: an empty path", wired.options.provider_type);
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&wire.body) {
                panic!("{}: the upstream request is not JSON: {e}", wired.options.provider_type);
            }
        }
    }
}
