//! Adversarial guest `loop`: `complete` spins forever without calling the host.

use adversary::sdk::{CompletionRequest, CompletionResponse, Config, ProviderError};

fn attack(_: &Config, _: CompletionRequest) -> Result<CompletionResponse, ProviderError> {
    let mut counter: u64 = 0;
    loop {
        counter = core::hint::black_box(counter.wrapping_add(1));
    }
}

adversary::adversary!(attack);
