//! Rules about a single object's fields. The same rules are in the CRD schema as CEL, so the
//! apiserver rejects them at apply time; here they also cover files and `modelgate validate`.

use std::time::Duration;

use super::diagnostic::{Diagnostic, ObjectRef, Reason};
use crate::crd::{LLMProviderSpec, ModelAliasSpec, ProviderType};

/// Longest alias name (a Kubernetes name's limit, so `metadata.name` always fits).
pub const MAX_ALIAS_LEN: usize = 253;

/// Checks an alias name: letters, digits, `.`, `-`, `_`.
pub fn check_alias_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("alias must not be empty".to_string());
    }
    if name.len() > MAX_ALIAS_LEN {
        return Err(format!(
            "alias is {} characters long; the limit is {MAX_ALIAS_LEN}",
            name.len()
        ));
    }
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))) {
        Some(bad) => Err(format!(
            "alias '{name}' contains {bad:?}; an alias may contain only letters, digits, '.', '-' and '_' (for example arch.summarize.v1)"
        )),
        None => Ok(()),
    }
}

/// Checks a Kubernetes object name (RFC 1123 subdomain), as the apiserver would.
pub fn check_object_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid Kubernetes name: use lowercase letters, digits, '-' and '.'; set spec.alias to serve a name with capitals or '_'"
        ))
    }
}

