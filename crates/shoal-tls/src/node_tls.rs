//! A node's TLS settings, loaded from its `[tls]` files and checked.

use std::sync::Arc;

use tokio_rustls::rustls;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::{Dialer, TlsConfig, TlsError, pem};

/// What a node needs to serve TLS and to dial its peers with mutual TLS.
#[derive(Clone)]
pub struct NodeTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca_pem: Vec<u8>,
    require_client_cert: bool,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("NodeTls").field("require_client_cert", &self.require_client_cert).finish_non_exhaustive()
    }
}

impl NodeTls {
    /// Reads and parses the files of `config`; `None` when TLS is off.
    pub fn load(config: &TlsConfig) -> Result<Option<NodeTls>, TlsError> {
        config.validate()?;
        let (Some(cert), Some(key), Some(ca)) = (&config.cert, &config.key, &config.ca) else {
            return Ok(None);
        };
        let tls = NodeTls {
            cert_pem: pem::read(cert)?,
            key_pem: pem::read(key)?,
            ca_pem: pem::read(ca)?,
            require_client_cert: config.require_client_cert,
        };
        pem::certificates(&tls.cert_pem, cert)?;
        pem::private_key(&tls.key_pem, key)?;
        pem::certificates(&tls.ca_pem, ca)?;
        // Building the rustls configuration checks that the key matches the certificate.
        tls.rustls_server_config(Vec::new())?;
        Ok(Some(tls))
    }

    /// TLS settings from PEM text already in memory (tests, generated certificates).
    pub fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: &str, require_client_cert: bool) -> NodeTls {
        NodeTls {
            cert_pem: cert_pem.as_bytes().to_vec(),
            key_pem: key_pem.as_bytes().to_vec(),
            ca_pem: ca_pem.as_bytes().to_vec(),
            require_client_cert,
        }
    }

    pub fn require_client_cert(&self) -> bool {
        self.require_client_cert
    }

    /// The gRPC server side: this node's identity, and client certificates checked
    /// against the cluster's CA — demanded of everyone with `require_client_cert`,
    /// otherwise only of callers that present one (peers always do).
    pub fn grpc_server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(!self.require_client_cert)
            .timeout(std::time::Duration::from_secs(10))
    }

    /// How this node dials its peers: trusting the cluster's CA and presenting its
    /// own certificate.
    pub fn peer_dialer(&self) -> Dialer {
        Dialer::tls(&self.ca_pem, Some((&self.cert_pem, &self.key_pem)))
    }

    /// The server side of the AWS-compatible HTTP API: server authentication only
    /// (AWS SDKs sign requests with SigV4 rather than present certificates).
    pub fn http_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        let config = self.rustls_server_config(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    fn rustls_server_config(&self, alpn: Vec<Vec<u8>>) -> Result<rustls::ServerConfig, TlsError> {
        let certs = pem::certificates(&self.cert_pem, "tls.cert".as_ref())?;
        let key = pem::private_key(&self.key_pem, "tls.key".as_ref())?;
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Setup(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| TlsError::Invalid(format!("tls.cert and tls.key do not make a usable identity: {e}")))?;
        config.alpn_protocols = alpn;
        Ok(config)
    }
}
