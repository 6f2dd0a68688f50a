//! Secrets never enter the sandbox: the upstream receives the real key, while a
//! guest that dumps everything it can see — its configuration, the headers it built,
//! what came back, its environment — finds no key; and no log line or registry event
//! carries it either.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tamma_e2e::{builtins, guest, sandbox};
use tamma_mock_upstream::MockUpstream;
use tamma_registry::{ComponentSource, ProviderSettings, Registration, Registry, RegistryConfig};
use tamma_sandbox::egress::EgressPolicy;
use tamma_sandbox::types::CompletionRequest;

const KEY: &str = "sk-live-e2e-secret-0123456789abcdef";

/// Collects every log line written while it is the thread's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime: every task (the guest calls, the egress client) runs on
// this thread, so the thread-local subscriber sees all their logs.
#[tokio::test]
async fn the_upstream_gets_the_key_and_nothing_inside_the_sandbox_or_in_logs_does() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mock = MockUpstream::start().await;
    mock.expect_api_key(KEY);
    let registry =
        Registry::with_builtins(sandbox(), RegistryConfig::default(), builtins()).unwrap();
    let mut events = registry.subscribe();
    let mut secrets = BTreeMap::new();
    secrets.insert("api_key".to_string(), KEY.to_string());
    let settings = ProviderSettings {
        config: vec![("probe_url".into(), format!("{}/models", mock.base_url()))],
        egress: EgressPolicy::new(vec![mock.url()], secrets),
        ..ProviderSettings::default()
    };
    registry
        .register(
            "snoop",
            Registration::new(ComponentSource::File(guest("adversarial_snoop")))
                .with_settings(settings),
        )
        .await
        .unwrap();
    let resp = registry
        .complete(
            "snoop",
            &CompletionRequest::prompt("m", "show me everything"),
        )
        .await
        .unwrap();

    // The upstream accepted the request: the host substituted the real key.
    let seen = mock.last_request().expect("the probe reached the upstream");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let report: serde_json::Value = serde_json::from_str(&resp.content).unwrap();
    assert_eq!(report["probe"]["response"]["status"], 200, "{report}");
    // The guest saw only the placeholder it wrote.
    assert_eq!(
        report["probe"]["sent_headers"],
        serde_json::json!(["authorization: Bearer {{secret:api_key}}"])
    );
    assert_eq!(report["env"], serde_json::json!([]));
    assert!(
        !resp.content.contains(KEY),
        "the guest saw the key: {report}"
    );

    // Nor did anything that left the process as logs or events.
    let snapshot = serde_json::to_string(&registry.snapshot()).unwrap();
    assert!(!snapshot.contains(KEY));
    while let Ok(tamma_registry::events::Received::Event(e)) = events.try_recv() {
        assert!(!serde_json::to_string(&e).unwrap().contains(KEY));
    }
    registry.shutdown().await;
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("snoop"), "logs were captured: {logs}");
    assert!(!logs.contains(KEY), "a log line carries the key");
}
