//! The Firehose API over gRPC (`shoal.v1.Firehose`): every operation against an
//! in-process cluster, and the records of a DirectPut stream where they belong.

use std::time::Duration;

use shoal_client::proto;
use shoal_client::proto::firehose_client::FirehoseClient;
use shoal_testkit::TestCluster;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_streams_are_managed_and_fed_over_grpc() {
    let cluster = TestCluster::start(3).await.unwrap();
    let client = cluster.client(2).await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.addr(3)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut firehose = FirehoseClient::new(channel);

    let create = r#"{"DeliveryStreamName": "grpc", "ExtendedS3DestinationConfiguration":
        {"RoleARN": "arn:aws:iam::1:role/r", "BucketARN": "arn:aws:s3:::landing", "Prefix": "a/"}}"#;
    client.create_delivery_stream(create).await.unwrap();
    let refused = client.create_delivery_stream(create).await.unwrap_err();
    assert_eq!(refused.code, shoal_client::ErrorCode::ResourceInUse);
    let bad = client.create_delivery_stream(r#"{"DeliveryStreamName": "bad"}"#).await.unwrap_err();
    assert_eq!(bad.code, shoal_client::ErrorCode::InvalidArgument);

    let described = firehose
        .describe_delivery_stream(proto::DescribeDeliveryStreamRequest { delivery_stream_name: "grpc".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (described.version_id, described.kind.as_str(), described.source_stream.as_str()),
        (1, "DirectPut", "__firehose-grpc")
    );

    let update = r#"{"DeliveryStreamName": "grpc", "CurrentDeliveryStreamVersionId": "1",
        "DestinationId": "destinationId-000000000001", "ExtendedS3DestinationUpdate": {"Prefix": "b/"}}"#;
    firehose.update_destination(proto::UpdateDestinationRequest { request_json: update.into() }).await.unwrap();
    let stale =
        firehose.update_destination(proto::UpdateDestinationRequest { request_json: update.into() }).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");

    let tags = [("team".to_string(), "data".to_string())].into_iter().collect();
    firehose
        .tag_delivery_stream(proto::TagDeliveryStreamRequest { delivery_stream_name: "grpc".into(), tags })
        .await
        .unwrap();
    let start = proto::StartDeliveryStreamEncryptionRequest {
        delivery_stream_name: "grpc".into(),
        key_type: "AWS_OWNED_CMK".into(),
        key_arn: String::new(),
    };
    firehose.start_delivery_stream_encryption(start).await.unwrap();
    let described = firehose
        .describe_delivery_stream(proto::DescribeDeliveryStreamRequest { delivery_stream_name: "grpc".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.version_id, 2);
    assert!(described.destination_json.contains("\"b/\""));
    assert_eq!(described.tags.get("team").map(String::as_str), Some("data"));
    assert_eq!(described.encryption_key_type, "AWS_OWNED_CMK");
    let untag =
        proto::UntagDeliveryStreamRequest { delivery_stream_name: "grpc".into(), tag_keys: vec!["team".into()] };
    firehose.untag_delivery_stream(untag).await.unwrap();
    let stop = proto::StopDeliveryStreamEncryptionRequest { delivery_stream_name: "grpc".into() };
    firehose.stop_delivery_stream_encryption(stop).await.unwrap();

    // Records: a batch and a single one, into the delivery stream's own stream.
    let batch =
        client.put_record_batch("grpc", (0..50).map(|i| format!("r{i}\n").into_bytes()).collect()).await.unwrap();
    assert_eq!((batch.failed_put_count, batch.results.len()), (0, 50));
    let one = firehose
        .put_record(proto::FirehosePutRecordRequest { delivery_stream_name: "grpc".into(), data: b"single\n".to_vec() })
        .await
        .unwrap()
        .into_inner();
    assert!(one.record_id.starts_with("shardId-"));
    let too_many = client.put_record_batch("grpc", vec![b"x".to_vec(); 501]).await.unwrap_err();
    assert_eq!(too_many.code, shoal_client::ErrorCode::InvalidArgument);
    client.wait_for_active("__firehose-grpc", Duration::from_secs(10)).await.unwrap();
    let mut stored = Vec::new();
    for shard in client.list_shards("__firehose-grpc").await.unwrap() {
        stored.extend(client.read_shard("__firehose-grpc", &shard.shard_id).await.unwrap());
    }
    assert_eq!(stored.len(), 51, "every acknowledged record is in the delivery stream's stream once");

    let listed = client.list_delivery_streams().await.unwrap();
    assert_eq!(listed.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["grpc"]);
    client.delete_delivery_stream("grpc").await.unwrap();
    assert!(client.list_delivery_streams().await.unwrap().is_empty());
    cluster.shutdown().await;
}
