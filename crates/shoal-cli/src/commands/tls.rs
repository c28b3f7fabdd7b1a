//! `shoal tls generate`: certificates for a cluster.

use std::path::Path;

use anyhow::Context;

pub fn generate(out: &Path, nodes: &[String], extra_names: &[String], force: bool) -> anyhow::Result<()> {
    if out.join("ca.pem").exists() && !force {
        anyhow::bail!("{} already holds a CA (ca.pem); pass --force to replace it", out.display());
    }
    let files = shoal_tls::generate::write_cluster(out, nodes, extra_names)
        .with_context(|| format!("writing certificates to {}", out.display()))?;
    for file in &files {
        println!("{}", file.display());
    }
    eprintln!(
        "nodes: [tls] cert = NODE.pem, key = NODE-key.pem, ca = ca.pem; clients: --tls-ca {}",
        out.join("ca.pem").display()
    );
    Ok(())
}
