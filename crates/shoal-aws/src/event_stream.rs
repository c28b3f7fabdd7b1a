//! The AWS event-stream framing (`application/vnd.amazon.eventstream`).
//!
//! `SubscribeToShard` does not answer with one JSON document: it holds the HTTP
//! response open and pushes a sequence of binary *messages*, each a
//! self-delimiting frame with its own headers and payload, protected by two
//! CRC32s. The SDKs (botocore's `EventStreamBuffer`, the Java SDK's
//! `MessageDecoder`) refuse a frame whose lengths or checksums are off, so the
//! server has to produce the exact bytes. This module is that encoder, plus a
//! strict decoder so tests (and Shoal's own clients) can check what went over
//! the wire.
//!
//! A frame is laid out as
//!
//! ```text
//! total_len u32 BE | headers_len u32 BE | prelude_crc u32 BE   (the 12-byte prelude)
//! headers (headers_len bytes) | payload | message_crc u32 BE
//! ```
//!
//! where `prelude_crc` is the CRC32 of the first 8 bytes and `message_crc` the
//! CRC32 of everything before it. A header is `name_len u8 | name | type u8 |
//! value`; Shoal only writes string headers (type 7, `value_len u16 BE | bytes`),
//! which is all the Kinesis event stream uses, but the decoder understands every
//! header type so it can read frames written by anyone.

/// Bytes of the prelude: total length, headers length, prelude CRC.
const PRELUDE_LEN: usize = 12;
/// Bytes of the trailing message CRC.
const MESSAGE_CRC_LEN: usize = 4;
/// The smallest possible frame: a prelude and a message CRC, nothing between.
pub const MIN_MESSAGE_LEN: usize = PRELUDE_LEN + MESSAGE_CRC_LEN;
/// Header value type of a UTF-8 string with a 16-bit length.
const TYPE_STRING: u8 = 7;

/// One string header of an event-stream message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

impl<'a> Header<'a> {
    pub const fn new(name: &'a str, value: &'a str) -> Self {
        Header { name, value }
    }
}

/// Encodes one message with string headers, in the order given.
///
/// # Panics
///
/// If a header name is longer than 255 bytes, a header value longer than
/// 65,535 bytes, or the frame longer than `u32::MAX` bytes: the wire format
/// cannot express them. Header names and values are chosen by the server
/// (event and content types), never taken from a request, so this is a
/// programming error; use [`try_encode_message`] where that is not so.
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    match try_encode_message(headers, payload) {
        Ok(frame) => frame,
        Err(error) => panic!("cannot encode an event-stream message: {error}"),
    }
}

/// Like [`encode_message`], but reports a header or payload too large for the
/// wire format instead of panicking.
pub fn try_encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Result<Vec<u8>, String> {
    let mut header_bytes = Vec::new();
    for &(name, value) in headers {
        encode_header(&mut header_bytes, Header::new(name, value))?;
    }
    let total = PRELUDE_LEN + header_bytes.len() + payload.len() + MESSAGE_CRC_LEN;
    let total_u32 = u32::try_from(total).map_err(|_| format!("message of {total} bytes exceeds u32::MAX"))?;
    let headers_u32 = u32::try_from(header_bytes.len())
        .map_err(|_| format!("headers of {} bytes exceed u32::MAX", header_bytes.len()))?;

    let mut frame = Vec::with_capacity(total);
    frame.extend_from_slice(&total_u32.to_be_bytes());
    frame.extend_from_slice(&headers_u32.to_be_bytes());
    let prelude_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&prelude_crc.to_be_bytes());
    frame.extend_from_slice(&header_bytes);
    frame.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&message_crc.to_be_bytes());
    Ok(frame)
}

fn encode_header(out: &mut Vec<u8>, header: Header<'_>) -> Result<(), String> {
    let name_len = u8::try_from(header.name.len())
        .map_err(|_| format!("header name of {} bytes exceeds 255: {:.40}…", header.name.len(), header.name))?;
    let value_len = u16::try_from(header.value.len())
        .map_err(|_| format!("value of header {} is {} bytes, over 65535", header.name, header.value.len()))?;
    out.push(name_len);
    out.extend_from_slice(header.name.as_bytes());
    out.push(TYPE_STRING);
    out.extend_from_slice(&value_len.to_be_bytes());
    out.extend_from_slice(header.value.as_bytes());
    Ok(())
}

