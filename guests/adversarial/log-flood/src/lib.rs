//! Adversarial guest `log-flood`: `complete` calls the host `log` import forever with 1 KiB messages.

use adversary::sdk::{CompletionRequest, CompletionResponse, Config, LogLevel, ProviderError};

fn attack(_: &Config, _: CompletionRequest) -> Result<CompletionResponse, ProviderError> {
    let message = "x".repeat(1024);
    let mut n: u64 = 0;
    loop {
        n = n.wrapping_add(1);
        adversary::sdk::log(
            LogLevel::Info,
            &message,
            &[("n".to_string(), n.to_string())],
        );
    }
}

adversary::adversary!(attack);
