//! Reading the SigV4 `Authorization` header: the credential scope names the
//! access key and the region; the account is derived from the access key.

use shoal_types::limits::{DEFAULT_ACCOUNT_ID, DEFAULT_REGION};

/// Who is calling and where, as the request's credential scope says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerScope {
    pub access_key: String,
    pub region: String,
    pub account: String,
}

impl Default for CallerScope {
    fn default() -> Self {
        CallerScope { access_key: String::new(), region: DEFAULT_REGION.into(), account: DEFAULT_ACCOUNT_ID.into() }
    }
}

impl CallerScope {
    /// The internal name of the caller's stream `name` (streams are per account and region).
    pub fn internal(&self, name: &str) -> String {
        shoal_types::scope::scoped_name(&self.account, &self.region, name)
    }

    /// The name the caller knows for an internal stream name.
    pub fn external<'a>(&self, internal: &'a str) -> &'a str {
        shoal_types::scope::split_scoped(internal).2
    }

    /// Whether an internal stream name lives in the caller's account and region.
    pub fn owns(&self, internal: &str) -> bool {
        let (account, region, _) = shoal_types::scope::split_scoped(internal);
        account == self.account && region == self.region
    }
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-1/kinesis/aws4_request, ...`.
/// A missing or unparsable header gives the default scope (any credentials are
/// accepted unless the node is configured to verify them).
pub fn caller_scope(authorization: Option<&str>) -> CallerScope {
    let Some(header) = authorization else { return CallerScope::default() };
    let credential =
        header.split([',', ' ']).find_map(|part| part.trim().strip_prefix("Credential=")).unwrap_or_default();
    let mut fields = credential.split('/');
    let access_key = fields.next().unwrap_or_default().to_string();
    let region = fields.nth(1).filter(|r| !r.is_empty()).unwrap_or(DEFAULT_REGION).to_string();
    // Like kinesis-mock: a 12-digit access key id names the account.
    let account = if access_key.len() == 12 && access_key.bytes().all(|b| b.is_ascii_digit()) {
        access_key.clone()
    } else {
        DEFAULT_ACCOUNT_ID.to_string()
    };
    CallerScope { access_key, region, account }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_region_and_account_from_the_credential_scope() {
        let scope = caller_scope(Some(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/eu-west-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        ));
        assert_eq!(scope.region, "eu-west-1");
        assert_eq!(scope.account, DEFAULT_ACCOUNT_ID);
        let scope =
            caller_scope(Some("AWS4-HMAC-SHA256 Credential=210987654321/20261125/us-west-2/kinesis/aws4_request"));
        assert_eq!(scope.account, "210987654321");
        assert_eq!(caller_scope(None), CallerScope::default());
        assert_eq!(caller_scope(Some("garbage")).region, DEFAULT_REGION);
    }
}
