use arrow::datatypes::{DataType, TimeUnit};
use datafusion::sql::sqlparser::ast;

use crate::{Error, Result};

/// The SQL types a stream column can be declared with.
const SUPPORTED: &str = "BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, REAL, FLOAT, DOUBLE, \
     DECIMAL(p, s), TEXT, VARCHAR, STRING, BYTEA, DATE, TIMESTAMP, TIMESTAMP WITH TIME ZONE";

/// The Arrow type of a declared column. Text maps to `Utf8` (not a view
/// type) because that is what Delta and Parquet readers expect everywhere.
pub fn sql_type_to_arrow(column: &str, sql_type: &ast::DataType) -> Result<DataType> {
    let written = sql_type.to_string();
    let upper = written.to_ascii_uppercase();
    let (base, args) = match upper.split_once('(') {
        Some((base, rest)) => (base.trim(), Some(rest.trim_end_matches(')'))),
        None => (upper.trim(), None),
    };
    let unknown = || {
        Error::invalid(format!(
            "unknown type '{written}' for column '{column}'; supported types: {SUPPORTED}"
        ))
    };
    Ok(match base {
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "TINYINT" => DataType::Int8,
        "SMALLINT" | "INT2" => DataType::Int16,
        "INT" | "INTEGER" | "INT4" => DataType::Int32,
        "BIGINT" | "INT8" => DataType::Int64,
        "REAL" | "FLOAT4" => DataType::Float32,
        "FLOAT" | "DOUBLE" | "DOUBLE PRECISION" | "FLOAT8" => DataType::Float64,
        "DECIMAL" | "NUMERIC" => {
            let (precision, scale) = match args {
                None => (38, 10),
                Some(args) => {
                    let mut it = args.split(',').map(|p| p.trim().parse::<i16>());
                    match (it.next(), it.next(), it.next()) {
                        (Some(Ok(p)), None, None) => (p, 0),
                        (Some(Ok(p)), Some(Ok(s)), None) => (p, s),
                        _ => return Err(unknown()),
                    }
                }
            };
            let precision = u8::try_from(precision)
                .ok()
                .filter(|p| (1..=38).contains(p))
                .ok_or_else(|| Error::invalid(format!(
                    "DECIMAL precision of column '{column}' must be between 1 and 38, got {precision}"
                )))?;
            let scale = i8::try_from(scale)
                .ok()
                .filter(|s| *s >= 0 && (*s as u8) <= precision)
                .ok_or_else(|| Error::invalid(format!(
                    "DECIMAL scale of column '{column}' must be between 0 and the precision {precision}, got {scale}"
                )))?;
            DataType::Decimal128(precision, scale)
        }
        "TEXT" | "VARCHAR" | "STRING" | "CHAR" | "CHARACTER VARYING" | "CHARACTER" => {
            DataType::Utf8
        }
        "BYTEA" | "BINARY" | "VARBINARY" | "BLOB" => DataType::Binary,
        "DATE" => DataType::Date32,
        "TIMESTAMP" | "DATETIME" | "TIMESTAMP WITHOUT TIME ZONE" => {
            DataType::Timestamp(TimeUnit::Nanosecond, None)
        }
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => {
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
        }
        _ => return Err(unknown()),
    })
}

/// The SQL name users see for an Arrow type (in `DESCRIBE`).
pub fn arrow_type_to_sql(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            format!("{data_type} (unsigned)")
        }
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "TEXT".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTEA".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::{dialect::GenericDialect, parser::Parser};

    fn arrow(sql: &str) -> Result<DataType> {
        let ty = Parser::new(&GenericDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_data_type()
            .unwrap();
        sql_type_to_arrow("c", &ty)
    }

    #[test]
    fn common_types_map_to_arrow() {
        assert_eq!(arrow("TEXT").unwrap(), DataType::Utf8);
        assert_eq!(arrow("varchar(20)").unwrap(), DataType::Utf8);
        assert_eq!(arrow("DOUBLE").unwrap(), DataType::Float64);
        assert_eq!(arrow("BIGINT").unwrap(), DataType::Int64);
        assert_eq!(
            arrow("DECIMAL(10, 2)").unwrap(),
            DataType::Decimal128(10, 2)
        );
        assert_eq!(
            arrow("TIMESTAMP").unwrap(),
            DataType::Timestamp(TimeUnit::Nanosecond, None)
        );
        assert_eq!(arrow_type_to_sql(&DataType::Float64), "DOUBLE");
    }

    #[test]
    fn unknown_types_name_the_column() {
        let err = arrow("FOO").unwrap_err().to_string();
        assert!(
            err.starts_with("unknown type 'FOO' for column 'c'"),
            "{err}"
        );
        let err = arrow("DECIMAL(50, 2)").unwrap_err().to_string();
        assert!(err.contains("precision"), "{err}");
    }
}
