//! `tamma schema` and `tamma validate`: the configuration file's JSON Schema, and
//! checking a file against it. (Being built.)

use clap::Args;

use crate::error::{Error, ErrorCode, Result};

/// `tamma schema` options.
#[derive(Debug, Args)]
pub struct SchemaArgs {}

/// `tamma validate` options.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print problems as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Print the schema.
pub fn schema(_args: SchemaArgs) -> Result<()> {
    Err(Error::new(
        ErrorCode::Internal,
        "tamma schema is not implemented yet",
    ))
}

/// Validate a file.
pub fn validate(_args: ValidateArgs) -> Result<()> {
    Err(Error::new(
        ErrorCode::Internal,
        "tamma validate is not implemented yet",
    ))
}
