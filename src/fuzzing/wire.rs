//! Every provider API the translated path speaks (`gateway::providers::Wire`), on what a
//! provider can send back: streams (`wire_stream`) and whole answers and errors
//! (`wire_answer`).
//!
//! The wires are whatever `gateway::providers::prepare` builds for one provider of each type,
//! so a translator that lands (Anthropic, Gemini, Bedrock) is fuzzed from the day `prepare`
//! accepts its type, with no change here: the first input byte picks the type from [`TYPES`]
//! (by its position, so committed seeds keep their meaning), and a type without a wire yet
//! ends the input early. Seeds for it go under `fuzz/corpus/wire_stream/` and
//! `fuzz/corpus/wire_answer/`, starting with the type's index byte (see `fuzz/README.md`).

use std::path::Path;
use std::sync::OnceLock;

use crate::compiler::SecretsAndEnv;
use crate::crd::ProviderType;
use crate::gateway::egress::Policy;
use crate::gateway::providers::{prepare, UpstreamKind, Wire};
use crate::gateway::surfaces::{upstream_error_body, Envelope};
use crate::gateway::ClientPool;
use crate::llm::chat::ChatChunk;
use crate::llm::openai::{OpenAiStreamDecoder, OpenAiStreamEncoder};
use crate::llm::{Accumulator, FailureClass, Framer, SseFramer, StreamDecoder, StreamEncoder, TranslateOptions};
use crate::manifest::{parse_documents, Manifests};

/// Every provider type, in a fixed order: an input's first byte picks one by position. Append
/// new types at the end (the match below fails to compile until a new type is listed).
pub(super) const TYPES: [ProviderType; 7] = [
    ProviderType::Openai,
    ProviderType::OpenaiCompatible,
    ProviderType::AzureOpenai,
    ProviderType::Anthropic,
    ProviderType::Gemini,
    ProviderType::Bedrock,
    ProviderType::Mock,
];

const fn position(t: ProviderType) -> usize {
    match t {
        ProviderType::Openai => 0,
        ProviderType::OpenaiCompatible => 1,
        ProviderType::AzureOpenai => 2,
        ProviderType::Anthropic => 3,
        ProviderType::Gemini => 4,
        ProviderType::Bedrock => 5,
        ProviderType::Mock => 6,
    }
}

/// Types that have no translator yet, so `prepare` refuses them (a test checks that every
/// other HTTP type gets a wire here, so none drops out of fuzzing unnoticed).
#[cfg(test)]
pub(super) const NOT_YET: [ProviderType; 0] = [];

/// One provider of each type, with what each needs to be prepared.
const PROVIDERS: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: keys, namespace: fuzz}
stringData: {apiKey: sk-fuzz-0123456789, accessKeyId: AKIAFUZZ, secretAccessKey: fuzz-secret}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: openai, namespace: fuzz}
spec: {type: openai, apiKey: {secretRef: {name: keys, key: apiKey}}}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: openai-compatible, namespace: fuzz}
spec: {type: openai-compatible, baseUrl: "http://vllm.fuzz.svc:8000/v1"}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: azure-openai, namespace: fuzz}
spec: {type: azure-openai, baseUrl: "https://fuzz.openai.azure.com", apiKey: {secretRef: {name: keys, key: apiKey}}}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: anthropic, namespace: fuzz}
spec: {type: anthropic, apiKey: {secretRef: {name: keys, key: apiKey}}}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: gemini, namespace: fuzz}
spec: {type: gemini, apiKey: {secretRef: {name: keys, key: apiKey}}}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: bedrock, namespace: fuzz}
spec: {type: bedrock, bedrock: {region: us-east-1, credentials: {secretRef: {name: keys}}}}
"#;

/// A provider API as the fuzz targets use it.
pub(super) struct Wired {
    pub wire: Box<dyn Wire>,
    pub options: TranslateOptions,
}

/// The wire of each type (by position in [`TYPES`]), `None` where `prepare` builds none.
pub(super) fn wires() -> &'static [Option<Wired>] {
    static WIRES: OnceLock<Vec<Option<Wired>>> = OnceLock::new();
    WIRES.get_or_init(|| {
        let mut manifests = Manifests::default();
        parse_documents(PROVIDERS, Path::new("fuzz-providers.yaml"), &mut manifests);
        let credentials = SecretsAndEnv {
            secrets: &manifests.secrets,
            env: None,
            view: crate::compiler::SecretView::All,
        };
        let compiled = manifests.compile(&credentials, None);
        let clients = ClientPool::new(std::sync::Arc::new(Policy::default()));
        let mut wires: Vec<Option<Wired>> = TYPES.iter().map(|_| None).collect();
        for endpoint in compiled.table.providers.values() {
            let Ok(upstream) = prepare(endpoint, &clients) else {
                continue;
            };
            if let UpstreamKind::Http(http) = upstream.kind {
                let http = *http;
                wires[position(endpoint.provider_type)] = Some(Wired {
                    wire: http.wire,
                    options: http.options,
                });
            }
        }
        wires
    })
}

