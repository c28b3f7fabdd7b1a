//! Firehose's failure record: one JSON line per record a destination did not
//! take, written under the error prefix (`processing-failed/`, `http-endpoint-failed/`, …).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Why records failed: the error and how often delivery was tried.
pub struct Failure<'a> {
    pub code: &'a str,
    pub message: &'a str,
    pub attempts: u32,
    /// The function, for transformation failures (`lambdaArn`).
    pub lambda_arn: Option<&'a str>,
}

impl Failure<'_> {
    /// The line for one record that arrived at `arrival_millis`.
    pub fn line(&self, arrival_millis: u64, data: &[u8]) -> String {
        let mut record = serde_json::json!({
            "attemptsMade": self.attempts,
            "arrivalTimestamp": arrival_millis,
            "errorCode": self.code,
            "errorMessage": self.message,
            "attemptEndingTimestamp": shoal_types::now_millis(),
            "rawData": STANDARD.encode(data),
        });
        if let Some(arn) = self.lambda_arn {
            record["lambdaArn"] = serde_json::json!(arn);
        }
        record.to_string() + "\n"
    }
}
