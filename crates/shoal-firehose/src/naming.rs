//! Object keys, in Firehose's layout:
//! `<evaluated prefix><delivery stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><extension>`.
//!
//! Where Firehose puts a random UUID, Shoal derives one from the delivery stream,
//! the shard and the first record's sequence number, and takes the time from the
//! oldest record's arrival. A worker that crashed after writing an object but
//! before checkpointing starts again at the same record and writes the same key:
//! the retry overwrites instead of duplicating (exactly-once objects, the trick of
//! Kafka Connect's S3 sink, in AWS's key shape).

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};

use crate::destination::Compression;

/// The prefix AWS uses when none (or no timestamp expression) is given.
const DEFAULT_TIME_PREFIX: &str = "%Y/%m/%d/%H/";

/// Checks the expressions in a prefix; Shoal evaluates `!{timestamp:…}` and
/// `!{firehose:random-string}`.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    for expression in expressions(prefix)? {
        match expression.split_once(':') {
            Some(("timestamp", pattern)) => {
                java_to_strftime(pattern)?;
            }
            Some(("firehose", "random-string")) => {}
            Some(("firehose", "error-output-type")) => {
                return Err("!{firehose:error-output-type} is only allowed in ErrorOutputPrefix.".into());
            }
            Some(("partitionKeyFromQuery", _)) => {}
            Some(("partitionKeyFromLambda", _)) => {
                return Err(
                    "!{partitionKeyFromLambda:…} is not supported by Shoal yet (partitionKeyFromQuery is).".into()
                );
            }
            _ => return Err(format!("The expression !{{{expression}}} in the prefix is not valid.")),
        }
    }
    Ok(())
}

/// The `…` of every `!{…}` in `prefix`.
fn expressions(prefix: &str) -> Result<Vec<&str>, String> {
    let mut found = Vec::new();
    let mut rest = prefix;
    while let Some(start) = rest.find("!{") {
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("Unclosed expression in prefix {prefix:?}."))?;
        found.push(&after[..end]);
        rest = &after[end + 1..];
    }
    Ok(found)
}

/// Translates a Java DateTimeFormatter pattern (what Firehose takes) to strftime.
fn java_to_strftime(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let close = chars[i + 1..].iter().position(|&q| q == '\'').ok_or("Unclosed quote in timestamp pattern.")?;
            out.extend(&chars[i + 1..i + 1 + close]);
            i += close + 2;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        let piece = match (c, run) {
            ('y', 4) | ('u', 4) => "%Y".to_string(),
            ('y', 2) | ('u', 2) => "%y".to_string(),
            ('M', 2) => "%m".to_string(),
            ('d', 2) => "%d".to_string(),
            ('H', 2) => "%H".to_string(),
            ('m', 2) => "%M".to_string(),
            ('s', 2) => "%S".to_string(),
            ('D', 3) => "%j".to_string(),
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!("Timestamp pattern letter {} is not supported.", c.to_string().repeat(run)));
            }
            (c, run) => c.to_string().repeat(run).replace('%', "%%"),
        };
        out.push_str(&piece);
        i += run;
    }
    Ok(out)
}

/// Where the records of one object came from.
pub struct ObjectOrigin<'a> {
    pub delivery_stream: &'a str,
    pub version: u64,
    pub shard_id: &'a str,
    pub first_sequence_number: &'a str,
    /// Arrival time of the oldest record in the object (ms since the epoch).
    pub oldest_arrival_millis: u64,
}

impl ObjectOrigin<'_> {
    fn digest(&self) -> [u8; 16] {
        let mut hash = Md5::new();
        for part in [self.delivery_stream, self.shard_id, self.first_sequence_number] {
            hash.update(part.as_bytes());
            hash.update([0u8]);
        }
        hash.finalize().into()
    }

    /// A UUID-shaped name derived from the origin (the same origin, the same name).
    pub fn uuid(&self) -> String {
        format_uuid(self.digest())
    }

    /// An id for a request carrying exactly the records from the first one to
    /// `last_sequence_number` (`count` of them): a retry of the same request
    /// repeats it, a re-delivery that ends elsewhere gets another, so a receiver
    /// that drops repeated ids never drops records it has not seen.
    pub fn request_id(&self, last_sequence_number: &str, count: u64) -> String {
        let mut hash = Md5::new();
        hash.update(self.digest());
        hash.update(last_sequence_number.as_bytes());
        hash.update(count.to_be_bytes());
        format_uuid(hash.finalize().into())
    }
}