/// Parses the duration grammar of the CRD (`500ms`, `10s`, `5m`, `1h30m`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else {
            return None;
        };
        total = total.checked_add(unit.checked_mul(u32::try_from(number).ok()?)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

/// Splits a target at the first `/`: `Some((provider, model))`, or `None` for a bare name.
pub fn split_target(target: &str) -> Option<(&str, &str)> {
    target.split_once('/')
}

/// Field-level rules of a ModelAlias spec.
pub fn check_alias_spec(object: &ObjectRef, spec: &ModelAliasSpec, out: &mut Vec<Diagnostic>) {
    if let Some(Err((field, message))) = spec.pricing.as_ref().map(super::tenancy::Price::parse) {
        out.push(Diagnostic::error(object, field, Reason::InvalidSpec, message));
    }
    if let Some(alias) = &spec.alias {
        if let Err(message) = check_alias_name(alias) {
            out.push(Diagnostic::error(object, "spec.alias", Reason::InvalidSpec, message));
        }
    }
    match (&spec.target, &spec.targets) {
        (Some(_), Some(_)) => out.push(Diagnostic::error(
            object,
            "spec",
            Reason::InvalidSpec,
            "set exactly one of target (a single model) or targets (a weighted split), not both",
        )),
        (None, None) => out.push(Diagnostic::error(
            object,
            "spec",
            Reason::InvalidSpec,
            "set exactly one of target (a single model) or targets (a weighted split); neither is set",
        )),
        (Some(target), None) => check_target_syntax(object, "spec.target", target, out),
        (None, Some(targets)) => {
            if targets.is_empty() {
                out.push(Diagnostic::error(
                    object,
                    "spec.targets",
                    Reason::InvalidSpec,
                    "targets is empty; list at least one {target, weight} or use target",
                ));
                return;
            }
            for (i, leg) in targets.iter().enumerate() {
                check_target_syntax(object, &format!("spec.targets[{i}].target"), &leg.target, out);
                if leg.weight > 100 {
                    out.push(Diagnostic::error(
                        object,
                        format!("spec.targets[{i}].weight"),
                        Reason::InvalidSpec,
                        format!("weight {} is over 100; weights are percentages", leg.weight),
                    ));
                }
            }
            let sum: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
            if sum != 100 {
                let parts: Vec<String> = targets.iter().map(|t| t.weight.to_string()).collect();
                out.push(Diagnostic::error(
                    object,
                    "spec.targets",
                    Reason::InvalidSpec,
                    format!(
                        "the weights of targets must add up to 100, but {} = {sum}",
                        parts.join(" + ")
                    ),
                ));
            }
        }
    }
    super::routing_rules::check_routing_spec(
        object,
        spec,
        |field, target, out| check_target_syntax(object, field, target, out),
        out,
    );
}

fn check_target_syntax(object: &ObjectRef, field: &str, target: &str, out: &mut Vec<Diagnostic>) {
    let problem = if target.trim().is_empty() {
        Some("target is empty".to_string())
    } else if target.chars().any(char::is_whitespace) {
        Some(format!("target '{target}' contains whitespace"))
    } else {
        match split_target(target) {
            Some(("", _)) => Some(format!("target '{target}' has no provider before the '/'")),
            Some((_, "")) => Some(format!("target '{target}' has no model after the '/'")),
            _ => None,
        }
    };
    if let Some(problem) = problem {
        out.push(Diagnostic::error(
            object,
            field,
            Reason::InvalidSpec,
            format!("{problem}; write <provider>/<model> (for example openai/gpt-4o-mini) or the bare name of an alias or listed model"),
        ));
    }
}

/// The settings blocks of provider types: each only on its own type, and what a type needs.
fn check_type_settings(object: &ObjectRef, spec: &LLMProviderSpec, out: &mut Vec<Diagnostic>) {
    let kind = spec.provider_type;
    let misplaced = [
        ("anthropic", spec.anthropic.is_some(), ProviderType::Anthropic),
        ("azure", spec.azure.is_some(), ProviderType::AzureOpenai),
        ("bedrock", spec.bedrock.is_some(), ProviderType::Bedrock),
    ];
    for (field, set, owner) in misplaced {
        if set && kind != owner {
            out.push(Diagnostic::error(
                object,
                format!("spec.{field}"),
                Reason::InvalidSpec,
                format!(
                    "{field} settings apply only to type {}; remove them or change the type",
                    owner.as_str()
                ),
            ));
        }
    }
    if let Some(version) = spec.anthropic.as_ref().and_then(|a| a.version.as_deref()) {
        if !is_date(version) {
            out.push(Diagnostic::error(
                object,
                "spec.anthropic.version",
                Reason::InvalidSpec,
                "version must be a date such as 2023-06-01",
            ));
        }
    }
    if let Some(version) = spec.azure.as_ref().and_then(|a| a.api_version.as_deref()) {
        let dated = version.strip_suffix("-preview").unwrap_or(version);
        if version != "v1" && !is_date(dated) {
            out.push(Diagnostic::error(
                object,
                "spec.azure.apiVersion",
                Reason::InvalidSpec,
                "apiVersion must be v1 or a dated version such as 2024-10-21",
            ));
        }
    }
    if kind == ProviderType::Bedrock {
        match spec.bedrock.as_ref().and_then(|b| b.region.as_deref()) {
            None => out.push(Diagnostic::error(
                object,
                "spec.bedrock.region",
                Reason::InvalidSpec,
                "bedrock.region is required when type is bedrock (for example bedrock: {region: us-east-1})",
            )),
            Some(region) if !is_region(region) => out.push(Diagnostic::error(
                object,
                "spec.bedrock.region",
                Reason::InvalidSpec,
                format!("'{region}' is not an AWS region; write one such as us-east-1"),
            )),
            Some(_) => {}
        }
        if spec.api_key.is_some() && spec.bedrock.as_ref().is_some_and(|b| b.credentials.is_some()) {
            out.push(Diagnostic::error(
                object,
                "spec.bedrock.credentials",
                Reason::InvalidSpec,
                "set either apiKey (a Bedrock API key) or bedrock.credentials (AWS keys for SigV4), not both",
            ));
        }
    }
}

/// `YYYY-MM-DD`.
fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// An AWS region name such as `us-east-1` or `ap-southeast-2`.
fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// Field-level rules of an LLMProvider spec.
pub fn check_provider_spec(object: &ObjectRef, spec: &LLMProviderSpec, out: &mut Vec<Diagnostic>) {
    match (spec.provider_type, &spec.base_url) {
        (ProviderType::OpenaiCompatible, None) => out.push(Diagnostic::error(
            object,
            "spec.baseUrl",
            Reason::InvalidSpec,
            "baseUrl is required when type is openai-compatible (for example http://ollama.ollama.svc:11434/v1)",
        )),
        (ProviderType::AzureOpenai, None) => out.push(Diagnostic::error(
            object,
            "spec.baseUrl",
            Reason::InvalidSpec,
            "baseUrl is required when type is azure-openai (for example https://my-resource.openai.azure.com)",
        )),
        (ProviderType::Mock, Some(_)) => out.push(Diagnostic::error(
            object,
            "spec.baseUrl",
            Reason::InvalidSpec,
            "a mock provider answers locally: remove baseUrl or choose another type",
        )),
        (_, Some(url)) => match check_base_url(url) {
            Err(message) => out.push(Diagnostic::error(object, "spec.baseUrl", Reason::InvalidSpec, message)),
            Ok(()) => super::egress::warn_about_host(object, url, out),
        },
        _ => {}
    }
    check_type_settings(object, spec, out);
    if let Some(key) = &spec.api_key {
        if key.secret_ref.is_some() == key.env.is_some() {
            out.push(Diagnostic::error(
                object,
                "spec.apiKey",
                Reason::InvalidSpec,
                "apiKey needs exactly one of secretRef or env",
            ));
        }
        if let Some(var) = &key.env {
            let valid = var.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                out.push(Diagnostic::error(
                    object,
                    "spec.apiKey.env",
                    Reason::InvalidSpec,
                    "env must be an environment variable name such as OPENAI_API_KEY",
                ));
            }
        }
    }
    for model in spec.models.iter().flatten() {
        if model.is_empty() {
            out.push(Diagnostic::error(
                object,
                "spec.models",
                Reason::InvalidSpec,
                "models must not contain an empty id",
            ));
        }
    }
    for name in spec.headers.iter().flat_map(|h| h.keys()) {
        let field = format!("spec.headers.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            out.push(Diagnostic::error(
                object,
                field,
                Reason::InvalidSpec,
                "header names may contain only letters, digits and !#$%&*+.^_`|~-",
            ));
        } else if is_credential_header(name) {
            out.push(Diagnostic::error(
                object,
                field,
                Reason::InvalidSpec,
                "headers must not carry credentials or signing headers: put the key in apiKey (or bedrock.credentials) instead",
            ));
        }
    }
    for (name, value) in spec.headers.iter().flatten() {
        if http::HeaderValue::from_str(value).is_err() {
            out.push(Diagnostic::error(
                object,
                format!("spec.headers.{name}"),
                Reason::InvalidSpec,
                "header value contains characters that cannot be sent in HTTP (control characters or newlines)",
            ));
        }
    }
    if let Some(timeouts) = &spec.timeouts {
        for (field, value) in [
            ("connect", &timeouts.connect),
            ("request", &timeouts.request),
            ("idle", &timeouts.idle),
        ] {
            match value.as_deref().map(|v| (v, parse_duration(v))) {
                Some((text, None)) => out.push(Diagnostic::error(
                    object,
                    format!("spec.timeouts.{field}"),
                    Reason::InvalidSpec,
                    format!("'{text}' must be a duration such as 500ms, 10s, 5m or 1h30m"),
                )),
                Some((_, Some(d))) if d.is_zero() => out.push(Diagnostic::error(
                    object,
                    format!("spec.timeouts.{field}"),
                    Reason::InvalidSpec,
                    "a timeout of zero would fail every request; remove it to use the default",
                )),
                _ => {}
            }
        }
    }
}

