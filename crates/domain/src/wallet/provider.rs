//! The `PaymentProvider` port (Revio or a simulator) and the events its webhooks carry.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::money::{Currency, Money};
use super::operation::OperationId;

/// A deposit checkout to open at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRequest {
    /// Our operation id: the provider's idempotency key and the reference its webhooks carry.
    pub reference: OperationId,
    /// How much the user pays in.
    pub money: Money,
}

/// An opened checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    /// The provider's id of the checkout.
    pub checkout_reference: String,
    /// Where the user pays, if the provider hosts a page.
    pub checkout_url: Option<String>,
}

/// A payout to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutRequest {
    /// Our operation id (idempotency key at the provider).
    pub reference: OperationId,
    /// How much leaves.
    pub money: Money,
    /// Where to (the user's bank account or wallet reference).
    pub destination: String,
}

/// What the provider knows of a reference (asked by reconciliation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ProviderStatus {
    /// Still in progress.
    Pending,
    /// Paid (deposit) or sent (payout), for this amount.
    Succeeded {
        /// The amount the provider moved.
        money: Money,
    },
    /// Failed.
    Failed {
        /// The provider's reason.
        reason: String,
    },
    /// The provider has no such reference.
    Unknown,
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Timeout, 5xx, connection refused: a later attempt may pass.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request: retrying cannot help.
    #[error("the payment provider refused: {0}")]
    Rejected(String),
}

/// The payment provider.
///
/// Every call is idempotent on the reference: calling twice for one operation opens one
/// checkout or sends one payout.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Opens a checkout for a deposit.
    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<Checkout, ProviderError>;

    /// Sends a payout.
    async fn create_payout(&self, request: &PayoutRequest) -> Result<(), ProviderError>;

    /// What the provider knows of `reference`.
    async fn status(&self, reference: OperationId) -> Result<ProviderStatus, ProviderError>;
}

/// The event types the provider sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProviderEventType {
    /// The user paid a deposit.
    #[serde(rename = "deposit.succeeded")]
    DepositSucceeded,
    /// A deposit failed or expired.
    #[serde(rename = "deposit.failed")]
    DepositFailed,
    /// A payout reached its destination.
    #[serde(rename = "payout.succeeded")]
    PayoutSucceeded,
    /// A payout failed.
    #[serde(rename = "payout.failed")]
    PayoutFailed,
}

impl ProviderEventType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DepositSucceeded => "deposit.succeeded",
            Self::DepositFailed => "deposit.failed",
            Self::PayoutSucceeded => "payout.succeeded",
            Self::PayoutFailed => "payout.failed",
        }
    }

    /// Whether the event reports success.
    pub fn succeeded(self) -> bool {
        matches!(self, Self::DepositSucceeded | Self::PayoutSucceeded)
    }
}

/// What the event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEventData {
    /// Our operation id.
    pub reference: OperationId,
    /// The amount, in minor units.
    pub amount_minor: i64,
    /// Its currency.
    pub currency: Currency,
    /// Why it failed, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A webhook's body: `{"id", "type", "created_at", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEvent {
    /// The provider's event id (unique; also in the signed headers).
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: ProviderEventType,
    /// When it happened at the provider.
    pub created_at: DateTime<Utc>,
    /// Details.
    pub data: ProviderEventData,
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn events_read_their_wire_form() {
        let reference = Uuid::now_v7();
        let body = format!(
            r#"{{"id":"evt_1","type":"payout.failed","created_at":"2026-11-26T10:00:00Z",
                "data":{{"reference":"{reference}","amount_minor":250,"currency":"ZAR","reason":"closed account"}}}}"#
        );
        let event: ProviderEvent = serde_json::from_str(&body).expect("parses");
        assert_eq!(event.event_type, ProviderEventType::PayoutFailed);
        assert_eq!(event.data.reference, OperationId(reference));
        assert_eq!(event.data.reason.as_deref(), Some("closed account"));
        assert!(
            serde_json::from_str::<ProviderEvent>(&body.replace("payout.failed", "payout.maybe"))
                .is_err()
        );
    }
}
