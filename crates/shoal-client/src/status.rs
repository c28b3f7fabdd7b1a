//! Mapping between [`ShoalError`] and gRPC statuses.
//!
//! The gRPC code says what kind of failure it was; the `x-shoal-error-type`
//! metadata carries the exact Kinesis exception name so nothing is lost on the way
//! through a forwarding node or into the AWS-compatible front end.

use shoal_types::{ErrorCode, ShoalError};
use tonic::{Code, Status};

pub const ERROR_TYPE_HEADER: &str = "x-shoal-error-type";

pub fn grpc_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument | ErrorCode::Validation => Code::InvalidArgument,
        ErrorCode::ResourceNotFound => Code::NotFound,
        ErrorCode::ResourceInUse => Code::FailedPrecondition,
        ErrorCode::ConcurrentModification => Code::Aborted,
        ErrorCode::LimitExceeded | ErrorCode::ProvisionedThroughputExceeded => Code::ResourceExhausted,
        ErrorCode::ExpiredIterator | ErrorCode::ExpiredNextToken => Code::OutOfRange,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::InternalFailure => Code::Internal,
    }
}

pub fn to_status(error: ShoalError) -> Status {
    let mut status = Status::new(grpc_code(error.code), error.message);
    if let Ok(value) = error.code.aws_type().parse() {
        status.metadata_mut().insert(ERROR_TYPE_HEADER, value);
    }
    status
}

pub fn from_status(status: &Status) -> ShoalError {
    let typed =
        status.metadata().get(ERROR_TYPE_HEADER).and_then(|v| v.to_str().ok()).and_then(ErrorCode::from_aws_type);
    let code = typed.unwrap_or(match status.code() {
        Code::InvalidArgument => ErrorCode::InvalidArgument,
        Code::NotFound => ErrorCode::ResourceNotFound,
        Code::AlreadyExists | Code::FailedPrecondition => ErrorCode::ResourceInUse,
        Code::ResourceExhausted => ErrorCode::LimitExceeded,
        Code::OutOfRange => ErrorCode::ExpiredIterator,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorCode::Unavailable,
        _ => ErrorCode::InternalFailure,
    });
    ShoalError::new(code, status.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_a_round_trip() {
        for code in
            [ErrorCode::InvalidArgument, ErrorCode::ExpiredIterator, ErrorCode::Validation, ErrorCode::Unavailable]
        {
            let back = from_status(&to_status(ShoalError::new(code, "why")));
            assert_eq!(back, ShoalError::new(code, "why"));
        }
    }

    #[test]
    fn plain_transport_errors_are_retryable() {
        let err = from_status(&Status::unavailable("connection refused"));
        assert!(err.code.is_retryable());
    }
}
