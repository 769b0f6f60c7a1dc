//! The read API of the SaaS document, on the admin port: aliases with their usage, teams,
//! access groups. With `--admin-token`, every `/api` request needs `Authorization: Bearer
//! <token>` (compared in constant time). With a shared store, figures cover every replica.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::store::memory::Totals;
use crate::compiler::tenancy::{format_usd, usd, TeamAccess};
use crate::gateway::error::json_response;
use crate::gateway::live::LiveRoute;
use crate::gateway::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/model-aliases", get(list_aliases))
        .route("/api/model-aliases/{alias}", get(alias_detail))
        .route("/api/teams/{team}", get(team_detail))
        .route("/api/model-access-groups/{group}", get(group_detail))
        .route_layer(middleware::from_fn_with_state(shared.clone(), require_token))
        .with_state(shared)
}

async fn require_token(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(token) = &shared.tenancy.options.admin_token {
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API needs the gateway's admin token: send Authorization: Bearer <token> (--admin-token)",
            );
        }
    }
    next.run(request).await
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, json!({"error": {"code": code, "message": message}}).to_string())
}

fn ok(value: Value) -> Response {
    json_response(StatusCode::OK, value.to_string())
}

fn target_text(route: &LiveRoute) -> String {
    let parts: Vec<String> = route
        .targets
        .iter()
        .map(|t| {
            let provider = t.upstream.name.split_once('/').map_or(&*t.upstream.name, |(_, n)| n);
            format!("{provider}/{}", t.model)
        })
        .collect();
    parts.join(", ")
}

fn created_at(seconds: i64) -> Value {
    jiff::Timestamp::from_second(seconds)
        .ok()
        .filter(|_| seconds > 0)
        .map_or(Value::Null, |t| Value::from(t.to_string()))
}

fn alias_summary(route: &LiveRoute, totals: &Totals) -> Value {
    json!({
        "alias": &*route.alias,
        "target": target_text(route),
        "description": route.description.as_deref(),
        "active": route.disabled.is_none(),
        "usage_count": totals.requests,
        "usage": usage_json("all", totals),
    })
}

async fn list_aliases(State(shared): State<Arc<Shared>>) -> Response {
    let table = shared.live.load();
    let mut routes: Vec<&LiveRoute> = table.routes.values().collect();
    routes.sort_by(|a, b| a.alias.cmp(&b.alias));
    let mut aliases = Vec::with_capacity(routes.len());
    for route in routes {
        let totals = shared.tenancy.store.alias_totals(&route.alias).await;
        aliases.push(alias_summary(route, &totals));
    }
    ok(json!({ "aliases": aliases }))
}

async fn alias_detail(State(shared): State<Arc<Shared>>, Path(alias): Path<String>) -> Response {
    let table = shared.live.load();
    let Some(route) = table.routes.get(&alias) else {
        return error(
            StatusCode::NOT_FOUND,
            "model_not_found",
            &format!("no alias '{alias}' on this gateway"),
        );
    };
    let access = shared.tenancy.live.load();
    let groups: Vec<String> = access
        .table
        .groups
        .iter()
        .filter(|g| g.aliases.iter().any(|a| a == &alias))
        .map(|g| g.key.name.clone())
        .collect();
    let teams = access.table.teams.iter().filter(|t| t.aliases.contains(&alias)).count();
    let totals = shared.tenancy.store.alias_totals(&alias).await;
    let tokens = totals.prompt_tokens + totals.completion_tokens;
    let mut body = alias_summary(route, &totals);
    if let Some(map) = body.as_object_mut() {
        map.insert("access_groups".into(), json!(groups));
        map.insert("teams_with_access".into(), json!(teams));
        map.insert(
            "usage_stats".into(),
            json!({
                "total_calls": totals.requests,
                "total_cost_usd": usd(totals.cost),
                "avg_tokens_per_call": tokens.checked_div(totals.requests).unwrap_or(0),
            }),
        );
        map.insert("created_at".into(), created_at(route.created));
        map.insert(
            "pricing".into(),
            route.pricing.as_ref().map_or(Value::Null, |p| json!(p)),
        );
    }
    ok(body)
}

#[derive(serde::Deserialize)]
struct NamespaceQuery {
    namespace: Option<String>,
}

/// The one object of this name (in `namespace`, when given), or the error to answer.
fn pick<'a, T>(
    items: impl Iterator<Item = &'a T>,
    key: impl Fn(&T) -> &crate::compiler::ObjectKey,
    name: &str,
    namespace: Option<&str>,
    what: &str,
) -> Result<&'a T, Box<Response>>
where
    T: 'a,
{
    let found: Vec<&T> = items
        .filter(|t| key(t).name == name && namespace.is_none_or(|ns| key(t).namespace == ns))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no {what} '{name}' on this gateway"),
        ))),
        many => {
            let namespaces: Vec<&str> = many.iter().map(|t| key(t).namespace.as_str()).collect();
            Err(Box::new(error(
                StatusCode::CONFLICT,
                "ambiguous",
                &format!(
                    "{what} '{name}' exists in several namespaces ({}); add ?namespace=NS",
                    namespaces.join(", ")
                ),
            )))
        }
    }
}

async fn team_detail(
    State(shared): State<Arc<Shared>>,
    Path(team): Path<String>,
    Query(query): Query<NamespaceQuery>,
) -> Response {
    let access = shared.tenancy.live.load();
    let found: &TeamAccess = match pick(
        access.table.teams.iter(),
        |t| &t.key,
        &team,
        query.namespace.as_deref(),
        "team",
    ) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let label = found.key.to_string();
    let Some(live) = access.teams.iter().find(|t| *t.label == *label) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no team '{team}' on this gateway"),
        );
    };
    let (period, usage) = shared
        .tenancy
        .store
        .team_usage(&label, &live.counters, live.period())
        .await;
    let limits = &found.limits;
    ok(json!({
        "team_id": found.key.name,
        "namespace": found.key.namespace,
        "team_alias": found.display_name,
        "organization_id": found.organization,
        "access_groups": found.groups,
        "model_aliases": found.aliases,
        "keys": found.keys,
        "credits_allocated": found.credits.map(|c| usd(c.allocated)),
        "credits_remaining": found.credits.map(|c| usd(c.allocated - usage.cost)),
        "credits_period": found.credits.map(|c| c.period.as_str()),
        "limits": {
            "requests_per_minute": limits.requests_per_minute,
            "tokens_per_minute": limits.tokens_per_minute,
            "max_parallel_requests": limits.max_parallel_requests,
        },
        "usage": usage_json(&period, &usage),
    }))
}

pub fn usage_json(period: &str, usage: &Totals) -> Value {
    json!({
        "period": period,
        "requests": usage.requests,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_prompt_tokens": usage.cached_prompt_tokens,
        "cost_usd": format_usd(usage.cost),
    })
}

async fn group_detail(
    State(shared): State<Arc<Shared>>,
    Path(group): Path<String>,
    Query(query): Query<NamespaceQuery>,
) -> Response {
    let access = shared.tenancy.live.load();
    let found = match pick(
        access.table.groups.iter(),
        |g| &g.key,
        &group,
        query.namespace.as_deref(),
        "access group",
    ) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let teams: Vec<&str> = access
        .table
        .teams
        .iter()
        .filter(|t| t.key.namespace == found.key.namespace && t.groups.contains(&found.key.name))
        .map(|t| t.key.name.as_str())
        .collect();
    ok(json!({
        "group_name": found.key.name,
        "namespace": found.key.namespace,
        "description": found.description,
        "model_aliases": found.aliases,
        "teams": teams,
    }))
}
