//! Registry events fanned out to any number of subscribers.
//!
//! Emitters must never be slowed down by observers: the registry emits from hot
//! paths (every circuit-breaker transition, every health change). So the bus is a
//! bounded `tokio::sync::broadcast` ring: `emit` is synchronous, never waits and
//! never fails, and a subscriber that falls more than `capacity` events behind
//! loses the oldest ones and is told how many it missed, instead of holding
//! memory or back-pressuring the registry.

use std::fmt;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

/// How many events a subscriber of [`EventBus::new`] may fall behind.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Every slot is allocated up front, so an absurd configured capacity must not
/// turn into an absurd allocation.
pub const MAX_CAPACITY: usize = 1 << 16;

/// What happened in the registry. Serialized with a `type` tag in kebab-case,
/// e.g. `{"type":"circuit-breaker-opened","provider":"x","retry_after_ms":30000}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// A provider became visible.
    ProviderRegistered {
        /// Its name.
        provider: String,
        /// How it was registered (`config`, `plugin`, `api`, `environment`).
        source: String,
    },
    /// A provider was removed.
    ProviderUnregistered {
        /// Its name.
        provider: String,
    },
    /// A provider failed: a call it is to blame for, a failed (re)initialization,
    /// or a discovered version that could not be loaded.
    ProviderError {
        /// Its name.
        provider: String,
        /// The stable error code (`TRAP`, `TIMEOUT`, ...).
        code: String,
        /// What went wrong (never a secret).
        message: String,
    },
    /// A provider's debounced health status flipped.
    HealthStatusChanged {
        /// Its name.
        provider: String,
        /// The status before.
        from: String,
        /// The status now.
        to: String,
        /// The message of the check that flipped it.
        message: String,
    },
    /// A provider's circuit breaker opened: calls are refused for a while.
    CircuitBreakerOpened {
        /// Its name.
        provider: String,
        /// How long until probe calls are let through, ms.
        retry_after_ms: u64,
    },
    /// A provider's circuit breaker lets probe calls through.
    CircuitBreakerHalfOpen {
        /// Its name.
        provider: String,
    },
    /// A provider's circuit breaker closed: calls flow again.
    CircuitBreakerClosed {
        /// Its name.
        provider: String,
    },
    /// A provider's lifecycle state changed (`ready`, `stopped`, ...).
    ProviderStateChanged {
        /// Its name.
        provider: String,
        /// The state before.
        from: String,
        /// The state now.
        to: String,
    },
    /// A running provider was swapped for a new component or settings (hot reload).
    ProviderReplaced {
        /// Its name.
        provider: String,
        /// How the new version was registered.
        source: String,
        /// The new version, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        /// SHA-256 of the new component.
        component_sha256: String,
    },
}

impl Event {
    /// The provider the event is about.
    pub fn provider(&self) -> &str {
        match self {
            Event::ProviderRegistered { provider, .. }
            | Event::ProviderUnregistered { provider }
            | Event::ProviderError { provider, .. }
            | Event::HealthStatusChanged { provider, .. }
            | Event::CircuitBreakerOpened { provider, .. }
            | Event::CircuitBreakerHalfOpen { provider }
            | Event::CircuitBreakerClosed { provider }
            | Event::ProviderStateChanged { provider, .. }
            | Event::ProviderReplaced { provider, .. } => provider,
        }
    }

    /// The serialized `type` tag, for filtering and metrics labels without
    /// serializing the event.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ProviderRegistered { .. } => "provider-registered",
            Event::ProviderUnregistered { .. } => "provider-unregistered",
            Event::ProviderError { .. } => "provider-error",
            Event::HealthStatusChanged { .. } => "health-status-changed",
            Event::CircuitBreakerOpened { .. } => "circuit-breaker-opened",
            Event::CircuitBreakerHalfOpen { .. } => "circuit-breaker-half-open",
            Event::CircuitBreakerClosed { .. } => "circuit-breaker-closed",
            Event::ProviderStateChanged { .. } => "provider-state-changed",
            Event::ProviderReplaced { .. } => "provider-replaced",
        }
    }
}

/// An event as delivered. `seq` starts at 1 and increases by one per emitted
/// event on a bus (whether or not anyone was subscribed), so gaps a subscriber
/// sees in `seq` are exactly the events it missed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventEnvelope {
    /// Position in the bus's sequence, from 1.
    pub seq: u64,
    /// When it was emitted (Unix ms).
    pub at_unix_ms: u64,
    /// What happened (flattened: its `type` tag and fields sit beside `seq`).
    #[serde(flatten)]
    pub event: Event,
}

/// The bus registry events are emitted on and subscribed to. Cheap to clone;
/// clones share one channel and one sequence.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    sender: broadcast::Sender<EventEnvelope>,
    /// Seq assignment and send happen under one lock so that delivery order
    /// equals seq order even with concurrent emitters. The section is a
    /// counter bump plus a non-blocking ring write.
    last_seq: Mutex<u64>,
    capacity: usize,
}

