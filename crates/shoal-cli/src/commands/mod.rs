//! One module per command.

mod aws;
mod cluster;
pub mod connect;
mod consumer;
mod delivery_streams;
mod dev;
mod firehose;
mod metrics;
mod node;
mod put;
mod read;
mod stream;
mod tls;

use crate::cli::{Cli, ClusterCommand, Command, FirehoseCommand, TlsCommand};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if !cli.command.is_server() {
        connect::configure(&cli.tls)?;
    }
    match cli.command {
        Command::Node(args) => node::run(args, &cli.tls).await,
        Command::Firehose { command: FirehoseCommand::Worker { member, lease_timeout_secs, stores }, .. } => {
            firehose::run_standalone(&cli.endpoint, member, lease_timeout_secs, &stores).await
        }
        Command::Firehose { aws_endpoint, command } => delivery_streams::run(&aws_endpoint, &cli.tls, command).await,
        Command::Tls(TlsCommand::Generate { out, nodes, extra_names, force }) => {
            tls::generate(&out, &nodes, &extra_names, force)
        }
        Command::Dev(args) => dev::run(args).await,
        Command::Stream(command) => stream::run(&cli.endpoint, command).await,
        Command::Put(args) => put::run(&cli.endpoint, args).await,
        Command::Get(args) => read::get(&cli.endpoint, args).await,
        Command::Tail(args) => read::tail(&cli.endpoint, args).await,
        Command::Bench(args) => crate::bench::run(&cli.endpoint, args).await,
        Command::Consumer(command) => consumer::run(&cli.endpoint, command).await,
        Command::Cluster(ClusterCommand::Status) => cluster::status(&cli.endpoint).await,
        Command::Cluster(ClusterCommand::AddNode { id, addr, zone }) => {
            cluster::add_node(&cli.endpoint, id, &addr, &zone).await
        }
        Command::Cluster(ClusterCommand::Drain { id, cancel, wait }) => {
            cluster::drain(&cli.endpoint, id, cancel, wait).await
        }
        Command::Cluster(ClusterCommand::RemoveNode { id, timeout_secs }) => {
            cluster::remove_node(&cli.endpoint, id, timeout_secs).await
        }
    }
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
