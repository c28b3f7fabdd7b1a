//! Reading PEM files, with errors that name the file.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// Every certificate in `pem`; at least one.
pub(crate) fn certificates(pem: &[u8], what: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid(format!("{}: not a PEM certificate: {e}", what.display())))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(format!("{}: holds no certificate", what.display())));
    }
    Ok(certs)
}

pub(crate) fn private_key(pem: &[u8], what: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| TlsError::Invalid(format!("{}: not a PEM private key: {e}", what.display())))
}
