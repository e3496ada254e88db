//! A simulated Revio payment provider: checkouts and payouts that complete after a delay and
//! report through signed webhooks, with knobs for the failures a real provider produces.
//!
//! - [`SimulatedRevio`]: the [`PaymentProvider`](keel_domain::wallet::PaymentProvider).
//! - [`SimBehaviour`]: outcomes, call failures, duplicate / out-of-order / missing webhooks.
//! - [`SimSigning`]: Revio RSA or Standard Webhooks signatures.
//! - [`WebhookSink`]: where signed webhooks go (HTTP in the server, [`MemoryWebhookSink`] here),
//!   retried with [`RetryPolicy`] on errors and 5xx.

mod behaviour;
mod delivery;
mod records;
mod signing;
mod simulator;
mod sink;

#[cfg(test)]
mod tests;

pub use behaviour::{SimBehaviour, SimCalls, SimOutcome};
pub use delivery::RetryPolicy;
pub use signing::SimSigning;
pub use simulator::SimulatedRevio;
pub use sink::{MemoryWebhookSink, SignedWebhook, WebhookSink};
