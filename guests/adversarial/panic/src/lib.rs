//! Adversarial guest `panic`: `complete` panics (the instance traps).

use adversary::sdk::{CompletionRequest, CompletionResponse, Config, ProviderError};

fn attack(_: &Config, _: CompletionRequest) -> Result<CompletionResponse, ProviderError> {
    panic!("adversarial guest panicked on purpose")
}

adversary::adversary!(attack);
