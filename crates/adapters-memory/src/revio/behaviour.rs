//! The simulator's knobs, settable at runtime (JSON through the stub server).

use serde::{Deserialize, Serialize};

/// How a checkout or payout ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimOutcome {
    /// The item succeeds (`*.succeeded`).
    #[default]
    Succeed,
    /// The item fails (`*.failed`).
    Fail,
}

/// How the provider's API calls answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimCalls {
    /// Calls work.
    #[default]
    Ok,
    /// Calls fail with `ProviderError::Unavailable`.
    Unavailable,
    /// Calls fail with `ProviderError::Rejected`.
    Reject,
    /// Calls hang for `timeout_ms`, then fail with `ProviderError::Unavailable`.
    Timeout,
}

/// What the simulator does; read when a call arrives (a completion keeps the values of its
/// creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimBehaviour {
    /// How items end.
    pub outcome: SimOutcome,
    /// How calls answer.
    pub calls: SimCalls,
    /// How long a `timeout` call hangs, in milliseconds.
    pub timeout_ms: u64,
    /// Deliver every event twice with the same event id.
    pub duplicate_webhooks: bool,
    /// After the real event, also send the opposite outcome's event (new event id).
    pub out_of_order: bool,
    /// Send webhooks at all; `false` completes items silently (reconciliation finds them).
    pub send_webhooks: bool,
    /// Time from creation to completion, in milliseconds.
    pub delay_ms: u64,
}

/// Default completion delay, as `KEEL_REVIO_SIM_DELAY_MS`.
const DEFAULT_DELAY_MS: u64 = 200;
/// Default hang of a `timeout` call: longer than a client's default 5 s timeout.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

impl Default for SimBehaviour {
    fn default() -> Self {
        Self {
            outcome: SimOutcome::Succeed,
            calls: SimCalls::Ok,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            duplicate_webhooks: false,
            out_of_order: false,
            send_webhooks: true,
            delay_ms: DEFAULT_DELAY_MS,
        }
    }
}

impl SimBehaviour {
    /// The default behaviour completing items after `delay_ms`.
    pub fn with_delay_ms(delay_ms: u64) -> Self {
        Self {
            delay_ms,
            ..Self::default()
        }
    }
}
