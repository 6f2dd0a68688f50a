//! Registry credentials. The password is resolved from a reference by the caller
//! (`{ env = … }` / `{ file = … }` in the configuration file, `--password-env` on
//! the command line) and kept private: redacted in `Debug`, no `Display`, never
//! logged.

/// A user name and password for a registry's basic (or token) authentication.
#[derive(Clone)]
pub struct OciCredentials {
    /// The user name (not secret).
    pub username: String,
    password: String,
}

impl OciCredentials {
    /// Credentials with a resolved password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        OciCredentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// `oci-client`'s form.
    pub(super) fn auth(creds: Option<&OciCredentials>) -> oci_client::secrets::RegistryAuth {
        match creds {
            Some(c) => {
                oci_client::secrets::RegistryAuth::Basic(c.username.clone(), c.password.clone())
            }
            None => oci_client::secrets::RegistryAuth::Anonymous,
        }
    }
}

impl std::fmt::Debug for OciCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let c = OciCredentials::new("ci", "hunter2-registry");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("ci") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
