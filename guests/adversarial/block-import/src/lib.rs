//! Adversarial guest `block-import`: `complete` blocks inside a host import (a one-hour `wasi:clocks` poll).

use adversary::sdk::{CompletionRequest, CompletionResponse, Config, ProviderError};

fn attack(_: &Config, _: CompletionRequest) -> Result<CompletionResponse, ProviderError> {
    std::thread::sleep(std::time::Duration::from_secs(3600));
    Err(ProviderError::provider("slept for an hour"))
}

adversary::adversary!(attack);
