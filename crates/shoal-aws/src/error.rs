//! Errors as AWS SDKs parse them: HTTP status, `__type` and `message`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shoal_types::{ErrorCode, ShoalError};

/// A failed call, in the shape of the Kinesis model's exceptions or the
/// protocol-level errors (`SerializationException`, `UnknownOperationException`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub status: u16,
    pub type_name: String,
    pub message: String,
}

impl AwsError {
    pub fn serialization(message: impl Into<String>) -> Self {
        AwsError { status: 400, type_name: "SerializationException".into(), message: message.into() }
    }

    pub fn unknown_operation(operation: &str) -> Self {
        AwsError {
            status: 400,
            type_name: "UnknownOperationException".into(),
            message: format!("Operation {operation} is not supported."),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        ShoalError::invalid_argument(message).into()
    }

    pub fn validation(message: impl Into<String>) -> Self {
        ShoalError::new(ErrorCode::Validation, message).into()
    }
}

impl From<ShoalError> for AwsError {
    fn from(error: ShoalError) -> Self {
        AwsError { status: error.code.http_status(), type_name: error.code.aws_type().into(), message: error.message }
    }
}

impl From<tonic::Status> for AwsError {
    fn from(status: tonic::Status) -> Self {
        shoal_client::status::from_status(&status).into()
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "__type": self.type_name, "message": self.message }).to_string();
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
        if let Ok(value) = HeaderValue::from_str(&self.type_name) {
            response.headers_mut().insert("x-amzn-ErrorType", value);
        }
        response
    }
}
