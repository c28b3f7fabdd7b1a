//! `shoal firehose create|list|describe|put|delete`: Firehose delivery streams
//! through the AWS API of a node (`--aws-endpoint`), signed with SigV4 from
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (any key where the node checks none).

use std::io::BufRead;
use std::time::SystemTime;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use shoal_aws::sigv4_verify::{SignedRequest, sign};

use crate::cli::{FirehoseCommand, TlsArgs};

/// Records per PutRecordBatch call.
const BATCH: usize = 500;

struct Api {
    client: reqwest::Client,
    endpoint: String,
    host: String,
    region: String,
    access_key: String,
    secret: String,
}

impl Api {
    fn new(endpoint: &str, tls: &TlsArgs) -> anyhow::Result<Api> {
        let url = reqwest::Url::parse(endpoint).with_context(|| format!("invalid --aws-endpoint {endpoint}"))?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            _ => anyhow::bail!("--aws-endpoint {endpoint} has no host"),
        };
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = &tls.tls_ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).context("the CA is not PEM")?);
        }
        let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
        Ok(Api {
            client: builder.build()?,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            host,
            region: env("AWS_REGION", &env("AWS_DEFAULT_REGION", "us-east-1")),
            access_key: env("AWS_ACCESS_KEY_ID", "shoal"),
            secret: env("AWS_SECRET_ACCESS_KEY", "shoal"),
        })
    }

    /// One Firehose operation; the AWS error type and message on failure.
    async fn call(&self, operation: &str, input: Value) -> anyhow::Result<Value> {
        let body = input.to_string().into_bytes();
        let headers = vec![
            ("host".to_string(), self.host.clone()),
            ("content-type".to_string(), "application/x-amz-json-1.1".to_string()),
            ("x-amz-target".to_string(), format!("Firehose_20150804.{operation}")),
        ];
        let request = SignedRequest { method: "POST", path: "/", query: "", headers: &headers, body: &body };
        let signature = sign(&request, &self.access_key, &self.secret, &self.region, "firehose", SystemTime::now())
            .map_err(|e| anyhow::anyhow!("signing: {}", e.message()))?;
        let mut call = self.client.post(format!("{}/", self.endpoint)).body(body.clone());
        for (name, value) in headers.iter().skip(1).chain(signature.iter()) {
            call = call.header(name.as_str(), value.as_str());
        }
        let response = call.send().await.with_context(|| format!("calling {}", self.endpoint))?;
        let status = response.status();
        let answer: Value = serde_json::from_slice(&response.bytes().await?).unwrap_or(Value::Null);
        if !status.is_success() {
            let kind = answer.get("__type").and_then(Value::as_str).unwrap_or("Error");
            let message = answer.get("message").and_then(Value::as_str).unwrap_or_default();
            anyhow::bail!("{kind}: {message}");
        }
        Ok(answer)
    }
}

pub async fn run(aws_endpoint: &str, tls: &TlsArgs, command: FirehoseCommand) -> anyhow::Result<()> {
    let api = Api::new(aws_endpoint, tls)?;
    match command {
        FirehoseCommand::Create {
            name,
            bucket,
            prefix,
            error_prefix,
            buffer_mb,
            interval_secs,
            compression,
            source_stream,
        } => {
            let mut destination = json!({
                "RoleARN": "arn:aws:iam::123456789012:role/shoal-firehose",
                "BucketARN": format!("arn:aws:s3:::{bucket}"),
                "BufferingHints": { "SizeInMBs": buffer_mb, "IntervalInSeconds": interval_secs },
                "CompressionFormat": compression,
            });
            if let Some(prefix) = prefix {
                destination["Prefix"] = json!(prefix);
            }
            if let Some(error_prefix) = error_prefix {
                destination["ErrorOutputPrefix"] = json!(error_prefix);
            }
            let mut input = json!({ "DeliveryStreamName": name, "ExtendedS3DestinationConfiguration": destination });
            if let Some(stream) = source_stream {
                input["DeliveryStreamType"] = json!("KinesisStreamAsSource");
                input["KinesisStreamSourceConfiguration"] = json!({
                    "KinesisStreamARN": format!("arn:aws:kinesis:{}:123456789012:stream/{stream}", api.region),
                    "RoleARN": "arn:aws:iam::123456789012:role/shoal-firehose",
                });
            }
            let answer = api.call("CreateDeliveryStream", input).await?;
            println!("{}", answer.get("DeliveryStreamARN").and_then(Value::as_str).unwrap_or_default());
        }
        FirehoseCommand::List => {
            let answer = api.call("ListDeliveryStreams", json!({})).await?;
            for name in answer.get("DeliveryStreamNames").and_then(Value::as_array).into_iter().flatten() {
                println!("{}", name.as_str().unwrap_or_default());
            }
        }
        FirehoseCommand::Describe { name } => {
            let answer = api.call("DescribeDeliveryStream", json!({ "DeliveryStreamName": name })).await?;
            println!("{}", serde_json::to_string_pretty(&answer["DeliveryStreamDescription"])?);
        }
        FirehoseCommand::Delete { name } => {
            api.call("DeleteDeliveryStream", json!({ "DeliveryStreamName": name })).await?;
            println!("deleted {name}");
        }
        FirehoseCommand::Put { name } => {
            let mut sent = 0usize;
            let mut failed = 0u64;
            let mut batch = Vec::with_capacity(BATCH);
            let stdin = std::io::stdin();
            let mut lines = stdin.lock().lines();
            loop {
                let line = lines.next().transpose()?;
                if let Some(line) = &line {
                    batch.push(json!({ "Data": STANDARD.encode(format!("{line}\n")) }));
                }
                if batch.len() == BATCH || (line.is_none() && !batch.is_empty()) {
                    let records = std::mem::take(&mut batch);
                    sent += records.len();
                    let input = json!({ "DeliveryStreamName": name, "Records": records });
                    let answer = api.call("PutRecordBatch", input).await?;
                    failed += answer.get("FailedPutCount").and_then(Value::as_u64).unwrap_or(0);
                }
                if line.is_none() {
                    break;
                }
            }
            println!("put {} records into {name} ({failed} failed)", sent);
            anyhow::ensure!(failed == 0, "{failed} records were not accepted");
        }
        FirehoseCommand::Worker { .. } => anyhow::bail!("the worker runs through commands::firehose"),
    }
    Ok(())
}
