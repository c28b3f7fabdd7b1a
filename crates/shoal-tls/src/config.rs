//! The `[tls]` section of a node's configuration.
//!
//! ```toml
//! [tls]
//! cert = "/etc/shoal/tls/node-1.pem"      # this node's certificate chain (PEM)
//! key = "/etc/shoal/tls/node-1-key.pem"   # its private key (PEM)
//! ca = "/etc/shoal/tls/ca.pem"            # the cluster's CA: peers must be signed by it
//! require_client_cert = false             # true: every gRPC client needs a certificate
//! ```
//!
//! With `cert` and `key` set the node serves gRPC and the AWS API over TLS only, and
//! nodes authenticate each other both ways (mutual TLS): a node presents its
//! certificate when it dials a peer, and the Raft transport refuses callers that
//! did not present one signed by `ca`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::TlsError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// This node's certificate chain, PEM. Setting it (with `key`) turns TLS on.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// The CA that signs every node's certificate (and clients' ones, if any), PEM.
    pub ca: Option<PathBuf>,
    /// Refuse gRPC clients that present no certificate signed by `ca`.
    pub require_client_cert: bool,
}

impl TlsConfig {
    pub fn is_enabled(&self) -> bool {
        self.cert.is_some() || self.key.is_some()
    }

    /// Checks that the settings make sense together (not that the files exist:
    /// [`crate::NodeTls::load`] reads them).
    pub fn validate(&self) -> Result<(), TlsError> {
        if !self.is_enabled() {
            if self.require_client_cert {
                return Err(TlsError::Invalid("tls.require_client_cert needs tls.cert and tls.key".into()));
            }
            return Ok(());
        }
        if self.cert.is_none() || self.key.is_none() {
            return Err(TlsError::Invalid("tls.cert and tls.key must be set together".into()));
        }
        if self.ca.is_none() {
            return Err(TlsError::Invalid(
                "tls.ca must be set with tls.cert: nodes verify each other's certificates against it".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_off_by_default_and_needs_all_three_files() {
        assert!(TlsConfig::default().validate().is_ok());
        assert!(!TlsConfig::default().is_enabled());
        let only_cert = TlsConfig { cert: Some("c.pem".into()), ..Default::default() };
        assert!(only_cert.validate().is_err());
        let no_ca = TlsConfig { cert: Some("c.pem".into()), key: Some("k.pem".into()), ..Default::default() };
        assert!(no_ca.validate().is_err());
        let full = TlsConfig { ca: Some("ca.pem".into()), ..no_ca };
        assert!(full.validate().is_ok());
        let demand_without_tls = TlsConfig { require_client_cert: true, ..Default::default() };
        assert!(demand_without_tls.validate().is_err());
    }
}
