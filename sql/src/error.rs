use datafusion::error::DataFusionError;

/// Errors raised while parsing and planning SQL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not valid SQL, or not a statement DataFibers knows.
    #[error("SQL syntax error: {0}")]
    Syntax(String),

    /// The statement is well-formed but asks for something invalid.
    #[error("{0}")]
    Invalid(String),

    /// DataFusion rejected the query while planning it.
    #[error("{}", datafusion_message(.0))]
    DataFusion(#[from] DataFusionError),
}

impl Error {
    /// An [`Error::Invalid`] from anything printable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for Error {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        let message = match e {
            datafusion::sql::sqlparser::parser::ParserError::ParserError(m)
            | datafusion::sql::sqlparser::parser::ParserError::TokenizerError(m) => m,
            other => other.to_string(),
        };
        Error::Syntax(message)
    }
}

impl From<datafusion::sql::sqlparser::tokenizer::TokenizerError> for Error {
    fn from(e: datafusion::sql::sqlparser::tokenizer::TokenizerError) -> Self {
        Error::Syntax(e.to_string())
    }
}

/// The innermost message of a DataFusion error: the context layers around
/// it ("Error during planning: ...") add nothing for users, while the
/// innermost one names the column or function at fault.
pub fn datafusion_message(e: &DataFusionError) -> String {
    match e.find_root() {
        DataFusionError::Plan(m) | DataFusionError::Execution(m) => m.clone(),
        DataFusionError::SchemaError(inner, _) => inner.to_string(),
        other => other.to_string(),
    }
}

/// Result of parsing and planning.
pub type Result<T, E = Error> = std::result::Result<T, E>;
