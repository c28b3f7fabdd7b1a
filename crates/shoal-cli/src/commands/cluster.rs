//! `shoal cluster status|add-node|drain|remove-node`.

use std::time::Duration;

pub async fn add_node(endpoint: &str, id: u64, addr: &str, zone: &str) -> anyhow::Result<()> {
    let client = super::connect::connect(endpoint).await?;
    let voter = client.add_node(id, addr, zone).await?;
    let role = if voter { "a metadata voter" } else { "a metadata learner" };
    println!("node {id} ({addr}, {zone}) joined as {role}; replicas in {zone} will move to it");
    Ok(())
}

pub async fn drain(endpoint: &str, id: u64, cancel: bool, wait: bool) -> anyhow::Result<()> {
    let client = super::connect::connect(endpoint).await?;
    let mut left = client.drain_node(id, cancel).await?;
    if cancel {
        println!("node {id} accepts replicas again ({left} held)");
        return Ok(());
    }
    if wait {
        let bar = indicatif::ProgressBar::new(u64::from(left));
        bar.set_message(format!("draining node {id}"));
        let start = left;
        while left > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            left = client.drain_node(id, false).await?;
            bar.set_position(u64::from(start.saturating_sub(left)));
        }
        bar.finish_and_clear();
        println!("node {id} is drained: it holds no replica");
    } else {
        println!("node {id} is draining: {left} replica(s) to move (watch with `shoal cluster status`)");
    }
    Ok(())
}

pub async fn remove_node(endpoint: &str, id: u64, timeout_secs: u64) -> anyhow::Result<()> {
    let client = super::connect::connect(endpoint).await?;
    client.remove_node(id, Duration::from_secs(timeout_secs)).await?;
    println!("node {id} drained and removed from the cluster");
    Ok(())
}

pub async fn status(endpoint: &str) -> anyhow::Result<()> {
    let client = super::connect::connect(endpoint).await?;
    let status = client.cluster_status().await?;
    println!("NODE\tZONE\tADDRESS\tREACHABLE\tROLE\tREPLICAS");
    for node in &status.nodes {
        let mut role = if node.voter { "voter" } else { "learner" }.to_string();
        if node.draining {
            role.push_str(",draining");
        }
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            node.node_id,
            node.zone,
            node.addr,
            if node.reachable { "yes" } else { "no" },
            role,
            node.replicas
        );
    }
    println!();
    println!("metadata leader: node {}", status.meta_leader_id);
    println!();
    println!("GROUP\tSTREAM\tSHARD\tLEADER\tTERM\tREPLICAS\tLAST INDEX\tLAG (entries per follower)");
    for group in status.groups.iter().filter(|g| !g.stream_name.is_empty()) {
        let replicas: Vec<String> = group.replicas.iter().map(u64::to_string).collect();
        let mut lag: Vec<String> = group.follower_lag.iter().map(|(node, lag)| format!("{node}:{lag}")).collect();
        lag.sort();
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            group.group_id,
            group.stream_name,
            group.shard_id,
            group.leader_id,
            group.term,
            replicas.join(","),
            group.last_log_index,
            lag.join(" ")
        );
    }
    Ok(())
}
