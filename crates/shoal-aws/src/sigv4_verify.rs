//! Verifying AWS Signature Version 4 on incoming requests.
//!
//! Every AWS SDK signs every request it sends, so checking the signature is
//! how a Shoal node can tell its callers apart and refuse strangers without
//! asking clients to change anything but the endpoint URL. The node keeps a
//! table of access keys and secrets; a request is accepted only if its
//! `Authorization` header carries a signature that the named key's secret
//! reproduces over the request as received.
//!
//! The verifier recomputes the signature the way the SDKs compute it
//! (botocore's `SigV4Auth`, the Java SDK's `Aws4Signer`): a canonical request
//! (method, double-encoded path without dot segments, sorted query, the signed
//! headers with trimmed and collapsed values, the body hash), the string to sign
//! over it and the credential scope, and an HMAC-SHA256 chain that turns the
//! secret into a key for that date, region and service. The comparison is in
//! constant time.
//!
//! Failures come back as the errors AWS itself returns, so SDKs raise the same
//! modeled exceptions they would against AWS ([`SigV4Error::type_name`]).
//!
//! What it does not do: presigned URLs (`X-Amz-Signature` in the query),
//! `aws-chunked` streaming payloads, SigV4a, or checking session tokens
//! (`x-amz-security-token` is signed like any header but not validated). The
//! request time is checked only by [`check_request_time`], kept apart so that
//! callers choose the clock and the allowed skew. A body whose
//! `x-amz-content-sha256` says `UNSIGNED-PAYLOAD` is accepted without being
//! covered by the signature, as AWS accepts it; the literal is itself signed,
//! so it cannot be swapped in for a body hash after signing.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The message AWS sends with `InvalidSignatureException` when the
/// signature does not match; SDK users search for it.
const MISMATCH_MESSAGE: &str = "The request signature we calculated does not match the signature you provided. \
     Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// A request as the HTTP server received it: raw, before any decoding.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `POST`, `GET`, ...
    pub method: &'a str,
    /// The path as on the request line, still percent-encoded, without the query.
    pub path: &'a str,
    /// The query string as on the request line, without the `?` (empty if none).
    pub query: &'a str,
    /// Every header received, names in lower case (as `http::HeaderMap` gives
    /// them), repeated names as separate entries. Over HTTP/2 the `host` is
    /// the `:authority` pseudo-header, which `http` keeps in the URI rather
    /// than among the headers: the caller must add it as `("host", authority)`,
    /// since every SDK signs `host`.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl<'a> SignedRequest<'a> {
    fn header_values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        let headers: &'a [(String, String)] = self.headers;
        headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn header(&self, name: &str) -> Option<&'a str> {
        self.header_values(name).next()
    }
}

/// Who signed a request that verified, from its credential scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCaller {
    pub access_key: String,
    pub region: String,
    pub service: String,
}

/// Why a request was refused, as the AWS error the SDKs expect.
///
/// All four go out with HTTP 400 ([`SigV4Error::http_status`]): that is what
/// the AWS JSON services (Kinesis Data Streams, DynamoDB, both on the same
/// front end) return for them, as SDK traces show, e.g. "Service: AmazonKinesis;
/// Status Code: 400; Error Code: UnrecognizedClientException" and the same for
/// `InvalidSignatureException`, and DynamoDB's "Status Code: 400; Error Code:
/// MissingAuthenticationTokenException"; kinesalite, built from recorded
/// Kinesis responses, answers 400 for the missing and incomplete cases too. The
/// 403s in AWS's "Common Errors" pages belong to the query and REST protocols
/// (`MissingAuthenticationToken` without the `Exception` suffix, API Gateway,
/// Kinesis Video). SDKs go by `__type`, not the status, and retry neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigV4Error {
    /// No `Authorization` header at all.
    Missing,
    /// An `Authorization` header or date that is not a well-formed SigV4
    /// signature; the text says what is wrong.
    Incomplete(String),
    /// Well-formed, but not signed by the secret of the key it names (or the
    /// request was changed after signing); the text is the message to send.
    InvalidSignature(String),
    /// The access key is not one the node knows; holds the key.
    UnknownAccessKey(String),
}

