//! Unregistering everything returns memory to its starting level. Alone in its
//! own test binary, so no other test's providers are counted.

use tamma_e2e::{builtins, guest, sandbox};
use tamma_registry::{ComponentSource, Registration, Registry, RegistryConfig};

fn echo() -> Registration {
    Registration::new(ComponentSource::File(guest("echo")))
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

const N: usize = 180;

/// Register N providers, then unregister them all; returns (peak, end) RSS.
async fn cycle(r: &Registry) -> (u64, u64) {
    for i in 0..N {
        r.register(&format!("m{i}"), echo()).await.unwrap();
    }
    let peak = rss_bytes();
    for i in 0..N {
        r.unregister(&format!("m{i}")).await.unwrap();
    }
    (peak, rss_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistering_everything_returns_memory_to_its_starting_level() {
    let r = Registry::with_builtins(sandbox(), RegistryConfig::default(), builtins()).unwrap();
    // The first cycles warm what is allocated once and kept for reuse (compiled
    // code, the allocator's arenas, pooled stacks, the event bus's ring of 1 024
    // recent events, which fills during the first two cycles): from then on, a full
    // register/unregister cycle must leave memory where it found it.
    let (peak0, end0) = cycle(&r).await;
    let mut ends = vec![end0];
    for _ in 0..6 {
        let (peak, end) = cycle(&r).await;
        assert!(peak > end, "registering {N} providers used memory");
        ends.push(end);
    }
    eprintln!("rss: first peak {peak0} ends {ends:?}");
    let settled = ends[3];
    let last = *ends.last().unwrap();
    // No growth across cycles: nothing is leaked per provider (180 leaked idle
    // providers would be ~8 MiB; allow 1 MiB of noise).
    assert!(
        last <= settled + 1024 * 1024,
        "memory grew across register/unregister cycles: {ends:?}"
    );
    assert!(r.names().is_empty());
}
