//! Adversarial guest `recursion`: `complete` recurses without bound (not a tail call).

use adversary::sdk::{CompletionRequest, CompletionResponse, Config, ProviderError};

fn attack(_: &Config, _: CompletionRequest) -> Result<CompletionResponse, ProviderError> {
    let depth = recurse(core::hint::black_box(1));
    Err(ProviderError::provider(format!(
        "unreachable: depth {depth}"
    )))
}

/// Non-tail recursion whose frames cannot be optimised away.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    // Never true in practice; keeps the recursion formally conditional.
    if core::hint::black_box(n) == u64::MAX {
        return 0;
    }
    let mut frame = [0u64; 16];
    frame[(n % 16) as usize] = n;
    let below = recurse(core::hint::black_box(n + 1));
    core::hint::black_box(&frame);
    below.wrapping_add(frame[(n % 16) as usize])
}

adversary::adversary!(attack);
