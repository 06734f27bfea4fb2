//! The pages served by the binary itself, embedded at build time so `kefu serve` works from any
//! directory: `/widget.js` (the embeddable help widget), `/` (a demo help center with the widget
//! on it), `/console` (the agent console) and `/kb/{id}` (one article, loaded from the API).
//!
//! Must never: read these files from disk at run time, or template user input into them (the
//! pages fetch their data from the API and insert it as text).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

const WIDGET_JS: &str = include_str!("../../static/widget.js");
const INDEX_HTML: &str = include_str!("../../static/index.html");
const CONSOLE_HTML: &str = include_str!("../../static/console.html");
const ARTICLE_HTML: &str = include_str!("../../static/article.html");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/widget.js", get(widget))
        .route("/console", get(console))
        .route("/kb/{*id}", get(article))
}

fn page(body: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("strict-origin-when-cross-origin"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    page(INDEX_HTML)
}

async fn console() -> Response {
    page(CONSOLE_HTML)
}

/// Any id: the page itself asks `/v1/articles/{id}` and shows "not found" when it must.
async fn article() -> Response {
    page(ARTICLE_HTML)
}

async fn widget() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/javascript; charset=utf-8"),
            ),
            // Sites embed this script: let them cache it briefly, then revalidate.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        WIDGET_JS,
    )
        .into_response()
}
