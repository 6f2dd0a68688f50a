//! The HTTP server behind `tamma serve`: OpenAI-compatible gateway, admin API,
//! health probes and metrics. (Being built.)

pub mod config;

pub use config::ServerConfig;
