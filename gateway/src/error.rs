//! Every API error is JSON: a stable code and a human message.

use serde::Serialize;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable (`malformed`, `forbidden`, `already_sold`, …).
    pub code: String,
    /// For people.
    pub message: String,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request is not what the API accepts.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422: well-formed JSON whose values are refused.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field}: {why}"),
        )
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in first: send Authorization: Bearer <token>",
        )
    }

    /// 409 `conflict`: the record changed since it was read.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// Render.
    pub fn into_response(self) -> Response {
        json_response(
            self.status,
            &ErrorBody {
                code: self.code.to_owned(),
                message: self.message,
            },
        )
    }
}

impl From<schema::store::StoreError> for ApiError {
    fn from(e: schema::store::StoreError) -> Self {
        tracing::error!(error = %e, "store error in the API");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the data store is unavailable; retry shortly",
        )
    }
}

impl From<engine::sales::Refusal> for ApiError {
    fn from(r: engine::sales::Refusal) -> Self {
        use engine::sales::Refusal::*;
        let status = match &r {
            Malformed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            NotInInventory(_) => StatusCode::NOT_FOUND,
            AlreadySold(_) | Reserved { .. } => StatusCode::CONFLICT,
            NotYourPstn { .. } | PstnNotVerified { .. } | WrongKind { .. } => StatusCode::FORBIDDEN,
            InsufficientBalance { .. } => StatusCode::PAYMENT_REQUIRED,
            HoldExpired(_) => StatusCode::GONE,
        };
        ApiError::new(status, r.code(), r.to_string())
    }
}

/// A JSON response with a status.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = Response::new(bytes.into());
    *res.status_mut() = status;
    res.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    res
}
