//! Certificates for a cluster: a CA, one certificate per node, and a client one.
//!
//! `shoal tls generate` writes them for a docker-compose cluster or a quick test;
//! production deployments usually bring certificates from their own CA (for
//! Kubernetes, cert-manager) and only point `[tls]` at the files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::TlsError;

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A node: serves TLS and authenticates itself to peers.
    Node,
    /// A client of the gRPC API, where nodes require client certificates.
    Client,
}

/// A self-signed certificate authority for one cluster.
pub struct CertificateAuthority {
    cert: Certificate,
    key: KeyPair,
}

impl CertificateAuthority {
    pub fn new(common_name: &str) -> Result<CertificateAuthority, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key)?;
        Ok(CertificateAuthority { cert, key })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate for `names` (DNS names or IP addresses; the first is also the
    /// common name), signed by this CA.
    pub fn issue(&self, names: &[String], usage: Usage) -> Result<IssuedCert, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first.as_str());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = match usage {
            Usage::Node => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// The names a node's certificate carries: its own name, plus what reaches it
/// from the same machine (`localhost`, `127.0.0.1`, `::1`) and any `extra` ones.
pub fn node_names(name: &str, extra: &[String]) -> Vec<String> {
    let mut names = vec![name.to_string()];
    for other in ["localhost", "127.0.0.1", "::1"].iter().map(|s| s.to_string()).chain(extra.iter().cloned()) {
        if !names.contains(&other) {
            names.push(other);
        }
    }
    names
}

/// Writes `ca.pem`, `ca-key.pem`, `<node>.pem` and `<node>-key.pem` for every
/// node name, and `client.pem` / `client-key.pem`, into `out`. Returns the files.
pub fn write_cluster(out: &Path, nodes: &[String], extra_names: &[String]) -> Result<Vec<PathBuf>, TlsError> {
    if nodes.is_empty() {
        return Err(TlsError::Invalid("name at least one node".into()));
    }
    for node in nodes {
        if node.is_empty() || node.contains(['/', '\\']) || node == "ca" || node == "client" {
            return Err(TlsError::Invalid(format!("{node:?} cannot be a node name (it names files)")));
        }
    }
    std::fs::create_dir_all(out).map_err(|source| TlsError::Write { path: out.to_path_buf(), source })?;
    let ca = CertificateAuthority::new("Shoal cluster CA")?;
    let mut files = Vec::new();
    let mut write = |name: &str, text: &str, secret: bool| -> Result<(), TlsError> {
        let path = out.join(name);
        write_file(&path, text, secret)?;
        files.push(path);
        Ok(())
    };
    write("ca.pem", &ca.cert_pem(), false)?;
    write("ca-key.pem", &ca.key_pem(), true)?;
    for node in nodes {
        let issued = ca.issue(&node_names(node, extra_names), Usage::Node)?;
        write(&format!("{node}.pem"), &issued.cert_pem, false)?;
        write(&format!("{node}-key.pem"), &issued.key_pem, true)?;
    }
    let client = ca.issue(&["shoal-client".to_string()], Usage::Client)?;
    write("client.pem", &client.cert_pem, false)?;
    write("client-key.pem", &client.key_pem, true)?;
    Ok(files)
}

fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), TlsError> {
    let failed = |source| TlsError::Write { path: path.to_path_buf(), source };
    std::fs::write(path, text).map_err(failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Keys readable by their owner only; certificates by anyone (a container's
        // non-root user must read them from a mounted volume).
        let mode = if secret { 0o600 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(failed)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeTls, TlsConfig};

    #[test]
    fn generated_files_load_as_a_node_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_cluster(dir.path(), &["node-1".into(), "node-2".into()], &[]).unwrap();
        assert_eq!(files.len(), 8);
        let config = TlsConfig {
            cert: Some(dir.path().join("node-2.pem")),
            key: Some(dir.path().join("node-2-key.pem")),
            ca: Some(dir.path().join("ca.pem")),
            require_client_cert: true,
        };
        let tls = NodeTls::load(&config).unwrap().expect("TLS is on");
        assert!(tls.require_client_cert());
        assert!(tls.http_acceptor().is_ok());
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_cluster(dir.path(), &["node-1".into(), "node-2".into()], &[]).unwrap();
        let config = TlsConfig {
            cert: Some(dir.path().join("node-1.pem")),
            key: Some(dir.path().join("node-2-key.pem")),
            ca: Some(dir.path().join("ca.pem")),
            require_client_cert: false,
        };
        let error = NodeTls::load(&config).unwrap_err().to_string();
        assert!(error.contains("usable identity"), "{error}");
    }

    #[test]
    fn missing_and_malformed_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("junk.pem"), "not a certificate").unwrap();
        let config = TlsConfig {
            cert: Some(dir.path().join("junk.pem")),
            key: Some(dir.path().join("junk.pem")),
            ca: Some(dir.path().join("absent.pem")),
            require_client_cert: false,
        };
        let error = NodeTls::load(&config).unwrap_err().to_string();
        assert!(error.contains("absent.pem") && error.contains("No such file"), "{error}");
        std::fs::copy(dir.path().join("junk.pem"), dir.path().join("absent.pem")).unwrap();
        let error = NodeTls::load(&config).unwrap_err().to_string();
        assert!(error.contains("junk.pem") && error.contains("no certificate"), "{error}");
    }

    #[test]
    fn node_names_include_loopback_once() {
        assert_eq!(node_names("localhost", &["10.0.0.5".into()]), ["localhost", "127.0.0.1", "::1", "10.0.0.5"]);
    }
}
