//! `tamma run`'s network flags: `--allow-host URL` (repeatable, the syntax of a
//! provider's `allowed_hosts`) and `--secret NAME=ENV_VAR` (the secret's value is
//! read from the environment variable, so it never appears on a command line,
//! in `ps` or in shell history). Without flags the provider has no network,
//! as before; a refused request then says which flag grants it.

use std::collections::BTreeMap;

use clap::Args;

use tamma_sandbox::egress::{EgressLimits, EgressPolicy};
use tamma_sandbox::error::{Error, ErrorCode, Result};
use tamma_sandbox::ProviderInstance;

/// The flags, flattened into `tamma run`.
#[derive(Debug, Args)]
pub struct EgressArgs {
    /// Let the provider reach this host, as `scheme://HOST[:PORT]` (the syntax of
    /// `allowed_hosts`; repeatable). Without it the provider has no network.
    #[arg(long = "allow-host", value_name = "URL")]
    pub allow_host: Vec<String>,
    /// Give the provider the secret NAME, read from the environment variable
    /// ENV_VAR (repeatable). The guest writes `{{secret:NAME}}` in a header.
    #[arg(long = "secret", value_name = "NAME=ENV_VAR", value_parser = parse_secret)]
    pub secret: Vec<(String, String)>,
}

fn parse_secret(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, var)) if !name.is_empty() && !var.is_empty() => {
            Ok((name.to_string(), var.to_string()))
        }
        _ => Err(format!(
            "expected NAME=ENV_VAR (the value is read from the environment variable), got `{s}`"
        )),
    }
}

impl EgressArgs {
    /// The policy the flags describe; each secret read from its variable. Errors
    /// name the variable, never a value.
    pub fn policy(&self) -> Result<EgressPolicy> {
        let mut secrets = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, var) in &self.secret {
            match std::env::var(var) {
                Ok(value) if !value.is_empty() => {
                    secrets.insert(name.clone(), value);
                }
                Ok(_) => problems.push(format!(
                    "--secret {name}: environment variable {var} is empty"
                )),
                Err(_) => problems.push(format!(
                    "--secret {name}: environment variable {var} is not set"
                )),
            }
        }
        if !problems.is_empty() {
            return Err(Error::new(ErrorCode::InvalidConfig, problems.join("; ")));
        }
        EgressPolicy::try_new(self.allow_host.clone(), secrets, EgressLimits::default()).map_err(
            |e| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!("--allow-host/--secret: {}", e.problems.join("; ")),
                )
            },
        )
    }

    /// `err` with a hint when the provider's request was refused because no
    /// `--allow-host` granted it: otherwise a first-time user sees only the
    /// guest's own "request denied".
    pub fn explain(&self, provider: &ProviderInstance, mut err: Error) -> Error {
        let counters = provider.settings().egress.counters();
        if counters.refused_not_allowed > 0 {
            let suggestion = provider
                .settings()
                .config
                .iter()
                .find(|(k, _)| k == "base_url")
                .and_then(|(_, v)| origin(v))
                .unwrap_or_else(|| "https://HOST".into());
            let hint = if self.allow_host.is_empty() {
                format!(
                    " (the provider's outbound request was refused: `tamma run` allows no host unless \
                     given --allow-host; try --allow-host {suggestion})"
                )
            } else {
                format!(
                    " (the provider's outbound request was refused: no --allow-host entry matches it; \
                     try --allow-host {suggestion})"
                )
            };
            err.message.push_str(&hint);
        } else if counters.refused_address_prohibited > 0 {
            err.message.push_str(
                " (the provider's outbound request was refused: the host resolved to an internal \
                 address; grant the address itself with --allow-host, e.g. http://127.0.0.1:PORT)",
            );
        } else if counters.refused_unknown_secret > 0 {
            err.message.push_str(
                " (the provider's outbound request was refused: it names a secret not given; \
                 pass --secret NAME=ENV_VAR)",
            );
        }
        err
    }
}

/// `scheme://host[:port]` of a URL, for the hint; `None` when it is not one.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_of_a_base_url() {
        assert_eq!(
            origin("http://127.0.0.1:8080/v1").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            origin("https://api.openai.com").as_deref(),
            Some("https://api.openai.com")
        );
        assert_eq!(origin("not a url"), None);
        assert_eq!(origin("https://user:pw@h/"), None);
    }

    #[test]
    fn secret_flag_needs_a_variable_name() {
        assert!(parse_secret("api_key=OPENAI_API_KEY").is_ok());
        assert!(parse_secret("api_key=").is_err());
        assert!(parse_secret("=X").is_err());
    }
}