/// The wire an input's first byte picks, and the rest of the input.
pub(super) fn pick(data: &[u8]) -> Option<(ProviderType, &'static Wired, &[u8])> {
    let (&first, rest) = data.split_first()?;
    let at = usize::from(first) % TYPES.len();
    Some((TYPES[at], wires()[at].as_ref()?, rest))
}

/// What a stream decoded to: its chunks, and how it ended.
#[derive(Debug, PartialEq)]
struct Decoded {
    chunks: Vec<ChatChunk>,
    end: Result<(), (FailureClass, u16, String)>,
}

fn decode(framer: &mut dyn Framer, decoder: &mut dyn StreamDecoder, pieces: &[&[u8]]) -> Decoded {
    let mut chunks = Vec::new();
    let mut fed = Ok(());
    for piece in pieces {
        fed = framer.feed(piece, &mut |frame| decoder.frame(frame, &mut chunks));
        if fed.is_err() {
            break;
        }
    }
    let end = fed.and_then(|()| decoder.end(&mut chunks));
    // A provider that sends no id (Gemini, Bedrock) gets a fresh random one per stream, and
    // `created` is the clock's: neither is part of what the provider said.
    for chunk in &mut chunks {
        chunk.id.clear();
        chunk.created = 0;
    }
    Decoded {
        chunks,
        end: end.map_err(|e| (e.class, e.status, e.message)),
    }
}

/// Input: the provider type's byte, one byte seeding the cuts, then the provider's streamed
/// body.
///
/// Properties: never panics; the same chunks and the same ending whether the body comes in one
/// piece, one byte at a time, or cut at random places; the chunks join into one answer
/// (`Accumulator`); and a stream that ended cleanly, written for an OpenAI client and read back,
/// gives the same chunks (what the client sees is what the provider said).
pub fn wire_stream(data: &[u8]) {
    let Some((provider_type, wired, rest)) = pick(data) else {
        return;
    };
    let Some((&seed, body)) = rest.split_first() else {
        return;
    };
    let run = |pieces: &[&[u8]]| {
        let (mut framer, mut decoder) = wired.wire.chat_stream("fuzz-model");
        decode(framer.as_mut(), decoder.as_mut(), pieces)
    };
    let whole = run(&[body]);
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(
        whole,
        run(&bytes),
        "{provider_type:?}: one piece and single bytes disagree"
    );
    let cuts = super::random_cuts(seed, body);
    assert_eq!(
        whole,
        run(&cuts),
        "{provider_type:?}: one piece and random cuts disagree"
    );

    let mut accumulator = Accumulator::new();
    for chunk in &whole.chunks {
        accumulator.push(chunk);
    }
    let answer = accumulator.finish();
    assert!(serde_json::to_vec(&answer).is_ok(), "the joined answer serializes");

    if whole.end.is_ok() {
        let mut encoder = OpenAiStreamEncoder::new(true);
        let mut written = bytes::BytesMut::new();
        for chunk in &whole.chunks {
            encoder.chunk(chunk, &mut written);
        }
        encoder.done(&mut written);
        let again = decode(&mut SseFramer::new(), &mut OpenAiStreamDecoder::new(), &[&written]);
        assert_eq!(
            again.end,
            Ok(()),
            "{provider_type:?}: the re-encoded stream does not end cleanly"
        );
        assert_eq!(
            again.chunks, whole.chunks,
            "{provider_type:?}: the chunks written for an OpenAI client read back differently"
        );
    }
}

/// Input: the provider type's byte, two bytes of HTTP status (100-599), then a body.
///
/// Properties: never panics; a non-streamed answer that is read serializes again and reads the
/// same; an error answer keeps its status, is classified as its status says (a 400 or 413 may
/// also be a context-window error; Anthropic's `overloaded_error` is overloaded whatever the
/// status), and gives JSON error bodies in both client envelopes with
/// the same message.
pub fn wire_answer(data: &[u8]) {
    let Some((provider_type, wired, rest)) = pick(data) else {
        return;
    };
    let [a, b, body @ ..] = rest else {
        return;
    };
    let status = 100 + u16::from_le_bytes([*a, *b]) % 500;

    if let Ok(answer) = wired.wire.chat_response(body, "fuzz-model") {
        let text = serde_json::to_vec(&answer).expect("a read answer serializes");
        let again: crate::llm::chat::ChatResponse =
            serde_json::from_slice(&text).expect("a serialized answer reads back");
        assert_eq!(
            again, answer,
            "{provider_type:?}: an answer changes when written and read"
        );
    }

    let error = wired.wire.classify(status, body);
    assert_eq!(error.status, status, "{provider_type:?}: the status is kept");
    let expected = FailureClass::of_status(status);
    assert!(
        error.class == expected
            || (matches!(status, 400 | 413) && error.class == FailureClass::ContextWindowExceeded)
            || (error.class == FailureClass::Overloaded && error.provider_type.as_deref() == Some("overloaded_error")),
        "{provider_type:?}: {status} classified as {:?}",
        error.class
    );
    for envelope in [Envelope::OpenAi, Envelope::Anthropic] {
        let body = upstream_error_body(envelope, &error);
        let value: serde_json::Value = serde_json::from_slice(&body).expect("an error body is JSON");
        assert_eq!(
            value["error"]["message"].as_str(),
            Some(error.message.as_str()),
            "{envelope:?}"
        );
    }
}
