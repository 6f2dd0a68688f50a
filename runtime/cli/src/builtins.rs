//! Built-in providers shipped inside the `tamma` binary: `echo` (the default that
//! answers with no key and no network), `openai` and `anthropic`. They are the
//! guest components from `guests/`, embedded at build time by `build.rs`.

use tamma_registry::Builtins;

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The built-in provider types of this build, for the registry and for
/// checking configuration files.
pub fn catalogue() -> Builtins {
    Builtins::from_static(EMBEDDED)
}

#[cfg(test)]
mod tests {
    #[test]
    fn echo_is_built_in_when_guests_were_built() {
        // `make test` builds the guests first, so echo must be there.
        let c = super::catalogue();
        assert!(c.names().contains(&"echo"), "{:?}", c.names());
        assert!(c.get("echo").is_some_and(|b| b.starts_with(b"\0asm")));
        assert!(c.get("no-such-provider").is_none());
    }
}
