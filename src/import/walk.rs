//! Walking a parsed document with the path of every value, so findings can name it.

use serde::Deserialize;
use serde_json::Value;

/// A value in the input and its path (`model_list[2].litellm_params.model`).
pub struct Node<'a> {
    pub value: &'a Value,
    pub path: String,
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value) -> Self {
        Node {
            value,
            path: String::new(),
        }
    }

    /// The path for messages (`(top level)` for the root).
    pub fn at(&self) -> String {
        if self.path.is_empty() {
            "(top level)".to_string()
        } else {
            self.path.clone()
        }
    }

    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        let value = self.value.get(key)?;
        if value.is_null() {
            return None;
        }
        Some(Node {
            value,
            path: join(&self.path, key),
        })
    }

    /// The items of a sequence (none when it is not one).
    pub fn items(&self) -> Vec<Node<'a>> {
        match self.value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, value)| Node {
                    value,
                    path: format!("{}[{i}]", self.path),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The entries of a mapping, in input order (none when it is not one).
    pub fn entries(&self) -> Vec<(String, Node<'a>)> {
        match self.value {
            Value::Object(map) => map
                .iter()
                .map(|(k, value)| {
                    (
                        k.clone(),
                        Node {
                            value,
                            path: join(&self.path, k),
                        },
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A string, or a number or boolean written without quotes, as text.
    pub fn text(&self) -> Option<String> {
        scalar_text(self.value)
    }

    pub fn number(&self) -> Option<f64> {
        match self.value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// A scalar as text (`2024-02-01`, `0.5`, `true`).
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    let simple = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (path.is_empty(), simple) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", serde_json::Value::String(key.to_string())),
    }
}

/// A YAML syntax error, located `line:column` when the parser says where.
pub struct SyntaxError {
    pub location: String,
    pub message: String,
}

/// Parses one YAML document (JSON is YAML too) into a JSON value.
pub fn parse_yaml(text: &str) -> Result<Value, SyntaxError> {
    let document = serde_yaml_ng::Deserializer::from_str(text);
    Value::deserialize(document).map_err(|e| {
        let location = e
            .location()
            .map(|l| format!("{}:{}", l.line(), l.column()))
            .unwrap_or_else(|| "1:1".to_string());
        SyntaxError {
            location,
            message: format!("not valid YAML: {e}"),
        }
    })
}

/// Parses JSON, allowing whole-line `//` comments (as in hand-written examples).
pub fn parse_json(text: &str) -> Result<Value, SyntaxError> {
    let cleaned: String = text
        .lines()
        .map(|line| if line.trim_start().starts_with("//") { "" } else { line })
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&cleaned).map_err(|e| SyntaxError {
        location: format!("{}:{}", e.line(), e.column()),
        message: format!("not valid JSON: {e}"),
    })
}
