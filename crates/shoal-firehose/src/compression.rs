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
        Compression::Zip => zip(data, "records"),
    }
}

/// A ZIP archive holding `data` as one deflated entry named `name` — what
/// Firehose writes for `ZIP` (any unzip tool opens it).
fn zip(data: &[u8], name: &str) -> std::io::Result<Vec<u8>> {
    let mut deflater = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflater.write_all(data)?;
    let deflated = deflater.finish()?;
    let crc = crc32fast::hash(data);
    let too_big = || std::io::Error::other("an object over 4 GiB needs ZIP64, which is not written");
    let (compressed, uncompressed) =
        (u32::try_from(deflated.len()).map_err(|_| too_big())?, u32::try_from(data.len()).map_err(|_| too_big())?);
    let name = name.as_bytes();
    let mut out = Vec::with_capacity(deflated.len() + 128);
    // Local file header: version 2.0, no flags, deflate, no time.
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    for field in [20u16, 0, 8, 0, 0x21] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    for field in [crc, compressed, uncompressed] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&deflated);
    let central = out.len() as u32;
    // Central directory entry for the one file, at offset 0.
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    for field in [20u16, 20, 0, 8, 0, 0x21] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    for field in [crc, compressed, uncompressed] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    for field in [name.len() as u16, 0, 0, 0, 0] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes()); // external attributes
    out.extend_from_slice(&0u32.to_le_bytes()); // offset of the local header
    out.extend_from_slice(name);
    let central_size = out.len() as u32 - central;
    // End of central directory.
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for field in [0u16, 0, 1, 1] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
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

        // ZIP: one deflated entry, with the sizes and CRC an unzip tool checks.
        let zipped = compress(&data, Compression::Zip).unwrap();
        assert_eq!(&zipped[0..4], b"PK\x03\x04");
        let name_len = u16::from_le_bytes([zipped[26], zipped[27]]) as usize;
        let size = u32::from_le_bytes(zipped[18..22].try_into().unwrap()) as usize;
        let start = 30 + name_len;
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&zipped[start..start + size]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(u32::from_le_bytes(zipped[14..18].try_into().unwrap()), crc32fast::hash(&data));
    }
}
