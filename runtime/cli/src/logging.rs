//! Where log lines go and how they look: stderr, text or JSON lines, the level
//! from `TAMMA_LOG`; plus the OpenTelemetry layer when traces are exported
//! ([`crate::telemetry`]).
//!
//! The JSON format is ours rather than tracing-subscriber's because that one
//! writes every `?`-recorded value as a Rust `Debug` string
//! (`"providers":"[\"echo\"]"`). Here each line is one object with
//! `timestamp` (RFC 3339, UTC), `level`, `target`, `message`, the event's fields
//! as real JSON values (numbers, booleans; a value whose text is a JSON array or
//! object, such as a list of names or a guest's `fields`, is embedded as such),
//! the `spans` it happened in (root first, each with its fields), and
//! `trace_id`/`span_id` when traces are exported.
//!
//! Colour only when stderr is a terminal and `NO_COLOR` is unset.

use std::fmt;
use std::io::IsTerminal as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether stderr gets ANSI colours.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A layer of the process's subscriber, with its own filter.
pub type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Install the process's subscriber: stderr in `format`, `default_level` unless
/// `TAMMA_LOG` says otherwise, and `extra` (the OpenTelemetry layer) beside it,
/// each with its own filter (a span enabled for one is not shown by the other).
pub fn init(format: LogFormat, default_level: &str, extra: Option<BoxedLayer>) {
    let filter =
        EnvFilter::try_from_env("TAMMA_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let fmt_layer: BoxedLayer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(colour())
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    // The OpenTelemetry layer first, so that its span data exists when a line
    // is formatted (for `trace_id`).
    let layers: Vec<BoxedLayer> = extra.into_iter().chain([fmt_layer]).collect();
    let _ = tracing_subscriber::registry().with(layers).try_init();
}

/// The current time as the log lines write it (RFC 3339, UTC, microseconds).
pub fn timestamp() -> String {
    let mut out = String::with_capacity(32);
    let _ = SystemTime.format_time(&mut Writer::new(&mut out));
    out
}

/// A line in the JSON format written outside `tracing` (the `listening` line,
/// printed whatever the level): same keys as every other line.
pub fn json_line(level: &str, message: &str, fields: Map<String, Value>) -> String {
    let mut obj = Map::new();
    obj.insert("timestamp".into(), timestamp().into());
    obj.insert("level".into(), level.into());
    obj.insert("target".into(), "tamma::serve".into());
    obj.insert("message".into(), message.into());
    obj.extend(fields);
    Value::Object(obj).to_string()
}

/// The JSON line format (see the module docs).
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut obj = Map::new();
        obj.insert("timestamp".into(), timestamp().into());
        obj.insert("level".into(), meta.level().as_str().into());
        obj.insert("target".into(), meta.target().into());
        let mut fields = JsonVisitor::default();
        event.record(&mut fields);
        obj.insert(
            "message".into(),
            fields.message.take().unwrap_or_default().into(),
        );
        for (k, v) in fields.values {
            // An event field never hides the line's own keys.
            obj.entry(k).or_insert(v);
        }
        if let Some(scope) = ctx.event_scope() {
            let mut spans = Vec::new();
            for span in scope.from_root() {
                let mut s = Map::new();
                s.insert("name".into(), span.name().into());
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<N>>() {
                    // JsonFields wrote them as one JSON object.
                    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(f) {
                        s.extend(m);
                    }
                }
                if let Some((trace_id, span_id)) = crate::telemetry::ids(&ext) {
                    obj.insert("trace_id".into(), trace_id.into());
                    obj.insert("span_id".into(), span_id.into());
                }
                spans.push(Value::Object(s));
            }
            if !spans.is_empty() {
                obj.insert("spans".into(), Value::Array(spans));
            }
        }
        writeln!(writer, "{}", Value::Object(obj))
    }
}

/// An event's fields as JSON values.
#[derive(Default)]
struct JsonVisitor {
    message: Option<String>,
    values: Vec<(String, Value)>,
}

impl JsonVisitor {
    fn put(&mut self, field: &Field, v: Value) {
        if field.name() == "message" {
            // The message is text, whatever it looks like (a guest's included).
            self.message = Some(match v {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.values.push((field.name().to_string(), v));
        }
    }
}

/// A value recorded as text (`%` or `?`): embedded as JSON when it is a JSON
/// array or object (a list of names, a guest's fields), else a string.
fn text_value(text: String) -> Value {
    let t = text.trim_start();
    if t.starts_with('[') || t.starts_with('{') {
        if let Ok(v @ (Value::Array(_) | Value::Object(_))) = serde_json::from_str::<Value>(&text) {
            return v;
        }
    }
    Value::String(text)
}

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.put(field, Value::String(text));
        } else {
            self.put(field, text_value(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities have no JSON number: they become null.
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_objects_are_embedded_other_text_stays_a_string() {
        assert_eq!(
            text_value(format!("{:?}", vec!["echo", "openai"])),
            serde_json::json!(["echo", "openai"])
        );
        assert_eq!(
            text_value(r#"{"k":"v"}"#.into()),
            serde_json::json!({"k": "v"})
        );
        assert_eq!(
            text_value("[not json".into()),
            Value::String("[not json".into())
        );
        assert_eq!(text_value("plain".into()), Value::String("plain".into()));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = timestamp();
        assert!(t.ends_with('Z') && t.contains('T'), "{t}");
    }
}