/// An `event` message: what carries `initial-response` and every
/// `SubscribeToShardEvent` of a subscription.
pub fn event(event_type: &str, content_type: &str, payload: &[u8]) -> Vec<u8> {
    encode_message(&[(":message-type", "event"), (":event-type", event_type), (":content-type", content_type)], payload)
}

/// An `exception` message: how an error that happens after the HTTP 200 has
/// been sent (the lease lost, the shard gone) reaches the subscriber. The SDKs
/// raise it as the modeled error named by `exception_type`, e.g.
/// `ResourceNotFoundException`, with the payload as its body.
pub fn exception(exception_type: &str, content_type: &str, payload: &[u8]) -> Vec<u8> {
    encode_message(
        &[(":message-type", "exception"), (":exception-type", exception_type), (":content-type", content_type)],
        payload,
    )
}

/// A decoded message: its headers in order, its payload, and the bytes it took.
pub type Decoded = (Vec<(String, String)>, Vec<u8>, usize);

/// The total length announced by a frame's prelude, once at least the first 4
/// bytes are there: lets a reader know how much to buffer before calling
/// [`decode_message`]. Does not check the prelude CRC.
pub fn announced_len(bytes: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(prefix)).ok()
}

/// Decodes the message at the start of `bytes`, checking both CRCs and every
/// length, and returns its headers, its payload and how many bytes it took, so
/// a caller can go on with the next message in the same buffer.
///
/// Header values of types other than string are rendered as text: booleans as
/// `true`/`false`, integers and timestamps (epoch milliseconds) in decimal,
/// byte arrays and UUIDs in lower-case hex.
pub fn decode_message(bytes: &[u8]) -> Result<Decoded, String> {
    if bytes.len() < PRELUDE_LEN {
        return Err(format!("incomplete prelude: {} of {PRELUDE_LEN} bytes", bytes.len()));
    }
    let total = read_u32(bytes, 0)? as usize;
    let headers_len = read_u32(bytes, 4)? as usize;
    let prelude_crc = read_u32(bytes, 8)?;
    let computed = crc32fast::hash(&bytes[..8]);
    if computed != prelude_crc {
        return Err(format!("prelude CRC mismatch: frame says {prelude_crc:#010x}, computed {computed:#010x}"));
    }
    if total < MIN_MESSAGE_LEN {
        return Err(format!("total length {total} is below the minimum {MIN_MESSAGE_LEN}"));
    }
    if headers_len > total - MIN_MESSAGE_LEN {
        return Err(format!("headers length {headers_len} does not fit in a message of {total} bytes"));
    }
    if bytes.len() < total {
        return Err(format!("incomplete message: {} of {total} bytes", bytes.len()));
    }
    let message_crc = read_u32(bytes, total - MESSAGE_CRC_LEN)?;
    let computed = crc32fast::hash(&bytes[..total - MESSAGE_CRC_LEN]);
    if computed != message_crc {
        return Err(format!("message CRC mismatch: frame says {message_crc:#010x}, computed {computed:#010x}"));
    }
    let headers = decode_headers(&bytes[PRELUDE_LEN..PRELUDE_LEN + headers_len])?;
    let payload = bytes[PRELUDE_LEN + headers_len..total - MESSAGE_CRC_LEN].to_vec();
    Ok((headers, payload, total))
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, String> {
    let word: [u8; 4] = bytes
        .get(at..at + 4)
        .and_then(|slice| slice.try_into().ok())
        .ok_or_else(|| format!("truncated: no 4 bytes at offset {at}"))?;
    Ok(u32::from_be_bytes(word))
}

/// A cursor over the header block that fails, rather than panics, on a short read.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!("header block truncated in {what}: need {n} bytes, {} left", self.bytes.len()));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
}

