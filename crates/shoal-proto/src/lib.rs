//! Generated code for Shoal's gRPC API (`proto/shoal/v1`) and the codec it uses.
//! Hand-written logic lives elsewhere; this crate only compiles the protocol.

pub mod codec;

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("shoal.v1");
}

/// The Kinesis Producer Library's aggregated record (`proto/kpl/aggregation.proto`).
#[allow(clippy::all, clippy::pedantic)]
pub mod kpl {
    tonic::include_proto!("kpl");
}
