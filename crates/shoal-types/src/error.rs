//! The one error vocabulary of Shoal.
//!
//! Every failure a user can see carries an [`ErrorCode`] whose name is the
//! exception type of the Kinesis API model (`ResourceNotFoundException` …), so the
//! gRPC API (status code plus an `x-shoal-error-type` header) and the AWS wire
//! protocol (`__type`) say the same thing.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    InvalidArgument,
    ResourceNotFound,
    ResourceInUse,
    LimitExceeded,
    ExpiredIterator,
    ExpiredNextToken,
    ProvisionedThroughputExceeded,
    Validation,
    /// A version check failed: the resource changed since it was read (Firehose's
    /// `UpdateDestination`).
    ConcurrentModification,
    /// The cluster cannot serve the call right now (no leader, node shutting
    /// down); retrying soon is expected to work.
    Unavailable,
    InternalFailure,
}

impl ErrorCode {
    /// The exception name of the Kinesis model (`__type` on the AWS wire).
    pub fn aws_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "InvalidArgumentException",
            ErrorCode::ResourceNotFound => "ResourceNotFoundException",
            ErrorCode::ResourceInUse => "ResourceInUseException",
            ErrorCode::LimitExceeded => "LimitExceededException",
            ErrorCode::ExpiredIterator => "ExpiredIteratorException",
            ErrorCode::ExpiredNextToken => "ExpiredNextTokenException",
            ErrorCode::ProvisionedThroughputExceeded => "ProvisionedThroughputExceededException",
            ErrorCode::Validation => "ValidationException",
            ErrorCode::ConcurrentModification => "ConcurrentModificationException",
            ErrorCode::Unavailable => "ServiceUnavailableException",
            ErrorCode::InternalFailure => "InternalFailure",
        }
    }

    pub fn from_aws_type(name: &str) -> Option<ErrorCode> {
        ALL_CODES.iter().copied().find(|code| code.aws_type() == name)
    }

    /// HTTP status an AWS SDK expects for this error.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InternalFailure => 500,
            ErrorCode::Unavailable => 503,
            _ => 400,
        }
    }

    /// Whether a client may retry the same call unchanged.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::ProvisionedThroughputExceeded | ErrorCode::LimitExceeded)
    }
}

const ALL_CODES: [ErrorCode; 11] = [
    ErrorCode::InvalidArgument,
    ErrorCode::ResourceNotFound,
    ErrorCode::ResourceInUse,
    ErrorCode::LimitExceeded,
    ErrorCode::ExpiredIterator,
    ErrorCode::ExpiredNextToken,
    ErrorCode::ProvisionedThroughputExceeded,
    ErrorCode::Validation,
    ErrorCode::ConcurrentModification,
    ErrorCode::Unavailable,
    ErrorCode::InternalFailure,
];

/// An error a user can act on: its type and a message that says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {message}", code.aws_type())]
pub struct ShoalError {
    pub code: ErrorCode,
    pub message: String,
}

pub type ShoalResult<T> = Result<T, ShoalError>;

impl ShoalError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ShoalError { code, message: message.into() }
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceNotFound, message)
    }
    pub fn in_use(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceInUse, message)
    }
    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::LimitExceeded, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalFailure, message)
    }
    pub fn stream_not_found(stream: &str) -> Self {
        Self::not_found(format!("Stream {stream} under account {} not found.", crate::limits::DEFAULT_ACCOUNT_ID))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_type_names_round_trip() {
        for code in ALL_CODES {
            assert_eq!(ErrorCode::from_aws_type(code.aws_type()), Some(code));
        }
        assert_eq!(ErrorCode::from_aws_type("NoSuchThing"), None);
    }

    #[test]
    fn client_errors_are_400_and_failures_500() {
        assert_eq!(ErrorCode::ResourceNotFound.http_status(), 400);
        assert_eq!(ErrorCode::InternalFailure.http_status(), 500);
    }
}
