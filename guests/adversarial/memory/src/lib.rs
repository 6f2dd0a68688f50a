//! Adversarial guest `memory`: `complete` grows memory without bound (1 MiB chunks of non-zero bytes).

use adversary::sdk::{CompletionRequest, CompletionResponse, Config, ProviderError};

fn attack(_: &Config, _: CompletionRequest) -> Result<CompletionResponse, ProviderError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let chunk = vec![0xA5u8; 1 << 20];
        hoard.push(core::hint::black_box(chunk));
        core::hint::black_box(&hoard);
    }
}

adversary::adversary!(attack);
