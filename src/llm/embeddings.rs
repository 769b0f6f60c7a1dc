//! OpenAI embeddings: the canonical form for embedding requests.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/embeddings`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    /// `float` (default) or `base64` (little-endian f32, what openai-node asks for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `input`: one text, several, or token ids.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<u32>),
    ManyTokens(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// The texts to embed, or `None` for token-id input (which only OpenAI-wire providers take).
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self {
            EmbeddingInput::One(text) => Some(vec![text.as_str()]),
            EmbeddingInput::Many(texts) => Some(texts.iter().map(String::as_str).collect()),
            EmbeddingInput::Tokens(_) | EmbeddingInput::ManyTokens(_) => None,
        }
    }
}

impl EmbeddingsRequest {
    /// Whether the client wants base64-encoded vectors.
    pub fn wants_base64(&self) -> bool {
        self.encoding_format.as_deref() == Some("base64")
    }

    /// The prompt tokens of the input, for a provider that reports none: token ids counted
    /// exactly, text at about four bytes a token (at least one per input).
    pub fn estimated_prompt_tokens(&self) -> u64 {
        let text = |t: &String| (t.len() as u64).div_ceil(4).max(1);
        match &self.input {
            EmbeddingInput::One(t) => text(t),
            EmbeddingInput::Many(ts) => ts.iter().map(text).sum(),
            EmbeddingInput::Tokens(ids) => ids.len() as u64,
            EmbeddingInput::ManyTokens(lists) => lists.iter().map(|ids| ids.len() as u64).sum(),
        }
    }
}

/// The response, built from vectors in input order.
pub fn embeddings_response(model: &str, vectors: &[Vec<f32>], prompt_tokens: u64, base64: bool) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                Value::String(encode_base64_f32(vector))
            } else {
                Value::from(vector.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>())
            };
            serde_json::json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    serde_json::json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    })
}

/// A vector as OpenAI's `encoding_format: "base64"` sends it: little-endian f32s, base64.
pub fn encode_base64_f32(vector: &[f32]) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors_are_little_endian_f32() {
        // 1.0f32 is 0x3f800000: bytes 00 00 80 3f.
        assert_eq!(encode_base64_f32(&[1.0]), "AACAPw==");
    }

    #[test]
    fn input_forms_parse() {
        let one: EmbeddingsRequest = serde_json::from_str(r#"{"model":"m","input":"hi"}"#).expect("one");
        assert_eq!(one.input.texts(), Some(vec!["hi"]));
        let tokens: EmbeddingsRequest = serde_json::from_str(r#"{"model":"m","input":[1,2]}"#).expect("tokens");
        assert_eq!(tokens.input.texts(), None);
    }
}
