//! The AWS wire protocols on a Shoal node.
//!
//! Every node serves the Kinesis Data Streams API (`Kinesis_20131202`, AWS JSON 1.1)
//! on an HTTP port, so boto3, the `aws` CLI and the AWS SDKs work against Shoal by
//! changing only the endpoint URL. The layers:
//!
//! * [`server`]: the HTTP listener, `POST /` with `X-Amz-Target`.
//! * [`request`]: what every call carries — the operation, the JSON body, and the
//!   region and account from the SigV4 credential scope ([`sigv4`]).
//! * [`error`]: failures as AWS SDKs parse them (`__type`, `message`, HTTP status).
//! * [`kinesis`]: one handler per operation, translating JSON shapes to the node's
//!   own gRPC services, called in-process.

pub mod error;
pub mod kinesis;
pub mod request;
pub mod server;
pub mod sigv4;

pub use server::serve;
