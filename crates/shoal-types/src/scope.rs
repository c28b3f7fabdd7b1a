//! Where a stream lives: streams are per AWS account and region.
//!
//! The native API and the default scope (`123456789012`, `us-east-1`) use plain
//! stream names. A stream of any other account or region is stored under the
//! internal name `ACCOUNT:REGION/NAME`; the `/` and `:` cannot occur in a stream
//! name, so scoped and plain names never collide.

use crate::limits::{DEFAULT_ACCOUNT_ID, DEFAULT_REGION};

/// The internal name of stream `name` in `account` and `region`.
pub fn scoped_name(account: &str, region: &str, name: &str) -> String {
    if account == DEFAULT_ACCOUNT_ID && region == DEFAULT_REGION {
        name.to_string()
    } else {
        format!("{account}:{region}/{name}")
    }
}

/// `(account, region, name)` of an internal stream name.
pub fn split_scoped(internal: &str) -> (&str, &str, &str) {
    match internal.split_once('/') {
        Some((scope, name)) => match scope.split_once(':') {
            Some((account, region)) => (account, region, name),
            None => (DEFAULT_ACCOUNT_ID, DEFAULT_REGION, internal),
        },
        None => (DEFAULT_ACCOUNT_ID, DEFAULT_REGION, internal),
    }
}

/// Checks the scope part of an internal name (the name part is checked as any name).
pub(crate) fn scope_is_valid(scope: &str) -> bool {
    let Some((account, region)) = scope.split_once(':') else { return false };
    account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !region.is_empty()
        && region.len() <= 32
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scope_keeps_plain_names_and_others_are_prefixed() {
        assert_eq!(scoped_name(DEFAULT_ACCOUNT_ID, DEFAULT_REGION, "orders"), "orders");
        let eu = scoped_name(DEFAULT_ACCOUNT_ID, "eu-west-1", "orders");
        assert_eq!(eu, "123456789012:eu-west-1/orders");
        assert_eq!(split_scoped(&eu), (DEFAULT_ACCOUNT_ID, "eu-west-1", "orders"));
        assert_eq!(split_scoped("orders"), (DEFAULT_ACCOUNT_ID, DEFAULT_REGION, "orders"));
        assert!(scope_is_valid("210987654321:us-west-2"));
        assert!(!scope_is_valid("bad:us-west-2") && !scope_is_valid("210987654321:"));
    }
}
