//! The JSON bodies of the provider API, shared by the client and the stub server.

use keel_domain::wallet::{Money, OperationId, ProviderError, ProviderStatus};
use serde::{Deserialize, Serialize};

/// `POST /v1/checkouts`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CheckoutBody {
    pub reference: OperationId,
    pub amount_minor: i64,
    pub currency: String,
}

/// `POST /v1/payouts`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PayoutBody {
    pub reference: OperationId,
    pub amount_minor: i64,
    pub currency: String,
    pub destination: String,
}

/// A reference's state on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireStatus {
    Pending,
    Succeeded,
    Failed,
    Unknown,
}

/// `GET /v1/references/{reference}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StatusBody {
    pub status: WireStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An error answer of the stub: `{"error": "..."}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: String,
}

impl From<&ProviderStatus> for StatusBody {
    fn from(status: &ProviderStatus) -> Self {
        let only = |status| Self {
            status,
            amount_minor: None,
            currency: None,
            reason: None,
        };
        match status {
            ProviderStatus::Pending => only(WireStatus::Pending),
            ProviderStatus::Unknown => only(WireStatus::Unknown),
            ProviderStatus::Succeeded { money } => Self {
                amount_minor: Some(money.amount.minor()),
                currency: Some(money.currency.to_string()),
                ..only(WireStatus::Succeeded)
            },
            ProviderStatus::Failed { reason } => Self {
                reason: Some(reason.clone()),
                ..only(WireStatus::Failed)
            },
        }
    }
}

impl TryFrom<StatusBody> for ProviderStatus {
    type Error = ProviderError;

    /// A malformed answer is `Unavailable`: the provider misbehaves, a later call may pass.
    fn try_from(body: StatusBody) -> Result<Self, Self::Error> {
        Ok(match body.status {
            WireStatus::Pending => Self::Pending,
            WireStatus::Unknown => Self::Unknown,
            WireStatus::Failed => Self::Failed {
                reason: body.reason.unwrap_or_default(),
            },
            WireStatus::Succeeded => {
                let (Some(amount), Some(currency)) = (body.amount_minor, body.currency) else {
                    return Err(ProviderError::Unavailable(
                        "succeeded status without an amount".to_owned(),
                    ));
                };
                let money = Money::parse(amount, &currency).map_err(|e| {
                    ProviderError::Unavailable(format!("succeeded status with bad money: {e}"))
                })?;
                Self::Succeeded { money }
            }
        })
    }
}
