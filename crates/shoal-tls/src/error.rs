//! What can go wrong setting up TLS.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Setup(String),
}
