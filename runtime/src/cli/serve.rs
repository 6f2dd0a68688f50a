//! `tamma serve`: the headless gateway. (Being built.)

use clap::Args;

use crate::error::{Error, ErrorCode, Result};

/// `tamma serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {}

/// Run the server until SIGTERM/SIGINT.
pub async fn serve(_args: ServeArgs) -> Result<()> {
    Err(Error::new(
        ErrorCode::Internal,
        "tamma serve is not implemented yet",
    ))
}
