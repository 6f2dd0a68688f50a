//! Every adversarial guest is stopped with the expected error code, the process
//! keeps running, and a well-behaved provider called concurrently keeps answering
//! correctly during the attack.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tamma_e2e::{guest, sandbox};
use tamma_registry::{Error, ErrorCode, Limits, ProviderInstance};
use tamma_sandbox::types::CompletionRequest;

async fn provider(name: &str, limits: Limits) -> Result<ProviderInstance, Error> {
    let sb = sandbox();
    let loaded = sb
        .load_file(&guest(name))
        .expect("adversarial guests are valid components");
    sb.instantiate(name, &loaded, vec![], limits).await
}

/// Keep an echo provider busy while `attack` runs; assert every answer was right.
async fn under_attack<F, Fut>(attack: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let echo = provider("echo", Limits::default())
        .await
        .expect("echo loads");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let bystander = {
        let (stop, answered) = (stop.clone(), answered.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            // Bounded: stops when the attack is over, or after 20M calls.
            while !stop.load(Ordering::Relaxed) && i < 20_000_000 {
                let text = format!("still here {i}");
                let r = echo
                    .complete(&CompletionRequest::prompt("echo-1", &text))
                    .await
                    .expect("the bystander never fails");
                assert_eq!(r.content, text);
                answered.fetch_add(1, Ordering::Relaxed);
                i += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    // The bystander is serving before the attack starts, and still serving after it
    // (bounded waits: 10 s each).
    let wait_for = |n: u64| {
        let answered = answered.clone();
        async move {
            for _ in 0..10_000 {
                if answered.load(Ordering::Relaxed) >= n {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            false
        }
    };
    assert!(wait_for(1).await, "bystander answered before the attack");
    attack().await;
    let after = answered.load(Ordering::Relaxed);
    assert!(
        wait_for(after + 1).await,
        "bystander answers after the attack"
    );
    stop.store(true, Ordering::Relaxed);
    bystander.await.expect("bystander task did not panic");
}

async fn expect_code(p: &ProviderInstance, code: ErrorCode) -> Error {
    let err = p
        .complete(&CompletionRequest::prompt("m", "attack"))
        .await
        .expect_err("the attack is stopped");
    assert_eq!(err.code, code, "{err}");
    assert_eq!(err.provider.as_deref(), Some(p.name()));
    err
}

/// The attack fails twice in a row — the retired instance is replaced by a fresh
/// one, which is stopped the same way — and the pool records the retirements.
async fn twice(p: &ProviderInstance, code: ErrorCode) -> Error {
    let err = expect_code(p, code).await;
    expect_code(p, code).await;
    let stats = p.pool_stats();
    assert_eq!(stats.retired, 2, "{stats:?}");
    assert_eq!(stats.in_use, 0);
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_exhausts_fuel() {
    under_attack(|| async {
        let p = provider(
            "adversarial_loop",
            Limits {
                fuel: 50_000_000,
                ..Limits::default()
            },
        )
        .await
        .unwrap();
        let err = twice(&p, ErrorCode::FuelExhausted).await;
        assert!(err.message.contains("fuel budget of 50000000"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_with_ample_fuel_hits_the_deadline() {
    under_attack(|| async {
        let limits = Limits {
            fuel: tamma_sandbox::limits::MAX_FUEL,
            timeout_ms: 300,
            ..Limits::default()
        };
        let p = provider("adversarial_loop", limits).await.unwrap();
        let err = twice(&p, ErrorCode::Timeout).await;
        assert!(err.message.contains("guest code ran past"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_memory_growth_hits_the_cap() {
    under_attack(|| async {
        let p = provider(
            "adversarial_memory",
            Limits {
                memory_mib: 32,
                ..Limits::default()
            },
        )
        .await
        .unwrap();
        let err = twice(&p, ErrorCode::MemoryLimit).await;
        assert!(err.message.contains("32 MiB"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_traps() {
    under_attack(|| async {
        let p = provider("adversarial_recursion", Limits::default())
            .await
            .unwrap();
        let err = twice(&p, ErrorCode::Trap).await;
        assert!(err.message.contains("stack"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_traps_with_the_guest_message() {
    under_attack(|| async {
        let p = provider("adversarial_panic", Limits::default())
            .await
            .unwrap();
        let err = twice(&p, ErrorCode::Trap).await;
        assert!(
            err.message
                .contains("adversarial guest panicked on purpose"),
            "{err}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_is_refused() {
    under_attack(|| async {
        let limits = Limits {
            memory_mib: 128,
            max_response_bytes: 1024 * 1024,
            ..Limits::default()
        };
        let p = provider("adversarial_big_response", limits).await.unwrap();
        let err = twice(&p, ErrorCode::ResponseTooLarge).await;
        assert!(err.message.contains("cap of 1048576 bytes"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_flood_is_stopped() {
    under_attack(|| async {
        let p = provider("adversarial_log_flood", Limits::default())
            .await
            .unwrap();
        twice(&p, ErrorCode::LogLimit).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_host_import_hits_the_deadline() {
    under_attack(|| async {
        let p = provider(
            "adversarial_block_import",
            Limits {
                timeout_ms: 300,
                ..Limits::default()
            },
        )
        .await
        .unwrap();
        let err = twice(&p, ErrorCode::Timeout).await;
        assert!(err.message.contains("blocked in a host call"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_that_never_returns_times_out() {
    under_attack(|| async {
        let limits = Limits {
            init_timeout_ms: 300,
            ..Limits::default()
        };
        let err = provider("adversarial_init_hang", limits).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Timeout, "{err}");
        assert_eq!(err.provider.as_deref(), Some("adversarial_init_hang"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snooping_finds_no_files_environment_or_arguments() {
    // Give the host process something to leak.
    std::env::set_var("TAMMA_TEST_SECRET", "sk-should-never-be-seen");
    under_attack(|| async {
        let p = provider("adversarial_snoop", Limits::default())
            .await
            .unwrap();
        let resp = p
            .complete(&CompletionRequest::prompt("m", "what can you see?"))
            .await
            .expect("snooping is not an error; it just finds nothing");
        let seen: serde_json::Value = serde_json::from_str(&resp.content).expect("JSON report");
        assert_eq!(seen["env"], serde_json::json!([]), "{seen}");
        assert_eq!(seen["args"], serde_json::json!([]), "{seen}");
        let files = seen["files"].as_object().expect("files map");
        assert!(!files.is_empty());
        for (path, outcome) in files {
            assert!(
                outcome.as_str().is_some_and(|s| s.starts_with("error")),
                "{path} was readable: {outcome}"
            );
        }
        assert!(!resp.content.contains("sk-should-never-be-seen"));
        assert!(!resp.content.contains("root:"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_answers_overloaded_after_the_queue_timeout() {
    let limits = Limits {
        max_concurrency: 1,
        queue_timeout_ms: 100,
        ..Limits::default()
    };
    let p = provider("test_provider", limits).await.unwrap();
    let slow = {
        let p = p.clone();
        tokio::spawn(async move {
            p.complete(
                &CompletionRequest::prompt("test-1", "slow").with_metadata("hang_ms", "1500"),
            )
            .await
        })
    };
    // Wait until the slow call holds the only instance.
    while p.pool_stats().in_use == 0 {
        tokio::task::yield_now().await;
    }
    let err = p
        .complete(&CompletionRequest::prompt("test-1", "fast"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Overloaded, "{err}");
    assert!(slow.await.unwrap().is_ok());
    assert_eq!(p.pool_stats().overloaded, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_by_its_caller_retires_the_instance() {
    // A client that disconnects drops the call future half-way through the guest
    // call; that instance must not be reused.
    let limits = Limits {
        max_concurrency: 1,
        ..Limits::default()
    };
    let p = provider("test_provider", limits).await.unwrap();
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        p.complete(&CompletionRequest::prompt("test-1", "slow").with_metadata("hang_ms", "5000")),
    )
    .await;
    assert!(cancelled.is_err(), "the call was cancelled");
    let r = p
        .complete(&CompletionRequest::prompt("test-1", "next"))
        .await
        .unwrap();
    assert_eq!(r.content, "ok:next");
    let stats = p.pool_stats();
    assert_eq!(stats.retired, 1, "{stats:?}");
    assert_eq!(stats.in_use, 0);
}

/// A provider that declares far more than any real one (models, features, string
/// lengths, total bytes) is refused at registration with `REGISTRATION_FAILED`
/// naming the limit, while a neighbour keeps answering. On the unbounded host the
/// 100 000-model declaration registered and cost ~0.5 GiB of host memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_bomb_is_refused() {
    use tamma_sandbox::capability_limits as cl;
    let bomb = |config: &[(&str, String)]| {
        let config = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<Vec<_>>();
        async move {
            let sb = sandbox();
            let loaded = sb.load_file(&guest("adversarial_caps_bomb")).unwrap();
            let limits = Limits {
                memory_mib: 256,
                ..Limits::default()
            };
            sb.instantiate("caps-bomb", &loaded, config, limits).await
        }
    };
    under_attack(|| async {
        let cases: [(&[(&str, String)], &str); 5] = [
            // The measured attack: 100 000 models (the lift budget stops it).
            (&[], "(max_total_bytes)"),
            (
                &[("models", (cl::MAX_MODELS + 1).to_string())],
                "(max_models)",
            ),
            (
                &[("models", "1".into()), ("id_bytes", "100000".into())],
                "(max_model_id_bytes)",
            ),
            (
                &[("models", "0".into()), ("features", "1000".into())],
                "(max_features)",
            ),
            (
                &[("models", "4000".into()), ("id_bytes", "250".into())],
                "(max_total_bytes)",
            ),
        ];
        for (config, limit) in cases {
            let err = match bomb(config).await {
                Ok(_) => panic!("{config:?} was accepted"),
                Err(e) => e,
            };
            assert_eq!(err.code, ErrorCode::RegistrationFailed, "{config:?}: {err}");
            assert!(err.message.contains(limit), "{config:?}: {err}");
            assert_eq!(err.provider.as_deref(), Some("caps-bomb"));
        }
        // Within the limits it registers as before.
        let ok = bomb(&[("models", "100".into()), ("features", "10".into())])
            .await
            .expect("an ordinary declaration is accepted");
        assert_eq!(ok.capabilities().models.len(), 100);
    })
    .await;
}
