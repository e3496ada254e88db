//! Admin adjustments with maker-checker: above a configured amount a second admin approves.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::money::Money;
use super::operation::{Direction, OperationId};
use crate::identity::user::UserId;

/// Identity of an adjustment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AdjustmentId(pub Uuid);

/// Where an adjustment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentStatus {
    /// Waits for a second admin.
    PendingApproval,
    /// Booked.
    Applied,
}

impl AdjustmentStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingApproval => "pending_approval",
            Self::Applied => "applied",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "pending_approval" => Some(Self::PendingApproval),
            "applied" => Some(Self::Applied),
            _ => None,
        }
    }
}

/// A correction of one wallet by an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    /// Identity.
    pub id: AdjustmentId,
    /// The wallet.
    pub user_id: UserId,
    /// How much.
    pub money: Money,
    /// Credit or debit of the wallet.
    pub direction: Direction,
    /// Why (required, audited).
    pub reason: String,
    /// The admin who proposed it.
    pub proposed_by: UserId,
    /// Whether a second admin must approve it (its amount is above the threshold).
    pub needs_approval: bool,
    /// The admin who approved it (the proposer for small adjustments).
    pub approved_by: Option<UserId>,
    /// Where it stands.
    pub status: AdjustmentStatus,
    /// The operation that booked it, once applied.
    pub operation_id: Option<OperationId>,
    /// Proposed.
    pub created_at: DateTime<Utc>,
}

/// The maker-checker rule: adjustments above `approval_threshold` minor units need a second
/// admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// Largest amount one admin may book alone.
    pub approval_threshold: i64,
}

impl ApprovalPolicy {
    /// Whether an adjustment of `money` needs a second admin.
    pub fn needs_approval(&self, money: &Money) -> bool {
        money.amount.minor() > self.approval_threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_amounts_above_the_threshold_need_a_second_admin() {
        let policy = ApprovalPolicy {
            approval_threshold: 10_000,
        };
        let at = |minor| Money::parse(minor, "ZAR").expect("valid");
        assert!(!policy.needs_approval(&at(10_000)));
        assert!(policy.needs_approval(&at(10_001)));
    }
}
