//! The HTTP listener of the AWS-compatible API: `POST /` with `X-Amz-Target`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use shoal_node::Node;
use tokio::net::TcpListener;

use crate::error::AwsError;
use crate::kinesis::{self, KinesisApi};
use crate::request::AwsRequest;
use crate::sigv4::caller_scope;

const KINESIS_TARGET_PREFIX: &str = "Kinesis_20131202.";
const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Serves the AWS APIs of `node` on `listener` until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api = Arc::new(KinesisApi::new(node));
    let app = Router::new()
        .route("/", post(dispatch))
        .route("/health", get(|| async { "ok" }))
        // Records reach 10 MiB, base64-encoded in JSON: allow the largest call.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

async fn dispatch(State(api): State<Arc<KinesisApi>>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&api, &headers, &body).await {
        Ok(value) => {
            let mut response = (StatusCode::OK, value.to_string()).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
            response
        }
        Err(error) => {
            metrics::counter!("shoal_aws_errors_total", "type" => error.type_name.clone()).increment(1);
            error.into_response()
        }
    }
}

async fn handle(api: &KinesisApi, headers: &HeaderMap, body: &[u8]) -> Result<Value, AwsError> {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(operation) = target.strip_prefix(KINESIS_TARGET_PREFIX) else {
        return Err(AwsError::unknown_operation(if target.is_empty() { "(missing X-Amz-Target)" } else { target }));
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.contains("cbor") {
        return Err(AwsError::serialization("application/x-amz-cbor-1.1 is not supported yet; send AWS JSON 1.1"));
    }
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| AwsError::serialization(format!("Request body is not valid JSON: {e}")))?
    };
    if !body.is_object() {
        return Err(AwsError::serialization("Request body must be a JSON object"));
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let request = AwsRequest { operation: operation.to_string(), body, scope: caller_scope(authorization) };
    metrics::counter!("shoal_aws_requests_total", "operation" => request.operation.clone()).increment(1);
    kinesis::handle(api, &request).await
}
