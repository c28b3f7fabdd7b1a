//! The gRPC codec of every Shoal service and client: prost's, except that the
//! encoder reserves room for the whole message before writing it.
//!
//! tonic's encode buffer starts at 8 KiB and prost writes a message field by
//! field, so a PutRecords call of a hundred 1 KiB records grew the buffer by
//! doubling, copying what it held each time: about one more copy of every
//! record on the way out (docs/performance.md, eighteenth session).

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::{ProstCodec, ProstDecoder};

/// [`ProstCodec`] with a [`SizedEncoder`]; named by the generated code.
#[derive(Debug, Clone)]
pub struct SizedCodec<T, U> {
    prost: ProstCodec<T, U>,
}

impl<T, U> Default for SizedCodec<T, U> {
    fn default() -> Self {
        SizedCodec { prost: ProstCodec::default() }
    }
}

impl<T, U> Codec for SizedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SizedEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> SizedEncoder<T> {
        SizedEncoder { message: PhantomData }
    }

    fn decoder(&mut self) -> ProstDecoder<U> {
        self.prost.decoder()
    }
}

/// Encodes a message into a buffer first grown to the message's encoded length.
#[derive(Debug)]
pub struct SizedEncoder<T> {
    message: PhantomData<T>,
}

impl<T: Message> Encoder for SizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf).map_err(|error| Status::internal(format!("encoding a message: {error}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
