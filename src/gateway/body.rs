//! Reads just enough of a request body to route it, and rewrites only the `model` value.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ApiError;

/// What the gateway needs from a request body.
#[derive(Debug, PartialEq, Eq)]
pub struct Probe<'a> {
    /// The requested model (unescaped).
    pub model: Cow<'a, str>,
    /// Byte range of the model's JSON string literal (quotes included) in the body.
    pub model_span: (usize, usize),
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The request's own output cap: `max_completion_tokens`, else `max_tokens`, else the
    /// Responses API's `max_output_tokens` (a value that is not a whole number counts as unset).
    /// Read here so the tenant stage's estimate need not parse the body again.
    pub output_cap: Option<u64>,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_output_tokens: Option<&'a RawValue>,
}

/// A whole, non-negative number (`50`), else nothing.
fn whole(raw: Option<&RawValue>) -> Option<u64> {
    raw.and_then(|raw| raw.get().parse().ok())
}

/// Validates the JSON and finds `model` without building a tree of the whole body.
pub fn probe(body: &[u8]) -> Result<Probe<'_>, ApiError> {
    // serde would also read a struct from an array; the API takes objects only.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => ApiError::invalid_json("the top level must be a JSON object"),
            Err(e) => ApiError::invalid_json(&e.to_string()),
        });
    }
    let fields: Fields<'_> = serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e.to_string()))?;
    let raw = fields.model.ok_or_else(ApiError::missing_model)?;
    let text = raw.get();
    // Borrowed when the literal has no escapes (serde's `Cow` is always owned): no copy of
    // the name per request.
    let model: Cow<'_, str> = match serde_json::from_str::<&str>(text) {
        Ok(model) => Cow::Borrowed(model),
        Err(_) => Cow::Owned(serde_json::from_str::<String>(text).map_err(|_| ApiError::model_not_a_string())?),
    };
    let start = text.as_ptr() as usize - body.as_ptr() as usize;
    Ok(Probe {
        model,
        model_span: (start, start + text.len()),
        stream: matches!(fields.stream, Some(serde_json::Value::Bool(true))),
        output_cap: whole(fields.max_completion_tokens)
            .or(whole(fields.max_tokens))
            .or(whole(fields.max_output_tokens)),
    })
}

/// The body with the model literal at `span` replaced by `model_json` (a JSON string literal).
/// Everything else stays byte for byte as the client sent it.
pub fn rewrite_model(body: &Bytes, span: (usize, usize), model_json: &[u8]) -> Bytes {
    if &body[span.0..span.1] == model_json {
        return body.clone();
    }
    let mut out = BytesMut::with_capacity(body.len() - (span.1 - span.0) + model_json.len());
    out.extend_from_slice(&body[..span.0]);
    out.extend_from_slice(model_json);
    out.extend_from_slice(&body[span.1..]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_the_model_value() {
        let body = Bytes::from_static(
            br#"{"messages":[{"role":"user","content":"model"}], "model" : "fast-model","stream":true}"#,
        );
        let probe = probe(&body).expect("probe");
        assert_eq!(probe.model, "fast-model");
        assert!(probe.stream);
        let rewritten = rewrite_model(&body, probe.model_span, br#""gpt-4o-mini""#);
        assert_eq!(
            &rewritten[..],
            br#"{"messages":[{"role":"user","content":"model"}], "model" : "gpt-4o-mini","stream":true}"#
        );
    }

    #[test]
    fn output_caps_are_read_in_order_of_precedence() {
        let cap = |body: &[u8]| probe(body).expect("probe").output_cap;
        assert_eq!(cap(br#"{"model":"m","max_tokens":50}"#), Some(50));
        assert_eq!(
            cap(br#"{"model":"m","max_tokens":50,"max_completion_tokens":70}"#),
            Some(70)
        );
        assert_eq!(cap(br#"{"model":"m","max_output_tokens":40}"#), Some(40));
        assert_eq!(
            cap(br#"{"model":"m","max_tokens":"50","max_output_tokens":40}"#),
            Some(40)
        );
        assert_eq!(cap(br#"{"model":"m","max_tokens":-1}"#), None);
        assert_eq!(cap(br#"{"model":"m","max_tokens":5.5}"#), None);
        assert_eq!(cap(br#"{"model":"m"}"#), None);
    }

    #[test]
    fn escaped_model_names_are_unescaped() {
        let body = br#"{"model":"fast\u002dmodel"}"#;
        assert_eq!(probe(body).expect("probe").model, "fast-model");
        // A name without escapes is read in place.
        let plain = probe(br#"{"model":"fast-model"}"#).expect("probe");
        assert!(matches!(plain.model, Cow::Borrowed("fast-model")));
    }

    #[test]
    fn bad_bodies_get_clear_errors() {
        assert_eq!(probe(b"{not json").unwrap_err().code, Some("invalid_json"));
        assert_eq!(probe(b"[1,2]").unwrap_err().code, Some("invalid_json"));
        assert_eq!(probe(br#"{"messages":[]}"#).unwrap_err().code, Some("missing_model"));
        assert_eq!(probe(br#"{"model":42}"#).unwrap_err().code, Some("invalid_model"));
    }
}
