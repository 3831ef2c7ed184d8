//! Request tracing. Every request gets an id (`x-request-id`: the client's when it sent one,
//! else `<run>-<n>`, where `<run>` is random per start of `serve`) that goes back in the
//! response, and a span `iot2mqtt.http.request` with the id, method and route. Whatever is
//! logged while the request is handled (an internal error's detail among it) carries the id, so
//! a user's report of a failed request can be matched to the server's log line. Each response
//! is logged at debug with its status and latency; a server error at error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{HeaderName, HeaderValue, Request};
use tower_http::LatencyUnit;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::{Level, Span};

/// The header that carries a request's id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wrap `router`: ids first, then the span around everything the handler does.
pub fn layer(router: Router) -> Router {
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::DEBUG).latency_unit(LatencyUnit::Millis))
                .on_failure(DefaultOnFailure::new().level(Level::ERROR).latency_unit(LatencyUnit::Millis)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, Sequence::new()))
}

fn span(request: &Request<Body>) -> Span {
    let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let route = request.extensions().get::<MatchedPath>().map_or("(none)", MatchedPath::as_str);
    tracing::info_span!("iot2mqtt.http.request", id = %id, method = %request.method(), route = %route)
}

/// Request ids `<run>-<n>`.
#[derive(Debug, Clone)]
struct Sequence {
    run: Arc<str>,
    next: Arc<AtomicU64>,
}

impl Sequence {
    fn new() -> Self {
        Self { run: format!("{:08x}", rand::random::<u32>()).into(), next: Arc::default() }
    }
}

impl MakeRequestId for Sequence {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        HeaderValue::from_str(&format!("{}-{n}", self.run)).ok().map(RequestId::new)
    }
}
