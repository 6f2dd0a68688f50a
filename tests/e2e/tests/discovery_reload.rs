//! Auto-refresh (hot reload): new, changed and removed providers while the
//! process runs; calls never fail while a plugin is replaced; half-written files
//! are never loaded; a failed reload keeps the previous version and says why.

mod discovery_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use discovery_support::*;
use tamma_e2e::guest_bytes;
use tamma_registry::config::Check;
use tamma_registry::events::{Event, Received};

const TICK: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_refresh_registers_replaces_and_unregisters_with_events() {
    let dir = tempdir();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let cfg = write(
        &dir.path().join("tamma.toml"),
        "[providers.a]\ncomponent = \"echo\"\nconfig = { prefix = \"a1:\" }\n[discovery]\nplugin_dir = \"plugins\"\nenvironment = false\n",
    );
    let d = discovery(Some(&cfg), None, &[]);
    let mut sub = d.registry().subscribe();
    assert_eq!(d.discover_all().await.registered, ["a"]);
    d.start_auto_refresh(TICK);
    assert_eq!(d.auto_refresh_interval(), Some(TICK));

    // A new plugin appears.
    install_plugin(&plugins, "p", "test_provider", "1", &[("reply", "p1")]);
    eventually("plugin p registered", || async {
        d.registry().contains("p")
    })
    .await;
    assert_eq!(answer(&d, "p", "x").await, "p1:x");
    // The file changes: a is replaced, b is new.
    atomic_write(
        &cfg,
        b"[providers.a]\ncomponent = \"echo\"\nconfig = { prefix = \"a2:\" }\n[providers.b]\ncomponent = \"echo\"\n[discovery]\nplugin_dir = \"plugins\"\nenvironment = false\n",
    );
    eventually("a replaced and b registered", || async {
        d.registry().contains("b")
            && d.registry()
                .complete("a", &ask("x"))
                .await
                .map(|r| r.content)
                .ok()
                .as_deref()
                == Some("a2:x")
    })
    .await;
    // The plugin's manifest is deleted: it goes.
    std::fs::remove_file(plugins.join("p.toml")).unwrap();
    eventually("plugin p unregistered", || async {
        !d.registry().contains("p")
    })
    .await;
    d.stop_auto_refresh().await;
    assert_eq!(d.auto_refresh_interval(), None);

    let mut kinds = Vec::new();
    while let Ok(r) = sub.try_recv() {
        if let Received::Event(e) = r {
            kinds.push((e.event.kind(), e.event.provider().to_string()));
        }
    }
    for want in [
        ("provider-registered", "a"),
        ("provider-registered", "p"),
        ("provider-registered", "b"),
        ("provider-unregistered", "p"),
    ] {
        assert!(
            kinds.iter().any(|(k, p)| *k == want.0 && p == want.1),
            "{want:?} missing from {kinds:?}"
        );
    }

    // Stopped: changes are no longer picked up.
    install_plugin(&plugins, "late", "echo", "1", &[]);
    tokio::time::sleep(TICK * 5).await;
    assert!(!d.registry().contains("late"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_never_fail_while_a_plugin_is_replaced_twenty_times_and_its_config_changes() {
    let dir = tempdir();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let cfg = write(
        &dir.path().join("tamma.toml"),
        "[discovery]\nplugin_dir = \"plugins\"\nenvironment = false\n",
    );
    install_tagged(&plugins, "bot", 0, "v0");
    let d = discovery(Some(&cfg), None, &[]);
    assert_eq!(d.discover_all().await.registered, ["bot"]);
    d.start_auto_refresh(TICK);

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let latest = Arc::new(std::sync::Mutex::new(String::new()));
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (d, stop, calls, failures, latest) = (
            d.clone(),
            stop.clone(),
            calls.clone(),
            failures.clone(),
            latest.clone(),
        );
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match d.registry().complete("bot", &ask("ping")).await {
                    Ok(r) => *latest.lock().unwrap() = r.content,
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
                calls.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }));
    }
    let answers_with = |want: String| {
        let d = d.clone();
        async move {
            d.registry()
                .complete("bot", &ask("ping"))
                .await
                .map(|r| r.content)
                .ok()
                == Some(want)
        }
    };
    for i in 1..=20 {
        let tag = format!("v{i}");
        install_tagged(&plugins, "bot", i, &tag);
        eventually(&format!("version {i} serving"), || {
            answers_with(format!("{tag}:ping"))
        })
        .await;
    }
    let version = d.registry().snapshot_of("bot").unwrap();
    assert!(version.metadata.component_sha256.len() == 64);
    // The operator's grant in the config file changes the running plugin too.
    atomic_write(
        &cfg,
        b"[plugins.bot]\nconfig = { prefix = \"granted:\", reply = \"granted\" }\n[discovery]\nplugin_dir = \"plugins\"\nenvironment = false\n",
    );
    eventually("config change serving", || {
        answers_with("granted:ping".into())
    })
    .await;

    let before = calls.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }
    d.stop_auto_refresh().await;
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed calls: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        calls.load(Ordering::Relaxed) > before,
        "callers kept calling"
    );
    assert!(
        calls.load(Ordering::Relaxed) > 100,
        "{} calls",
        calls.load(Ordering::Relaxed)
    );
    assert_eq!(*latest.lock().unwrap(), "granted:ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_written_files_are_never_loaded_and_are_retried() {
    let dir = tempdir();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let cfg = write(
        &dir.path().join("tamma.toml"),
        "[providers.c]\ncomponent = \"echo\"\nconfig = { prefix = \"c1:\" }\n[discovery]\nplugin_dir = \"plugins\"\nenvironment = false\n",
    );
    let d = discovery(Some(&cfg), None, &[]);
    d.discover_all().await;

    // A new plugin whose component is only half there.
    let bytes = guest_bytes("test_provider");
    std::fs::write(
        plugins.join("new.toml"),
        manifest("new", "1", &bytes, &[("reply", "new")]),
    )
    .unwrap();
    std::fs::write(plugins.join("new.wasm"), &bytes[..bytes.len() / 2]).unwrap();
    let report = d.refresh().await;
    assert!(!d.registry().contains("new"));
    assert_eq!(
        report.failure("new").unwrap().problems[0].check,
        Check::Sha256
    );
    // The rest of it arrives: loaded on the next round.
    std::fs::write(plugins.join("new.wasm"), &bytes).unwrap();
    assert_eq!(d.refresh().await.registered, ["new"]);
    assert_eq!(answer(&d, "new", "x").await, "new:x");

    // A new version of it is half-written: the old one keeps serving.
    let echo = guest_bytes("echo");
    std::fs::write(
        plugins.join("new.toml"),
        manifest("new", "2", &echo, &[("prefix", "v2:")]),
    )
    .unwrap();
    std::fs::write(plugins.join("new.wasm"), &echo[..1000]).unwrap();
    let report = d.refresh().await;
    assert!(report.replaced.is_empty());
    assert_eq!(answer(&d, "new", "x").await, "new:x");
    // A manifest cut short does not parse: also retried, old one kept.
    std::fs::write(plugins.join("new.toml"), "name = \"new\"\nversion = \"2").unwrap();
    let report = d.refresh().await;
    assert_eq!(
        report.failure("new").unwrap().problems[0].check,
        Check::Manifest
    );
    assert_eq!(answer(&d, "new", "x").await, "new:x");
    std::fs::write(plugins.join("new.wasm"), &echo).unwrap();
    std::fs::write(
        plugins.join("new.toml"),
        manifest("new", "2", &echo, &[("prefix", "v2:")]),
    )
    .unwrap();
    assert_eq!(d.refresh().await.replaced, ["new"]);
    assert_eq!(answer(&d, "new", "x").await, "v2:x");

    // The config file cut short: nothing from it changes, the problem is reported.
    std::fs::write(
        &cfg,
        "[providers.c]\ncomponent = \"echo\"\nconfig = { prefix = ",
    )
    .unwrap();
    let report = d.refresh().await;
    assert!(!report.changed(), "{report:#?}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.check == Check::Syntax && p.line == Some(3)),
        "{report:#?}"
    );
    assert_eq!(answer(&d, "c", "x").await, "c1:x");
    assert!(
        d.registry().contains("new"),
        "plugins named by the last good file stay"
    );
    std::fs::write(&cfg, "[providers.c]\ncomponent = \"echo\"\nconfig = { prefix = \"c2:\" }\n[discovery]\nplugin_dir = \"plugins\"\nenvironment = false\n").unwrap();
    assert_eq!(d.refresh().await.replaced, ["c"]);
    assert_eq!(answer(&d, "c", "x").await, "c2:x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_keeps_the_previous_version_and_reports_why() {
    let dir = tempdir();
    install_plugin(dir.path(), "bot", "test_provider", "1", &[("reply", "one")]);
    let d = discovery(None, Some(dir.path()), &[]);
    d.discover_all().await;
    let mut sub = d.registry().subscribe();

    // A complete, hash-matching file that is not a component.
    let junk = b"\0asm\x0d\0\x01\0 not really".to_vec();
    atomic_write(&dir.path().join("bot.wasm"), &junk);
    atomic_write(
        &dir.path().join("bot.toml"),
        manifest("bot", "2", &junk, &[]).as_bytes(),
    );
    let report = d.refresh().await;
    let f = report.failure("bot").expect("reported");
    assert_eq!(f.problems[0].check, Check::Component, "{f:#?}");
    assert_eq!(
        answer(&d, "bot", "x").await,
        "one:x",
        "the previous version keeps serving"
    );
    let event = loop {
        match sub.try_recv() {
            Ok(Received::Event(e)) => {
                if let Event::ProviderError {
                    provider,
                    code,
                    message,
                } = e.event
                {
                    break (provider, code, message);
                }
            }
            Ok(_) => continue,
            Err(_) => panic!("no provider-error event"),
        }
    };
    assert_eq!(event.0, "bot");
    assert_eq!(event.1, "REGISTRATION_FAILED");
    assert!(
        event.2.contains("previous version keeps running"),
        "{}",
        event.2
    );
    // The same broken version is not retried (nor re-reported as an event) every round.
    let report = d.refresh().await;
    assert!(report.failure("bot").is_some());
    assert!(!matches!(sub.try_recv(), Ok(Received::Event(_))));
    // A fixed version goes in.
    install_plugin(
        dir.path(),
        "bot",
        "test_provider",
        "3",
        &[("reply", "three")],
    );
    assert_eq!(d.refresh().await.replaced, ["bot"]);
    assert_eq!(answer(&d, "bot", "x").await, "three:x");
}

/// Many admin takeovers racing discovery rounds that replace (a changed file)
/// and remove (an emptied file) the same providers: whatever the interleaving,
/// a provider the admin API took over is never replaced or removed by
/// discovery afterwards (`Registry::replace_if` / `unregister_if` check the
/// origin under the provider's lifecycle lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_never_replaces_or_removes_what_the_admin_api_took_over() {
    use tamma_registry::{ComponentSource, ErrorCode, Origin, Registration};
    const NAMES: usize = 6;
    const ITERATIONS: usize = 10;
    let file = |variant: usize| -> String {
        let mut t = String::from("[discovery]\nenvironment = false\n");
        if variant % 3 != 2 {
            for k in 0..NAMES {
                // Each version takes 40 ms to initialize: the window in which a
                // takeover lands between discovery's decision and its swap.
                t.push_str(&format!(
                    "[providers.p{k}]\ncomponent = \"tp.wasm\"\nconfig = {{ reply = \"v{variant}\", init_hang_ms = \"40\" }}\n"
                ));
            }
        }
        t
    };
    for iteration in 0..ITERATIONS {
        let dir = tempdir();
        std::fs::copy(
            tamma_e2e::guest("test_provider"),
            dir.path().join("tp.wasm"),
        )
        .unwrap();
        let cfg = write(&dir.path().join("tamma.toml"), &file(0));
        let d = discovery(Some(&cfg), None, &[]);
        assert_eq!(d.discover_all().await.registered.len(), NAMES);
        let stop = Arc::new(AtomicBool::new(false));
        let rounds_done = Arc::new(AtomicUsize::new(0));
        let rounds = tokio::spawn({
            let (d, cfg, stop, rounds_done) =
                (d.clone(), cfg.clone(), stop.clone(), rounds_done.clone());
            async move {
                let mut round = 1;
                while !stop.load(Ordering::Acquire) {
                    write(&cfg, &file(round));
                    d.refresh().await;
                    round += 1;
                    rounds_done.fetch_add(1, Ordering::AcqRel);
                }
            }
        });
        let mut admins = Vec::new();
        for k in 0..NAMES {
            let r = d.registry().clone();
            admins.push(tokio::spawn(async move {
                let name = format!("p{k}");
                // At a random point of the rounds (a randomly keyed hash).
                let delay = {
                    use std::hash::BuildHasher;
                    std::collections::hash_map::RandomState::new().hash_one((k, iteration)) % 400
                };
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let reg = || {
                    let settings = tamma_registry::ProviderSettings {
                        config: vec![("prefix".into(), "admin:".into())],
                        ..Default::default()
                    };
                    Registration::new(ComponentSource::Builtin("echo".into()))
                        .with_settings(settings)
                };
                loop {
                    match r.replace(&name, reg()).await {
                        Ok(s) => {
                            assert_eq!(s.metadata.source, Origin::Api);
                            return;
                        }
                        Err(e) if e.code == ErrorCode::NotFound => {}
                        Err(e) => panic!("{name}: replace: {e}"),
                    }
                    match r.register(&name, reg()).await {
                        Ok(_) => return,
                        Err(e) if e.code == ErrorCode::AlreadyExists => {}
                        Err(e) => panic!("{name}: register: {e}"),
                    }
                    // Both refusals come back without awaiting anything: let the
                    // round (which holds the name) run.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }));
        }
        for a in admins {
            a.await.unwrap();
        }
        // More rounds after every takeover, each of them replacing or removing
        // every provider discovery still thinks it owns.
        let after = rounds_done.load(Ordering::Acquire);
        eventually("three more discovery rounds", || {
            let rounds_done = rounds_done.clone();
            async move { rounds_done.load(Ordering::Acquire) >= after + 3 }
        })
        .await;
        stop.store(true, Ordering::Release);
        rounds.await.unwrap();
        for k in 0..NAMES {
            let name = format!("p{k}");
            let snap = d
                .registry()
                .snapshot_of(&name)
                .unwrap_or_else(|e| panic!("iteration {iteration}: {name} was removed: {e}"));
            assert_eq!(
                snap.metadata.source,
                Origin::Api,
                "iteration {iteration}: {name}"
            );
            assert_eq!(
                answer(&d, &name, "x").await,
                "admin:x",
                "iteration {iteration}"
            );
        }
        assert!(d.owned().await.is_empty(), "{:?}", d.owned().await);
    }
}
