//! `tamma push FILE oci://HOST[:PORT]/REPO:TAG`: publish a component to an OCI
//! registry in the Wasm artifact layout, with `FILE.minisig` (if present) as
//! its signature annotation, and print the pinned reference to name it by.

use std::path::PathBuf;

use clap::Args;

use tamma_registry::oci::{push, OciCredentials, OciReference};
use tamma_sandbox::error::{Error, ErrorCode, Result};

/// `tamma push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The component (.wasm).
    pub component: PathBuf,
    /// Where to: oci://HOST[:PORT]/REPO:TAG (plain HTTP only for a loopback registry).
    pub reference: String,
    /// The `.minisig` to attach (default: FILE.minisig beside the component, if present).
    #[arg(long, value_name = "FILE.minisig")]
    pub signature: Option<PathBuf>,
    /// Registry user name.
    #[arg(long, requires = "password_env")]
    pub username: Option<String>,
    /// The environment variable holding the registry password or token (never
    /// the value itself on the command line).
    #[arg(long = "password-env", value_name = "VAR", requires = "username")]
    pub password_env: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `tamma push`.
pub async fn run(args: PushArgs) -> Result<()> {
    let reference = OciReference::parse(&args.reference)?;
    let bytes = std::fs::read(&args.component).map_err(|e| {
        Error::new(
            ErrorCode::InvalidConfig,
            format!("cannot read {}: {e}", args.component.display()),
        )
    })?;
    let signature = match &args.signature {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            Error::new(
                ErrorCode::InvalidConfig,
                format!("cannot read {}: {e}", p.display()),
            )
        })?),
        None => tamma_registry::trust::signature_beside(&args.component).map_err(|e| {
            Error::new(
                ErrorCode::InvalidConfig,
                format!("cannot read the .minisig: {e}"),
            )
        })?,
    };
    let credentials = match (&args.username, &args.password_env) {
        (Some(user), Some(var)) => match std::env::var(var) {
            Ok(pw) if !pw.is_empty() => Some(OciCredentials::new(user.clone(), pw)),
            _ => {
                return Err(Error::new(
                    ErrorCode::InvalidConfig,
                    format!("--password-env: environment variable {var} is not set"),
                ))
            }
        },
        _ => None,
    };
    let digest = push(
        &bytes,
        signature.as_deref(),
        &reference,
        credentials.as_ref(),
    )
    .await?;
    let pinned = reference.pinned(&digest);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "reference": pinned.to_string(),
                "digest": digest,
                "size": bytes.len(),
                "signed": signature.is_some(),
            })
        );
    } else {
        eprintln!(
            "tamma: pushed {} ({} bytes{}) to {reference}",
            args.component.display(),
            bytes.len(),
            if signature.is_some() {
                ", signed"
            } else {
                ", unsigned"
            }
        );
        eprintln!("tamma: digest {digest}; name it by the pinned reference:");
        println!("{pinned}");
    }
    Ok(())
}
