//! Concurrency: many tasks of mixed registry operations, then the invariants.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tamma_e2e::{builtins, guest, sandbox};
use tamma_registry::{ComponentSource, ErrorCode, Registration, Registry, RegistryConfig};
use tamma_sandbox::types::CompletionRequest;

const NAMES: [&str; 6] = ["p0", "p1", "p2", "p3", "p4", "p5"];

fn echo() -> Registration {
    Registration::new(ComponentSource::File(guest("echo")))
}

/// A tiny deterministic generator so failures can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_operations_from_many_tasks_leave_the_registry_consistent() {
    let r = Registry::with_builtins(sandbox(), RegistryConfig::default(), builtins()).unwrap();
    let answered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let r = r.clone();
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(t + 1);
            for i in 0..150 {
                let name = NAMES[(rng.next() % NAMES.len() as u64) as usize];
                match rng.next() % 10 {
                    0 | 1 => match r.register(name, echo()).await {
                        Ok(_) => {}
                        Err(e) => assert_eq!(e.code, ErrorCode::AlreadyExists, "{e}"),
                    },
                    2 => match r.unregister(name).await {
                        Ok(_) => {}
                        Err(e) => assert_eq!(e.code, ErrorCode::NotFound, "{e}"),
                    },
                    3 => {
                        // Every visible provider can be looked up.
                        for n in r.names() {
                            match r.snapshot_of(&n) {
                                Ok(s) => assert_eq!(s.name, n),
                                Err(e) => assert_eq!(e.code, ErrorCode::NotFound),
                            }
                        }
                    }
                    4 => match r.restart(name).await {
                        Ok(()) => {}
                        Err(e) => assert_eq!(e.code, ErrorCode::NotFound, "{e}"),
                    },
                    _ => {
                        let text = format!("task {t} call {i}");
                        match r
                            .complete(name, &CompletionRequest::prompt("echo-1", &text))
                            .await
                        {
                            Ok(resp) => {
                                // Never someone else's answer, never a disposed instance's.
                                assert_eq!(resp.content, text);
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => assert!(
                                matches!(e.code, ErrorCode::NotFound | ErrorCode::ProviderStopped),
                                "unexpected {e}"
                            ),
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("no task panicked");
    }
    assert!(answered.load(Ordering::Relaxed) > 0);

    // Invariants: names are unique, each visible one is ready and answers, the
    // snapshot agrees with the names, and no reservation was left behind (every
    // invisible name can be registered).
    let names = r.names();
    let unique: HashSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len());
    assert_eq!(r.snapshot().len(), names.len());
    for n in &names {
        let resp = r
            .complete(n, &CompletionRequest::prompt("echo-1", "final"))
            .await
            .unwrap();
        assert_eq!(resp.content, "final");
        let s = r.snapshot_of(n).unwrap();
        assert_eq!(s.pool.unwrap().in_use, 0, "no call left running on {n}");
    }
    for n in NAMES.iter().filter(|n| !names.iter().any(|m| m == *n)) {
        r.register(n, echo()).await.expect("no stale reservation");
    }
    assert_eq!(r.names().len(), NAMES.len());
}

fn test_provider(models: &str) -> Registration {
    Registration::new(ComponentSource::File(guest("test_provider"))).with_settings(
        tamma_registry::ProviderSettings::new(
            vec![("models".to_string(), models.to_string())],
            tamma_registry::Limits::default(),
        ),
    )
}

/// The model index under churn: providers registered, replaced with other
/// models, unregistered and registered again by many tasks, while readers
/// resolve model ids. A reader never sees a provider offering a model it does
/// not offer in any version, and at the end the index agrees with a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_index_follows_registrations_replacements_and_removals() {
    let r = Registry::with_builtins(sandbox(), RegistryConfig::default(), builtins()).unwrap();
    let names = ["q0", "q1", "q2", "q3"];
    // Provider qN offers `qN-a` or `qN-b` (after a replace), and `shared`.
    let models = |name: &str, v: u64| {
        format!(
            "{name}-{},shared",
            if v.is_multiple_of(2) { "a" } else { "b" }
        )
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (r, stop) = (r.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut looks = 0u64;
            while !stop.load(Ordering::Acquire) {
                for name in names {
                    for suffix in ["a", "b"] {
                        let offering = r.ready_providers_of_model(&format!("{name}-{suffix}"));
                        assert!(
                            offering.is_empty() || offering == [name.to_string()],
                            "{name}-{suffix} offered by {offering:?}"
                        );
                    }
                }
                assert!(r.ready_providers_of_model("nobody").is_empty());
                looks += 1;
                tokio::task::yield_now().await;
            }
            looks
        }));
    }
    let mut writers = Vec::new();
    for t in 0..4u64 {
        let r = r.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = Lcg(t + 11);
            for i in 0..40 {
                let name = names[(rng.next() % names.len() as u64) as usize];
                match rng.next() % 3 {
                    0 => {
                        let _ = r.register(name, test_provider(&models(name, i))).await;
                    }
                    1 => {
                        let _ = r.replace(name, test_provider(&models(name, i))).await;
                    }
                    _ => {
                        let _ = r.unregister(name).await;
                    }
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::Release);
    for rd in readers {
        assert!(rd.await.unwrap() > 0);
    }
    // The index and a full snapshot agree, model by model.
    let snaps = r.snapshot();
    let mut expected_shared: Vec<String> = Vec::new();
    for name in names {
        let offered: HashSet<String> = snaps
            .iter()
            .filter(|s| s.name == name)
            .flat_map(|s| s.capabilities.models.iter().map(|m| m.id.clone()))
            .collect();
        if !offered.is_empty() {
            expected_shared.push(name.to_string());
        }
        for suffix in ["a", "b"] {
            let id = format!("{name}-{suffix}");
            let want: Vec<String> = if offered.contains(&id) {
                vec![name.to_string()]
            } else {
                vec![]
            };
            assert_eq!(r.ready_providers_of_model(&id), want, "{id}");
        }
    }
    assert_eq!(r.ready_providers_of_model("shared"), expected_shared);
    r.shutdown().await;
}
