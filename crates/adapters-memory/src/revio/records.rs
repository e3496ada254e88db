//! What the simulator remembers of each reference.

use keel_domain::wallet::{Checkout, Money, ProviderEventType, ProviderStatus};

/// A deposit (checkout) or a payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ItemKind {
    /// A checkout, with what was answered to its creation.
    Deposit(Checkout),
    /// A payout to `destination`.
    Payout {
        /// Where the money goes.
        destination: String,
    },
}

impl ItemKind {
    /// The event type reporting this kind of item ending so.
    pub(super) fn event(&self, succeeded: bool) -> ProviderEventType {
        match (self, succeeded) {
            (Self::Deposit(_), true) => ProviderEventType::DepositSucceeded,
            (Self::Deposit(_), false) => ProviderEventType::DepositFailed,
            (Self::Payout { .. }, true) => ProviderEventType::PayoutSucceeded,
            (Self::Payout { .. }, false) => ProviderEventType::PayoutFailed,
        }
    }

    /// The reason a failure of this kind of item reports.
    pub(super) fn failure_reason(&self) -> &'static str {
        match self {
            Self::Deposit(_) => "payment declined (simulated)",
            Self::Payout { .. } => "destination refused the payout (simulated)",
        }
    }
}

/// One checkout or payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// What it is.
    pub kind: ItemKind,
    /// How much.
    pub money: Money,
    /// Where it stands.
    pub status: ProviderStatus,
}
