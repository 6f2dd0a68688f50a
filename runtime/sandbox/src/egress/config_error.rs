//! The error for a malformed egress configuration: every problem at once, so an
//! operator fixes a provider's configuration in one pass.

use std::fmt;

/// Every problem with a provider's egress configuration, one line each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressConfigError {
    /// `entry: reason` / `field: reason` lines. Never holds a secret value.
    pub problems: Vec<String>,
}

impl fmt::Display for EgressConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid egress policy: {}", self.problems.join("; "))
    }
}

impl std::error::Error for EgressConfigError {}
