//! A whole (not streamed) answer under the response rules: parsed, its texts scanned, and
//! then passed on unchanged, rewritten with its masks, refused, or withheld when the rules
//! cannot read it.

use bytes::Bytes;

use super::super::matcher::Matcher;
use super::super::metrics::{Action, Side};
use super::super::surface::Surface;
use super::super::{unreadable, violation, Guard, GuardMetrics};
use crate::crd::Direction;
use crate::gateway::error::ApiError;

/// A whole answer: `Ok(None)` when it passes unchanged.
pub(super) fn scan_whole(
    guard: &Guard,
    surface: &dyn Surface,
    bytes: &Bytes,
    metrics: &GuardMetrics,
) -> Result<Option<Bytes>, ApiError> {
    let Some(matcher) = &guard.response else {
        return Ok(None);
    };
    let mut value = match super::super::strict::from_slice(bytes) {
        Ok(value) => value,
        Err(_) if bytes.trim_ascii().is_empty() => return Ok(None),
        Err(error) => {
            tracing::warn!(alias = %guard.alias, %error, "an answer the guardrails cannot read was withheld");
            return Err(unreadable(&guard.alias, "an answer"));
        }
    };
    let mut blocked = None;
    let mut masked = Vec::new();
    let mut findings = Vec::new();
    surface.answer_texts(&mut value, &mut |text, form| {
        if blocked.is_none() {
            blocked = matcher.apply(text, None, form, &mut findings, &mut masked);
        }
    });
    if let Some(rule) = blocked {
        let name = &matcher.rules[usize::from(rule)].name;
        metrics.count(&guard.alias, name, Action::block, Side::response);
        return Err(violation(&guard.alias, name, Direction::Response));
    }
    if masked.is_empty() {
        return Ok(None);
    }
    surface.scrub(&mut value);
    count_masks(guard, matcher, &mut masked, metrics);
    Ok(serde_json::to_vec(&value).ok().map(Bytes::from))
}

fn count_masks(guard: &Guard, matcher: &Matcher, rules: &mut Vec<u16>, metrics: &GuardMetrics) {
    rules.sort_unstable();
    rules.dedup();
    for rule in rules.iter() {
        metrics.count(
            &guard.alias,
            &matcher.rules[usize::from(*rule)].name,
            Action::mask,
            Side::response,
        );
    }
}
