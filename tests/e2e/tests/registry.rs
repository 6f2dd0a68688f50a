//! The registry with real components: registration, look-ups, lifecycle, circuit
//! breaker and health transitions with their events, monitoring, shutdown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tamma_e2e::{builtins, guest, guest_bytes, sandbox};
use tamma_registry::circuit_breaker::{CircuitBreakerConfig, CircuitState, ManualClock};
use tamma_registry::events::{Event, Received, Subscription};
use tamma_registry::registry_config::HealthConfig;
use tamma_registry::{
    ComponentSource, ErrorCode, Limits, ProviderSettings, ProviderState, Registration, Registry,
    RegistryConfig,
};
use tamma_sandbox::egress::EgressPolicy;
use tamma_sandbox::types::{CompletionRequest, HealthStatus};

fn registry() -> Registry {
    Registry::with_builtins(sandbox(), RegistryConfig::default(), builtins()).unwrap()
}

fn test_provider(config: &[(&str, &str)]) -> Registration {
    Registration::new(ComponentSource::File(guest("test_provider"))).with_settings(
        ProviderSettings::new(
            config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            Limits {
                max_concurrency: 1,
                ..Limits::default()
            },
        ),
    )
}

fn echo() -> Registration {
    Registration::new(ComponentSource::File(guest("echo")))
}

fn ask(text: &str) -> CompletionRequest {
    CompletionRequest::prompt("test-1", text)
}