fn format_uuid(d: [u8; 16]) -> String {
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

impl ObjectOrigin<'_> {
    fn time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.oldest_arrival_millis as i64).unwrap_or_default()
    }

    /// The full object key under `prefix`.
    pub fn key(&self, prefix: &str, compression: Compression, file_extension: Option<&str>) -> String {
        let time = self.time();
        let evaluated = evaluate_prefix(prefix, &time, &self.uuid());
        let extension = file_extension.unwrap_or(match compression {
            Compression::Gzip => ".gz",
            Compression::Zip => ".zip",
            Compression::Snappy | Compression::HadoopSnappy => ".snappy",
            Compression::Uncompressed => "",
        });
        format!(
            "{evaluated}{}-{}-{}-{}{extension}",
            self.delivery_stream,
            self.version,
            time.format("%Y-%m-%d-%H-%M-%S"),
            self.uuid()
        )
    }
}

/// Evaluates `prefix` at `time` (the oldest record's arrival): timestamp
/// expressions, the random string (derived from `seed`), and the default
/// `yyyy/MM/dd/HH/` when the prefix has no timestamp expression.
pub fn evaluate_prefix(prefix: &str, time: &DateTime<Utc>, seed: &str) -> String {
    let mut out = String::new();
    let mut rest = prefix;
    let mut has_timestamp = false;
    while let Some(start) = rest.find("!{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let expression = &after[..end];
        match expression.split_once(':') {
            Some(("timestamp", pattern)) => {
                has_timestamp = true;
                if let Ok(format) = java_to_strftime(pattern) {
                    out.push_str(&time.format(&format).to_string());
                }
            }
            Some(("firehose", "random-string")) => out.push_str(&seed.replace('-', "")[..11]),
            _ => {}
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if !has_timestamp {
        out.push_str(&time.format(DEFAULT_TIME_PREFIX).to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(seq: &str) -> ObjectOrigin<'_> {
        ObjectOrigin {
            delivery_stream: "hose",
            version: 2,
            shard_id: "shardId-000000000001",
            first_sequence_number: seq,
            // 2026-11-26T04:05:06Z
            oldest_arrival_millis: 1_795_665_906_000,
        }
    }

    #[test]
    fn keys_follow_the_aws_layout_and_repeat_for_the_same_origin() {
        let key = origin("49").key("logs/", Compression::Gzip, None);
        assert!(key.starts_with("logs/2026/11/26/04/hose-2-2026-11-26-04-05-06-"), "{key}");
        assert!(key.ends_with(".gz"));
        assert_eq!(key, origin("49").key("logs/", Compression::Gzip, None));
        assert_ne!(key, origin("50").key("logs/", Compression::Gzip, None));
        let uuid = origin("49").uuid();
        assert_eq!(uuid.len(), 36);
        let request = origin("49").request_id("60", 12);
        assert_eq!(request, origin("49").request_id("60", 12));
        assert_ne!(request, origin("49").request_id("61", 13), "another extent, another id");
    }

    #[test]
    fn timestamp_expressions_replace_the_default_time_prefix() {
        let key =
            origin("1").key("year=!{timestamp:yyyy}/day=!{timestamp:dd}/", Compression::Uncompressed, Some(".json"));
        assert!(key.starts_with("year=2026/day=26/hose-2-"), "{key}");
        assert!(key.ends_with(".json"));
        assert!(check_prefix("x/!{timestamp:yyyy-MM-dd'T'HH}/").is_ok());
        assert!(check_prefix("x/!{timestamp:QQQ}/").is_err());
        assert!(check_prefix("x/!{partitionKeyFromLambda:id}/").is_err());
        assert!(check_prefix("x/!{timestamp:yyyy").is_err());
    }
}
