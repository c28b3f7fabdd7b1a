//! Transport security for Shoal.
//!
//! Read in this order:
//!
//! 1. [`config`]: the `[tls]` section of a node's configuration — certificate, key,
//!    the cluster's CA, and whether every gRPC client must present a certificate.
//! 2. [`node_tls`]: that configuration loaded and checked: the server side of the
//!    gRPC and AWS endpoints, and the identity a node presents to its peers.
//! 3. [`dialer`]: how a node or a client opens gRPC channels — plain `http://`, or
//!    `https://` trusting the cluster's CA and, for mutual TLS, presenting a certificate.
//! 4. [`http_listener`]: a TLS listener for the AWS-compatible HTTP API (axum).
//! 5. [`generate`]: a cluster CA and node/client certificates, for `shoal tls generate`.
//!
//! The crypto provider is rustls with *ring*: one provider in the build, so rustls
//! picks it without a process-wide default having to be installed.

pub mod config;
pub mod dialer;
pub mod error;
pub mod generate;
pub mod http_listener;
pub mod node_tls;
mod pem;

pub use config::TlsConfig;
pub use dialer::Dialer;
pub use error::TlsError;
pub use http_listener::TlsListener;
pub use node_tls::NodeTls;