impl SigV4Error {
    /// The `__type` AWS uses for this failure.
    pub fn type_name(&self) -> &'static str {
        match self {
            SigV4Error::Missing => "MissingAuthenticationTokenException",
            SigV4Error::Incomplete(_) => "IncompleteSignatureException",
            SigV4Error::InvalidSignature(_) => "InvalidSignatureException",
            SigV4Error::UnknownAccessKey(_) => "UnrecognizedClientException",
        }
    }

    /// The `message` to send with [`type_name`](Self::type_name).
    pub fn message(&self) -> &str {
        match self {
            SigV4Error::Missing => "Missing Authentication Token",
            SigV4Error::Incomplete(message) | SigV4Error::InvalidSignature(message) => message,
            SigV4Error::UnknownAccessKey(_) => "The security token included in the request is invalid.",
        }
    }

    /// The HTTP status: 400 for all, as the AWS JSON services do (see the type's docs).
    pub fn http_status(&self) -> u16 {
        400
    }
}

impl fmt::Display for SigV4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.type_name(), self.message())
    }
}

impl std::error::Error for SigV4Error {}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'h> {
    access_key: &'h str,
    date: &'h str,
    region: &'h str,
    service: &'h str,
    signed_headers: Vec<String>,
    signature: &'h str,
}

impl Authorization<'_> {
    fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }
}

/// Checks the request's signature, looking up the secret of the access key it
/// names with `lookup_secret`.
///
/// Checks in the order AWS does: the header's form and the date
/// ([`SigV4Error::Incomplete`]), then the key ([`SigV4Error::UnknownAccessKey`]),
/// then the signature ([`SigV4Error::InvalidSignature`]).
pub fn verify(
    request: &SignedRequest,
    lookup_secret: impl Fn(&str) -> Option<String>,
) -> Result<VerifiedCaller, SigV4Error> {
    let header = request.header("authorization").ok_or(SigV4Error::Missing)?;
    let auth = parse_authorization(header)?;
    let amz_date = request_date(request)?;
    if amz_date.get(..8) != Some(auth.date) {
        return Err(SigV4Error::InvalidSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', \
             from '{amz_date}'.",
            auth.date,
            amz_date.get(..8).unwrap_or(amz_date),
        )));
    }
    let secret = lookup_secret(auth.access_key).ok_or_else(|| SigV4Error::UnknownAccessKey(auth.access_key.into()))?;
    let provided = hex::decode(auth.signature)
        .ok()
        .filter(|bytes| bytes.len() == 32)
        .ok_or_else(|| SigV4Error::InvalidSignature(MISMATCH_MESSAGE.to_string()))?;

    let payload_hash = payload_hash(request)?;
    let signing_key = signing_key(&secret, auth.date, auth.region, auth.service);
    let scope = auth.scope();
    let canonical_uri = canonical_uri(request.path);
    let canonical_headers = canonical_headers(request, &auth.signed_headers)?;
    let signed_headers = auth.signed_headers.join(";");

    // The strict canonical query re-encodes every name and value; botocore
    // instead sorts the pairs exactly as they appear in the URL. Both are
    // tried when they differ, so a signature from either kind of client holds.
    let strict = canonical_query(request.query);
    let raw = raw_sorted_query(request.query);
    let queries = if strict == raw { vec![strict] } else { vec![strict, raw] };
    let mut first_attempt = None;
    for query in queries {
        let canonical_request = [
            request.method.to_ascii_uppercase().as_str(),
            &canonical_uri,
            &query,
            &canonical_headers,
            &signed_headers,
            &payload_hash,
        ]
        .join("\n");
        let string_to_sign = format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex_sha256(canonical_request.as_bytes()));
        let mut mac = hmac(&signing_key);
        mac.update(string_to_sign.as_bytes());
        if mac.verify_slice(&provided).is_ok() {
            return Ok(VerifiedCaller {
                access_key: auth.access_key.to_string(),
                region: auth.region.to_string(),
                service: auth.service.to_string(),
            });
        }
        first_attempt.get_or_insert((canonical_request, string_to_sign));
    }
    let (canonical_request, string_to_sign) = first_attempt.unwrap_or_default();
    Err(SigV4Error::InvalidSignature(format!(
        "{MISMATCH_MESSAGE}\n\nThe Canonical String for this request should have been\n'{canonical_request}'\n\n\
         The String-to-Sign should have been\n'{string_to_sign}'\n"
    )))
}

