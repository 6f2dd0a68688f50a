//! `test-provider`: behaviour driven by configuration and per-request metadata, for
//! host tests of the circuit breaker, health checks and instance lifecycle.
//!
//! Config keys:
//! - `reply`: answer prefix (default `ok`); answers are `<reply>:<last user message>`.
//! - `init_fail`: an error-code name (e.g. `invalid-api-key`); `initialize` fails with it.
//! - `init_hang_ms`: sleep this long in `initialize`.
//! - `health`: `healthy` | `degraded` | `unhealthy` (default `healthy`).
//! - `health_hang_ms`: sleep this long in `health-check`.
//! - `dispose_hang_ms`: sleep this long in `dispose`.
//! - `models`: comma-separated model ids (default `test-1`).
//!
//! Request metadata keys:
//! - `fail`: an error-code name; the request fails with that code (`retryable` per
//!   the SDK defaults; `retry_after_ms` sets `retry-after-ms`).
//! - `hang_ms`: sleep this long before answering.
//! - `trap` = `1`: panic (the instance traps).
//! - `set_health`: `healthy` | `degraded` | `unhealthy`; changes the status reported
//!   from then on, and the request is answered normally.
//! - `spin` = `1`: busy-loop forever.

use std::time::Duration;

use tamma_guest_sdk::{
    export_provider, info, last_user_message, Capabilities, CompletionRequest, CompletionResponse,
    Config, ErrorCode, Health, HealthStatus, ModelInfo, Provider, ProviderError, Usage,
};

struct TestProvider {
    reply: String,
    health: HealthStatus,
    health_hang_ms: u64,
    dispose_hang_ms: u64,
    models: Vec<String>,
    counter: u64,
}

fn sleep_ms(ms: u64) {
    if ms > 0 {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

fn parse_error_code(name: &str) -> Result<ErrorCode, ProviderError> {
    ErrorCode::from_name(name)
        .ok_or_else(|| ProviderError::invalid_request(format!("unknown error code `{name}`")))
}

fn parse_health(name: &str) -> Result<HealthStatus, ProviderError> {
    HealthStatus::from_name(name)
        .ok_or_else(|| ProviderError::invalid_request(format!("unknown health status `{name}`")))
}

fn metadata_u64(request: &CompletionRequest, key: &str) -> Result<Option<u64>, ProviderError> {
    request
        .metadata(key)
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ProviderError::invalid_request(format!("metadata `{key}` must be an integer"))
            })
        })
        .transpose()
}

impl Provider for TestProvider {
    fn initialize(config: Config) -> Result<Self, ProviderError> {
        sleep_ms(config.get_u64("init_hang_ms")?.unwrap_or(0));
        if let Some(code) = config.get("init_fail") {
            let code = parse_error_code(code)?;
            return Err(ProviderError::from_code(
                code,
                format!("initialize failed on purpose ({})", code.name()),
            ));
        }
        let health = parse_health(config.get_or("health", "healthy"))?;
        let models = config
            .get_list("models")
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| vec!["test-1".to_string()]);
        Ok(TestProvider {
            reply: config.get_or("reply", "ok").to_string(),
            health,
            health_hang_ms: config.get_u64("health_hang_ms")?.unwrap_or(0),
            dispose_hang_ms: config.get_u64("dispose_hang_ms")?.unwrap_or(0),
            models,
            counter: 0,
        })
    }

    fn capabilities(&self) -> Capabilities {
        let models = self
            .models
            .iter()
            .map(|id| ModelInfo::new(id.as_str(), 8192, 4096))
            .collect();
        Capabilities::from_models(models).with_features(["test"])
    }

    fn complete(
        &mut self,
        request: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        if request.metadata("spin") == Some("1") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if request.metadata("trap") == Some("1") {
            panic!("deliberate trap");
        }
        sleep_ms(metadata_u64(&request, "hang_ms")?.unwrap_or(0));
        if let Some(status) = request.metadata("set_health") {
            self.health = parse_health(status)?;
            info!("health set to {}", self.health.name());
        }
        if let Some(code) = request.metadata("fail") {
            let code = parse_error_code(code)?;
            return Err(ProviderError::from_code(
                code,
                format!("request failed on purpose ({})", code.name()),
            )
            .with_retry_after_ms(metadata_u64(&request, "retry_after_ms")?));
        }
        let content = format!(
            "{}:{}",
            self.reply,
            last_user_message(&request).unwrap_or("")
        );
        self.counter += 1;
        let model = if request.model.is_empty() {
            self.models[0].clone()
        } else {
            request.model.clone()
        };
        let input = request
            .messages
            .iter()
            .map(|m| m.content.split_whitespace().count() as u32)
            .sum();
        let output = content.split_whitespace().count() as u32;
        Ok(
            CompletionResponse::new(format!("test-{}", self.counter), model, content)
                .with_usage(Usage::from_counts(input, output)),
        )
    }

    fn health_check(&self) -> Health {
        sleep_ms(self.health_hang_ms);
        Health::new(
            self.health,
            format!("test provider is {}", self.health.name()),
        )
    }

    fn dispose(&mut self) {
        sleep_ms(self.dispose_hang_ms);
    }
}

export_provider!(TestProvider);
