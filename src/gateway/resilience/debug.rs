//! `GET /debug/targets` on the admin port: every concrete target this replica knows, with
//! requests in flight, failures in a row, and whether (until when, and why) it is out of
//! rotation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::targets::Registry;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetView {
    provider: String,
    model: String,
    in_flight: usize,
    consecutive_failures: u32,
    /// `inRotation`, `ejected` or `retryAfter`.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// RFC 3339, UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds_left: Option<f64>,
}

/// The body of `GET /debug/targets`.
pub fn targets_json(registry: &Registry) -> String {
    let clock = registry.clock();
    let now = clock.now();
    let wall = SystemTime::now();
    let targets: Vec<TargetView> = registry
        .snapshot()
        .iter()
        .map(|state| {
            let out = state.out_at(now);
            let left = out.map(|o| Duration::from_nanos(o.until.saturating_sub(now)));
            TargetView {
                provider: state.provider.to_string(),
                model: state.model.to_string(),
                in_flight: state.in_flight(),
                consecutive_failures: state.consecutive_failures(),
                state: out.map_or("inRotation", |o| o.kind.as_str()),
                reason: out.map(|o| o.reason.as_str()),
                until: left.and_then(|l| rfc3339(wall + l)),
                seconds_left: left.map(|l| (l.as_secs_f64() * 1000.0).round() / 1000.0),
            }
        })
        .collect();
    serde_json::json!({ "targets": targets }).to_string()
}

fn rfc3339(at: SystemTime) -> Option<String> {
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    let timestamp = jiff::Timestamp::new(i64::try_from(since.as_secs()).ok()?, 0).ok()?;
    Some(timestamp.to_string())
}
