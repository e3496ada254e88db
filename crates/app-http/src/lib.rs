//! keel's HTTP wiring: actix-web handlers, middleware, configuration and start-up.
//!
//! This crate is thin by design: rules live in `keel-domain`, storage in the adapter crates.
//! Here requests are parsed into domain types, use cases are called with the configured ports,
//! and outcomes are mapped to HTTP in one place ([`http::problem`]).

pub mod background;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod http;
pub mod openapi;
pub mod products;
pub mod redact;
pub mod revio;
pub mod routes;
pub mod server;
pub mod state;
pub mod telemetry;

pub use config::Settings;
pub use server::{Application, StartupError};
