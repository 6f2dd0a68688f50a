//! Built-in providers shipped inside the `tamma` binary: `echo` (the default that
//! answers with no key and no network), `openai` and `anthropic`. They are the
//! guest components from `guests/`, embedded at build time by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// Names of the built-in provider types available in this build.
pub fn names() -> Vec<&'static str> {
    EMBEDDED.iter().map(|(n, _)| *n).collect()
}

/// The component bytes of a built-in provider type.
pub fn component(name: &str) -> Option<&'static [u8]> {
    EMBEDDED.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn echo_is_built_in_when_guests_were_built() {
        // `make test` builds the guests first, so echo must be there.
        assert!(super::names().contains(&"echo"), "{:?}", super::names());
        assert!(super::component("echo").is_some_and(|b| b.starts_with(b"\0asm")));
        assert!(super::component("no-such-provider").is_none());
    }
}
