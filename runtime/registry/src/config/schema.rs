//! The JSON Schema of the configuration file (`tamma schema`), generated from
//! the model's types so that it cannot drift from what is accepted.

use super::Config;

impl Config {
    /// The JSON Schema of the file, generated from these types.
    pub fn json_schema() -> serde_json::Value {
        let schema = schemars::schema_for!(Config);
        let mut value = serde_json::to_value(schema).unwrap_or_default();
        // Provider names follow the registry's rule, which the types cannot say.
        for table in ["providers", "plugins"] {
            if let Some(obj) = value
                .pointer_mut(&format!("/properties/{table}"))
                .and_then(|v| v.as_object_mut())
            {
                obj.insert(
                    "propertyNames".into(),
                    serde_json::json!({ "pattern": "^[a-z0-9._-]{1,64}$" }),
                );
            }
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{PLUGIN_KEYS, PROVIDER_KEYS, TOP_KEYS};

    #[test]
    fn the_schema_covers_every_section() {
        let s = Config::json_schema();
        let props = s["properties"].as_object().unwrap();
        let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
        keys.sort();
        let mut want = TOP_KEYS.to_vec();
        want.sort();
        assert_eq!(keys, want);
        let text = s.to_string();
        for k in PROVIDER_KEYS.iter().chain(PLUGIN_KEYS) {
            assert!(text.contains(&format!("\"{k}\"")), "{k}");
        }
        assert!(text.contains("monitoring_period_ms"));
    }

    #[test]
    fn limits_carry_their_bounds_and_secrets_their_hosts() {
        let text = Config::json_schema().to_string();
        // Limits::timeout_ms and the egress timeouts: at most an hour.
        assert!(text.contains("\"maximum\":3600000"), "{text}");
        // max_log_bytes_per_call: 1 ..= 16 MiB.
        assert!(text.contains("\"maximum\":16777216"), "{text}");
        assert!(text.contains("\"hosts\""), "{text}");
    }
}