/// The headers that sign a request as the AWS SDKs do — `x-amz-date` and
/// `authorization` — for Shoal's own CLI calling the AWS API. `headers` are the
/// request's other headers (lower-case names), `host` included; all are signed.
pub fn sign(
    request: &SignedRequest,
    access_key: &str,
    secret: &str,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<Vec<(String, String)>, SigV4Error> {
    let epoch = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default();
    let amz_date = format_basic_iso8601(epoch);
    let date = amz_date.get(..8).unwrap_or_default().to_string();
    let mut headers = request.headers.to_vec();
    headers.push(("x-amz-date".into(), amz_date.clone()));
    let mut names: Vec<String> = headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    let dated = SignedRequest { headers: &headers, ..*request };
    let canonical_request = [
        request.method.to_ascii_uppercase().as_str(),
        &canonical_uri(request.path),
        &canonical_query(request.query),
        &canonical_headers(&dated, &names)?,
        &names.join(";"),
        &payload_hash(&dated)?,
    ]
    .join("\n");
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex_sha256(canonical_request.as_bytes()));
    let mut mac = hmac(&signing_key(secret, &date, region, service));
    mac.update(string_to_sign.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let authorization = format!(
        "{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={}, Signature={signature}",
        names.join(";")
    );
    Ok(vec![("x-amz-date".into(), amz_date), ("authorization".into(), authorization)])
}

/// Refuses a request whose `x-amz-date` is more than `max_skew` away from
/// `now`, as AWS does (with 5 minutes) to bound how long a captured request
/// can be replayed. Call it after [`verify`]; it only reads the date header.
pub fn check_request_time(request: &SignedRequest, now: SystemTime, max_skew: Duration) -> Result<(), SigV4Error> {
    let amz_date = request_date(request)?;
    let signed = parse_basic_iso8601(amz_date).ok_or_else(|| bad_date(amz_date))?;
    let now_secs = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let skew = i64::try_from(max_skew.as_secs()).unwrap_or(i64::MAX);
    let minutes = max_skew.as_secs() / 60;
    if signed < now_secs.saturating_sub(skew) {
        return Err(SigV4Error::InvalidSignature(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - {minutes} min.)",
            format_basic_iso8601(now_secs.saturating_sub(skew)),
            format_basic_iso8601(now_secs),
        )));
    }
    if signed > now_secs.saturating_add(skew) {
        return Err(SigV4Error::InvalidSignature(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + {minutes} min.)",
            format_basic_iso8601(now_secs.saturating_add(skew)),
            format_basic_iso8601(now_secs),
        )));
    }
    Ok(())
}

fn parse_authorization<'h>(header: &'h str) -> Result<Authorization<'h>, SigV4Error> {
    let header = header.trim();
    let (algorithm, params) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    if algorithm != ALGORITHM {
        return Err(SigV4Error::Incomplete(format!("Unsupported AWS 'algorithm': '{algorithm}'")));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in params.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(SigV4Error::Incomplete(format!(
                "Invalid key=value pair (missing equal-sign) in Authorization header: '{part}'"
            )));
        };
        match key.trim() {
            "Credential" => credential = Some(value.trim()),
            "SignedHeaders" => signed_headers = Some(value.trim()),
            "Signature" => signature = Some(value.trim()),
            _ => {}
        }
    }
    let present = |value: Option<&'h str>| value.filter(|value| !value.is_empty());
    let (credential, signed_headers, signature) = (present(credential), present(signed_headers), present(signature));
    let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed_headers, signature) else {
        let missing: Vec<String> =
            [("Credential", credential), ("Signature", signature), ("SignedHeaders", signed_headers)]
                .into_iter()
                .filter(|(_, value)| value.is_none())
                .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
                .collect();
        return Err(SigV4Error::Incomplete(missing.join(" ")));
    };

    let fields: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = fields[..] else {
        return Err(SigV4Error::Incomplete(format!(
            "Credential should have the form <access key>/<YYYYMMDD>/<region>/<service>/aws4_request, \
             not '{credential}'."
        )));
    };
    if terminator != "aws4_request" {
        return Err(SigV4Error::Incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
        )));
    }
    if access_key.is_empty() || region.is_empty() || service.is_empty() {
        return Err(SigV4Error::Incomplete(format!(
            "Credential names no access key, region or service: '{credential}'."
        )));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SigV4Error::Incomplete(format!(
            "Credential should be scoped to a valid date in the form YYYYMMDD, not '{date}'."
        )));
    }

    let signed_headers: Vec<String> = signed_headers.split(';').map(|name| name.trim().to_ascii_lowercase()).collect();
    if signed_headers.iter().any(String::is_empty) {
        return Err(SigV4Error::Incomplete("SignedHeaders contains an empty header name.".into()));
    }
    if !signed_headers.iter().any(|name| name == "host") {
        return Err(SigV4Error::Incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    Ok(Authorization { access_key, date, region, service, signed_headers, signature })
}

/// The `x-amz-date` header, checked to be `YYYYMMDD'T'HHMMSS'Z'`.
fn request_date<'r>(request: &SignedRequest<'r>) -> Result<&'r str, SigV4Error> {
    let date = request.header("x-amz-date").map(str::trim).ok_or_else(|| {
        SigV4Error::Incomplete("Authorization header requires existence of a 'X-Amz-Date' header.".into())
    })?;
    if parse_basic_iso8601(date).is_none() {
        return Err(bad_date(date));
    }
    Ok(date)
}

