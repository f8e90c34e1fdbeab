//! Avro in the Confluent wire format: a zero byte, the writer schema's
//! 4-byte registry id, then the Avro binary body.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use fibers_sql::Options;

use super::{Decoded, RecordDecoder, RecordEncoder, Records};
use crate::{Error, Result};

/// Where Avro schemas come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AvroConfig {
    /// The schema registry's base URL.
    pub registry: String,
}

impl AvroConfig {
    /// Takes `schema_registry`; it is only valid when the format is Avro.
    pub fn from_options(options: &mut Options, avro: bool) -> Result<Option<Self>> {
        let registry = options.take("schema_registry");
        match (registry, avro) {
            (Some(_), false) => Err(Error::invalid(
                "option 'schema_registry' applies to format = 'avro' only",
            )),
            (registry, _) => Ok(registry.map(|registry| AvroConfig { registry })),
        }
    }
}

/// Decodes Confluent-framed Avro records.
pub(crate) struct AvroDecoder;

impl AvroDecoder {
    pub fn new(_config: &AvroConfig, _schema: SchemaRef) -> Result<Self> {
        Err(Error::invalid("format 'avro' is not supported yet"))
    }
}

impl RecordDecoder for AvroDecoder {
    fn decode(&mut self, _records: &Records) -> Result<Decoded> {
        Err(Error::invalid("format 'avro' is not supported yet"))
    }
}

/// Encodes rows as Confluent-framed Avro records.
pub(crate) struct AvroEncoder;

impl AvroEncoder {
    pub fn new(_config: &AvroConfig, _schema: SchemaRef, _subject: &str) -> Result<Self> {
        Err(Error::invalid("format 'avro' is not supported yet"))
    }
}

impl RecordEncoder for AvroEncoder {
    fn encode(&mut self, _batch: &RecordBatch, _out: &mut Records) -> Result<()> {
        Err(Error::invalid("format 'avro' is not supported yet"))
    }
}
