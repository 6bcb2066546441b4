//! The emulator's HTTP-independent response and error types, shared by the top-level routes
//! and the `$batch` writer (which renders them as embedded HTTP messages).

use serde_json::{json, Value};

pub const JSON_CONTENT_TYPE: &str = "application/json; odata.metadata=minimal";

/// Error codes the emulator answers with (see the README for where each comes from).
pub mod codes {
    pub const STRING_TOO_LONG: &str = "0x80044331";
    pub const DUPLICATE_KEY_ON_CREATE: &str = "0x80060892";
    pub const DUPLICATE_RECORD: &str = "0x80040237";
    pub const DOES_NOT_EXIST: &str = "0x80040217";
    pub const RESOURCE_NOT_FOUND: &str = "0x80060888";
    pub const PAYLOAD_ERROR: &str = "0x80048d19";
    pub const INVALID_ARGUMENT: &str = "0x80040203";
    pub const PICKLIST_OUT_OF_RANGE: &str = "0x8004431a";
    pub const VERSION_MISMATCH: &str = "0x80060882";
    pub const NOT_AUTHENTICATED: &str = "0x80072182";
    pub const LIMIT_REQUESTS: &str = "0x80072322";
    pub const LIMIT_EXECUTION_TIME: &str = "0x80072321";
    pub const LIMIT_CONCURRENCY: &str = "0x80072326";
    pub const SERVICE_UNAVAILABLE: &str = "0x80040216";
    pub const METHOD_NOT_ALLOWED: &str = "0x80060889";
}

#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    pub fn no_content() -> ApiResponse {
        ApiResponse {
            status: 204,
            headers: vec![],
            body: vec![],
        }
    }

    pub fn json(status: u16, value: &Value) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![("Content-Type".into(), JSON_CONTENT_TYPE.into())],
            body: serde_json::to_vec(value).expect("a JSON value serializes"),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> ApiResponse {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// An error in the Dataverse shape `{"error":{"code","message"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub headers: Vec<(String, String)>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            headers: vec![],
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    pub fn payload(message: impl Into<String>) -> ApiError {
        ApiError::new(400, codes::PAYLOAD_ERROR, message)
    }

    pub fn segment_not_found(segment: &str) -> ApiError {
        ApiError::new(
            404,
            codes::RESOURCE_NOT_FOUND,
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> ApiError {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }

    pub fn into_response(self) -> ApiResponse {
        let mut response = ApiResponse::json(self.status, &self.body());
        response.headers.extend(self.headers);
        response
    }
}

/// The reason phrase for a status line inside a `$batch` response.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}
