//! What every AWS call carries.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::AwsError;
use crate::sigv4::CallerScope;

pub struct AwsRequest {
    pub operation: String,
    pub body: Value,
    pub scope: CallerScope,
}

impl AwsRequest {
    /// Reads the body as the operation's input shape.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, AwsError> {
        serde_json::from_value(self.body.clone())
            .map_err(|e| AwsError::serialization(format!("Invalid input for {}: {e}", self.operation)))
    }
}
