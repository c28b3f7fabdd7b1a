//! PostgreSQL as the self-hosted stand-in for Redshift
//! (`RedshiftDestinationConfiguration`).
//!
//! As Firehose does for Redshift, the records are first written as an object to
//! the intermediate bucket (`S3Configuration`), then loaded with `COPY` — here
//! `COPY table (columns) FROM STDIN` over the PostgreSQL protocol to the server
//! `ClusterJDBCURL` names (`jdbc:postgresql://host:port/db` or `jdbc:redshift://…`).
//! `CopyOptions` picks the format: containing `json` — each record a JSON object,
//! its fields matched to `DataTableColumns` by name; containing `csv` — each
//! record a CSV line; otherwise Redshift's default, `|`-delimited text.
//!
//! Loads are exactly once: in the same transaction as the COPY, the object's key
//! goes into `shoal_firehose_loads`; a re-delivered object finds its key there
//! and is skipped. Failed loads are retried for `RetryOptions.DurationInSeconds`,
//! then the object's key is written under `errors/` as a manifest, as Firehose does.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::backoff::Backoff;
use crate::destination::S3Destination;
use crate::endpoint_settings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresDestination {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    pub table: String,
    pub columns: Vec<String>,
    pub copy_options: String,
    pub retry_secs: u64,
    /// The intermediate bucket the objects are written to before COPY.
    pub intermediate: S3Destination,
}

/// `jdbc:postgresql://host:port/db` (or `jdbc:redshift://…`) → host, port, database.
fn parse_jdbc(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("jdbc:postgresql://")
        .or_else(|| url.strip_prefix("jdbc:redshift://"))
        .ok_or_else(|| format!("ClusterJDBCURL {url} is not jdbc:postgresql://HOST:PORT/DATABASE."))?;
    let (address, database) = rest.split_once('/').ok_or_else(|| format!("ClusterJDBCURL {url} names no database."))?;
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| format!("ClusterJDBCURL {url} has a bad port."))?),
        None => (address, 5432),
    };
    let database = database.split(['?', ';']).next().unwrap_or_default();
    if host.is_empty() || database.is_empty() {
        return Err(format!("ClusterJDBCURL {url} needs a host and a database."));
    }
    Ok((host.to_string(), port, database.to_string()))
}

/// An SQL identifier, quoted (`schema.table` keeps its dot).
fn quote_identifier(name: &str) -> String {
    name.split('.').map(|part| format!("\"{}\"", part.replace('"', "\"\""))).collect::<Vec<_>>().join(".")
}

impl PostgresDestination {
    pub fn from_config(config: &Map<String, Value>) -> Result<PostgresDestination, String> {
        let value = Value::Object(config.clone());
        let text = |path: &str| value.pointer(path).and_then(Value::as_str);
        let (host, port, database) = parse_jdbc(text("/ClusterJDBCURL").ok_or("ClusterJDBCURL is required.")?)?;
        let table = text("/CopyCommand/DataTableName").ok_or("CopyCommand.DataTableName is required.")?.to_string();
        let columns: Vec<String> = text("/CopyCommand/DataTableColumns")
            .unwrap_or_default()
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        let copy_options = text("/CopyCommand/CopyOptions").unwrap_or_default().to_ascii_lowercase();
        if copy_options.contains("json") && columns.is_empty() {
            return Err("CopyCommand.DataTableColumns is required to load JSON records.".into());
        }
        let retry_secs = endpoint_settings::retry_secs(&value, 3600)?;
        Ok(PostgresDestination {
            host,
            port,
            database,
            user: text("/Username").ok_or("Username is required.")?.to_string(),
            password: text("/Password").unwrap_or_default().to_string(),
            table,
            columns,
            copy_options,
            retry_secs,
            intermediate: endpoint_settings::s3_configuration(&value)?,
        })
    }

    pub fn describe(&self, stored: &Map<String, Value>) -> Value {
        let mut description = stored.clone();
        description.remove("Password");
        endpoint_settings::describe_s3_configuration(&mut description, &self.intermediate);
        description.insert("RetryOptions".into(), json!({ "DurationInSeconds": self.retry_secs }));
        description.entry("S3BackupMode").or_insert(json!("Disabled"));
        Value::Object(description)
    }