/// Every event received so far, without waiting.
fn drain(sub: &mut Subscription) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(r) = sub.try_recv() {
        if let Received::Event(e) = r {
            out.push(e.event);
        }
    }
    out
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_succeeds_and_is_visible_with_metadata() {
    let r = registry();
    let mut sub = r.subscribe();
    let snap = r.register("echo", echo()).await.unwrap();
    assert_eq!(snap.state, ProviderState::Ready);
    assert_eq!(snap.metadata.component_sha256.len(), 64);
    assert_eq!(snap.capabilities.models[0].id, "echo-1");
    assert_eq!(snap.circuit.state, CircuitState::Closed);
    assert_eq!(snap.health, HealthStatus::Healthy);
    assert!(r.contains("echo"));
    assert_eq!(r.names(), ["echo"]);
    let resp = r
        .complete("echo", &CompletionRequest::prompt("echo-1", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.content, "hi");
    assert_eq!(kinds(&drain(&mut sub)), ["provider-registered"]);
    let json = serde_json::to_value(r.snapshot_of("echo").unwrap()).unwrap();
    assert_eq!(json["metadata"]["source"], "api");
    assert_eq!(json["calls"]["calls"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_and_byte_sources_register() {
    let r = registry();
    let snap = r
        .register(
            "builtin-echo",
            Registration::new(ComponentSource::Builtin("echo".into())),
        )
        .await
        .unwrap();
    assert_eq!(snap.metadata.builtin.as_deref(), Some("echo"));
    let bytes: Arc<[u8]> = guest_bytes("echo").into();
    r.register(
        "bytes-echo",
        Registration::new(ComponentSource::Bytes(bytes)),
    )
    .await
    .unwrap();
    let err = r
        .register(
            "nope",
            Registration::new(ComponentSource::Builtin("no-such-type".into())),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RegistrationFailed);
    assert!(err.message.contains("no-such-type"), "{err}");
    assert_eq!(r.names(), ["builtin-echo", "bytes-echo"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_names_are_rejected_even_when_racing() {
    let r = registry();
    r.register("dup", echo()).await.unwrap();
    let err = r.register("dup", echo()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::AlreadyExists);

    for round in 0..5 {
        let name = format!("race-{round}");
        let (a, b) = tokio::join!(r.register(&name, echo()), r.register(&name, echo()));
        let codes: Vec<_> = [&a, &b]
            .iter()
            .map(|x| x.as_ref().err().map(|e| e.code))
            .collect();
        assert_eq!(
            codes.iter().filter(|c| c.is_none()).count(),
            1,
            "exactly one success: {codes:?}"
        );
        assert!(codes.contains(&Some(ErrorCode::AlreadyExists)), "{codes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_validated() {
    let r = registry();
    let long = "a".repeat(65);
    for bad in ["", "Upper", "a/b", "white space", "ünï", long.as_str()] {
        let err = r.register(bad, echo()).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidName, "{bad:?}: {err}");
    }
    for good in ["a", "open-ai_2.beta", &"z".repeat(64)] {
        r.register(good, echo()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_is_validated_listing_every_problem() {
    let r = registry();
    let reg = echo().with_settings(ProviderSettings::new(
        vec![("".into(), "x".into())],
        Limits {
            fuel: 0,
            memory_mib: 100_000,
            max_concurrency: 0,
            ..Limits::default()
        },
    ));
    let err = r.register("echo", reg).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidConfig);
    for field in [
        "limits.fuel",
        "limits.memory_mib",
        "limits.max_concurrency",
        "config[0]",
    ] {
        assert!(err.message.contains(field), "{field} missing from {err}");
    }
    assert!(r.names().is_empty());

    let bad = RegistryConfig {
        health: HealthConfig {
            interval_ms: 0,
            unhealthy_threshold: 0,
            ..HealthConfig::default()
        },
        ..RegistryConfig::default()
    };
    let err = Registry::with_builtins(sandbox(), bad, builtins()).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidConfig);
    assert!(
        err.message.contains("health.interval_ms")
            && err.message.contains("health.unhealthy_threshold")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_failures_carry_the_cause_and_leave_nothing_behind() {
    let r = registry();
    let mut sub = r.subscribe();
    let err = r
        .register(
            "bad-init",
            test_provider(&[("init_fail", "invalid-api-key")]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RegistrationFailed);
    assert_eq!(err.cause_code, Some(ErrorCode::ProviderError));
    assert_eq!(err.provider.as_deref(), Some("bad-init"));
    assert_eq!(err.provider_error.unwrap().code.as_str(), "invalid-api-key");

    let junk: Arc<[u8]> = Arc::from(&b"not a component"[..]);
    let err = r
        .register("junk", Registration::new(ComponentSource::Bytes(junk)))
        .await
        .unwrap_err();
    assert_eq!(err.cause_code, Some(ErrorCode::InvalidComponent));

    let mut hang = test_provider(&[("init_hang_ms", "60000")]);
    hang.settings.limits.init_timeout_ms = 200;
    let err = r.register("hang", hang).await.unwrap_err();
    assert_eq!(err.cause_code, Some(ErrorCode::Timeout), "{err}");

    assert!(r.names().is_empty());
    assert!(
        drain(&mut sub).is_empty(),
        "no registration event for a failure"
    );
    // The names are free again.
    r.register("bad-init", test_provider(&[])).await.unwrap();
    r.register("junk", echo()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_of_unknown_providers_are_not_found() {
    let r = registry();
    r.register("b", echo()).await.unwrap();
    r.register("a", echo()).await.unwrap();
    assert_eq!(r.names(), ["a", "b"]);
    assert_eq!(r.get("missing").unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(
        r.snapshot_of("missing").unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        r.unregister("missing").await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let err = r.complete("missing", &ask("x")).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(err.provider.as_deref(), Some("missing"));
    assert_eq!(r.snapshot().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_stop_start_restart_dispose_unregister() {
    let r = registry();
    r.register("p", test_provider(&[("reply", "v1")]))
        .await
        .unwrap();
    let mut sub = r.subscribe();
    assert!(r.stop("p").await.unwrap());
    assert_eq!(r.snapshot_of("p").unwrap().state, ProviderState::Stopped);
    let err = r.complete("p", &ask("x")).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ProviderStopped);
    r.start("p").await.unwrap();
    assert_eq!(r.complete("p", &ask("x")).await.unwrap().content, "v1:x");

    // restart re-creates instances: per-instance state set by a call is gone.
    r.complete("p", &ask("x").with_metadata("set_health", "degraded"))
        .await
        .unwrap();
    assert_eq!(
        r.check_health("p").await.unwrap().status,
        HealthStatus::Degraded
    );
    r.restart("p").await.unwrap();
    assert_eq!(
        r.check_health("p").await.unwrap().status,
        HealthStatus::Healthy
    );

    assert!(r.dispose("p").await.unwrap());
    assert_eq!(r.snapshot_of("p").unwrap().state, ProviderState::Disposed);
    r.initialize("p").await.unwrap();
    assert_eq!(r.snapshot_of("p").unwrap().state, ProviderState::Ready);

    r.unregister("p").await.unwrap();
    assert_eq!(
        r.complete("p", &ask("x")).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let events = drain(&mut sub);
    let ks = kinds(&events);
    assert!(ks.contains(&"provider-state-changed"));
    assert_eq!(ks.last(), Some(&"provider-unregistered"));

    // *_all variants.
    r.register("x", echo()).await.unwrap();
    r.register("y", echo()).await.unwrap();
    assert!(r.stop_all().await.iter().all(|(_, res)| res.is_ok()));
    assert!(r
        .snapshot()
        .iter()
        .all(|s| s.state == ProviderState::Stopped));
    assert!(r.start_all().await.iter().all(|(_, res)| res.is_ok()));
    assert!(r.restart_all().await.iter().all(|(_, res)| res.is_ok()));
    assert!(r.snapshot().iter().all(|s| s.state == ProviderState::Ready));
    assert!(r
        .dispose_all()
        .await
        .iter()
        .all(|(_, res)| matches!(res, Ok(true))));
}

fn breaker_registry(clock: Arc<ManualClock>) -> Registry {
    let config = RegistryConfig {
        circuit_breaker: CircuitBreakerConfig {
            failure_threshold: 3,
            monitoring_period: Duration::from_secs(60),
            recovery_timeout: Duration::from_secs(30),
            half_open_max_probes: 1,
            success_threshold: 1,
            ..CircuitBreakerConfig::default()
        },
        ..RegistryConfig::default()
    };
    Registry::with_clock(sandbox(), config, clock).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_open_the_breaker_and_a_probe_closes_it() {
    let clock = Arc::new(ManualClock::new());
    let r = breaker_registry(clock.clone());
    r.register("flaky", test_provider(&[])).await.unwrap();
    let mut sub = r.subscribe();
    let failing = ask("x").with_metadata("fail", "service-unavailable");

    // A client's own mistake never counts.
    for _ in 0..5 {
        let e = r
            .complete("flaky", &ask("x").with_metadata("fail", "invalid-request"))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ProviderError);
    }
    assert_eq!(
        r.snapshot_of("flaky").unwrap().circuit.state,
        CircuitState::Closed
    );

    for _ in 0..3 {
        let e = r.complete("flaky", &failing).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::ProviderError);
    }
    let e = r.complete("flaky", &ask("x")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::CircuitOpen);
    assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
    assert_eq!(
        r.snapshot_of("flaky").unwrap().circuit.state,
        CircuitState::Open
    );

    clock.advance(Duration::from_secs(31));
    // Probe fails: open again.
    assert_eq!(
        r.complete("flaky", &failing).await.unwrap_err().code,
        ErrorCode::ProviderError
    );
    assert_eq!(
        r.complete("flaky", &ask("x")).await.unwrap_err().code,
        ErrorCode::CircuitOpen
    );
    clock.advance(Duration::from_secs(31));
    // Probe succeeds: closed.
    assert_eq!(
        r.complete("flaky", &ask("x")).await.unwrap().content,
        "ok:x"
    );
    assert_eq!(
        r.snapshot_of("flaky").unwrap().circuit.state,
        CircuitState::Closed
    );

    let events = drain(&mut sub);
    let breaker: Vec<_> = kinds(&events)
        .into_iter()
        .filter(|k| k.starts_with("circuit"))
        .collect();
    assert_eq!(
        breaker,
        [
            "circuit-breaker-opened",
            "circuit-breaker-half-open",
            "circuit-breaker-opened",
            "circuit-breaker-half-open",
            "circuit-breaker-closed"
        ]
    );
    let errors = events
        .iter()
        .filter(|e| e.kind() == "provider-error")
        .count();
    assert_eq!(
        errors, 4,
        "one per provider failure, none for client errors"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_and_timeouts_count_as_failures() {
    let clock = Arc::new(ManualClock::new());
    let r = breaker_registry(clock);
    let mut reg = test_provider(&[]);
    reg.settings.limits.timeout_ms = 200;
    r.register("t", reg).await.unwrap();
    assert_eq!(
        r.complete("t", &ask("x").with_metadata("trap", "1"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::Trap
    );
    assert_eq!(
        r.complete("t", &ask("x").with_metadata("hang_ms", "5000"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::Timeout
    );
    assert_eq!(
        r.complete("t", &ask("x").with_metadata("trap", "1"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::Trap
    );
    assert_eq!(
        r.complete("t", &ask("x")).await.unwrap_err().code,
        ErrorCode::CircuitOpen
    );
    let snap = r.snapshot_of("t").unwrap();
    assert_eq!(snap.calls.errors.get("TRAP"), Some(&2));
    assert_eq!(snap.calls.errors.get("TIMEOUT"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_flips_after_thresholds_with_one_event_per_transition() {
    let config = RegistryConfig {
        health: HealthConfig {
            timeout_ms: 300,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            ..HealthConfig::default()
        },
        ..RegistryConfig::default()
    };
    let r = Registry::with_builtins(sandbox(), config, builtins()).unwrap();
    r.register("h", test_provider(&[])).await.unwrap();
    let mut sub = r.subscribe();
    r.complete("h", &ask("x").with_metadata("set_health", "unhealthy"))
        .await
        .unwrap();
    assert_eq!(
        r.check_health("h").await.unwrap().status,
        HealthStatus::Unhealthy
    );
    assert_eq!(
        r.snapshot_of("h").unwrap().health,
        HealthStatus::Healthy,
        "one check is not enough"
    );
    r.check_health("h").await.unwrap();
    r.check_health("h").await.unwrap();
    assert_eq!(r.snapshot_of("h").unwrap().health, HealthStatus::Unhealthy);
    r.complete("h", &ask("x").with_metadata("set_health", "healthy"))
        .await
        .unwrap();
    r.check_health("h").await.unwrap();
    r.check_health("h").await.unwrap();
    let snap = r.snapshot_of("h").unwrap();
    assert_eq!(snap.health, HealthStatus::Healthy);
    assert!(snap.last_health_check.is_some());
    let changes: Vec<(String, String)> = drain(&mut sub)
        .into_iter()
        .filter_map(|e| match e {
            Event::HealthStatusChanged { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("healthy".into(), "unhealthy".into()),
            ("unhealthy".into(), "healthy".into())
        ]
    );

    // A check that hangs past its timeout counts as unhealthy.
    let r2 = Registry::new(
        sandbox(),
        RegistryConfig {
            health: HealthConfig {
                timeout_ms: 200,
                unhealthy_threshold: 1,
                ..HealthConfig::default()
            },
            ..RegistryConfig::default()
        },
    )
    .unwrap();
    r2.register("slow", test_provider(&[("health_hang_ms", "10000")]))
        .await
        .unwrap();
    let check = r2.check_health("slow").await.unwrap();
    assert_eq!(check.status, HealthStatus::Unhealthy);
    assert!(check.message.contains("TIMEOUT"), "{}", check.message);
    assert_eq!(
        r2.snapshot_of("slow").unwrap().health,
        HealthStatus::Unhealthy
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_do_not_queue_behind_traffic() {
    let r = registry();
    r.register("busy", test_provider(&[])).await.unwrap();
    let handle = r.get("busy").unwrap();
    let slow = tokio::spawn(async move {
        handle
            .complete(&ask("slow").with_metadata("hang_ms", "1500"))
            .await
    });
    loop {
        let pool = r.snapshot_of("busy").unwrap().pool.unwrap();
        if pool.in_use == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    // The only traffic slot is taken; the check runs on the probe instance.
    let check = r.check_health("busy").await.unwrap();
    assert_eq!(check.status, HealthStatus::Healthy);
    assert!(slow.await.unwrap().is_ok());
    let pool = r.snapshot_of("busy").unwrap().pool.unwrap();
    assert_eq!(pool.health_checks, 1);
    assert_eq!(pool.overloaded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_runs_and_stopping_leaves_no_task() {
    let config = RegistryConfig {
        health: HealthConfig {
            interval_ms: 20,
            timeout_ms: 1000,
            unhealthy_threshold: 1,
            ..HealthConfig::default()
        },
        ..RegistryConfig::default()
    };
    let r = Registry::with_builtins(sandbox(), config, builtins()).unwrap();
    r.register("m1", test_provider(&[("health", "unhealthy")]))
        .await
        .unwrap();
    let mut sub = r.subscribe();
    r.start_monitoring_all();
    r.register("m2", echo()).await.unwrap();
    assert_eq!(r.monitored(), ["m1", "m2"]);
    // Wait for the transition event (bounded).
    let mut seen = false;
    for _ in 0..200 {
        if drain(&mut sub)
            .iter()
            .any(|e| e.kind() == "health-status-changed" && e.provider() == "m1")
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "monitoring flipped m1 to unhealthy");
    r.stop_monitoring_all().await;
    assert!(r.monitored().is_empty());
    let checks = r.snapshot_of("m2").unwrap().pool.unwrap().health_checks;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        r.snapshot_of("m2").unwrap().pool.unwrap().health_checks,
        checks,
        "no check after stop"
    );
    // Unregistering a monitored provider ends its monitor.
    r.start_monitoring("m2").unwrap();
    r.unregister("m2").await.unwrap();
    assert!(r.monitored().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_hanging_guest_finishes_within_its_timeout() {
    let config = RegistryConfig {
        lifecycle: tamma_registry::registry_config::LifecycleConfig {
            dispose_timeout_ms: 300,
            ..Default::default()
        },
        ..RegistryConfig::default()
    };
    let r = Registry::with_builtins(sandbox(), config, builtins()).unwrap();
    r.register("fine", echo()).await.unwrap();
    r.register("stuck", test_provider(&[("dispose_hang_ms", "60000")]))
        .await
        .unwrap();
    let mut busy = test_provider(&[]);
    busy.settings.limits.fuel = tamma_sandbox::limits::MAX_FUEL; // spin until cut off, not until out of fuel
    r.register("busy", busy).await.unwrap();
    let handle = r.get("busy").unwrap();
    let call =
        tokio::spawn(async move { handle.complete(&ask("x").with_metadata("spin", "1")).await });
    while r.snapshot_of("busy").unwrap().pool.unwrap().in_use == 0 {
        tokio::task::yield_now().await;
    }
    let started = std::time::Instant::now();
    let report = r.shutdown_within(Duration::from_secs(3)).await;
    let took = started.elapsed();
    // A bound, not a speed measurement: shutdown must return by its timeout.
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert_eq!(report.clean, ["fine"]);
    assert_eq!(report.forced, ["busy", "stuck"]);
    // The spinning call was cut off by the sandbox, not left running.
    let cut = call.await.unwrap().unwrap_err();
    assert_eq!(cut.code, ErrorCode::ShuttingDown, "{cut}");
    assert_eq!(
        r.complete("fine", &CompletionRequest::prompt("echo-1", "x"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::ShuttingDown
    );
    assert_eq!(
        r.register("late", echo()).await.unwrap_err().code,
        ErrorCode::ShuttingDown
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_snapshots_events_or_debug() {
    let r = registry();
    let secret = "sk-live-DO-NOT-LEAK-12345";
    let mut secrets = BTreeMap::new();
    secrets.insert("api_key".to_string(), secret.to_string());
    let mut reg = echo();
    reg.settings.egress = EgressPolicy::new(vec!["https://api.example.com".into()], secrets);
    let mut sub = r.subscribe();
    r.register("s", reg.clone()).await.unwrap();
    let snap = serde_json::to_string(&r.snapshot()).unwrap();
    assert!(!snap.contains(secret));
    assert!(snap.contains("api_key"), "the secret's name is listed");
    assert!(!format!("{reg:?}").contains(secret));
    assert!(!format!("{:?}", r.get("s").unwrap()).contains(secret));
    let err = r.register("s", reg).await.unwrap_err();
    assert!(!format!("{err:?} {err}").contains(secret));
    for e in drain(&mut sub) {
        assert!(!serde_json::to_string(&e).unwrap().contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_loaded_by_the_caller_can_be_registered_and_restarted() {
    let r = registry();
    let sb = sandbox();
    let loaded = sb.load_file(&guest("test_provider")).unwrap();
    let inst = sb
        .instantiate(
            "mine",
            &loaded,
            vec![("reply".into(), "pre".into())],
            Limits::default(),
        )
        .await
        .unwrap();
    let snap = r
        .register_instance(
            "mine",
            inst,
            tamma_registry::Origin::Api,
            Some("1.2.3".into()),
        )
        .await
        .unwrap();
    assert_eq!(snap.metadata.version.as_deref(), Some("1.2.3"));
    assert_eq!(
        r.complete("mine", &ask("x")).await.unwrap().content,
        "pre:x"
    );
    // Restart re-creates it from the same component and configuration.
    r.restart("mine").await.unwrap();
    assert_eq!(
        r.complete("mine", &ask("y")).await.unwrap().content,
        "pre:y"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_swaps_component_and_metadata_atomically() {
    let r = registry();
    let mut v1 = test_provider(&[("reply", "v1")]);
    v1.version = Some("1.0.0".into());
    r.register("swap", v1).await.unwrap();
    // A call running on v1 when the swap happens finishes on v1.
    let handle = r.get("swap").unwrap();
    let running = tokio::spawn(async move {
        handle
            .complete(&ask("slow").with_metadata("hang_ms", "300"))
            .await
    });
    while r.snapshot_of("swap").unwrap().pool.unwrap().in_use == 0 {
        tokio::task::yield_now().await;
    }
    let mut sub = r.subscribe();
    let mut v2 = Registration::new(ComponentSource::File(guest("echo")));
    v2.version = Some("2.0.0".into());
    v2.origin = tamma_registry::Origin::Plugin;
    let snap = r.replace("swap", v2).await.unwrap();
    assert_eq!(snap.metadata.version.as_deref(), Some("2.0.0"));
    assert_eq!(snap.metadata.source, tamma_registry::Origin::Plugin);
    assert_eq!(running.await.unwrap().unwrap().content, "v1:slow");
    assert_eq!(
        r.complete("swap", &ask("new")).await.unwrap().content,
        "new"
    );
    assert!(kinds(&drain(&mut sub)).contains(&"provider-replaced"));
    // A replacement that fails keeps the working version.
    let junk: Arc<[u8]> = Arc::from(&b"junk"[..]);
    let err = r
        .replace("swap", Registration::new(ComponentSource::Bytes(junk)))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RegistrationFailed);
    assert_eq!(
        r.complete("swap", &ask("still")).await.unwrap().content,
        "still"
    );
}

/// Snapshots taken while `replace` flips a provider between two registrations
/// always describe one of them whole: version, component, configuration and
/// capabilities never mix old and new (the entry's state is swapped as one value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_during_replace_never_mix_old_and_new() {
    let r = registry();
    let a = || {
        let mut reg = test_provider(&[("reply", "a")]);
        reg.version = Some("a".into());
        reg
    };
    let b = || {
        let mut reg = Registration::new(ComponentSource::File(guest("echo")));
        reg.version = Some("b".into());
        reg
    };
    r.register("flip", a()).await.unwrap();
    let first_a = r.snapshot_of("flip").unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (r, stop) = (r.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen: std::collections::HashMap<String, (String, Vec<String>, Vec<String>)> =
                Default::default();
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let s = r.snapshot_of("flip").unwrap();
                let version = s.metadata.version.clone().unwrap();
                let models: Vec<String> =
                    s.capabilities.models.iter().map(|m| m.id.clone()).collect();
                let now = (
                    s.metadata.component_sha256.clone(),
                    s.config_keys.clone(),
                    models,
                );
                let before = seen.entry(version.clone()).or_insert_with(|| now.clone());
                assert_eq!(
                    *before, now,
                    "snapshot {n} of version {version} mixes states"
                );
                n += 1;
                tokio::task::yield_now().await;
            }
            (n, seen)
        })
    };
    for i in 0..10 {
        let next = if i % 2 == 0 { b() } else { a() };
        r.replace("flip", next).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (n, seen) = reader.await.unwrap();
    assert!(n > 0);
    // The two versions are told apart by every field the reader compared.
    let (sha_a, keys_a, _) = &seen["a"];
    assert_eq!(sha_a, &first_a.metadata.component_sha256);
    assert_eq!(keys_a, &["reply".to_string()]);
    if let Some((sha_b, keys_b, _)) = seen.get("b") {
        assert_ne!(sha_a, sha_b);
        assert!(keys_b.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_instance_pool_is_overload_not_a_trap() {
    use tamma_sandbox::compile_cache::CompileCache;
    use tamma_sandbox::engine::{EngineConfig, SandboxEngine};
    let engine = SandboxEngine::new(EngineConfig {
        pool_instances: 2,
        ..EngineConfig::default()
    })
    .unwrap();
    if !matches!(
        engine.allocator(),
        tamma_sandbox::engine::AllocatorKind::Pooling
    ) {
        return; // the limit only exists with the pooling allocator
    }
    let sb = tamma_registry::Sandbox::new(engine, CompileCache::new(tamma_e2e::test_cache_dir()))
        .unwrap();
    let r = Registry::new(sb, RegistryConfig::default()).unwrap();
    r.register("a", echo()).await.unwrap();
    r.register("b", echo()).await.unwrap();
    let err = r.register("c", echo()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::RegistrationFailed);
    assert_eq!(err.cause_code, Some(ErrorCode::Overloaded), "{err}");
    assert!(err.message.contains("pool is full"), "{err}");
    // Freeing a slot makes room again.
    r.unregister("a").await.unwrap();
    r.register("c", echo()).await.unwrap();
}
