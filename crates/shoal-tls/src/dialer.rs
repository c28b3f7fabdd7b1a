//! Opening gRPC channels, with or without TLS.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::{TlsError, pem};

/// The largest HTTP/2 DATA frame a Shoal endpoint accepts (`SETTINGS_MAX_FRAME_SIZE`),
/// on both ends of every gRPC connection: the node's server and every channel
/// [`Dialer::endpoint`] makes. A sender cuts each message into frames of at most
/// what its peer accepts, and writes each frame with its own `writev`; at HTTP/2's
/// default of 16 KiB a Raft entry of a few dozen 1 KiB records left the leader as
/// three writes per follower, each waking the follower's connection task
/// (docs/performance.md, sixteenth session).
pub const MAX_FRAME_BYTES: u32 = 1024 * 1024;

/// How to reach a node: plain HTTP/2, or TLS trusting a CA (and, for mutual TLS,
/// presenting a certificate). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Dialer {
    tls: Option<ClientTlsConfig>,
}

impl Dialer {
    /// Plain `http://`: what a cluster without TLS speaks.
    pub fn plain() -> Dialer {
        Dialer::default()
    }

    /// TLS trusting `ca_pem`, presenting `identity` (certificate, key) if given.
    pub fn tls(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> Dialer {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
        if let Some((cert, key)) = identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        Dialer { tls: Some(config) }
    }

    /// A dialer from PEM files: none given means plain; a CA means TLS; a
    /// certificate and key add a client identity (mutual TLS).
    pub fn from_files(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> Result<Dialer, TlsError> {
        let Some(ca) = ca else {
            if cert.is_some() || key.is_some() {
                return Err(TlsError::Invalid("a client certificate needs the CA too (--tls-ca)".into()));
            }
            return Ok(Dialer::plain());
        };
        let ca_pem = pem::read(ca)?;
        pem::certificates(&ca_pem, ca)?;
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => {
                let (cert_pem, key_pem) = (pem::read(cert)?, pem::read(key)?);
                pem::certificates(&cert_pem, cert)?;
                pem::private_key(&key_pem, key)?;
                Some((cert_pem, key_pem))
            }
            (None, None) => None,
            _ => return Err(TlsError::Invalid("--tls-cert and --tls-key must be given together".into())),
        };
        Ok(Dialer::tls(&ca_pem, identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()))))
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The endpoint of `addr` (`host:port`, or a URI with its scheme). The host
    /// name is what the server's certificate must name.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, TlsError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let uri = if addr.contains("://") { addr.to_string() } else { format!("{scheme}://{addr}") };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| TlsError::Invalid(format!("invalid address {addr}: {e}")))?
            .max_frame_size(MAX_FRAME_BYTES);
        match &self.tls {
            Some(config) => {
                endpoint.tls_config(config.clone()).map_err(|e| TlsError::Setup(format!("TLS for {addr}: {e}")))
            }
            None if addr.starts_with("https://") => {
                Err(TlsError::Invalid(format!("{addr} is https: give the cluster's CA (--tls-ca / SHOAL_TLS_CA)")))
            }
            None => Ok(endpoint),
        }
    }
}
