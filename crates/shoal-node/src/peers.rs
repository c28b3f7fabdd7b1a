//! gRPC channels to other nodes, one per address, for forwarded calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use shoal_tls::Dialer;
use shoal_types::{ShoalError, ShoalResult};
use tonic::transport::Channel;

pub struct PeerChannels {
    channels: Mutex<HashMap<String, Channel>>,
    dialer: Dialer,
}

impl PeerChannels {
    pub fn new(dialer: Dialer) -> Self {
        PeerChannels { channels: Mutex::default(), dialer }
    }

    pub fn channel(&self, addr: &str) -> ShoalResult<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let endpoint = self
            .dialer
            .endpoint(addr)
            .map_err(|e| ShoalError::internal(format!("invalid peer address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

/// Marks a call as forwarded by another node, so it is not forwarded again.
pub const FORWARDED_HEADER: &str = "x-shoal-forwarded";

pub fn is_forwarded<T>(request: &tonic::Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_HEADER)
}

pub fn forwarded<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(FORWARDED_HEADER, tonic::metadata::MetadataValue::from_static("1"));
    request
}

/// Passes on the answer of the node a call was forwarded to, keeping its error type.
pub fn relay<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Result<tonic::Response<T>, tonic::Status> {
    result.map_err(|status| shoal_client::status::to_status(shoal_client::status::from_status(&status)))
}
