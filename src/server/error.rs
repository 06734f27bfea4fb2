//! The one error shape of the API, `{"error":{"code":"...","message":"..."}}`, and the extractors
//! that give axum's own rejections (bad JSON, wrong content type, bad query string or path, body
//! too large) that same shape.
//!
//! Must never: put internal detail into a 5xx answer; it is logged and the caller gets a generic
//! message (axum `examples/error-handling`). 4xx messages tell the caller what to fix.
//!
//! ```
//! use kefu::server::error::ApiError;
//! let err = ApiError::bad_request("invalid_limit", "limit must be between 1 and 100");
//! assert_eq!(err.status.as_u16(), 400);
//! ```

use axum::Json as AxumJson;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::route::RouteError;
use crate::search::SearchError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable `code` and a message for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// Per-record problems (bulk article upload), when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::ingest::IngestProblem>>)]
    pub problems: Option<Vec<crate::ingest::IngestProblem>>,
}

/// An error answered to the caller: a status, a code and a message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub problems: Option<Vec<crate::ingest::IngestProblem>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            problems: None,
        }
    }

    /// 400 with a code saying which input is wrong.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 500: logs `detail`, answers a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the details are in the server log",
        )
    }

    /// A blocking task panicked or was cancelled.
    pub fn from_join(err: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format_args!("blocking task failed: {err}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                problems: self.problems,
            },
        };
        let mut response = (self.status, AxumJson(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kefu\""),
            );
        }
        response
    }
}

impl From<SearchError> for ApiError {
    fn from(err: SearchError) -> ApiError {
        match err {
            SearchError::InvalidRequest(message) => {
                ApiError::bad_request("invalid_request", message)
            }
            SearchError::AnalyzerMismatch(message) => {
                tracing::error!(%message, "index built by another analyzer");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "index_unavailable",
                    "the index must be rebuilt; the details are in the server log",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(err: RouteError) -> ApiError {
        match err {
            RouteError::InvalidTicket(message) => ApiError::bad_request("invalid_ticket", message),
            other => ApiError::internal(other),
        }
    }
}

/// A stable code for a status that some layer produced without saying more.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable_entity",
        429 => "too_many_requests",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        s if s >= 500 => "internal",
        _ => "error",
    }
}

/// `Json` whose rejections use the error shape: 415 for a missing or wrong content type, 413 for
/// a body over the limit, 400 for malformed JSON or invalid UTF-8, 422 → 400 for wrong fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match AxumJson::<T>::from_request(req, state).await {
            Ok(AxumJson(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        AxumJson(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a body with `Content-Type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(err) => {
            ApiError::bad_request("malformed_json", err.body_text())
        }
        JsonRejection::JsonDataError(err) => ApiError::bad_request("invalid_body", err.body_text()),
        other if status == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "payload_too_large",
            format!("request body too large: {}", other.body_text()),
        ),
        other => ApiError::new(status, code_for_status(status), other.body_text()),
    }
}

/// `Query` whose rejections (bad number, invalid UTF-8, unknown value) are 400s in the error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // serde_urlencoded decodes invalid UTF-8 lossily (to U+FFFD): refuse it instead, so a
        // broken client is told rather than searching for replacement characters.
        if let Some(raw) = parts.uri.query()
            && std::str::from_utf8(&percent_decode(raw)).is_err()
        {
            return Err(ApiError::bad_request(
                "invalid_utf8",
                "the query string is not valid UTF-8 once percent-decoded",
            ));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

/// `%XX` → byte; everything else as is.
fn percent_decode(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query_string", rejection.body_text())
}

/// `Path` whose rejections (e.g. invalid percent-encoded UTF-8) are 400s in the error shape.
#[derive(Debug, Clone, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    let status = rejection.status();
    if status.is_server_error() {
        return ApiError::internal(rejection.body_text());
    }
    ApiError::bad_request("invalid_path", rejection.body_text())
}

/// The fallback for unknown routes.
pub async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(
        "not_found",
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

/// Middleware: any 4xx/5xx that some layer answered without a JSON body (axum's 405, a timeout,
/// a panic caught below) gets the error shape, so clients parse one shape whatever failed.
pub async fn shape_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_string(),
        s if s.is_server_error() => "internal error; the details are in the server log".into(),
        s => s.canonical_reason().unwrap_or("request failed").to_string(),
    };
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail {
            code: code_for_status(status).to_string(),
            message,
            problems: None,
        },
    })
    .unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}
