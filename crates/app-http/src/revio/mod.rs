//! Revio over HTTP: the provider client, the webhook sender and the `keel revio-sim` stub.
//!
//! - [`RevioHttpClient`]: the [`PaymentProvider`](keel_domain::wallet::PaymentProvider) against
//!   a provider base URL (`/v1/checkouts`, `/v1/payouts`, `/v1/references/{reference}`).
//! - [`HttpWebhookSink`]: POSTs the simulator's signed webhooks to keel.
//! - [`run_simulator`] / [`simulator_config`] / [`simulator_server`]: the stub provider, a
//!   [`SimulatedRevio`](keel_adapters_memory::revio::SimulatedRevio) behind those routes plus
//!   `GET`/`PUT /v1/sim/behaviour`.
//!
//! Plain HTTP only: `reqwest` is built without TLS, enough for the loopback simulator; a real
//! provider URL over HTTPS needs a TLS feature first.

mod client;
mod simulator;
mod sink;
mod wire;

pub use client::{DEFAULT_PROVIDER_TIMEOUT, RevioHttpClient};
pub use simulator::{
    build_simulator, run_dev_simulator, run_simulator, simulator_config, simulator_server,
};
pub use sink::{DEFAULT_WEBHOOK_TIMEOUT, HttpWebhookSink};
