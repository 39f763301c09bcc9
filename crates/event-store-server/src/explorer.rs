//! The web explorer: a page of plain HTML, CSS and JavaScript embedded in the binary (no CDN,
//! works offline) that browses streams, searches, shows events, follows the live tail and
//! charts the activity, through the API itself.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../explorer/index.html");
const SCRIPT: &str = include_str!("../explorer/app.js");
const STYLE: &str = include_str!("../explorer/app.css");

/// Scripts and styles from the server only; the page cannot be framed.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                      base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `/` and `/explorer` lead to `/explorer/`, which serves the page and its two assets. The
/// assets hold no data, so they need no token; the page asks for one when the API does.
pub(crate) fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("explorer/") }))
        .route("/explorer", get(|| async { Redirect::to("explorer/") }))
        .route(
            "/explorer/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/explorer/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/explorer/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}
