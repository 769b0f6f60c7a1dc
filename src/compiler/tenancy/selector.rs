//! Kubernetes label selectors (`matchLabels`, `matchExpressions`), as the apiserver reads them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Checks a selector's operators; the message says what is wrong.
pub fn check(selector: &LabelSelector) -> Result<(), String> {
    for (i, expression) in selector.match_expressions.iter().flatten().enumerate() {
        let values = expression.values.as_deref().unwrap_or_default();
        match expression.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "matchExpressions[{i}]: operator {} needs at least one value",
                    expression.operator
                ))
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "matchExpressions[{i}]: operator {} takes no values",
                    expression.operator
                ))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(format!(
                    "matchExpressions[{i}]: unknown operator '{other}'; use In, NotIn, Exists or DoesNotExist"
                ))
            }
        }
    }
    Ok(())
}

/// Whether `labels` match the selector (an invalid selector matches nothing).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if check(selector).is_err() {
        return false;
    }
    let pairs_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    pairs_match
        && selector.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                _ => value.is_none(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_match_like_the_apiserver() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("tier", "starter")]).into_iter().collect()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "retired".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
        };
        assert!(matches(&selector, &labels(&[("tier", "starter")])));
        assert!(!matches(&selector, &labels(&[("tier", "pro")])));
        assert!(!matches(&selector, &labels(&[("tier", "starter"), ("retired", "yes")])));
        assert!(matches(&LabelSelector::default(), &labels(&[])), "empty matches all");
        let bad = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Equals".into(),
                values: None,
            }]),
        };
        assert!(check(&bad).unwrap_err().contains("unknown operator 'Equals'"));
        assert!(!matches(&bad, &labels(&[("a", "b")])));
    }
}
