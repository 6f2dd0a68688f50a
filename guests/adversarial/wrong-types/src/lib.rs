//! Adversarial guest `wrong-types`: exports every function of
//! `tamma:provider/provider-api` by name, each with the wrong type (its own WIT,
//! `wit/provider.wit`). The host must refuse it with `INVALID_COMPONENT`.

wit_bindgen::generate!({ path: "wit", world: "provider" });

use exports::tamma::provider::provider_api::{CompletionStream, Guest, GuestCompletionStream};

struct Adversary;

struct Stream;

impl GuestCompletionStream for Stream {
    fn next(&self) -> u32 {
        0
    }
}

impl Guest for Adversary {
    type CompletionStream = Stream;

    fn initialize(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn capabilities() -> u32 {
        0
    }

    fn list_models() -> Vec<String> {
        Vec::new()
    }

    fn complete(request: String) -> String {
        request
    }

    fn stream(_request: String) -> CompletionStream {
        CompletionStream::new(Stream)
    }

    fn health_check() -> bool {
        true
    }

    fn dispose() {}
}

export!(Adversary);
