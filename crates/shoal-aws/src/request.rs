//! What every AWS call carries.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::AwsError;
use crate::sigv4::CallerScope;

/// The encoding a call arrived in, and is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    Json,
    Cbor,
}

impl WireFormat {
    pub fn of(content_type: &str) -> WireFormat {
        if content_type.contains("cbor") { WireFormat::Cbor } else { WireFormat::Json }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            WireFormat::Json => "application/x-amz-json-1.1",
            WireFormat::Cbor => "application/x-amz-cbor-1.1",
        }
    }
}

/// Which AWS service a call is for (its `X-Amz-Target` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsApi {
    /// `Kinesis_20131202.*`
    Kinesis,
    /// `Firehose_20150804.*`
    Firehose,
}

pub struct AwsRequest {
    pub api: AwsApi,
    pub operation: String,
    pub body: Value,
    pub scope: CallerScope,
    pub format: WireFormat,
}

impl AwsRequest {
    /// Reads the body as the operation's input shape.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, AwsError> {
        serde_json::from_value(self.body.clone())
            .map_err(|e| AwsError::serialization(format!("Invalid input for {}: {e}", self.operation)))
    }
}