impl EventBus {
    /// A bus with [`DEFAULT_CAPACITY`].
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// `capacity` is how many events a subscriber may fall behind before it
    /// starts missing some. Clamped to `1..=MAX_CAPACITY`; tokio rounds it up
    /// to a power of two.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let (sender, _) = broadcast::channel(capacity);
        Self {
            inner: Arc::new(Inner {
                sender,
                last_seq: Mutex::new(0),
                capacity,
            }),
        }
    }

    /// Publish an event and return its seq. Never blocks, never fails; with no
    /// subscribers the event is simply dropped.
    pub fn emit(&self, event: Event) -> u64 {
        let mut last_seq = self
            .inner
            .last_seq
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *last_seq += 1;
        let envelope = EventEnvelope {
            seq: *last_seq,
            at_unix_ms: tamma_sandbox::time::now_unix_ms(),
            event,
        };
        // Err only means "no subscribers right now", which is fine.
        let _ = self.inner.sender.send(envelope);
        *last_seq
    }

    /// Receive every event emitted from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.inner.sender.subscribe(),
        }
    }

    /// How many subscriptions are open.
    pub fn subscriber_count(&self) -> usize {
        self.inner.sender.receiver_count()
    }

    /// The capacity as requested (after clamping), before tokio's rounding.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("capacity", &self.inner.capacity)
            .field("subscribers", &self.subscriber_count())
            .finish()
    }
}

/// What a subscriber gets next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// The next event.
    Event(EventEnvelope),
    /// The subscriber fell behind and this many events were dropped for it;
    /// the next receive continues with the oldest event still buffered.
    Missed(u64),
}

/// Why [`Subscription::try_recv`] returned no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing new yet.
    Empty,
    /// Every `EventBus` handle is gone and the buffer is drained.
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "no event available",
            TryRecvError::Closed => "event bus closed",
        })
    }
}

impl std::error::Error for TryRecvError {}

/// A subscriber's cursor into the bus. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<EventEnvelope>,
}

