//! `shoal node`: one node of a real cluster.

use std::sync::Arc;

use anyhow::Context;
use shoal_node::{NodeConfig, PeerConfig};
use shoal_raft::NetworkFaults;

use crate::cli::{NodeArgs, TlsArgs};

/// Parses `ID=ZONE@HOST:PORT`.
fn parse_peer(text: &str) -> anyhow::Result<PeerConfig> {
    let (id, rest) = text.split_once('=').context("expected ID=ZONE@HOST:PORT")?;
    let (zone, addr) = rest.split_once('@').context("expected ID=ZONE@HOST:PORT")?;
    Ok(PeerConfig { id: id.trim().parse().context("peer id must be a number")?, zone: zone.into(), addr: addr.into() })
}

/// Parses `KEY_ID:SECRET`.
pub fn parse_credential(text: &str) -> anyhow::Result<shoal_node::AwsCredential> {
    let (id, secret) = text.split_once(':').context("expected KEY_ID:SECRET")?;
    anyhow::ensure!(!id.is_empty() && !secret.is_empty(), "expected KEY_ID:SECRET");
    Ok(shoal_node::AwsCredential { access_key_id: id.into(), secret_access_key: secret.into() })
}

/// The StatefulSet ordinal at the end of a pod's host name (`shoal-2` → 2).
fn ordinal_of(host: &str) -> anyhow::Result<u64> {
    host.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .with_context(|| format!("host name {host:?} does not end with -ORDINAL (a StatefulSet pod name)"))
}

pub fn load_config(args: &NodeArgs, tls: &TlsArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            NodeConfig::from_toml(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => NodeConfig::default(),
    };
    if args.id_from_ordinal {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .unwrap_or_default();
        let ordinal = ordinal_of(host.trim())?;
        config.id = ordinal + 1;
        if args.zone.is_none() && !args.zones.is_empty() {
            config.zone = args.zones[(ordinal as usize) % args.zones.len()].clone();
        }
    }
    if let Some(id) = args.id {
        config.id = id;
    }
    if let Some(zone) = &args.zone {
        config.zone = zone.clone();
    }
    if let Some(listen) = &args.listen {
        config.listen = listen.clone();
    }
    if let Some(advertise) = &args.advertise {
        config.advertise = Some(advertise.clone());
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(aws_listen) = &args.aws_listen {
        config.aws_listen = aws_listen.clone();
    }
    if let Some(millis) = args.heartbeat_millis {
        config.raft.heartbeat_millis = millis;
    }
    if let Some(millis) = args.election_timeout_millis {
        config.raft.election_timeout_millis = millis;
    }
    if let Some(direct_io) = args.direct_io {
        config.direct_io = direct_io;
    }
    if let Some(shards_per_group) = args.shards_per_group {
        config.shards_per_group = shards_per_group;
    }
    if let Some(secs) = args.retention_check_secs {
        config.retention_check_secs = secs;
    }
    if let Some(millis) = args.shard_iterator_ttl_millis {
        config.shard_iterator_ttl_millis = millis;
    }
    if !args.aws_credentials.is_empty() {
        config.aws_credentials =
            args.aws_credentials.iter().map(|c| parse_credential(c)).collect::<anyhow::Result<_>>()?;
    }
    if !args.peers.is_empty() {
        config.peers = args.peers.iter().map(|p| parse_peer(p)).collect::<anyhow::Result<_>>()?;
    }
    if let Some(cert) = &tls.tls_cert {
        config.tls.cert = Some(cert.clone());
    }
    if let Some(key) = &tls.tls_key {
        config.tls.key = Some(key.clone());
    }
    if let Some(ca) = &tls.tls_ca {
        config.tls.ca = Some(ca.clone());
    }
    if args.tls_require_client_cert {
        config.tls.require_client_cert = true;
    }
    args.firehose.apply(&mut config.firehose)?;
    config.validate()?;
    Ok(config)
}

pub async fn run(args: NodeArgs, tls: &TlsArgs) -> anyhow::Result<()> {
    let config = load_config(&args, tls)?;
    if args.check_config {
        // The TLS files are read and checked too: a node that would fail to start fails here.
        shoal_tls::NodeTls::load(&config.tls)?;
        println!("configuration of node {} ({}) is valid", config.id, config.zone);
        return Ok(());
    }
    let metrics = super::metrics::install()?;
    let listener =
        tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    eprintln!("shoal node {} ({}) serving gRPC on {}", config.id, config.zone, listener.local_addr()?);
    let node = shoal_node::start(listener, config.clone(), Arc::new(NetworkFaults::default())).await?;
    let aws = super::aws::start(&node, &config.aws_listen).await?;
    let worker = super::firehose::start(&node);
    super::metrics::serve(&args.metrics_addr, metrics, vec![node.node.clone()]).await?;
    super::shutdown_signal().await;
    eprintln!("shoal node {}: stopping", config.id);
    if let Some(worker) = worker {
        worker.stop().await;
    }
    if let Some(aws) = aws {
        aws.abort();
    }
    node.stop().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_from_pod_names() {
        assert_eq!(ordinal_of("shoal-2").unwrap(), 2);
        assert_eq!(ordinal_of("my-release-shoal-10").unwrap(), 10);
        assert!(ordinal_of("laptop").is_err());
    }

    #[test]
    fn peers_parse() {
        let peer = parse_peer("2=az-b@10.0.0.2:50051").unwrap();
        assert_eq!(peer, PeerConfig { id: 2, zone: "az-b".into(), addr: "10.0.0.2:50051".into() });
        assert!(parse_peer("nonsense").is_err());
    }
}
