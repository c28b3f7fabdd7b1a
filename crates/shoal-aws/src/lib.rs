//! The AWS wire protocols on a Shoal node.
//!
//! Every node serves the Kinesis Data Streams API (`Kinesis_20131202`, AWS JSON 1.1)
//! on an HTTP port, so boto3, the `aws` CLI and the AWS SDKs work against Shoal by
//! changing only the endpoint URL. The layers:
//!
//! * [`server`]: the HTTP listener, `POST /` with `X-Amz-Target`.
//! * [`request`]: what every call carries — the operation, the JSON body, and the
//!   region and account from the SigV4 credential scope ([`sigv4`]); signatures
//!   are checked ([`sigv4_verify`]) when the node is given credentials.
//! * [`cbor`]: `application/x-amz-cbor-1.1` (the Java SDKs) translated to and from
//!   the JSON the handlers speak.
//! * [`event_stream`]: the binary framing of SubscribeToShard's event stream.
//! * [`error`]: failures as AWS SDKs parse them (`__type`, `message`, HTTP status).
//! * [`kinesis`]: one handler per operation, translating JSON shapes to the node's
//!   own gRPC services, called in-process.

pub mod cbor;
pub mod error;
pub mod event_stream;
pub mod firehose;
pub mod kinesis;
pub mod request;
pub mod server;
pub mod sigv4;
pub mod sigv4_verify;

pub use server::serve;