impl Subscription {
    /// Wait for the next event. `None` once every `EventBus` handle is dropped
    /// and everything buffered has been read. Cancel-safe: dropping the future
    /// loses no event.
    pub async fn recv(&mut self) -> Option<Received> {
        match self.rx.recv().await {
            Ok(envelope) => Some(Received::Event(envelope)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Received::Missed(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event if one is buffered, without waiting.
    pub fn try_recv(&mut self) -> Result<Received, TryRecvError> {
        match self.rx.try_recv() {
            Ok(envelope) => Ok(Received::Event(envelope)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Ok(Received::Missed(n)),
            Err(broadcast::error::TryRecvError::Empty) => Err(TryRecvError::Empty),
            Err(broadcast::error::TryRecvError::Closed) => Err(TryRecvError::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn registered(p: &str) -> Event {
        Event::ProviderRegistered {
            provider: p.into(),
            source: "file:///p.wasm".into(),
        }
    }

    fn all_variants() -> Vec<Event> {
        let p = || "openai".to_string();
        vec![
            registered("openai"),
            Event::ProviderUnregistered { provider: p() },
            Event::ProviderError {
                provider: p(),
                code: "trap".into(),
                message: "boom".into(),
            },
            Event::HealthStatusChanged {
                provider: p(),
                from: "healthy".into(),
                to: "degraded".into(),
                message: "slow".into(),
            },
            Event::CircuitBreakerOpened {
                provider: p(),
                retry_after_ms: 30_000,
            },
            Event::CircuitBreakerHalfOpen { provider: p() },
            Event::CircuitBreakerClosed { provider: p() },
            Event::ProviderStateChanged {
                provider: p(),
                from: "loading".into(),
                to: "ready".into(),
            },
            Event::ProviderReplaced {
                provider: p(),
                source: "plugin".into(),
                version: Some("2.0.0".into()),
                component_sha256: "ab".into(),
            },
        ]
    }

    fn event(r: Received) -> EventEnvelope {
        match r {
            Received::Event(e) => e,
            Received::Missed(n) => panic!("unexpectedly missed {n}"),
        }
    }

    #[test]
    fn bus_types_are_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<EventBus>();
        assert_send_sync::<Subscription>();
        assert_send_sync::<EventEnvelope>();
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_event_in_order() {
        let bus = EventBus::new();
        let mut subs: Vec<_> = (0..3).map(|_| bus.subscribe()).collect();
        assert_eq!(bus.subscriber_count(), 3);
        let events = all_variants();
        for e in &events {
            bus.emit(e.clone());
        }
        for sub in &mut subs {
            for (i, expected) in events.iter().enumerate() {
                let got = event(sub.recv().await.unwrap());
                assert_eq!(got.seq, i as u64 + 1);
                assert_eq!(&got.event, expected);
                assert!(got.at_unix_ms > 0);
            }
            assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
        }
    }

    #[tokio::test]
    async fn late_subscriber_sees_only_later_events() {
        let bus = EventBus::new();
        assert_eq!(
            bus.emit(registered("a")),
            1,
            "emit with no subscribers still works"
        );
        let mut early = bus.subscribe();
        bus.emit(registered("b"));
        let mut late = bus.subscribe();
        bus.emit(registered("c"));
        assert_eq!(event(late.recv().await.unwrap()).event.provider(), "c");
        assert_eq!(late.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(event(early.recv().await.unwrap()).seq, 2);
        assert_eq!(event(early.recv().await.unwrap()).seq, 3);
    }

    #[tokio::test]
    async fn slow_subscriber_is_told_what_it_missed() {
        let bus = EventBus::with_capacity(4);
        let mut slow = bus.subscribe();
        let mut fast = bus.subscribe();
        // Nobody reads while these are emitted; on a current-thread runtime a
        // blocking emit would hang the test here.
        for i in 0..10 {
            bus.emit(registered(&format!("p{i}")));
            assert_eq!(event(fast.try_recv().unwrap()).seq, i + 1);
        }
        assert_eq!(slow.recv().await, Some(Received::Missed(6)));
        for seq in 7..=10 {
            let e = event(slow.recv().await.unwrap());
            assert_eq!(e.seq, seq);
            assert_eq!(e.event.provider(), format!("p{}", seq - 1));
        }
        assert_eq!(slow.try_recv(), Err(TryRecvError::Empty));
        bus.emit(registered("next"));
        assert_eq!(event(slow.try_recv().unwrap()).seq, 11);
    }

    #[test]
    fn try_recv_reports_missed_too() {
        let bus = EventBus::with_capacity(2);
        let mut sub = bus.subscribe();
        for _ in 0..5 {
            bus.emit(registered("x"));
        }
        assert_eq!(sub.try_recv(), Ok(Received::Missed(3)));
        assert_eq!(event(sub.try_recv().unwrap()).seq, 4);
    }

    #[test]
    fn capacity_is_clamped() {
        assert_eq!(EventBus::with_capacity(0).capacity(), 1);
        assert_eq!(EventBus::with_capacity(usize::MAX).capacity(), MAX_CAPACITY);
        assert_eq!(EventBus::default().capacity(), DEFAULT_CAPACITY);
    }

    #[tokio::test]
    async fn dropping_subscription_unsubscribes() {
        let bus = EventBus::new();
        let a = bus.subscribe();
        let b = bus.subscribe();
        let clone = bus.clone();
        assert_eq!(clone.subscriber_count(), 2);
        drop(a);
        assert_eq!(bus.subscriber_count(), 1);
        drop(b);
        assert_eq!(bus.subscriber_count(), 0);
        bus.emit(registered("nobody listens"));
    }

    #[tokio::test]
    async fn subscription_ends_when_bus_is_dropped() {
        let bus = EventBus::new();
        let mut sub = bus.subscribe();
        bus.emit(registered("last"));
        drop(bus);
        assert_eq!(
            event(sub.recv().await.unwrap()).seq,
            1,
            "buffered events still delivered"
        );
        assert_eq!(sub.recv().await, None);
        assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
    }

    #[test]
    fn json_type_tags_are_exact() {
        let expected = [
            "provider-registered",
            "provider-unregistered",
            "provider-error",
            "health-status-changed",
            "circuit-breaker-opened",
            "circuit-breaker-half-open",
            "circuit-breaker-closed",
            "provider-state-changed",
            "provider-replaced",
        ];
        let events = all_variants();
        assert_eq!(events.len(), expected.len());
        for (e, tag) in events.iter().zip(expected) {
            let json = serde_json::to_value(e).unwrap();
            assert_eq!(json["type"], tag);
            assert_eq!(e.kind(), tag);
            assert_eq!(json["provider"], "openai");
            assert_eq!(e.provider(), "openai");
        }
        let opened = serde_json::to_value(&events[4]).unwrap();
        assert_eq!(
            opened,
            serde_json::json!({"type": "circuit-breaker-opened", "provider": "openai", "retry_after_ms": 30000})
        );
    }

    #[test]
    fn envelope_flattens_event() {
        let env = EventEnvelope {
            seq: 7,
            at_unix_ms: 1_700_000_000_000,
            event: Event::HealthStatusChanged {
                provider: "p".into(),
                from: "healthy".into(),
                to: "unhealthy".into(),
                message: "timeout".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&env).unwrap(),
            serde_json::json!({
                "seq": 7, "at_unix_ms": 1_700_000_000_000u64, "type": "health-status-changed",
                "provider": "p", "from": "healthy", "to": "unhealthy", "message": "timeout"
            })
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_emitters_get_unique_increasing_seqs() {
        const TASKS: u64 = 4;
        const PER_TASK: u64 = 250;
        let bus = EventBus::with_capacity(2048);
        let mut sub = bus.subscribe();
        let reader = tokio::spawn(async move {
            let mut seqs = Vec::new();
            while seqs.len() < (TASKS * PER_TASK) as usize {
                seqs.push(event(sub.recv().await.unwrap()).seq);
            }
            seqs
        });
        let emitters: Vec<_> = (0..TASKS)
            .map(|t| {
                let bus = bus.clone();
                tokio::spawn(async move {
                    for i in 0..PER_TASK {
                        bus.emit(registered(&format!("t{t}-{i}")));
                        if i % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for e in emitters {
            e.await.unwrap();
        }
        let seqs = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seqs, (1..=TASKS * PER_TASK).collect::<Vec<_>>());
    }
}
