//! The HTTP listener of the AWS-compatible API: `POST /` with `X-Amz-Target`.
//!
//! A call is answered in the content type it came in: AWS JSON 1.1
//! (`application/x-amz-json-1.1`, what boto3, the CLI, Go, JS and Rust send) or
//! CBOR (`application/x-amz-cbor-1.1`, what the Java SDKs send), translated to
//! and from the JSON the handlers speak.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use shoal_node::Node;
use tokio::net::TcpListener;

use crate::cbor::{KINESIS_BLOB_FIELDS, KINESIS_TIMESTAMP_FIELDS, cbor_to_json, json_to_cbor};
use crate::error::AwsError;
use crate::firehose::FirehoseApi;
use crate::kinesis::{self, KinesisApi};
use crate::request::{AwsApi, AwsRequest, WireFormat};
use crate::sigv4::caller_scope;
use crate::sigv4_verify::{SignedRequest, verify};

const KINESIS_TARGET_PREFIX: &str = "Kinesis_20131202.";
const FIREHOSE_TARGET_PREFIX: &str = "Firehose_20150804.";
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// What every call shares: the operations and the accepted credentials.
pub struct AwsService {
    pub(crate) kinesis: Arc<KinesisApi>,
    firehose: Arc<FirehoseApi>,
    /// Secrets by access key id; empty means any credentials are accepted.
    credentials: HashMap<String, String>,
}

/// Serves the AWS APIs of `node` on `listener` until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let credentials =
        node.config.aws_credentials.iter().map(|c| (c.access_key_id.clone(), c.secret_access_key.clone())).collect();
    let tls = node.tls.clone();
    let service = Arc::new(AwsService {
        kinesis: Arc::new(KinesisApi::new(node.clone())),
        firehose: Arc::new(FirehoseApi::new(node)),
        credentials,
    });
    let app = Router::new()
        .route("/", post(dispatch))
        .route("/health", get(|| async { "ok" }))
        // Records reach 10 MiB, base64-encoded in JSON: allow the largest call.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service);
    // Same port either way: HTTPS when the node has TLS on, plain HTTP otherwise.
    match tls {
        Some(tls) => {
            let listener = shoal_tls::TlsListener::new(listener, tls.http_acceptor()?)?;
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        }
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await?,
    }
    Ok(())
}

/// Answers one call. A panic in a handler becomes a plain `InternalFailure`: the
/// caller learns nothing of it but that the call failed, and the node goes on.
async fn dispatch(
    State(service): State<Arc<AwsService>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let format = WireFormat::of(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default());
    let call = std::panic::AssertUnwindSafe(answer(service, method, uri, headers, body));
    match futures::FutureExt::catch_unwind(call).await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("an AWS API handler panicked; answered InternalFailure");
            error_response(shoal_types::ShoalError::internal("Internal Service Failure").into(), format)
        }
    }
}

async fn answer(service: Arc<AwsService>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let format = WireFormat::of(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default());
    let outcome = match authenticate(&service, &method, &uri, &headers, &body) {
        Ok(()) => match parse(&headers, &body, format) {
            Ok(request) => {
                metrics::counter!("shoal_aws_requests_total", "operation" => request.operation.clone()).increment(1);
                if request.operation == "SubscribeToShard" {
                    return match kinesis::subscribe::subscribe(service.kinesis.clone(), request).await {
                        Ok(response) => response,
                        Err(error) => error_response(error, format),
                    };
                }
                match request.api {
                    AwsApi::Kinesis => kinesis::handle(&service.kinesis, &request).await,
                    AwsApi::Firehose => crate::firehose::handle(&service.firehose, &request).await,
                }
            }
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    match outcome {
        Ok(value) => body_response(StatusCode::OK, &value, format),
        Err(error) => error_response(error, format),
    }
}

/// Checks the SigV4 signature when the node has credentials configured.
fn authenticate(
    service: &AwsService,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), AwsError> {
    if service.credentials.is_empty() {
        return Ok(());
    }
    let mut pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str().to_string(), v.to_string())))
        .collect();
    // Over HTTP/2 the host travels as :authority, which lives in the URI.
    if !pairs.iter().any(|(name, _)| name == "host")
        && let Some(authority) = uri.authority()
    {
        pairs.push(("host".into(), authority.to_string()));
    }
    let request = SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or_default(),
        headers: &pairs,
        body,
    };
    verify(&request, |key| service.credentials.get(key).cloned()).map(|_| ()).map_err(|error| AwsError {
        status: error.http_status(),
        type_name: error.type_name().into(),
        message: error.message().into(),
    })
}

fn parse(headers: &HeaderMap, body: &[u8], format: WireFormat) -> Result<AwsRequest, AwsError> {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (api, operation) = if let Some(operation) = target.strip_prefix(KINESIS_TARGET_PREFIX) {
        (AwsApi::Kinesis, operation)
    } else if let Some(operation) = target.strip_prefix(FIREHOSE_TARGET_PREFIX) {
        (AwsApi::Firehose, operation)
    } else {
        return Err(AwsError::unknown_operation(if target.is_empty() { "(missing X-Amz-Target)" } else { target }));
    };
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        match format {
            WireFormat::Json => serde_json::from_slice(body)
                .map_err(|e| AwsError::serialization(format!("Request body is not valid JSON: {e}")))?,
            WireFormat::Cbor => cbor_to_json(body)
                .map_err(|e| AwsError::serialization(format!("Request body is not valid CBOR: {e}")))?,
        }
    };
    if !body.is_object() {
        return Err(AwsError::serialization("Request body must be an object"));
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    Ok(AwsRequest { api, operation: operation.to_string(), body, scope: caller_scope(authorization), format })
}

/// Encodes `value` in the wire format of the call.
pub(crate) fn encode_body(value: &Value, format: WireFormat) -> Vec<u8> {
    match format {
        WireFormat::Json => value.to_string().into_bytes(),
        WireFormat::Cbor => {
            json_to_cbor(value, KINESIS_BLOB_FIELDS, KINESIS_TIMESTAMP_FIELDS).unwrap_or_else(|error| {
                tracing::error!(%error, "response not encodable as CBOR");
                Vec::new()
            })
        }
    }
}

fn body_response(status: StatusCode, value: &Value, format: WireFormat) -> Response {
    let mut response = (status, encode_body(value, format)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    response
}

fn error_response(error: AwsError, format: WireFormat) -> Response {
    metrics::counter!("shoal_aws_errors_total", "type" => error.type_name.clone()).increment(1);
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let value = serde_json::json!({ "__type": error.type_name, "message": error.message });
    let mut response = body_response(status, &value, format);
    if let Ok(value) = HeaderValue::from_str(&error.type_name) {
        response.headers_mut().insert("x-amzn-ErrorType", value);
    }
    response
}
