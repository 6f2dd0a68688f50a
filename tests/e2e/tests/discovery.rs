//! Discovery from each source on its own and all together: the configuration
//! file, the plugin directory, the environment; precedence; validation failures
//! with their messages and lines; bad plugins beside good ones.

mod discovery_support;

use discovery_support::*;
use tamma_e2e::{builtins, guest, guest_bytes, workspace_root};
use tamma_registry::config::{Check, Config};
use tamma_registry::discovery::{Discovery, ProviderStatus};
use tamma_registry::{ComponentSource, Origin, Registration};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_alone_registers_its_providers() {
    let dir = tempdir();
    std::fs::copy(guest("test_provider"), dir.path().join("tp.wasm")).unwrap();
    std::fs::write(dir.path().join("key"), "file-secret\n").unwrap();
    let cfg = write(
        &dir.path().join("tamma.toml"),
        r#"
[providers.echo]
component = "echo"
config = { prefix = "cfg:" }

[providers.local]
component = "tp.wasm"                  # relative to this file
config = { reply = "local" }
allowed_hosts = ["https://api.example.com"]
secrets = { api_key = { env = "LOCAL_KEY" }, other = { file = "key" } }
[providers.local.limits]
max_concurrency = 2

[providers.off]
component = "echo"
enabled = false

[discovery]
environment = false
"#,
    );
    let d = discovery(
        Some(&cfg),
        None,
        &[("LOCAL_KEY", "env-secret"), ("OPENAI_API_KEY", "sk-x")],
    );
    let report = d.discover_all().await;
    assert_eq!(report.registered, ["echo", "local"], "{report:#?}");
    assert!(
        report.failed.is_empty() && report.problems.is_empty(),
        "{report:#?}"
    );
    assert_eq!(answer(&d, "echo", "hi").await, "cfg:hi");
    assert_eq!(answer(&d, "local", "hi").await, "local:hi");
    let snap = d.registry().snapshot_of("local").unwrap();
    assert_eq!(snap.metadata.source, Origin::Config);
    assert_eq!(snap.limits.max_concurrency, 2);
    assert_eq!(snap.allowed_hosts, ["https://api.example.com"]);
    assert_eq!(snap.secret_names, ["api_key", "other"]);
    assert_eq!(snap.config_keys, ["reply"]);
    let json = serde_json::to_string(&d.registry().snapshot()).unwrap();
    assert!(!json.contains("env-secret") && !json.contains("file-secret"));
    // Environment discovery is off in the file: OPENAI_API_KEY registered nothing.
    assert_eq!(d.registry().names(), ["echo", "local"]);
    // A second round with nothing changed changes nothing.
    let again = d.refresh().await;
    assert!(!again.changed(), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_alone_registers_built_in_providers_with_the_key_as_a_secret() {
    let d = discovery(
        None,
        None,
        &[
            ("OPENAI_API_KEY", "sk-openai-secret"),
            ("ANTHROPIC_API_KEY", "sk-ant-secret"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
            ("OPENROUTER_API_KEY", "sk-or-secret"),
            ("UNRELATED", "x"),
        ],
    );
    let report = d.discover_all().await;
    assert_eq!(
        report.registered,
        ["anthropic", "openai", "openrouter"],
        "{report:#?}"
    );
    let r = d.registry();
    for (name, builtin, host, base) in [
        (
            "openai",
            "openai",
            "https://api.openai.com",
            "https://api.openai.com/v1",
        ),
        (
            "anthropic",
            "anthropic",
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/v1",
        ),
        (
            "openrouter",
            "openai",
            "https://openrouter.ai",
            "https://openrouter.ai/api/v1",
        ),
    ] {
        let s = r.snapshot_of(name).unwrap();
        assert_eq!(s.metadata.source, Origin::Environment, "{name}");
        assert_eq!(s.metadata.builtin.as_deref(), Some(builtin), "{name}");
        assert_eq!(s.allowed_hosts, [host], "{name}");
        assert_eq!(s.secret_names, ["api_key"], "{name}");
        assert_eq!(
            s.config_keys,
            ["base_url"],
            "{name}: the key is never configuration"
        );
        let _ = base;
    }
    let json = serde_json::to_string(&r.snapshot()).unwrap() + &format!("{:?}{:?}", d, report);
    for key in ["sk-openai-secret", "sk-ant-secret", "sk-or-secret"] {
        assert!(!json.contains(key), "{key} leaked");
    }
    // Turning environment discovery off removes them again.
    let off = Discovery::new(r.clone(), options(None, None, &[]).environment(false));
    assert!(
        off.discover_all().await.unregistered.is_empty(),
        "another discovery does not own them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_variable_that_changes_replaces_and_one_that_goes_unregisters() {
    let d = discovery(None, None, &[("OPENAI_API_KEY", "k1")]);
    assert_eq!(d.discover_all().await.registered, ["openai"]);
    d.options().env.set("OPENAI_API_KEY", "k2");
    assert_eq!(d.refresh().await.replaced, ["openai"]);
    d.options().env.remove("OPENAI_API_KEY");
    assert_eq!(d.refresh().await.unregistered, ["openai"]);
    assert!(d.registry().names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_directory_alone_registers_its_plugins() {
    let dir = tempdir();
    install_plugin(
        dir.path(),
        "reply-bot",
        "test_provider",
        "2.1.0",
        &[("reply", "plug")],
    );
    install_plugin(dir.path(), "echo-bot", "echo", "0.1.0", &[]);
    let d = discovery(None, Some(dir.path()), &[]);
    let report = d.discover_all().await;
    assert_eq!(report.registered, ["echo-bot", "reply-bot"], "{report:#?}");
    assert_eq!(answer(&d, "reply-bot", "x").await, "plug:x");
    let s = d.registry().snapshot_of("reply-bot").unwrap();
    assert_eq!(s.metadata.source, Origin::Plugin);
    assert_eq!(s.metadata.version.as_deref(), Some("2.1.0"));
    assert!(
        s.secret_names.is_empty() && s.allowed_hosts.is_empty(),
        "no extra authority"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_plugin_is_skipped_with_the_check_that_failed_and_the_rest_load() {
    let dir = tempdir();
    let p = dir.path();
    let echo = guest_bytes("echo");
    install_plugin(p, "good", "test_provider", "1", &[("reply", "good")]);
    // sha256 mismatch.
    std::fs::write(p.join("tampered.wasm"), &echo).unwrap();
    std::fs::write(
        p.join("tampered.toml"),
        manifest("tampered", "1", b"other bytes", &[]),
    )
    .unwrap();
    // Over the size cap (checked before reading it all).
    let big = vec![0u8; 300_000];
    std::fs::write(p.join("big.wasm"), &big).unwrap();
    std::fs::write(p.join("big.toml"), manifest("big", "1", &big, &[])).unwrap();
    // Not a component: passes the hash, fails registration.
    let junk = b"\0asm this is not a component".to_vec();
    std::fs::write(p.join("junk.wasm"), &junk).unwrap();
    std::fs::write(p.join("junk.toml"), manifest("junk", "1", &junk, &[])).unwrap();
    // An invalid manifest: wrong name, limits above the defaults, a secret.
    std::fs::write(p.join("greedy.wasm"), &echo).unwrap();
    std::fs::write(
        p.join("greedy.toml"),
        manifest("someone-else", "1", &echo, &[]) + "[limits]\nmemory_mib = 2048\n",
    )
    .unwrap();
    // A manifest without its component, and a component without a manifest.
    std::fs::write(p.join("lonely.toml"), manifest("lonely", "1", &echo, &[])).unwrap();
    std::fs::write(p.join("orphan.wasm"), &echo).unwrap();

    let mut opts = options(None, Some(p), &[]);
    opts.max_plugin_bytes = Some(200_000);
    let d = Discovery::new(registry(), opts);
    let report = d.discover_all().await;
    assert_eq!(report.registered, ["good"], "{report:#?}");
    assert_eq!(answer(&d, "good", "x").await, "good:x");
    let check = |name: &str| {
        let f = report
            .failure(name)
            .unwrap_or_else(|| panic!("{name}: {report:#?}"));
        assert_eq!(f.status, ProviderStatus::Invalid);
        (
            f.problems[0].check,
            f.problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    };
    let (c, m) = check("tampered");
    assert_eq!(c, Check::Sha256, "{m}");
    assert!(m.contains("the manifest says"), "{m}");
    let (c, m) = check("big");
    assert_eq!(c, Check::Size, "{m}");
    let (c, m) = check("junk");
    assert_eq!(c, Check::Component, "{m}");
    assert!(m.contains("INVALID_COMPONENT"), "{m}");
    let (c, m) = check("greedy");
    assert_eq!(c, Check::Manifest, "{m}");
    assert!(m.contains("greedy.toml:name (line 1)"), "{m}");
    assert!(
        m.contains("greedy.toml:limits.memory_mib (line 6): 2048 is above the default"),
        "{m}"
    );
    let (c, m) = check("lonely");
    assert_eq!(c, Check::Component, "{m}");
    assert!(m.contains("lonely.wasm is missing"), "{m}");
    assert!(
        report.failure("orphan").is_none(),
        "a .wasm without manifest claims nothing"
    );
    assert_eq!(d.registry().names(), ["good"]);

    // validate_discovered_providers says the same, orphan included, and registers nothing.
    let d2 = Discovery::new(registry(), {
        let mut o = options(None, Some(p), &[]);
        o.max_plugin_bytes = Some(200_000);
        o
    });
    let v = d2.validate_discovered_providers().await;
    assert!(d2.registry().names().is_empty());
    let status = |n: &str| v.get(n).map(|r| r.status);
    assert_eq!(status("good"), Some(ProviderStatus::Ok));
    for bad in ["tampered", "big", "junk", "greedy", "lonely", "orphan"] {
        assert_eq!(status(bad), Some(ProviderStatus::Invalid), "{bad}: {v:#?}");
    }
    assert_eq!(v.get("junk").unwrap().problems[0].check, Check::Component);
    assert_eq!(v.get("orphan").unwrap().problems[0].check, Check::Manifest);
    assert!(!v.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_sources_together_follow_the_precedence_file_plugins_environment() {
    let dir = tempdir();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    // "openai" is declared by all three sources; "shared" by plugins and env is
    // impossible (env names are fixed), so: "anthropic" by the file (disabled)
    // and env; "openrouter" by a plugin and env; "solo" by a plugin only.
    install_plugin(
        &plugins,
        "openai",
        "test_provider",
        "1",
        &[("reply", "plugin")],
    );
    install_plugin(
        &plugins,
        "openrouter",
        "test_provider",
        "1",
        &[("reply", "plugin-or")],
    );
    install_plugin(&plugins, "solo", "echo", "1", &[("prefix", "solo:")]);
    let cfg = write(
        &dir.path().join("tamma.toml"),
        r#"
[providers.openai]
component = "echo"
config = { prefix = "file:" }

[providers.anthropic]
component = "anthropic"
enabled = false

[discovery]
plugin_dir = "plugins"
"#,
    );
    let d = Discovery::new(
        registry(),
        options(
            Some(&cfg),
            None,
            &[
                ("OPENAI_API_KEY", "k"),
                ("ANTHROPIC_API_KEY", "k"),
                ("OPENROUTER_API_KEY", "k"),
            ],
        ),
    );
    let report = d.discover_all().await;
    assert_eq!(
        report.registered,
        ["openai", "openrouter", "solo"],
        "{report:#?}"
    );
    assert_eq!(answer(&d, "openai", "x").await, "file:x");
    assert_eq!(answer(&d, "openrouter", "x").await, "plugin-or:x");
    assert_eq!(answer(&d, "solo", "x").await, "solo:x");
    assert!(
        !d.registry().contains("anthropic"),
        "disabled in the file wins over the key"
    );
    let r = d.registry();
    assert_eq!(
        r.snapshot_of("openai").unwrap().metadata.source,
        Origin::Config
    );
    assert_eq!(
        r.snapshot_of("openrouter").unwrap().metadata.source,
        Origin::Plugin
    );
    let shadowed: Vec<(String, Origin)> = report
        .shadowed
        .iter()
        .map(|s| (s.name.clone(), s.source))
        .collect();
    assert_eq!(
        shadowed,
        [
            ("anthropic".to_string(), Origin::Environment),
            ("openai".to_string(), Origin::Plugin),
            ("openai".to_string(), Origin::Environment),
            ("openrouter".to_string(), Origin::Environment),
        ],
        "{report:#?}"
    );
    assert!(report.shadowed[1].problems[0]
        .message
        .contains("configuration file"));

    // Removing the file's entry hands the name to the next source, without a restart.
    write(&cfg, "[discovery]\nplugin_dir = \"plugins\"\n");
    let report = d.refresh().await;
    assert_eq!(report.replaced, ["openai"], "{report:#?}");
    assert_eq!(answer(&d, "openai", "x").await, "plugin:x");
    // The anthropic key takes its name once the file no longer disables it.
    assert_eq!(report.registered, ["anthropic"], "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_problems_are_reported_with_path_and_line_and_spare_the_good_entries() {
    let dir = tempdir();
    let cfg = write(
        &dir.path().join("tamma.toml"),
        r#"[providers.good]
component = "echo"

[providers.bad]
component = "echo"
colour = "red"
[providers.bad.limits]
memory_mib = 100000
fuel = "lots"
[providers.bad.secrets]
api_key = "sk-inline-not-shown"

[providers.missing]
component = "nope.wasm"

[providers.Bad_Name]
component = "gpt"

[providers.nokey]
component = "echo"
secrets = { api_key = { env = "NOT_SET_ANYWHERE" } }
"#,
    );
    let d = discovery(Some(&cfg), None, &[]);
    let report = d.discover_all().await;
    assert_eq!(report.registered, ["good"], "{report:#?}");
    let all: Vec<String> = report
        .failed
        .iter()
        .flat_map(|f| f.problems.iter().map(|p| p.to_string()))
        .collect();
    let text = all.join("\n");
    for expected in [
        "providers.bad.colour (line 6): unknown key `colour`",
        "providers.bad.limits.memory_mib (line 8): must be between 1 and 4096, got 100000",
        // Values in wrong places are never echoed: they may be secrets.
        "providers.bad.limits.fuel (line 9): invalid type: string (value hidden), expected u64",
        "providers.bad.secrets.api_key (line 11): inline secret values are not allowed",
        "providers.missing.component (line 14): cannot read",
        "providers.Bad_Name (line 16): provider name \"Bad_Name\" contains 'B'",
        "providers.Bad_Name.component (line 17): unknown built-in provider type `gpt`",
        "providers.nokey.secrets.api_key: environment variable NOT_SET_ANYWHERE is not set",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("sk-inline-not-shown"));
    // The same, statically, for `tamma validate`.
    let check = Config::check_file(&cfg, &builtins());
    assert_eq!(
        check.invalid_providers.len(),
        3,
        "{:?}",
        check.invalid_providers
    );
    assert_eq!(check.problems.len(), 7, "{:#?}", check.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_does_not_parse_registers_nothing_and_other_sources_still_load() {
    let dir = tempdir();
    let cfg = write(
        &dir.path().join("tamma.json"),
        "{\n  \"providers\": {\n    \"x\": { \"component\": \"echo\", }\n  }\n}\n",
    );
    let d = discovery(Some(&cfg), None, &[("OPENAI_API_KEY", "k")]);
    let report = d.discover_all().await;
    assert_eq!(report.registered, ["openai"], "{report:#?}");
    assert_eq!(report.problems[0].check, Check::Syntax);
    assert_eq!(report.problems[0].line, Some(3), "{:?}", report.problems);
    // And JSON works when it parses.
    write(
        &cfg,
        "{\n  \"providers\": {\n    \"x\": { \"component\": \"echo\" }\n  }\n}\n",
    );
    assert_eq!(d.refresh().await.registered, ["x"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_registered_through_the_api_are_never_touched() {
    let dir = tempdir();
    let cfg = write(
        &dir.path().join("tamma.toml"),
        "[providers.mine]\ncomponent = \"echo\"\n[discovery]\nenvironment = false\n",
    );
    let d = discovery(Some(&cfg), None, &[]);
    let r = d.registry().clone();
    r.register(
        "mine",
        Registration::new(ComponentSource::Builtin("echo".into())),
    )
    .await
    .unwrap();
    let report = d.discover_all().await;
    assert!(report.registered.is_empty());
    assert_eq!(
        report.failure("mine").unwrap().problems[0].check,
        Check::Conflict
    );
    // The file drops it: discovery does not own it, so it stays.
    write(&cfg, "[discovery]\nenvironment = false\n");
    let report = d.refresh().await;
    assert!(report.unregistered.is_empty(), "{report:#?}");
    assert_eq!(r.snapshot_of("mine").unwrap().metadata.source, Origin::Api);

    // One of ours unregistered through the API is not brought back until it changes.
    write(
        &cfg,
        "[providers.ours]\ncomponent = \"echo\"\n[discovery]\nenvironment = false\n",
    );
    assert_eq!(d.refresh().await.registered, ["ours"]);
    r.unregister("ours").await.unwrap();
    assert!(!d.refresh().await.changed());
    assert!(!r.contains("ours"));
    write(&cfg, "[providers.ours]\ncomponent = \"echo\"\nconfig = { prefix = \"v2\" }\n[discovery]\nenvironment = false\n");
    assert_eq!(d.refresh().await.registered, ["ours"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_file_is_valid_and_its_plugin_grants_apply() {
    let example = workspace_root().join("examples/tamma.toml");
    let check = Config::check_file(&example, &builtins());
    assert!(check.is_ok(), "{:#?}", check.problems);
    let cfg = check.config.unwrap();
    assert_eq!(cfg.providers.len(), 3);
    assert_eq!(cfg.plugins["reply-bot"].config["reply"], "hello");
    assert!(cfg.plugin_dir().unwrap().ends_with("examples/plugins"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_get_secrets_config_and_limits_only_from_the_file() {
    let dir = tempdir();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    install_plugin(
        &plugins,
        "bot",
        "test_provider",
        "1",
        &[("reply", "manifest")],
    );
    install_plugin(&plugins, "off", "echo", "1", &[]);
    let cfg = write(
        &dir.path().join("tamma.toml"),
        r#"
[plugins.bot]
config = { reply = "granted" }
secrets = { api_key = { env = "BOT_KEY" } }
limits = { max_concurrency = 7 }
allowed_hosts = ["https://api.example.com"]

[plugins.off]
enabled = false

[discovery]
plugin_dir = "plugins"
environment = false
"#,
    );
    let d = discovery(Some(&cfg), None, &[("BOT_KEY", "bot-secret")]);
    let report = d.discover_all().await;
    assert_eq!(report.registered, ["bot"], "{report:#?}");
    assert_eq!(answer(&d, "bot", "x").await, "granted:x");
    let s = d.registry().snapshot_of("bot").unwrap();
    assert_eq!(s.secret_names, ["api_key"]);
    assert_eq!(s.limits.max_concurrency, 7);
    assert_eq!(s.allowed_hosts, ["https://api.example.com"]);
    let v = d.validate_discovered_providers().await;
    assert_eq!(v.get("off").unwrap().status, ProviderStatus::Disabled);
}