fn decode_headers(block: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut reader = Reader { bytes: block };
    let mut headers = Vec::new();
    while !reader.bytes.is_empty() {
        let [name_len] = reader.array::<1>("a header name length")?;
        let name = reader.take(usize::from(name_len), "a header name")?;
        let name = std::str::from_utf8(name).map_err(|_| "a header name is not UTF-8".to_string())?.to_string();
        let [value_type] = reader.array::<1>("a header value type")?;
        let value = match value_type {
            0 => "true".to_string(),
            1 => "false".to_string(),
            2 => i8::from_be_bytes(reader.array::<1>(&name)?).to_string(),
            3 => i16::from_be_bytes(reader.array::<2>(&name)?).to_string(),
            4 => i32::from_be_bytes(reader.array::<4>(&name)?).to_string(),
            5 | 8 => i64::from_be_bytes(reader.array::<8>(&name)?).to_string(),
            6 | 7 => {
                let len = u16::from_be_bytes(reader.array::<2>(&name)?);
                let bytes = reader.take(usize::from(len), &name)?;
                if value_type == TYPE_STRING {
                    std::str::from_utf8(bytes).map_err(|_| format!("value of header {name} is not UTF-8"))?.to_string()
                } else {
                    hex_lower(bytes)
                }
            }
            9 => hex_lower(reader.take(16, &name)?),
            other => return Err(format!("header {name} has unknown value type {other}")),
        };
        headers.push((name, value));
    }
    Ok(headers)
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = "application/x-amz-json-1.1";

    /// `event("initial-response", JSON, b"{}")`. botocore 1.43's `EventStreamBuffer`
    /// decodes these bytes to prelude (total 114, headers 96, CRC 0xab820d9e),
    /// headers {":message-type": "event", ":event-type": "initial-response",
    /// ":content-type": "application/x-amz-json-1.1"}, payload b"{}" and message
    /// CRC 0xe16e66e4, and an independent Python encoder (struct + zlib.crc32)
    /// produces the same bytes.
    const INITIAL_RESPONSE_HEX: &str = concat!(
        "00000072",                                                   // total length 114
        "00000060",                                                   // headers length 96
        "ab820d9e",                                                   // prelude CRC
        "0d3a6d6573736167652d74797065",                               // 13 ":message-type"
        "0700056576656e74",                                           // string, 5 "event"
        "0b3a6576656e742d74797065",                                   // 11 ":event-type"
        "070010696e697469616c2d726573706f6e7365",                     // string, 16 "initial-response"
        "0d3a636f6e74656e742d74797065",                               // 13 ":content-type"
        "07001a6170706c69636174696f6e2f782d616d7a2d6a736f6e2d312e31", // string, 26 "application/x-amz-json-1.1"
        "7b7d",                                                       // payload "{}"
        "e16e66e4",                                                   // message CRC
    );

    #[test]
    fn initial_response_matches_the_bytes_botocore_accepts() {
        let frame = event("initial-response", JSON, b"{}");
        assert_eq!(hex_lower(&frame), INITIAL_RESPONSE_HEX);
    }

    #[test]
    fn round_trips_headers_and_payload() {
        let payload = concat!(
            r#"{"Records":[],"ContinuationSequenceNumber":"#,
            r#""49590338271490256608559692538361571095921575989136588898","MillisBehindLatest":0}"#
        )
        .as_bytes();
        let frame = event("SubscribeToShardEvent", JSON, payload);
        let (headers, body, used) = decode_message(&frame).expect("decodes");
        assert_eq!(used, frame.len());
        assert_eq!(body, payload);
        let expected = [(":message-type", "event"), (":event-type", "SubscribeToShardEvent"), (":content-type", JSON)];
        let got: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn exception_messages_name_the_exception() {
        let frame = exception("ResourceNotFoundException", JSON, br#"{"message":"gone"}"#);
        let (headers, body, _) = decode_message(&frame).expect("decodes");
        assert_eq!(headers[0], (":message-type".to_string(), "exception".to_string()));
        assert_eq!(headers[1], (":exception-type".to_string(), "ResourceNotFoundException".to_string()));
        assert_eq!(headers[2], (":content-type".to_string(), JSON.to_string()));
        assert_eq!(body, br#"{"message":"gone"}"#);
    }

    #[test]
    fn empty_message_is_sixteen_bytes() {
        let frame = encode_message(&[], b"");
        assert_eq!(frame.len(), MIN_MESSAGE_LEN);
        assert_eq!(decode_message(&frame), Ok((vec![], vec![], MIN_MESSAGE_LEN)));
    }

    #[test]
    fn decodes_consecutive_messages_from_one_buffer() {
        let mut stream = event("initial-response", JSON, b"{}");
        let first_len = stream.len();
        stream.extend(event("SubscribeToShardEvent", JSON, b"{\"Records\":[]}"));
        assert_eq!(announced_len(&stream), Some(first_len));
        let (_, first, used) = decode_message(&stream).expect("first");
        assert_eq!((first.as_slice(), used), (&b"{}"[..], first_len));
        let (_, second, used) = decode_message(&stream[first_len..]).expect("second");
        assert_eq!(second, b"{\"Records\":[]}");
        assert_eq!(first_len + used, stream.len());
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let frame = event("SubscribeToShardEvent", JSON, b"{\"Records\":[]}");
        for index in 0..frame.len() {
            for bit in 0..8 {
                let mut corrupt = frame.clone();
                corrupt[index] ^= 1 << bit;
                assert!(decode_message(&corrupt).is_err(), "flip of bit {bit} in byte {index} went unnoticed");
            }
        }
    }

    #[test]
    fn crc_errors_name_the_checksum_that_failed() {
        let frame = event("SubscribeToShardEvent", JSON, b"payload");
        let mut corrupt = frame.clone();
        corrupt[1] ^= 0x01;
        assert!(decode_message(&corrupt).expect_err("prelude").contains("prelude CRC"));
        let mut corrupt = frame.clone();
        let payload_at = frame.len() - MESSAGE_CRC_LEN - 1;
        corrupt[payload_at] ^= 0x20;
        assert!(decode_message(&corrupt).expect_err("payload").contains("message CRC"));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let frame = event("SubscribeToShardEvent", JSON, b"payload");
        for len in 0..frame.len() {
            assert!(decode_message(&frame[..len]).is_err(), "accepted a prefix of {len} bytes");
        }
        assert_eq!(announced_len(&frame[..3]), None);
    }

    #[test]
    fn inconsistent_lengths_with_valid_crcs_are_rejected() {
        // A headers length larger than the frame, with both CRCs recomputed.
        let mut frame = encode_message(&[("a", "b")], b"");
        frame[4..8].copy_from_slice(&100u32.to_be_bytes());
        let crc = crc32fast::hash(&frame[..8]);
        frame[8..12].copy_from_slice(&crc.to_be_bytes());
        let end = frame.len() - MESSAGE_CRC_LEN;
        let crc = crc32fast::hash(&frame[..end]);
        frame[end..].copy_from_slice(&crc.to_be_bytes());
        assert!(decode_message(&frame).expect_err("lengths").contains("headers length"));

        // A total length below the minimum.
        let mut frame = vec![0, 0, 0, 8, 0, 0, 0, 0];
        let crc = crc32fast::hash(&frame);
        frame.extend_from_slice(&crc.to_be_bytes());
        frame.extend_from_slice(&[0; 4]);
        assert!(decode_message(&frame).expect_err("minimum").contains("minimum"));
    }

    #[test]
    fn header_block_that_runs_short_is_rejected() {
        // A string header whose value length points past the header block.
        let block = [1, b'x', TYPE_STRING, 0, 9, b'a'];
        assert!(decode_headers(&block).is_err());
        assert!(decode_headers(&[3, b'a']).is_err());
        assert!(decode_headers(&[1, b'a', 42]).expect_err("type").contains("unknown value type 42"));
    }

    #[test]
    fn decodes_every_header_type() {
        let mut block = Vec::new();
        let mut push = |name: &str, value_type: u8, value: &[u8]| {
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(value_type);
            block.extend_from_slice(value);
        };
        push("t", 0, &[]);
        push("f", 1, &[]);
        push("b", 2, &[0xff]);
        push("s", 3, &(-2i16).to_be_bytes());
        push("i", 4, &7i32.to_be_bytes());
        push("l", 5, &(1i64 << 40).to_be_bytes());
        push("y", 6, &[0, 2, 0xab, 0xcd]);
        push("str", 7, &[0, 2, b'h', b'i']);
        push("ts", 8, &1_700_000_000_000i64.to_be_bytes());
        push("u", 9, &[0x11; 16]);
        let headers = decode_headers(&block).expect("decodes");
        let values: Vec<&str> = headers.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values,
            [
                "true",
                "false",
                "-1",
                "-2",
                "7",
                "1099511627776",
                "abcd",
                "hi",
                "1700000000000",
                "11111111111111111111111111111111"
            ]
        );
    }

    #[test]
    fn oversized_headers_are_reported() {
        let long_name = "n".repeat(256);
        assert!(try_encode_message(&[(long_name.as_str(), "v")], b"").is_err());
        let long_value = "v".repeat(65_536);
        assert!(try_encode_message(&[("n", long_value.as_str())], b"").is_err());
        let max_value = "v".repeat(65_535);
        let frame = try_encode_message(&[("n", max_value.as_str())], b"").expect("fits");
        assert_eq!(decode_message(&frame).expect("decodes").0[0].1.len(), 65_535);
    }
}
