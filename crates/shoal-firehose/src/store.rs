//! Where a delivery stream's bucket lives.
//!
//! `BucketARN = arn:aws:s3:::NAME` names a bucket; the node's `[firehose]`
//! configuration says where buckets are: an S3-compatible server (endpoint,
//! region, keys), or, without an endpoint, a directory with one subdirectory per
//! bucket (the local-filesystem destination).

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

/// The `[firehose]` section of a node's configuration: whether the node runs a
/// delivery worker, and where buckets are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirehoseConfig {
    /// Run a delivery worker in this node (workers of all nodes share the work).
    pub worker: bool,
    /// An S3-compatible endpoint, e.g. `http://127.0.0.1:8333`; empty: use `local_dir`.
    pub s3_endpoint: String,
    pub s3_region: String,
    pub s3_access_key_id: String,
    pub s3_secret_access_key: String,
    /// Buckets as directories below this one, when there is no S3 endpoint.
    pub local_dir: Option<PathBuf>,
    /// Lambda ARNs (as `ProcessingConfiguration` names them) and the HTTP URL of
    /// the function that stands in for each.
    pub functions: std::collections::BTreeMap<String, String>,
    /// Tables for record format conversion, as Glue would hold them:
    /// `"DATABASE.TABLE" = "id bigint, name string"`.
    pub tables: std::collections::BTreeMap<String, String>,
}

impl Default for FirehoseConfig {
    fn default() -> Self {
        FirehoseConfig {
            worker: true,
            s3_endpoint: String::new(),
            s3_region: String::new(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
            local_dir: None,
            functions: Default::default(),
            tables: Default::default(),
        }
    }
}

impl FirehoseConfig {
    pub fn stores(&self) -> StoreConfig {
        StoreConfig {
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
            s3_access_key_id: self.s3_access_key_id.clone(),
            s3_secret_access_key: self.s3_secret_access_key.clone(),
            local_dir: self.local_dir.clone(),
        }
    }
}

/// Where buckets are, for the worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreConfig {
    /// An S3-compatible endpoint, e.g. `http://127.0.0.1:8333`; empty: use `local_dir`.
    pub s3_endpoint: String,
    pub s3_region: String,
    pub s3_access_key_id: String,
    pub s3_secret_access_key: String,
    /// Buckets as directories below this one, when there is no S3 endpoint.
    pub local_dir: Option<PathBuf>,
}

impl StoreConfig {
    /// The object store holding `bucket`.
    pub fn open(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
        if !self.s3_endpoint.is_empty() {
            let region = if self.s3_region.is_empty() { "us-east-1" } else { self.s3_region.as_str() };
            let store = object_store::aws::AmazonS3Builder::new()
                .with_endpoint(&self.s3_endpoint)
                .with_allow_http(self.s3_endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false)
                .with_region(region)
                .with_access_key_id(&self.s3_access_key_id)
                .with_secret_access_key(&self.s3_secret_access_key)
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| format!("S3 bucket {bucket} at {}: {e}", self.s3_endpoint))?;
            return Ok(Arc::new(store));
        }
        let Some(root) = &self.local_dir else {
            return Err("no [firehose] s3_endpoint or local_dir is configured for deliveries".into());
        };
        let dir = root.join(bucket);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| format!("opening {}: {e}", dir.display()))?;
        Ok(Arc::new(store))
    }
}
