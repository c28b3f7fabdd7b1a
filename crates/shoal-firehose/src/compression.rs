//! Compressing an object's bytes as the destination asks.
//!
//! * GZIP: one gzip member (`.gz`).
//! * Snappy: the Snappy framing format (`snap::write::FrameEncoder`), what
//!   Firehose writes for `Snappy`.
//! * HADOOP_SNAPPY: Hadoop's block format — for each block, the uncompressed
//!   length, then one chunk: its compressed length and raw Snappy bytes, all
//!   lengths big-endian u32 — readable by Hadoop's `SnappyCodec`.

use std::io::Write;

use crate::destination::Compression;

/// Hadoop's default Snappy buffer: blocks of at most 256 KiB uncompressed.
const HADOOP_BLOCK: usize = 256 * 1024;

pub fn compress(data: &[u8], compression: Compression) -> std::io::Result<Vec<u8>> {
    match compression {
        Compression::Uncompressed => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data)?;
            encoder.finish()
        }
        Compression::Snappy => {
            let mut encoder = snap::write::FrameEncoder::new(Vec::new());
            encoder.write_all(data)?;
            encoder.into_inner().map_err(|e| std::io::Error::other(e.to_string()))
        }
        Compression::HadoopSnappy => {
            let mut out = Vec::with_capacity(data.len() / 2 + 16);
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(HADOOP_BLOCK) {
                let compressed = encoder.compress_vec(block).map_err(|e| std::io::Error::other(e.to_string()))?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
        Compression::Zip => Err(std::io::Error::other("ZIP compression is not supported yet")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn every_format_round_trips() {
        let data: Vec<u8> = (0..600_000u32).flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes()).collect();
        let gz = compress(&data, Compression::Gzip).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);

        let framed = compress(&data, Compression::Snappy).unwrap();
        let mut back = Vec::new();
        snap::read::FrameDecoder::new(&framed[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);

        let hadoop = compress(&data, Compression::HadoopSnappy).unwrap();
        let mut back = Vec::new();
        let mut rest = &hadoop[..];
        while !rest.is_empty() {
            let raw = u32::from_be_bytes(rest[0..4].try_into().unwrap()) as usize;
            let len = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
            let block = snap::raw::Decoder::new().decompress_vec(&rest[8..8 + len]).unwrap();
            assert_eq!(block.len(), raw);
            back.extend(block);
            rest = &rest[8 + len..];
        }
        assert_eq!(back, data);
        assert!(compress(&data, Compression::Uncompressed).unwrap() == data);
    }
}
