//! JSON as the guard reads it: a `serde_json::Value` that refuses a member name twice in one
//! object.
//!
//! `serde_json` keeps the last of two equal names; other readers keep the first. Passed on as
//! it came, `{"content":"<secret>","content":"clean"}` would be scanned as `clean` and read as
//! the secret by a reader that keeps the first: the guard refuses such a body instead (a request
//! is a 400, an answer is withheld as unreadable).

use std::fmt;

use serde::de::{DeserializeSeed, Error, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Longest part of a repeated name an error quotes.
const NAME_QUOTED: usize = 64;

/// Parses `json` like `serde_json::from_slice::<Value>`, refusing a name repeated in an object.
pub fn from_slice(json: &[u8]) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// [`from_slice`] for text: its UTF-8 is not checked again (a stream's events are, once, as
/// they are split; checking the texts a Responses stream repeats whole again cost 1.5–2.5 %
/// of its instructions).
pub fn from_str(json: &str) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

#[derive(Clone, Copy)]
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            match object.entry(name) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    let quoted: String = slot.key().chars().take(NAME_QUOTED).collect();
                    return Err(A::Error::custom(format_args!(
                        "the name \"{quoted}\" appears twice in one object"
                    )));
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_json_reads_and_refuses_a_repeated_name() {
        for json in [
            r#"{"a":[1,-2,3.5,1e300,true,null,"x\u00e9"],"b":{"c":{}},"d":[]}"#,
            r#"[{"a":1},{"a":2}]"#,
            r#""text""#,
            r#"{"a":{"b":1},"c":{"b":2}}"#,
        ] {
            let ours = from_str(json).expect("valid");
            let theirs: Value = serde_json::from_str(json).expect("valid");
            assert_eq!(ours, theirs, "{json}");
        }
        for json in [
            r#"{"content":"bob@example.com","content":"clean"}"#,
            r#"{"messages":[{"role":"user","content":"a","role":"system"}]}"#,
            r#"{"t\u0065xt":"a","text":"b"}"#,
        ] {
            let error = from_str(json).expect_err(json).to_string();
            assert!(error.contains("appears twice in one object"), "{error}");
            assert!(!error.contains("bob@"), "{error}");
        }
        assert!(from_str(r#"{"a":1} x"#).is_err(), "trailing text");
        assert!(
            from_str(r#"{"a":1e400}"#).is_err(),
            "a number out of range, as serde_json"
        );
    }
}