/// Header names that carry credentials and so are refused in `spec.headers`.
pub fn is_credential_header(name: &str) -> bool {
    [
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "cookie",
        "x-amz-security-token",
        "x-amz-date",
        "x-amz-content-sha256",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

fn check_base_url(text: &str) -> Result<(), String> {
    let hint = "baseUrl must be an absolute http:// or https:// URL, for example https://api.openai.com/v1";
    let url = url::Url::parse(text).map_err(|e| format!("{hint} ('{text}': {e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{hint} ('{text}')"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("baseUrl '{text}' must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("baseUrl must not contain credentials: put the key in apiKey instead".to_string());
    }
    // The gateway sends requests with hyper, whose URI parser is stricter than the URL
    // standard's (`http:/host`, a space in the path, a non-ASCII host): it must read it too.
    if let Err(e) = http::Uri::try_from(format!("{}/chat/completions", text.trim_end_matches('/'))) {
        return Err(format!(
            "{hint} ('{text}': {e}; percent-encode or remove what is not plain ASCII)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_crd_grammar() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2m5s100ms"), Some(Duration::from_millis(125_100)));
        for bad in ["", "10", "s", "1.5s", "10 s", "-1s", "1d", "1m30"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn alias_names_allow_letters_digits_dots_dashes_underscores() {
        for good in [
            "fast-model",
            "arch.summarize.v1",
            "prod.chat.v1",
            "gpt_4o",
            "GPT-4",
            "a",
        ] {
            assert_eq!(check_alias_name(good), Ok(()), "{good}");
        }
        assert_eq!(
            check_alias_name("fast model"),
            Err("alias 'fast model' contains ' '; an alias may contain only letters, digits, '.', '-' and '_' (for example arch.summarize.v1)".to_string())
        );
        assert!(check_alias_name("openai/gpt-4").is_err());
        assert!(check_alias_name("").is_err());
        assert!(check_alias_name(&"a".repeat(254)).is_err());
    }

    #[test]
    fn object_names_are_rfc1123() {
        assert!(check_object_name("arch.summarize.v1").is_ok());
        assert!(check_object_name("gpt_4o").is_err());
        assert!(check_object_name("Fast").is_err());
        assert!(check_object_name("-a").is_err());
    }

    #[test]
    fn base_urls_the_gateway_cannot_send_to_are_refused() {
        // Each is a valid URL to the URL standard, but not to the HTTP client (found by the
        // manifest_yaml fuzz target: such a provider made every table unservable).
        for bad in [
            "http:/0X/127.0.0.1:11434/v1/",
            "http://vllm/v 1",
            "http://bücher.example/v1",
        ] {
            let error = check_base_url(bad).expect_err(bad);
            assert!(
                error.starts_with("baseUrl must be an absolute http:// or https:// URL"),
                "{error}"
            );
        }
        for good in [
            "http://127.0.0.1:11434/v1/",
            "https://api.openai.com/v1",
            "http://[::1]:8000",
            "http://vllm/v%201",
        ] {
            assert_eq!(check_base_url(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn targets_split_at_the_first_slash() {
        assert_eq!(
            split_target("openrouter/meta-llama/llama-3-70b"),
            Some(("openrouter", "meta-llama/llama-3-70b"))
        );
        assert_eq!(split_target("gpt-4o-mini"), None);
    }
}
