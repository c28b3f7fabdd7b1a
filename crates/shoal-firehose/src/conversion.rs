//! Record format conversion: JSON records to Parquet
//! (`DataFormatConversionConfiguration` of an S3 destination).
//!
//! Firehose reads the schema from an AWS Glue table (`SchemaConfiguration`'s
//! `DatabaseName` and `TableName`). Shoal has no Glue: the node's
//! `[firehose.tables]` declares each table's columns in Hive's words, e.g.
//! `"analytics.events" = "id bigint, name string, score double, ok boolean"`.
//! Records must be JSON objects; their fields are matched to the columns by name
//! (missing fields are null). Records that do not fit go to the error prefix as
//! `format-conversion-failed`. The Parquet file is compressed as `ParquetSerDe`'s
//! `Compression` says (SNAPPY by default, GZIP, UNCOMPRESSED); the object's S3
//! `CompressionFormat` must then be UNCOMPRESSED, as on AWS.

use std::io::Cursor;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, GzipLevel};
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value};

/// What the destination's configuration asks for; the schema is resolved by the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// `DATABASE.TABLE`, the key into `[firehose.tables]`.
    pub table: String,
    /// SNAPPY, GZIP or UNCOMPRESSED.
    pub compression: String,
}

impl Conversion {
    pub fn from_config(config: &Map<String, Value>) -> Result<Option<Conversion>, String> {
        let Some(conversion) = config.get("DataFormatConversionConfiguration").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        if conversion.get("Enabled").and_then(Value::as_bool) == Some(false) {
            return Ok(None);
        }
        if conversion.pointer("/OutputFormatConfiguration/Serializer/OrcSerDe").is_some() {
            return Err("ORC output is not supported by Shoal yet (Parquet is).".into());
        }
        let serde =
            conversion.pointer("/OutputFormatConfiguration/Serializer/ParquetSerDe").cloned().unwrap_or(Value::Null);
        let compression = serde.get("Compression").and_then(Value::as_str).unwrap_or("SNAPPY").to_string();
        if !["SNAPPY", "GZIP", "UNCOMPRESSED"].contains(&compression.as_str()) {
            return Err(format!("ParquetSerDe.Compression {compression} is not SNAPPY, GZIP or UNCOMPRESSED."));
        }
        let database = conversion.pointer("/SchemaConfiguration/DatabaseName").and_then(Value::as_str);
        let table = conversion.pointer("/SchemaConfiguration/TableName").and_then(Value::as_str);
        let (Some(database), Some(table)) = (database, table) else {
            return Err("SchemaConfiguration needs DatabaseName and TableName.".into());
        };
        Ok(Some(Conversion { table: format!("{database}.{table}"), compression }))
    }
}

/// Columns in Hive's words (`id bigint, name string`) as an Arrow schema.
pub fn parse_columns(declaration: &str) -> Result<Arc<Schema>, String> {
    let mut fields = Vec::new();
    for column in declaration.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (name, kind) = column
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("column {column:?} needs a name and a type"))?;
        let data_type = match kind.trim().to_ascii_lowercase().as_str() {
            "string" | "varchar" | "char" => DataType::Utf8,
            "int" | "integer" => DataType::Int32,
            "bigint" => DataType::Int64,
            "smallint" => DataType::Int16,
            "tinyint" => DataType::Int8,
            "double" => DataType::Float64,
            "float" => DataType::Float32,
            "boolean" => DataType::Boolean,
            "timestamp" => DataType::Timestamp(TimeUnit::Millisecond, None),
            "date" => DataType::Date32,
            other => return Err(format!("column type {other} is not supported")),
        };
        fields.push(Field::new(name.trim(), data_type, true));
    }
    if fields.is_empty() {
        return Err("a table needs at least one column".into());
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// The Parquet file of `records`, and the records that did not fit the schema.
pub fn to_parquet(
    schema: &Arc<Schema>,
    compression: &str,
    records: &[&[u8]],
) -> Result<(Vec<u8>, usize, Vec<usize>), String> {
    let mut good = Vec::new();
    let mut failed = Vec::new();
    for (i, record) in records.iter().enumerate() {
        // A record must be one JSON object that the schema can read on its own.
        let fits = serde_json::from_slice::<Value>(record).is_ok_and(|v| v.is_object())
            && arrow_json::ReaderBuilder::new(schema.clone())
                .build(Cursor::new(*record))
                .map(|mut reader| reader.all(|batch| batch.is_ok()))
                .unwrap_or(false);
        if fits { good.push(i) } else { failed.push(i) }
    }
    let mut lines = Vec::new();
    for i in &good {
        lines.extend_from_slice(records[*i].strip_suffix(b"\n").unwrap_or(records[*i]));
        lines.push(b'\n');
    }
    let compression = match compression {
        "GZIP" => ParquetCompression::GZIP(GzipLevel::default()),
        "UNCOMPRESSED" => ParquetCompression::UNCOMPRESSED,
        _ => ParquetCompression::SNAPPY,
    };
    let properties = WriterProperties::builder().set_compression(compression).build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(properties)).map_err(|e| e.to_string())?;
    let reader = arrow_json::ReaderBuilder::new(schema.clone()).build(Cursor::new(lines)).map_err(|e| e.to_string())?;
    for batch in reader {
        writer.write(&batch.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    writer.close().map_err(|e| e.to_string())?;
    Ok((out, good.len(), failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn json_records_become_a_parquet_file_and_misfits_are_set_aside() {
        let schema = parse_columns("id bigint, name string, score double").unwrap();
        let records: Vec<&[u8]> =
            vec![br#"{"id": 1, "name": "a", "score": 0.5}"#, b"not json", br#"{"id": "x"}"#, br#"{"id": 2}"#];
        let (file, rows, failed) = to_parquet(&schema, "SNAPPY", &records).unwrap();
        assert_eq!((rows, failed), (2, vec![1, 2]));
        let reader = SerializedFileReader::new(bytes::Bytes::from(file)).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
        assert_eq!(reader.metadata().file_metadata().schema_descr().num_columns(), 3);
        assert!(parse_columns("id uuid").is_err());
    }
}
