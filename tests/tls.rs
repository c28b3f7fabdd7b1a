//! A cluster with TLS on: clients over TLS, nodes replicating over mutual TLS,
//! and callers without the right certificates turned away.

use std::path::Path;
use std::time::Duration;

use shoal_client::proto::raft_transport_client::RaftTransportClient;
use shoal_client::proto::{RaftBatch, RaftMessage};
use shoal_client::{Dialer, ErrorCode, ShoalClient};
use shoal_testkit::TestCluster;
use shoal_tests::{KeyedProducer, audit, read_in_lineage_order};
use shoal_tls::TlsConfig;
use shoal_tls::generate::{CertificateAuthority, Usage, write_cluster};

/// Certificates for three nodes and a client in `dir`.
fn certificates(dir: &Path) {
    let nodes: Vec<String> = (1..=3).map(|id| format!("node-{id}")).collect();
    write_cluster(dir, &nodes, &[]).expect("certificates are written");
}

fn node_tls(dir: &Path, id: u64, require_client_cert: bool) -> TlsConfig {
    TlsConfig {
        cert: Some(dir.join(format!("node-{id}.pem"))),
        key: Some(dir.join(format!("node-{id}-key.pem"))),
        ca: Some(dir.join("ca.pem")),
        require_client_cert,
    }
}

fn client_dialer(dir: &Path, with_certificate: bool) -> Dialer {
    let (cert, key) = (dir.join("client.pem"), dir.join("client-key.pem"));
    let identity = with_certificate.then_some((cert.as_path(), key.as_path()));
    Dialer::from_files(Some(&dir.join("ca.pem")), identity.map(|i| i.0), identity.map(|i| i.1))
        .expect("client TLS files load")
}

async fn start(dir: &Path, require_client_cert: bool) -> TestCluster {
    let dir_for_nodes = dir.to_path_buf();
    TestCluster::start_with_dialer(
        3,
        move |config| config.tls = node_tls(&dir_for_nodes, config.id, require_client_cert),
        client_dialer(dir, require_client_cert),
    )
    .await
    .expect("a TLS cluster starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_replicate_over_mutual_tls_and_survive_a_node_restart() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let mut cluster = start(dir.path(), false).await;
    let client = cluster.client(2).await.unwrap();
    client.create_stream("secure", 2).await.unwrap();
    client.wait_for_active("secure", Duration::from_secs(10)).await.unwrap();

    let producer = KeyedProducer::start(client.clone(), "secure", 8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A node goes down and comes back: it must rejoin its peers over mutual TLS.
    cluster.kill(3).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.restart(3).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = producer.stop().await;
    assert!(acked.len() > 50, "the producer got {} records acknowledged", acked.len());

    let read = read_in_lineage_order(&client, "secure").await.unwrap();
    let result = audit(&acked, &read);
    println!("{result:?}");
    assert_eq!((result.lost, result.duplicated, result.reordered), (0, 0, 0), "{result:?}");

    // Every replica, including the restarted one, holds every record.
    let stream = cluster.stream(1, "secure").await.unwrap();
    cluster.wait_for_replicas_to_converge(&stream, Duration::from_secs(15)).await.unwrap();
    let on_node_3: usize =
        (0..2).map(|shard| cluster.replica_records(3, &stream, shard).map(|r| r.len()).unwrap_or(0)).sum();
    assert!(on_node_3 >= acked.len(), "node 3 holds {on_node_3} of {} records", acked.len());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_clients_and_certificate_less_peers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let cluster = start(dir.path(), false).await;
    let addr = cluster.addr(1);

    // Plain HTTP/2 to a TLS port gets nowhere.
    let plain = ShoalClient::connect(&addr).await.map(|c| c.with_retry_for(Duration::ZERO));
    match plain {
        Err(error) => assert_eq!(error.code, ErrorCode::Unavailable, "{error}"),
        Ok(client) => assert!(client.list_streams().await.is_err(), "a plain client was served"),
    }

    // A client that trusts the CA but shows no certificate may use the data API…
    let client = ShoalClient::connect_with(&addr, &client_dialer(dir.path(), false)).await.unwrap();
    client.list_streams().await.unwrap();

    // …but not the node-to-node service: that takes a certificate from the cluster's CA.
    let channel = client_dialer(dir.path(), false).endpoint(&addr).unwrap().connect().await.unwrap();
    let batch = || RaftBatch {
        from_node: 2,
        messages: vec![RaftMessage { group_id: 0, payload: vec![1, 2, 3].into(), call_id: 1 }],
    };
    let mut transport = RaftTransportClient::new(channel);
    let refused = transport.deliver(batch()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let refused = transport.exchange(futures::stream::iter([batch()])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates_must_come_from_the_cluster_ca() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let cluster = start(dir.path(), true).await;
    let addr = cluster.addr(1);

    // With a client certificate from the cluster's CA: served.
    let client = cluster.client(1).await.unwrap();
    client.create_stream("mtls", 1).await.unwrap();
    client.wait_for_active("mtls", Duration::from_secs(10)).await.unwrap();
    client.put_record("mtls", "k", b"v".to_vec()).await.unwrap();

    // Without one: the handshake fails.
    let refused = async {
        let client = ShoalClient::connect_with(&addr, &client_dialer(dir.path(), false)).await?;
        client.with_retry_for(Duration::ZERO).list_streams().await
    };
    assert!(refused.await.is_err(), "a client without a certificate was served");

    // With a certificate from another CA: refused as well.
    let other = CertificateAuthority::new("someone else").unwrap();
    let stranger = other.issue(&["shoal-client".into()], Usage::Client).unwrap();
    let ca_pem = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let dialer = Dialer::tls(&ca_pem, Some((stranger.cert_pem.as_bytes(), stranger.key_pem.as_bytes())));
    let refused = async {
        let client = ShoalClient::connect_with(&addr, &dialer).await?;
        client.with_retry_for(Duration::ZERO).list_streams().await
    };
    assert!(refused.await.is_err(), "a client with a foreign certificate was served");
    cluster.shutdown().await;
}
