//! Reads just enough of a request body to route it, and rewrites only the `model` value.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ApiError;
use crate::llm::compact::{once, Compact};

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
    match compact(body) {
        Some(probe) => Ok(probe),
        None => general(body),
    }
}

/// The probe of a compact body (no whitespace between tokens, as most clients send them)
/// whose routing fields are plain, read in one pass by the compact reader; `None` for
/// anything it is not sure `serde_json` reads the same way (whitespace, escaped keys or
/// model, a repeated field, a `stream` that is not a literal, …), which [`general`] decides.
/// A fifth of serde's instructions for a typical chat request (see the README).
fn compact(body: &[u8]) -> Option<Probe<'_>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut json = Compact::new(text);
    let (mut model, mut stream) = (None, None);
    let (mut completion, mut tokens, mut output) = (None, None, None);
    json.object(|json, key| {
        let start = json.position();
        match key {
            "model" => return once(&mut model, (json.plain()?, start, json.position())),
            "stream" | "max_completion_tokens" | "max_tokens" | "max_output_tokens" => json.skip()?,
            _ => return json.skip(),
        }
        let raw = text.get(start..json.position())?;
        match key {
            "stream" => once(&mut stream, literal(raw)?),
            "max_completion_tokens" => once(&mut completion, raw),
            "max_tokens" => once(&mut tokens, raw),
            _ => once(&mut output, raw),
        }
    })?;
    let (name, start, end) = model?;
    json.done().then(|| Probe {
        model: Cow::Borrowed(name),
        model_span: (start, end),
        stream: stream.unwrap_or(false),
        output_cap: [completion, tokens, output]
            .into_iter()
            .flatten()
            .find_map(|raw| raw.parse().ok()),
    })
}

/// `true`, `false` or `null` as `stream` reads them; any other value is left to serde.
fn literal(raw: &str) -> Option<bool> {
    match raw {
        "true" => Some(true),
        "false" | "null" => Some(false),
        _ => None,
    }
}

/// Any body, read by `serde_json`: the errors a client sees come from here.
fn general(body: &[u8]) -> Result<Probe<'_>, ApiError> {
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
    fn compact_bodies_take_the_compact_reader() {
        for body in [
            &br#"{"model":"bench-model","messages":[{"role":"user","content":"Say hello."}]}"#[..],
            br#"{"messages":[{"role":"user","content":"\u00e9\n"}],"model":"m","stream":true,"max_tokens":9}"#,
            "{\"model\":\"m\",\"input\":\"日本語 😀\",\"stream\":null,\"max_output_tokens\":5.5}".as_bytes(),
        ] {
            let fast = compact(body).expect("read by the compact reader");
            assert_eq!(general(body).ok(), Some(fast));
        }
        // Left to serde: whitespace, an escaped model, a repeated field, a `stream` string.
        for body in [
            &b"{ \"model\": \"m\" }"[..],
            br#"{"model":"fast\u002dmodel"}"#,
            br#"{"model":"a","model":"b"}"#,
            br#"{"model":"m","stream":"yes"}"#,
            br#"{"model":"m"} "#,
        ] {
            assert!(compact(body).is_none(), "{}", String::from_utf8_lossy(body));
        }
    }

    /// A random JSON-like value: mostly valid, with what serde and the compact reader treat
    /// differently (escapes, lone surrogates, exponents, long numbers, invalid UTF-8).
    fn value(rng: &mut fastrand::Rng, depth: usize, out: &mut Vec<u8>) {
        const PLAIN: [&[u8]; 9] = [
            b"true", b"false", b"null", b"12", b"-0", b"1.5", b"\"m\"", b"\"x y\"", b"\"50\"",
        ];
        const ODD: [&[u8]; 14] = [
            b"01",
            b"1e3",
            b"-",
            b"18446744073709551616",
            b"\"\\u00e9\"",
            b"\"\\ud800\"",
            b"\"a\\\"b\"",
            b"\"\\q\"",
            b"\"\xff\"",
            "\"é\"".as_bytes(),
            b"\"\x01\"",
            b"7",
            b"\"fast\\u002dmodel\"",
            b"{}",
        ];
        let leaf = match rng.usize(..12) {
            0 => ODD[rng.usize(..ODD.len())],
            _ => PLAIN[rng.usize(..PLAIN.len())],
        };
        match rng.usize(..6) {
            0 if depth < 4 => {
                out.push(b'[');
                for i in 0..rng.usize(..3) {
                    if i > 0 {
                        out.push(b',');
                    }
                    value(rng, depth + 1, out);
                }
                out.push(b']');
            }
            1 if depth < 4 => members(rng, depth + 1, out),
            _ => out.extend_from_slice(leaf),
        }
    }

    /// An object; at the top level (`depth` 1) it starts with a model, and repeats a field
    /// now and then.
    fn members(rng: &mut fastrand::Rng, depth: usize, out: &mut Vec<u8>) {
        const KEYS: [&[u8]; 8] = [
            b"stream",
            b"max_tokens",
            b"max_completion_tokens",
            b"max_output_tokens",
            b"messages",
            b"x",
            b"mod\\u0065l",
            b"\xff",
        ];
        out.push(b'{');
        if depth == 1 {
            out.extend_from_slice(b"\"model\":");
            match rng.usize(..4) {
                0 => value(rng, 4, out),
                _ => out.extend_from_slice(["\"m\"", "\"gpt-4o\"", "\"日本\""][rng.usize(..3)].as_bytes()),
            }
        }
        let mut used = Vec::new();
        for _ in 0..rng.usize(..5) {
            let key = KEYS[rng.usize(..KEYS.len())];
            if used.contains(&key) && rng.usize(..8) != 0 {
                continue;
            }
            used.push(key);
            if out.len() > 1 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
            value(rng, depth, out);
        }
        out.push(b'}');
    }

    /// Whatever the compact reader reads, serde reads the same (its errors are serde's).
    #[test]
    fn the_compact_reader_agrees_with_serde() {
        const NOISE: [&[u8]; 8] = [b" ", b"\n", b",", b":", b"}", b"\"", b"\\", b"\"model\":\"n\""];
        let mut rng = fastrand::Rng::with_seed(7);
        let (mut fast, mut refused, mut errors) = (0, 0, 0);
        for _ in 0..200_000 {
            let mut body = Vec::new();
            members(&mut rng, 1, &mut body);
            if rng.usize(..4) == 0 {
                let at = rng.usize(..=body.len());
                let noise = NOISE[rng.usize(..NOISE.len())];
                body.splice(at..at, noise.iter().copied());
            }
            let serde = general(&body);
            match compact(&body) {
                Some(probe) => {
                    fast += 1;
                    assert_eq!(serde.as_ref().ok(), Some(&probe), "{}", String::from_utf8_lossy(&body));
                }
                None => refused += 1,
            }
            errors += usize::from(serde.is_err());
        }
        assert!(
            fast > 20_000 && refused > 20_000 && errors > 20_000,
            "{fast} read, {refused} refused, {errors} serde errors"
        );
    }

    #[test]
    fn bad_bodies_get_clear_errors() {
        assert_eq!(probe(b"{not json").unwrap_err().code, Some("invalid_json"));
        assert_eq!(probe(b"[1,2]").unwrap_err().code, Some("invalid_json"));
        assert_eq!(probe(br#"{"messages":[]}"#).unwrap_err().code, Some("missing_model"));
        assert_eq!(probe(br#"{"model":42}"#).unwrap_err().code, Some("invalid_model"));
    }
}
