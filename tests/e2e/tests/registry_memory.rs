//! Unregistering everything returns memory to its starting level. Alone in its
//! own test binary, so no other test's providers are counted.

use tamma_e2e::{guest, sandbox};
use tamma_runtime::{ComponentSource, Registration, Registry, RegistryConfig};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistering_everything_returns_memory_to_its_starting_level() {
    let r = Registry::new(sandbox(), RegistryConfig::default()).unwrap();
    // Warm up once so one-time allocations (compiled code, caches) are not counted.
    r.register("warm", echo()).await.unwrap();
    r.unregister("warm").await.unwrap();
    let start = rss_bytes();
    for i in 0..150 {
        r.register(&format!("m{i}"), echo()).await.unwrap();
    }
    let peak = rss_bytes();
    for i in 0..150 {
        r.unregister(&format!("m{i}")).await.unwrap();
    }
    let end = rss_bytes();
    let grown = peak.saturating_sub(start);
    let left = end.saturating_sub(start);
    eprintln!("rss: start {start} peak {peak} end {end}");
    assert!(grown > 0, "registering 150 providers used memory");
    // Allocators keep some freed memory; most must come back.
    assert!(
        left <= grown / 3 + 4 * 1024 * 1024,
        "start {start} peak {peak} end {end}"
    );
}