    /// The rows COPY reads, and the statement that reads them.
    fn copy(&self, records: &[&[u8]]) -> Result<(String, Vec<u8>), String> {
        let columns = if self.columns.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.columns.iter().map(|c| quote_identifier(c)).collect::<Vec<_>>().join(", "))
        };
        let target = format!("{}{columns}", quote_identifier(&self.table));
        if self.copy_options.contains("json") {
            let mut rows = Vec::new();
            for record in records {
                let object: Value =
                    serde_json::from_slice(record).map_err(|_| "a record is not a JSON object".to_string())?;
                let fields: Vec<String> = self
                    .columns
                    .iter()
                    .map(|c| match object.get(c) {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => csv_field(s),
                        Some(other) => csv_field(&other.to_string()),
                    })
                    .collect();
                rows.extend_from_slice(fields.join(",").as_bytes());
                rows.push(b'\n');
            }
            return Ok((format!("COPY {target} FROM STDIN WITH (FORMAT csv)"), rows));
        }
        let mut rows = Vec::new();
        for record in records {
            rows.extend_from_slice(record.strip_suffix(b"\n").unwrap_or(record));
            rows.push(b'\n');
        }
        if self.copy_options.contains("csv") {
            Ok((format!("COPY {target} FROM STDIN WITH (FORMAT csv)"), rows))
        } else {
            Ok((format!("COPY {target} FROM STDIN WITH (FORMAT text, DELIMITER '|')"), rows))
        }
    }
}

/// A CSV field: quoted when it must be; an empty unquoted field is NULL.
fn csv_field(value: &str) -> String {
    if value.is_empty() || value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// Loads `records` (the object `object_key`) unless that object was loaded
/// before; retries until `RetryOptions` runs out. `Ok(false)`: already loaded.
pub async fn load(destination: &PostgresDestination, object_key: &str, records: &[&[u8]]) -> Result<bool, String> {
    let (statement, rows) = destination.copy(records)?;
    let mut backoff = Backoff::for_secs(destination.retry_secs);
    loop {
        match load_once(destination, object_key, &statement, &rows).await {
            Ok(loaded) => return Ok(loaded),
            Err(error) => {
                tracing::debug!(table = %destination.table, %error, retry_in = ?backoff.pause(), "COPY failed");
                if !backoff.wait().await {
                    return Err(error);
                }
            }
        }
    }
}

async fn load_once(
    destination: &PostgresDestination,
    object_key: &str,
    statement: &str,
    rows: &[u8],
) -> Result<bool, String> {
    use futures::SinkExt;

    let mut config = tokio_postgres::Config::new();
    config
        .host(&destination.host)
        .port(destination.port)
        .dbname(&destination.database)
        .user(&destination.user)
        .password(&destination.password)
        .connect_timeout(Duration::from_secs(10));
    let (mut client, connection) =
        config.connect(tokio_postgres::NoTls).await.map_err(|e| format!("connecting: {e}"))?;
    let connection = tokio::spawn(connection);
    let outcome = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS shoal_firehose_loads (object_key text PRIMARY KEY, loaded_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .map_err(|e| format!("creating shoal_firehose_loads: {e}"))?;
        let transaction = client.transaction().await.map_err(|e| e.to_string())?;
        let inserted = transaction
            .execute("INSERT INTO shoal_firehose_loads (object_key) VALUES ($1) ON CONFLICT DO NOTHING", &[&object_key])
            .await
            .map_err(|e| e.to_string())?;
        if inserted == 0 {
            return Ok(false); // loaded before (the transaction rolls back on drop)
        }
        let sink = transaction.copy_in(statement).await.map_err(|e| format!("{statement}: {e}"))?;
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::copy_from_slice(rows)).await.map_err(|e| format!("COPY: {e}"))?;
        sink.finish().await.map_err(|e| format!("COPY: {e}"))?;
        transaction.commit().await.map_err(|e| format!("commit: {e}"))?;
        Ok(true)
    }
    .await;
    drop(client);
    let _ = connection.await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_urls_and_copy_statements() {
        assert_eq!(
            parse_jdbc("jdbc:postgresql://db.local:5433/analytics").unwrap(),
            ("db.local".into(), 5433, "analytics".into())
        );
        assert_eq!(parse_jdbc("jdbc:redshift://r:5439/dev?ssl=true").unwrap(), ("r".into(), 5439, "dev".into()));
        assert!(parse_jdbc("postgres://x/y").is_err());
        let config = json!({"ClusterJDBCURL": "jdbc:postgresql://127.0.0.1:5432/db", "Username": "u",
            "CopyCommand": {"DataTableName": "public.events", "DataTableColumns": "id, name", "CopyOptions": "json 'auto'"},
            "S3Configuration": {"RoleARN": "arn:aws:iam::1:role/r", "BucketARN": "arn:aws:s3:::stage"}});
        let destination = PostgresDestination::from_config(config.as_object().unwrap()).unwrap();
        let records: Vec<&[u8]> = vec![br#"{"id": 1, "name": "a,b"}"#, br#"{"id": 2}"#];
        let (statement, rows) = destination.copy(&records).unwrap();
        assert_eq!(statement, r#"COPY "public"."events" ("id", "name") FROM STDIN WITH (FORMAT csv)"#);
        assert_eq!(String::from_utf8(rows).unwrap(), "1,\"a,b\"\n2,\n");
        assert!(destination.copy(&[b"not json"]).is_err());
        assert!(destination.describe(config.as_object().unwrap()).get("Password").is_none());
    }
}
