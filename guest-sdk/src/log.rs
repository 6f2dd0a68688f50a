//! Logging through the host's `log` import.

use crate::bindings::tamma::provider::host;
use crate::LogLevel;

/// Sends one log record to the host. Prefer the [`info!`](crate::info) family of macros.
pub fn log(level: LogLevel, message: &str, fields: &[(String, String)]) {
    host::log(level, message, fields);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log {
    ($level:ident, { $($key:expr => $value:expr),* $(,)? }, $($arg:tt)+) => {
        $crate::log(
            $crate::LogLevel::$level,
            &::std::format!($($arg)+),
            &[$((::std::string::ToString::to_string(&$key), ::std::string::ToString::to_string(&$value))),*],
        )
    };
    ($level:ident, $($arg:tt)+) => {
        $crate::log($crate::LogLevel::$level, &::std::format!($($arg)+), &[])
    };
}

/// Logs at `trace` level: `trace!("x = {}", x)` or `trace!({ "k" => v }, "msg")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::__log!(Trace, $($arg)+) };
}

/// Logs at `debug` level: `debug!("x = {}", x)` or `debug!({ "k" => v }, "msg")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::__log!(Debug, $($arg)+) };
}

/// Logs at `info` level: `info!("x = {}", x)` or `info!({ "k" => v }, "msg")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::__log!(Info, $($arg)+) };
}

/// Logs at `warn` level: `warn!("x = {}", x)` or `warn!({ "k" => v }, "msg")`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::__log!(Warn, $($arg)+) };
}

/// Logs at `error` level: `error!("x = {}", x)` or `error!({ "k" => v }, "msg")`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::__log!(Error, $($arg)+) };
}
