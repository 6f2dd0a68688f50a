//! Provider configuration passed to `initialize`.

use crate::ProviderError;

/// Key/value configuration given to [`Provider::initialize`](crate::Provider::initialize).
///
/// When a key appears more than once, the last value wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// Builds a configuration from key/value pairs.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default` when unset.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key`, or an `invalid-request` error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, ProviderError> {
        self.get(key).ok_or_else(|| {
            ProviderError::invalid_request(format!("missing required config key `{key}`"))
        })
    }

    /// Whether `key` is set (to any value, even empty).
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// `key` parsed as `u32`; `Ok(None)` when unset, `invalid-request` when malformed.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, ProviderError> {
        self.parse(key, "an unsigned 32-bit integer")
    }

    /// `key` parsed as `u64`; `Ok(None)` when unset, `invalid-request` when malformed.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, ProviderError> {
        self.parse(key, "an unsigned 64-bit integer")
    }

    /// `key` parsed as `i64`; `Ok(None)` when unset, `invalid-request` when malformed.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, ProviderError> {
        self.parse(key, "a 64-bit integer")
    }

    /// `key` parsed as `f64`; `Ok(None)` when unset, `invalid-request` when malformed.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, ProviderError> {
        self.parse(key, "a number")
    }

    /// `key` parsed as a boolean (`true/false`, `1/0`, `yes/no`, `on/off`, any case);
    /// `Ok(None)` when unset, `invalid-request` when malformed.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, ProviderError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "no" | "off" => Ok(Some(false)),
                _ => Err(ProviderError::invalid_request(format!(
                    "config key `{key}` must be a boolean, got `{v}`"
                ))),
            },
        }
    }

    /// `key` split on commas, each item trimmed, empty items dropped; `None` when unset.
    pub fn get_list(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
    }

    /// The placeholder for the provider's API key, by the convention the providers
    /// share: the host secret named by `api_key_secret` (default `api_key`), or
    /// `None` when that is set empty (servers without auth). A config that holds
    /// `api_key` itself is refused: keys are host secrets and never enter the guest.
    pub fn api_key_placeholder(&self) -> Result<Option<String>, ProviderError> {
        if self.contains("api_key") {
            return Err(ProviderError::invalid_request(
                "api keys are given as secrets, not config",
            ));
        }
        let name = self.get_or("api_key_secret", "api_key").trim();
        if name.is_empty() {
            return Ok(None);
        }
        crate::http::secret_placeholder(name)
            .map(Some)
            .map_err(|e| ProviderError::invalid_request(format!("api_key_secret: {}", e.message)))
    }

    /// `base_url` (or `default` when unset), trimmed and without trailing `/`,
    /// checked to be an http(s) URL.
    pub fn base_url(&self, default: &str) -> Result<String, ProviderError> {
        let base_url = self
            .get_or("base_url", default)
            .trim()
            .trim_end_matches('/')
            .to_string();
        crate::http::Url::parse(&base_url)
            .map_err(|e| ProviderError::invalid_request(format!("base_url: {}", e.message)))?;
        Ok(base_url)
    }

    /// All entries, in the order given by the host.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The raw entries.
    pub fn into_inner(self) -> Vec<(String, String)> {
        self.entries
    }

    fn parse<T: std::str::FromStr>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Option<T>, ProviderError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.trim().parse::<T>().map(Some).map_err(|_| {
                ProviderError::invalid_request(format!(
                    "config key `{key}` must be {what}, got `{v}`"
                ))
            }),
        }
    }
}

impl From<Vec<(String, String)>> for Config {
    fn from(entries: Vec<(String, String)>) -> Self {
        Config::new(entries)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Config {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Config::new(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}
