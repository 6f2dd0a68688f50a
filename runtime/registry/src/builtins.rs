//! The catalogue of provider components built into a binary: `tamma` embeds
//! `echo`, `openai` and `anthropic` (its `build.rs`). The registry resolves
//! [`ComponentSource::Builtin`](crate::ComponentSource::Builtin) through it and
//! the configuration file checks `component = "echo"` against it.
//!
//! It is handed to the registry rather than compiled into this crate so that a
//! rebuilt guest component relinks only the binary that embeds it, never the
//! registry, the server or their tests.

use std::sync::Arc;

use bytes::Bytes;

/// Built-in provider types: name → component bytes. Cheap to clone.
#[derive(Clone, Default)]
pub struct Builtins {
    items: Arc<[(String, Bytes)]>,
}

impl Builtins {
    /// A catalogue of `(type name, component bytes)`.
    pub fn new<N: Into<String>>(items: impl IntoIterator<Item = (N, Bytes)>) -> Self {
        Builtins {
            items: items.into_iter().map(|(n, b)| (n.into(), b)).collect(),
        }
    }

    /// A catalogue of components embedded in the binary (no copy).
    pub fn from_static(items: &'static [(&'static str, &'static [u8])]) -> Self {
        Self::new(items.iter().map(|(n, b)| (*n, Bytes::from_static(b))))
    }

    /// The type names in this catalogue, in order.
    pub fn names(&self) -> Vec<&str> {
        self.items.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The component bytes of a built-in type.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.items.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }

    /// Whether `name` is in this catalogue.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl std::fmt::Debug for Builtins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_name_and_lists_in_order() {
        static EMBEDDED: &[(&str, &[u8])] = &[("echo", b"\0asm-echo"), ("openai", b"\0asm-oai")];
        let b = Builtins::from_static(EMBEDDED);
        assert_eq!(b.names(), ["echo", "openai"]);
        assert_eq!(b.get("openai").map(|b| &b[..]), Some(&b"\0asm-oai"[..]));
        assert!(!b.contains("anthropic"));
        assert!(Builtins::default().names().is_empty());
        assert_eq!(format!("{b:?}"), r#"["echo", "openai"]"#);
    }
}
