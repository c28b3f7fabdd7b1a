//! Dynamic partitioning: partition keys from each record with a jq query
//! (`MetadataExtractionQuery`, evaluated by jaq), put into the object key by
//! `!{partitionKeyFromQuery:NAME}` in the prefix.
//!
//! The query must produce one JSON object whose values are the keys, e.g.
//! `{customer: .customer_id, year: .year}`. A buffer is split by the keys its
//! records yield: one object per partition. Records the query cannot read go to
//! the error prefix (`partitioning-failed`).

use std::collections::BTreeMap;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, RcIter};
use jaq_json::Val;
use serde_json::Value;

/// A compiled `MetadataExtractionQuery`.
pub struct Query {
    filter: jaq_core::Filter<Native<Val>>,
}

impl Query {
    pub fn compile(code: &str) -> Result<Query, String> {
        let loader = Loader::new(jaq_std::defs().chain(jaq_json::defs()));
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errors| format!("MetadataExtractionQuery {code:?} does not parse ({} errors)", errors.len()))?;
        let filter = Compiler::default()
            .with_funs(jaq_std::funs().chain(jaq_json::funs()))
            .compile(modules)
            .map_err(|errors| format!("MetadataExtractionQuery {code:?} does not compile ({} errors)", errors.len()))?;
        Ok(Query { filter })
    }

    /// The partition keys of one record (a JSON object), or why there are none.
    pub fn keys(&self, record: &[u8]) -> Result<BTreeMap<String, String>, String> {
        let input: Value = serde_json::from_slice(record).map_err(|_| "the record is not JSON".to_string())?;
        let inputs = RcIter::new(core::iter::empty());
        let mut outputs = self.filter.run((Ctx::new([], &inputs), Val::from(input)));
        let first =
            outputs.next().ok_or("the query produced nothing")?.map_err(|e| format!("the query failed: {e}"))?;
        let Value::Object(object) = Value::from(first) else {
            return Err("the query must produce an object of partition keys".into());
        };
        object
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(s) => Ok((name, s)),
                Value::Number(n) => Ok((name, n.to_string())),
                Value::Bool(b) => Ok((name, b.to_string())),
                other => Err(format!("partition key {name} is {other}, not a string or number")),
            })
            .collect()
    }
}

/// Replaces every `!{partitionKeyFromQuery:NAME}` in `prefix` with its key.
pub fn fill_prefix(prefix: &str, keys: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = prefix.to_string();
    while let Some(start) = out.find("!{partitionKeyFromQuery:") {
        let end = out[start..].find('}').map(|e| start + e).ok_or("unclosed partition key expression")?;
        let name = &out[start + "!{partitionKeyFromQuery:".len()..end];
        let value = keys.get(name).ok_or_else(|| format!("the query produced no partition key {name}"))?.clone();
        out.replace_range(start..=end, &value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_yield_partition_keys_for_the_prefix() {
        let query = Query::compile("{customer: .customer_id, year: (.ts / 1000 | floor | tostring | .[0:2])}").unwrap();
        let keys = query.keys(br#"{"customer_id": "c-7", "ts": 20000}"#).unwrap();
        assert_eq!(keys.get("customer").map(String::as_str), Some("c-7"));
        let prefix = fill_prefix("data/customer=!{partitionKeyFromQuery:customer}/", &keys).unwrap();
        assert_eq!(prefix, "data/customer=c-7/");
        assert!(query.keys(b"not json").is_err());
        assert!(Query::compile("{customer: .customer_id").is_err());
        assert!(fill_prefix("!{partitionKeyFromQuery:missing}/", &keys).is_err());
    }
}
