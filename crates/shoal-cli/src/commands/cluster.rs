//! `shoal cluster status`.

use shoal_client::ShoalClient;

pub async fn status(endpoint: &str) -> anyhow::Result<()> {
    let client = ShoalClient::connect(endpoint).await?;
    let status = client.cluster_status().await?;
    println!("NODE\tZONE\tADDRESS\tREACHABLE");
    for node in &status.nodes {
        println!("{}\t{}\t{}\t{}", node.node_id, node.zone, node.addr, if node.reachable { "yes" } else { "no" });
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
