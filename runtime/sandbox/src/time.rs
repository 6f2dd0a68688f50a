//! Time helpers shared by the runtime's crates: Unix timestamps, and durations
//! written as milliseconds in serialized answers (snapshots, events, errors).

use std::time::{Duration, SystemTime};

/// Milliseconds since the Unix epoch. A clock before 1970 is a misconfigured
/// host, not a reason to fail: it reads as 0.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// [`unix_ms`] of now.
pub fn now_unix_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// Seconds since the Unix epoch, now (0 before 1970).
pub fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whole milliseconds, saturating at `u64::MAX`.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `serialize_with` helpers for durations.
pub mod serde_ms {
    use std::time::Duration;

    use serde::Serializer;

    /// `Option<Duration>` as whole milliseconds (`null` when absent).
    pub fn opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(super::millis(*d)),
            None => s.serialize_none(),
        }
    }

    /// A `Duration` as whole milliseconds both ways (`with = ...`), so settings
    /// stay plain integers in TOML and JSON.
    pub mod whole {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        /// Whole milliseconds, saturating.
        pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u64(crate::time::millis(*d))
        }

        /// From whole milliseconds.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            u64::deserialize(d).map(Duration::from_millis)
        }
    }

    /// A `Duration` as fractional milliseconds (latencies below 1 ms stay visible).
    pub fn fractional<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_the_epoch_reads_as_zero_and_millis_saturate() {
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(unix_ms(before), 0);
        assert_eq!(
            unix_ms(SystemTime::UNIX_EPOCH + Duration::from_millis(1500)),
            1500
        );
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
