//! How client commands reach the cluster: plain, or TLS from the global
//! `--tls-ca` / `--tls-cert` / `--tls-key` flags (or their SHOAL_TLS_* variables).

use std::sync::OnceLock;

use anyhow::Context;
use shoal_client::{Dialer, ShoalClient, ShoalResult};

use crate::cli::TlsArgs;

/// Set once from the command line before any command runs.
static DIALER: OnceLock<Dialer> = OnceLock::new();

pub fn configure(tls: &TlsArgs) -> anyhow::Result<()> {
    let dialer = Dialer::from_files(tls.tls_ca.as_deref(), tls.tls_cert.as_deref(), tls.tls_key.as_deref())
        .context("loading the client's TLS files")?;
    let _ = DIALER.set(dialer);
    Ok(())
}

pub fn dialer() -> Dialer {
    DIALER.get().cloned().unwrap_or_default()
}

/// A client of the node at `endpoint`.
pub async fn connect(endpoint: &str) -> ShoalResult<ShoalClient> {
    ShoalClient::connect_with(endpoint, &dialer()).await
}