fn bad_date(date: &str) -> SigV4Error {
    SigV4Error::Incomplete(format!("Date must be in ISO-8601 'basic format'. Got '{date}'."))
}

/// The hash that ends the canonical request: the `x-amz-content-sha256` header
/// if the client sent one (after checking that it is the body's hash), else
/// the body's hash.
fn payload_hash(request: &SignedRequest) -> Result<String, SigV4Error> {
    let body_hash = hex_sha256(request.body);
    let Some(declared) = request.header("x-amz-content-sha256").map(str::trim) else { return Ok(body_hash) };
    if declared == "UNSIGNED-PAYLOAD" {
        return Ok(declared.to_string());
    }
    if declared.len() != 64 || !declared.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SigV4Error::Incomplete(format!("Unsupported x-amz-content-sha256 value: '{declared}'.")));
    }
    if !declared.eq_ignore_ascii_case(&body_hash) {
        return Err(SigV4Error::InvalidSignature(
            "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
        ));
    }
    Ok(declared.to_string())
}

/// `name:value` lines for the signed headers, in the order signed, each value
/// trimmed with inner runs of whitespace collapsed, repeated headers joined by
/// commas; the block ends with a newline, as in the canonical request.
fn canonical_headers(request: &SignedRequest, signed: &[String]) -> Result<String, SigV4Error> {
    let mut out = String::new();
    for name in signed {
        let values: Vec<String> =
            request.header_values(name).map(|value| value.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        if values.is_empty() {
            return Err(SigV4Error::InvalidSignature(format!(
                "{MISMATCH_MESSAGE} The signed header '{name}' is not in the request."
            )));
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// The path with `.` and `..` segments and empty segments removed, then
/// URI-encoded once more (every service but S3 signs the path encoded twice).
fn canonical_uri(path: &str) -> String {
    let segments = path.split('/').fold(Vec::new(), |mut kept, segment| {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            _ => kept.push(segment),
        }
        kept
    });
    let mut normalized = String::from("/");
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    uri_encode(normalized.as_bytes(), true)
}

/// The query as SigV4 specifies it: every name and value decoded and encoded
/// again with the strict SigV4 alphabet, a missing `=` as an empty value, the
/// pairs sorted by name then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (uri_encode(&percent_decode(name), false), uri_encode(&percent_decode(value), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("&")
}

/// The query as botocore canonicalizes it: the pairs as they are in the URL,
/// sorted, without re-encoding.
fn raw_sorted_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(&str, &str)> =
        query.split('&').map(|pair| pair.split_once('=').unwrap_or((pair, ""))).collect();
    pairs.sort();
    pairs.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("&")
}

/// Percent-encodes all but the unreserved characters (and `/` if asked), with
/// upper-case hex, as SigV4 requires.
fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') || (keep_slash && byte == b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(decoded) = bytes.get(i + 1..i + 3).and_then(|hex| hex::decode(hex).ok())
        {
            out.extend_from_slice(&decoded);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: it hashes longer ones and pads shorter.
    HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length")
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = hmac(key);
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date);
    let k_region = hmac_sha256(&k_date, region);
    let k_service = hmac_sha256(&k_region, service);
    hmac_sha256(&k_service, "aws4_request")
}

