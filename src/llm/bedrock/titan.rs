//! Amazon Titan text embeddings (`POST /model/{modelId}/invoke`): one text per call,
//! `{"inputText", "dimensions", "normalize"}` in, `{"embedding", "inputTextTokenCount"}` out.

use serde::Deserialize;
use serde_json::Value;

use crate::llm::embeddings::{embeddings_response, EmbeddingsRequest};
use crate::llm::{TranslateError, TranslateOptions, Unsupported, UpstreamError};

/// Most texts one embeddings request may carry: Titan takes one text per call, so a list is
/// sent as that many calls, one after another.
pub const MAX_INPUTS: usize = 32;

/// Whether the model is Titan Text Embeddings v1, which takes `inputText` alone.
fn is_v1(model: &str) -> bool {
    model.contains("titan-embed-text-v1") || model.contains("titan-embed-g1-text")
}

/// The invoke bodies for an embeddings request, one per input text, in order.
pub fn titan_requests(
    request: &EmbeddingsRequest,
    model: &str,
    options: &TranslateOptions,
) -> Result<Vec<Value>, TranslateError> {
    let mut unsupported = Unsupported::new(options);
    let texts = request.input.texts().ok_or_else(|| {
        TranslateError::new(
            "input",
            "Titan embeds text: send input as a string or a list of strings, not token ids",
        )
    })?;
    if texts.is_empty() {
        return Err(TranslateError::new(
            "input",
            "input is an empty list; send at least one text",
        ));
    }
    if texts.len() > MAX_INPUTS {
        return Err(TranslateError::new(
            "input",
            format!(
                "input has {} texts; Titan embeds one text per call and the gateway sends at most {MAX_INPUTS} calls for one request: split the list",
                texts.len()
            ),
        ));
    }
    let v1 = is_v1(model);
    if v1 && request.dimensions.is_some() {
        unsupported.param("dimensions", "Titan Text Embeddings v1 has a fixed size (1536)")?;
    }
    if request
        .encoding_format
        .as_deref()
        .is_some_and(|f| f != "float" && f != "base64")
    {
        return Err(TranslateError::new(
            "encoding_format",
            "encoding_format is float or base64",
        ));
    }
    let rest: serde_json::Map<String, Value> = request
        .rest
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    unsupported.rest("", &rest)?;
    if let Some((i, _)) = texts.iter().enumerate().find(|(_, t)| t.is_empty()) {
        return Err(TranslateError::new(
            format!("input[{i}]"),
            format!("input[{i}] is empty; Titan cannot embed an empty text"),
        ));
    }
    Ok(texts
        .into_iter()
        .map(|text| {
            let mut body = serde_json::json!({ "inputText": text });
            if let (false, Some(map)) = (v1, body.as_object_mut()) {
                if let Some(dimensions) = request.dimensions {
                    map.insert("dimensions".to_string(), Value::from(dimensions));
                }
                // OpenAI's vectors have unit length; so do Titan v2's when asked.
                map.insert("normalize".to_string(), Value::Bool(true));
            }
            body
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanResponse {
    embedding: Vec<f32>,
    #[serde(default)]
    input_text_token_count: u64,
}

/// The answers, in input order, as one OpenAI embeddings response.
pub fn titan_response(bodies: &[bytes::Bytes], model: &str, base64: bool) -> Result<bytes::Bytes, UpstreamError> {
    let mut vectors = Vec::with_capacity(bodies.len());
    let mut tokens = 0;
    for body in bodies {
        let answer: TitanResponse = serde_json::from_slice(body).map_err(|e| {
            UpstreamError::bad_response(format!(
                "the provider answered with a Titan embedding this gateway cannot read ({e})"
            ))
        })?;
        tokens += answer.input_text_token_count;
        vectors.push(answer.embedding);
    }
    let value = embeddings_response(model, &vectors, tokens, base64);
    serde_json::to_vec(&value)
        .map(bytes::Bytes::from)
        .map_err(|e| UpstreamError::bad_response(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(value: Value) -> EmbeddingsRequest {
        serde_json::from_value(value).expect("an embeddings request")
    }

    #[test]
    fn a_list_becomes_one_call_per_text_with_dimensions_and_normalize() {
        let bodies = titan_requests(
            &request(serde_json::json!({"model": "e", "input": ["a", "b"], "dimensions": 256})),
            "amazon.titan-embed-text-v2:0",
            &TranslateOptions::strict("bedrock"),
        )
        .expect("bodies");
        assert_eq!(
            bodies,
            vec![
                serde_json::json!({"inputText": "a", "dimensions": 256, "normalize": true}),
                serde_json::json!({"inputText": "b", "dimensions": 256, "normalize": true}),
            ]
        );
        let v1 = titan_requests(
            &request(serde_json::json!({"model": "e", "input": "a"})),
            "amazon.titan-embed-text-v1",
            &TranslateOptions::strict("bedrock"),
        )
        .expect("v1");
        assert_eq!(v1, vec![serde_json::json!({"inputText": "a"})]);
    }

    #[test]
    fn token_ids_long_lists_and_unknown_fields_are_refused_by_name() {
        let options = TranslateOptions::strict("bedrock");
        let model = "amazon.titan-embed-text-v2:0";
        for (body, param) in [
            (serde_json::json!({"model": "e", "input": [1, 2, 3]}), "input"),
            (
                serde_json::json!({"model": "e", "input": vec!["x"; MAX_INPUTS + 1]}),
                "input",
            ),
            (serde_json::json!({"model": "e", "input": ["x", ""]}), "input[1]"),
            (
                serde_json::json!({"model": "e", "input": "x", "truncate": "END"}),
                "truncate",
            ),
        ] {
            let error = titan_requests(&request(body), model, &options).expect_err(param);
            assert_eq!(error.param.as_deref(), Some(param), "{}", error.message);
        }
    }

    #[test]
    fn answers_become_an_openai_list_with_summed_usage() {
        let bodies = [
            bytes::Bytes::from_static(br#"{"embedding":[1.0,0.0],"inputTextTokenCount":3}"#),
            bytes::Bytes::from_static(br#"{"embedding":[0.0,1.0],"inputTextTokenCount":4,"embeddingsByType":{}}"#),
        ];
        let body = titan_response(&bodies, "e", false).expect("response");
        let value: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value["data"][1]["embedding"], serde_json::json!([0.0, 1.0]));
        assert_eq!(value["data"][1]["index"], 1);
        assert_eq!(value["usage"]["prompt_tokens"], 7);
        let body = titan_response(&bodies[..1], "e", true).expect("base64");
        let value: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value["data"][0]["embedding"], "AACAPwAAAAA=");
    }
}
