//! The client-facing API, served both under `/v1` and at the root (clients configured with a
//! base URL without `/v1` call `/chat/completions`).
//!
//! The three proxied endpoints are matched here directly; everything else goes through an
//! axum router. Matching three fixed paths costs a fraction of the router's work (route
//! lookup, matched-path and URL-parameter extensions, boxed futures) on every request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::future::Either;
use tower::Service;

use super::error::{json_response, ApiError};
use super::live;
use super::metrics::Endpoint;
use super::request_id::{self, X_REQUEST_ID};
use super::server::Served;
use super::{proxy, Shared};

/// The API as a service for `axum::serve`.
#[derive(Clone)]
pub struct Api {
    shared: Arc<Shared>,
    router: Router,
}

impl Api {
    pub fn new(shared: Arc<Shared>) -> Self {
        let mut router = Router::new();
        for prefix in ["/v1", ""] {
            router = router
                .route(&format!("{prefix}/models"), get(list_models))
                .route(&format!("{prefix}/models/{{id}}"), get(get_model));
        }
        let router = router
            .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
            .fallback(|uri: Uri| async move { ApiError::unknown_path(uri.path()) })
            .with_state(shared.clone());
        Api { shared, router }
    }
}

/// The proxied endpoint a path names, if any.
fn proxied(path: &str) -> Option<Endpoint> {
    match path.strip_prefix("/v1").unwrap_or(path) {
        "/chat/completions" => Some(Endpoint::chat_completions),
        "/completions" => Some(Endpoint::completions),
        "/embeddings" => Some(Endpoint::embeddings),
        "/messages" => Some(Endpoint::messages),
        "/messages/count_tokens" => Some(Endpoint::count_tokens),
        "/responses" => Some(Endpoint::responses),
        _ => None,
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Service<Request> for Api {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Answer {
        match self.route(request) {
            Route::Proxied(shared, endpoint, request, id) => Box::pin(proxied_answer(shared, endpoint, request, id)),
            Route::Other(answer) => answer,
        }
    }
}

/// The HTTP/1.1 connection keeps the proxied endpoints' answer in a box it reuses: no
/// allocation (of about 5 KB) per request.
impl Served for Api {
    fn answer(&self, request: Request) -> impl Future<Output = Result<Response, Infallible>> + Send + use<> {
        // Either future, not an `async` block over the route: that would keep the route (296
        // bytes) beside the answer made from it.
        match self.route(request) {
            Route::Proxied(shared, endpoint, request, id) => {
                Either::Left(proxied_answer(shared, endpoint, request, id))
            }
            Route::Other(answer) => Either::Right(answer),
        }
    }
}

/// Where a request goes: a proxied endpoint, or the rest of the API (boxed; rare).
// Moved once, into the answer; boxing the request would bring back an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Route {
    Proxied(Arc<Shared>, Endpoint, Request, HeaderValue),
    Other(Answer),
}

impl Api {
    fn route(&self, request: Request) -> Route {
        // Before anything else, so that every answer, errors included, carries it.
        let id = request_id::ensure(request.headers());
        match proxied(request.uri().path()) {
            Some(endpoint) if request.method() == Method::POST => {
                Route::Proxied(self.shared.clone(), endpoint, request, id)
            }
            Some(_) => {
                let (limit, timeout) = (self.shared.max_body_bytes, self.shared.body_timeout);
                Route::Other(Box::pin(async move {
                    let response = match drained(request, limit, timeout).await {
                        Ok(_) => ApiError::method_not_allowed().into_response(),
                        Err(error) => error.into_response(),
                    };
                    Ok(with_id(response, id))
                }))
            }
            None => {
                let mut router = self.router.clone();
                let (limit, timeout) = (self.shared.max_body_bytes, self.shared.body_timeout);
                Route::Other(Box::pin(async move {
                    let response = match drained(request, limit, timeout).await {
                        Ok(request) => router.call(request).await?,
                        Err(error) => error.into_response(),
                    };
                    Ok(with_id(response, id))
                }))
            }
        }
    }
}

/// The answer of a proxied endpoint.
// Not an `async fn`: the request is taken apart before the future is made, so that the future
// holds only its headers and body, once each.
fn proxied_answer(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    request: Request,
    id: HeaderValue,
) -> impl Future<Output = Result<Response, Infallible>> {
    let (http::request::Parts { headers, .. }, body) = request.into_parts();
    async move {
        let response = proxy::handle(shared, endpoint, headers, body, id.clone()).await;
        Ok(with_id(response, id))
    }
}

fn with_id(mut response: Response, id: HeaderValue) -> Response {
    response.headers_mut().insert(X_REQUEST_ID, id);
    response
}

/// The request with its body read and dropped, for answers that ignore the body: hyper closes
/// a connection whose request body was not read to the end, without saying so, and a client
/// that reuses the connection for its next request then fails.
async fn drained(request: Request, limit: usize, timeout: Duration) -> Result<Request, ApiError> {
    let (parts, body) = request.into_parts();
    if !http_body::Body::is_end_stream(&body) {
        proxy::read_body(body, &parts.headers, limit, timeout).await?;
    }
    Ok(Request::from_parts(parts, axum::body::Body::empty()))
}

async fn list_models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match shared.tenancy.visible(&headers) {
        Ok(None) => json(shared.live.load().models_body.clone()),
        Ok(Some(team)) => json(live::models_body_for(&shared.live.load(), |alias| {
            team.grants.contains_key(alias)
        })),
        Err(error) => error.into_response(),
    }
}

async fn get_model(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    // An id that is not UTF-8 once decoded names no model: the same 404, with the id as sent.
    let Ok(Path(id)) = id else {
        return ApiError::model_not_found(uri.path().rsplit('/').next().unwrap_or_default()).into_response();
    };
    let table = shared.live.load();
    match shared.tenancy.visible(&headers) {
        Ok(Some(team)) if table.routes.contains_key(&id) && !team.grants.contains_key(id.as_str()) => {
            return ApiError::model_access_denied(&id, &team.label).into_response();
        }
        Err(error) => return error.into_response(),
        _ => {}
    }
    match table.routes.get(&id) {
        None => ApiError::model_not_found(&id).into_response(),
        Some(route) => match &route.disabled {
            Some(why) => ApiError::model_disabled(&id, why).into_response(),
            None => json(live::model_object(&route.alias, route.created, None).to_string().into()),
        },
    }
}

fn json(body: bytes::Bytes) -> Response {
    json_response(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxied_paths_are_matched_with_and_without_v1() {
        assert_eq!(proxied("/v1/chat/completions"), Some(Endpoint::chat_completions));
        assert_eq!(proxied("/chat/completions"), Some(Endpoint::chat_completions));
        assert_eq!(proxied("/v1/completions"), Some(Endpoint::completions));
        assert_eq!(proxied("/embeddings"), Some(Endpoint::embeddings));
        assert_eq!(proxied("/v1/models"), None);
        assert_eq!(proxied("/v1/chat/completions/"), None);
        assert_eq!(proxied("/v2/chat/completions"), None);
        assert_eq!(proxied("/v1/v1/chat/completions"), None);
    }
}