/// Seconds since the epoch of `YYYYMMDD'T'HHMMSS'Z'`, if it is one.
fn parse_basic_iso8601(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        digits.iter().try_fold(0i64, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0')))
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn format_basic_iso8601(epoch_secs: i64) -> String {
    let (days, secs) = (epoch_secs.div_euclid(86_400), epoch_secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    fn secrets(access_key: &str) -> Option<String> {
        (access_key == "AKIDEXAMPLE").then(|| "secret".to_string())
    }

    #[test]
    fn what_sign_signs_verifies_and_a_changed_body_does_not() {
        let base = headers(&[
            ("host", "127.0.0.1:4567"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "Firehose_20150804.ListDeliveryStreams"),
        ]);
        let body = br#"{}"#;
        let request = SignedRequest { method: "POST", path: "/", query: "", headers: &base, body };
        let added = sign(&request, "AKIDEXAMPLE", "secret", "us-east-1", "firehose", SystemTime::now()).unwrap();
        let mut all = base.clone();
        all.extend(added);
        let signed = SignedRequest { headers: &all, ..request };
        let caller = verify(&signed, secrets).unwrap();
        assert_eq!((caller.region.as_str(), caller.service.as_str()), ("us-east-1", "firehose"));
        let tampered = SignedRequest { body: br#"{"Limit":1}"#, ..signed };
        assert!(verify(&tampered, secrets).is_err());
    }

    /// Signed by botocore 1.43 at 2026-01-15T12:34:56Z:
    /// `SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "kinesis", "us-east-1")` on
    /// `AWSRequest(method="POST", url="http://127.0.0.1:4567/", data=b'{"StreamName":"s"}',
    /// headers={"X-Amz-Target": "Kinesis_20131202.DescribeStream", "Content-Type": "application/x-amz-json-1.1"})`.
    /// The headers are those of the prepared request plus the ones its HTTP
    /// client adds on the wire: `host` (signed by botocore from the URL) and
    /// the unsigned `user-agent` and `accept-encoding`.
    const DESCRIBE_BODY: &[u8] = br#"{"StreamName":"s"}"#;
    const DESCRIBE_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260115/us-east-1/kinesis/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
         Signature=82c50d9c70e2fb67218c7f9bd95113b0872baca30131661a1e0fbd6f781ab763";

    fn describe_headers() -> Vec<(String, String)> {
        headers(&[
            ("host", "127.0.0.1:4567"),
            ("x-amz-target", "Kinesis_20131202.DescribeStream"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-date", "20260115T123456Z"),
            ("authorization", DESCRIBE_AUTH),
            ("content-length", "18"),
            ("user-agent", "Boto3/1.40 md/Botocore#1.43.11"),
            ("accept-encoding", "identity"),
        ])
    }

    fn describe(headers: &[(String, String)]) -> SignedRequest<'_> {
        SignedRequest { method: "POST", path: "/", query: "", headers, body: DESCRIBE_BODY }
    }

    fn with_header(mut headers: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
        headers.retain(|(n, _)| n != name);
        headers.push((name.to_string(), value.to_string()));
        headers
    }

    #[test]
    fn accepts_a_botocore_signature() {
        let headers = describe_headers();
        let caller = verify(&describe(&headers), secrets).expect("verifies");
        assert_eq!(
            caller,
            VerifiedCaller { access_key: "AKIDEXAMPLE".into(), region: "us-east-1".into(), service: "kinesis".into() }
        );
    }

    #[test]
    fn refuses_the_wrong_secret() {
        let headers = describe_headers();
        let error = verify(&describe(&headers), |_| Some("not-the-secret".into())).expect_err("refused");
        assert!(matches!(error, SigV4Error::InvalidSignature(_)), "{error:?}");
        assert_eq!(error.type_name(), "InvalidSignatureException");
        assert!(error.message().starts_with("The request signature we calculated does not match"));
        // The canonical request is echoed back, as AWS does, to help debug signers.
        assert!(error.message().contains("host:127.0.0.1:4567\nx-amz-date:20260115T123456Z"), "{error}");
    }

    #[test]
    fn refuses_a_tampered_body() {
        let headers = describe_headers();
        let request = SignedRequest { body: br#"{"StreamName":"t"}"#, ..describe(&headers) };
        assert!(matches!(verify(&request, secrets), Err(SigV4Error::InvalidSignature(_))));
    }

    #[test]
    fn refuses_a_tampered_signed_header_but_ignores_unsigned_ones() {
        let tampered = with_header(describe_headers(), "x-amz-target", "Kinesis_20131202.DeleteStream");
        assert!(matches!(verify(&describe(&tampered), secrets), Err(SigV4Error::InvalidSignature(_))));
        let other_host = with_header(describe_headers(), "host", "127.0.0.1:4568");
        assert!(matches!(verify(&describe(&other_host), secrets), Err(SigV4Error::InvalidSignature(_))));
        let other_agent = with_header(describe_headers(), "user-agent", "curl/8");
        assert!(verify(&describe(&other_agent), secrets).is_ok());
        let other_method = SignedRequest { method: "PUT", ..describe(&other_agent) };
        assert!(matches!(verify(&other_method, secrets), Err(SigV4Error::InvalidSignature(_))));
    }

    #[test]
    fn refuses_a_tampered_signature_of_any_shape() {
        let flipped = DESCRIBE_AUTH.replace("Signature=82c5", "Signature=82c6");
        let short = DESCRIBE_AUTH.replace("Signature=82c5", "Signature=");
        let not_hex = DESCRIBE_AUTH.replace("Signature=82c5", "Signature=zzzz");
        for auth in [flipped, short, not_hex] {
            let headers = with_header(describe_headers(), "authorization", &auth);
            assert!(matches!(verify(&describe(&headers), secrets), Err(SigV4Error::InvalidSignature(_))), "{auth}");
        }
    }

    #[test]
    fn missing_authorization_is_missing_token() {
        let mut headers = describe_headers();
        headers.retain(|(name, _)| name != "authorization");
        let error = verify(&describe(&headers), secrets).expect_err("refused");
        assert_eq!(error, SigV4Error::Missing);
        assert_eq!(error.type_name(), "MissingAuthenticationTokenException");
        assert_eq!(error.message(), "Missing Authentication Token");
        assert_eq!(error.http_status(), 400);
    }

    #[test]
    fn unknown_access_key_is_unrecognized_client() {
        let headers = describe_headers();
        let error = verify(&describe(&headers), |_| None).expect_err("refused");
        assert_eq!(error, SigV4Error::UnknownAccessKey("AKIDEXAMPLE".into()));
        assert_eq!(error.type_name(), "UnrecognizedClientException");
        assert_eq!(error.message(), "The security token included in the request is invalid.");
        assert_eq!(
            error.to_string(),
            "UnrecognizedClientException: The security token included in the request is invalid."
        );
    }

    #[test]
    fn the_key_is_checked_before_the_signature() {
        let headers = with_header(describe_headers(), "authorization", &DESCRIBE_AUTH.replace("82c5", "0000"));
        assert!(matches!(verify(&describe(&headers), |_| None), Err(SigV4Error::UnknownAccessKey(_))));
    }

    /// botocore 1.43, same instant: `Credentials("AKIDEXAMPLE", "secret", "TOKEN123")`,
    /// region eu-west-1, url `http://localhost:4567/some%20path/../x?b=2&a=1&a=0&c=%2f+z`,
    /// an empty body, and a header with runs of spaces. botocore's canonical
    /// request has path `/x`, query `a=0&a=1&b=2&c=%2f+z` (sorted but not
    /// re-encoded) and `x-custom:a b c`.
    #[test]
    fn accepts_botocore_with_dot_segments_query_and_session_token() {
        let headers = headers(&[
            ("host", "localhost:4567"),
            ("x-amz-target", "Kinesis_20131202.ListStreams"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-custom", "  a   b  c "),
            ("x-amz-date", "20260115T123456Z"),
            ("x-amz-security-token", "TOKEN123"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260115/eu-west-1/kinesis/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target;x-custom, \
                 Signature=5a35604d0c78f05a90aa48c33770c6e4184b2841514d4a0c12ac5a37e8455207",
            ),
            ("content-length", "0"),
        ]);
        let request = SignedRequest {
            method: "POST",
            path: "/some%20path/../x",
            query: "b=2&a=1&a=0&c=%2f+z",
            headers: &headers,
            body: b"",
        };
        let caller = verify(&request, secrets).expect("verifies");
        assert_eq!(caller.region, "eu-west-1");
        let reordered = SignedRequest { query: "a=0&c=%2f+z&b=2&a=1", ..request };
        assert!(verify(&reordered, secrets).is_ok());
        let changed = SignedRequest { query: "b=2&a=1&a=0&c=%2f+y", ..request };
        assert!(verify(&changed, secrets).is_err());
    }

    /// botocore 1.43, same instant, region us-west-2, url
    /// `http://127.0.0.1:4567/a%20b/./c/?x=%7E&y`, body `{}` and an explicit
    /// `X-Amz-Content-SHA256`. botocore's canonical path is `/a%2520b/c/`
    /// (encoded twice, trailing slash kept) and its query `x=%7E&y=`.
    #[test]
    fn accepts_botocore_with_double_encoded_path_and_content_sha256() {
        let body_sha = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        let headers = headers(&[
            ("host", "127.0.0.1:4567"),
            ("x-amz-target", "Kinesis_20131202.ListStreams"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-content-sha256", body_sha),
            ("x-amz-date", "20260115T123456Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260115/us-west-2/kinesis/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-target, \
                 Signature=27e7c4b8880914360c9ccb5ec1efc339c466d3add5f69f5e6c6c8a33f518cd0e",
            ),
        ]);
        let request =
            SignedRequest { method: "POST", path: "/a%20b/./c/", query: "x=%7E&y", headers: &headers, body: b"{}" };
        assert_eq!(verify(&request, secrets).expect("verifies").region, "us-west-2");
        // The declared body hash must be the body's.
        let error = verify(&SignedRequest { body: b"[]", ..request }, secrets).expect_err("refused");
        assert!(error.message().contains("x-amz-content-sha256"), "{error}");
    }

    /// `get-vanilla` from AWS's SigV4 test suite (botocore gives the same signature).
    #[test]
    fn accepts_the_aws_test_suite_get_vanilla() {
        let headers = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
        ]);
        let request = SignedRequest { method: "GET", path: "/", query: "", headers: &headers, body: b"" };
        let caller = verify(&request, |_| Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into())).expect("verifies");
        assert_eq!(caller.service, "service");
    }

    #[test]
    fn malformed_authorization_is_incomplete() {
        let scoped = |credential: &str, signed_headers: &str| {
            format!("AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed_headers}, Signature=00")
        };
        let cases = [
            ("Bearer abc".to_string(), "Unsupported AWS 'algorithm'"),
            ("AWS4-HMAC-SHA256".to_string(), "requires 'Credential' parameter"),
            (
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260115/us-east-1/kinesis/aws4_request".to_string(),
                "'Signature'",
            ),
            ("AWS4-HMAC-SHA256 Credential".to_string(), "missing equal-sign"),
            (scoped("AKIDEXAMPLE/20260115/us-east-1/kinesis", "host"), "should have the form"),
            (scoped("AKIDEXAMPLE/20260115/us-east-1/kinesis/aws5", "host"), "terminator"),
            (scoped("/20260115/us-east-1/kinesis/aws4_request", "host"), "no access key"),
            (scoped("AKIDEXAMPLE/2026011/us-east-1/kinesis/aws4_request", "host"), "valid date"),
            (scoped("AKIDEXAMPLE/20260115/us-east-1/kinesis/aws4_request", "x-amz-date"), "'Host'"),
            (scoped("AKIDEXAMPLE/20260115/us-east-1/kinesis/aws4_request", "host;;x-amz-date"), "empty header name"),
        ];
        for (authorization, expected) in cases {
            let headers = with_header(describe_headers(), "authorization", &authorization);
            let error = verify(&describe(&headers), secrets).expect_err(&authorization);
            assert!(matches!(error, SigV4Error::Incomplete(_)), "{authorization}: {error:?}");
            assert!(error.message().contains(expected), "{authorization}: {error}");
            assert_eq!(error.type_name(), "IncompleteSignatureException");
            assert_eq!(error.http_status(), 400);
        }
    }

    #[test]
    fn the_date_header_is_required_and_must_match_the_scope() {
        let mut no_date = describe_headers();
        no_date.retain(|(name, _)| name != "x-amz-date");
        let error = verify(&describe(&no_date), secrets).expect_err("no date");
        assert!(matches!(&error, SigV4Error::Incomplete(m) if m.contains("X-Amz-Date")), "{error:?}");

        let garbled = with_header(describe_headers(), "x-amz-date", "2026-01-15T12:34:56Z");
        assert!(matches!(verify(&describe(&garbled), secrets), Err(SigV4Error::Incomplete(_))));

        let next_day = with_header(describe_headers(), "x-amz-date", "20260116T003456Z");
        let error = verify(&describe(&next_day), secrets).expect_err("scope");
        assert!(matches!(&error, SigV4Error::InvalidSignature(m) if m.contains("Date in Credential scope")));
    }

    #[test]
    fn a_signed_header_absent_from_the_request_is_named() {
        // What an HTTP/2 request looks like if the caller forgets to add `host` from `:authority`.
        let mut headers = describe_headers();
        headers.retain(|(name, _)| name != "host");
        let error = verify(&describe(&headers), secrets).expect_err("refused");
        assert!(matches!(&error, SigV4Error::InvalidSignature(m) if m.contains("'host' is not in the request")));
    }

    #[test]
    fn header_names_match_whatever_their_case() {
        let headers: Vec<(String, String)> =
            describe_headers().into_iter().map(|(name, value)| (name.to_ascii_uppercase(), value)).collect();
        assert!(verify(&describe(&headers), secrets).is_ok());
    }

    #[test]
    fn canonical_headers_trim_collapse_and_join_repeats() {
        let headers = headers(&[("x-b", " one  two "), ("x-a", "\tA\t"), ("x-b", "three")]);
        let request = SignedRequest { method: "POST", path: "/", query: "", headers: &headers, body: b"" };
        let signed = ["x-a".to_string(), "x-b".to_string()];
        assert_eq!(canonical_headers(&request, &signed).expect("present"), "x-a:A\nx-b:one two,three\n");
    }

    #[test]
    fn canonical_uri_and_query() {
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("//a/./b/../c//"), "/a/c/");
        assert_eq!(canonical_uri("/../.."), "/");
        assert_eq!(canonical_uri("/a b/%41"), "/a%20b/%2541");
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("b=2&a=%7e&a=1&flag&&c=x+y%2f"), "a=1&a=~&b=2&c=x%2By%2F&flag=");
        assert_eq!(canonical_query("k=%zz%4"), "k=%25zz%254");
        assert_eq!(raw_sorted_query("b=2&a=%7e&flag"), "a=%7e&b=2&flag=");
    }

    #[test]
    fn signing_key_matches_the_aws_documentation_example() {
        // From "Examples of how to derive a signing key for Signature Version 4" in the AWS docs.
        let key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam");
        assert_eq!(hex::encode(key), "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    }

    #[test]
    fn request_time_skew() {
        let headers = describe_headers();
        let request = describe(&headers);
        let signed_at = UNIX_EPOCH + Duration::from_secs(parse_basic_iso8601("20260115T123456Z").expect("date") as u64);
        let five_minutes = Duration::from_secs(300);
        assert!(check_request_time(&request, signed_at, five_minutes).is_ok());
        assert!(check_request_time(&request, signed_at + five_minutes, five_minutes).is_ok());
        assert!(check_request_time(&request, signed_at - five_minutes, five_minutes).is_ok());
        let error = check_request_time(&request, signed_at + Duration::from_secs(301), five_minutes).expect_err("old");
        assert_eq!(
            error.message(),
            "Signature expired: 20260115T123456Z is now earlier than 20260115T123457Z (20260115T123957Z - 5 min.)"
        );
        let error = check_request_time(&request, signed_at - Duration::from_secs(301), five_minutes).expect_err("new");
        assert_eq!(
            error.message(),
            "Signature not yet current: 20260115T123456Z is still later than 20260115T123455Z \
             (20260115T122955Z + 5 min.)"
        );
    }

    #[test]
    fn basic_iso8601_dates() {
        assert_eq!(parse_basic_iso8601("19700101T000000Z"), Some(0));
        assert_eq!(parse_basic_iso8601("20000229T235959Z"), Some(951_868_799));
        assert_eq!(parse_basic_iso8601("20260115T123456Z"), Some(1_768_480_496));
        for bad in ["20010229T000000Z", "20261301T000000Z", "20260115T240000Z", "20260115 123456Z", "2026011T123456Z"] {
            assert_eq!(parse_basic_iso8601(bad), None, "{bad}");
        }
        for secs in [0, 951_868_799, 1_768_480_496, 4_102_444_800, -86_400] {
            assert_eq!(parse_basic_iso8601(&format_basic_iso8601(secs)), Some(secs));
        }
    }
}
