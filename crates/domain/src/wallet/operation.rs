//! Wallet operations: what a user sees in their history (a deposit, a withdrawal, a reversal,
//! an adjustment), each with a status, backed by the ledger transactions it books.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::money::Money;
use super::transaction::TransactionId;
use crate::identity::user::UserId;

/// Identity of an operation; also the reference the payment provider knows it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OperationId(pub Uuid);

/// What kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Money in through the provider.
    Deposit,
    /// Money out through the provider.
    Withdrawal,
    /// An admin's reversal of an earlier transaction.
    Reversal,
    /// An admin's correction.
    Adjustment,
}

/// Whether an operation adds to or takes from the wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Adds to the wallet.
    Credit,
    /// Takes from the wallet.
    Debit,
}

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    /// Waiting for the provider (a deposit to be paid, a withdrawal's payout; its funds held).
    Pending,
    /// Done: the money moved.
    Succeeded,
    /// Did not happen: nothing moved (a withdrawal's hold was released).
    Failed,
}

macro_rules! stored_names {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Stored (and wire) name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }

            /// Parses a stored or query name.
            pub fn parse(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

stored_names!(OperationKind { Deposit => "deposit", Withdrawal => "withdrawal", Reversal => "reversal", Adjustment => "adjustment" });
stored_names!(Direction { Credit => "credit", Debit => "debit" });
stored_names!(OperationStatus { Pending => "pending", Succeeded => "succeeded", Failed => "failed" });

impl OperationStatus {
    /// Whether the operation can still change.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending)
    }
}

/// A wallet operation as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Identity and provider reference.
    pub id: OperationId,
    /// The wallet owner.
    pub user_id: UserId,
    /// What it is.
    pub kind: OperationKind,
    /// Credit or debit of the wallet.
    pub direction: Direction,
    /// How much.
    pub money: Money,
    /// Where it stands.
    pub status: OperationStatus,
    /// Withdrawals: the payout destination given by the user.
    pub destination: Option<String>,
    /// Deposits: the provider's checkout reference.
    pub provider_reference: Option<String>,
    /// Withdrawals: the hold placed at once; others: the transaction that booked it.
    pub transaction_id: Option<TransactionId>,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
    /// Reversals and adjustments: the admin's reason.
    pub memo: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
}

impl Operation {
    /// A new operation of `kind` for `user`, pending, created at `at`.
    pub fn new(user: UserId, kind: OperationKind, money: Money, at: DateTime<Utc>) -> Self {
        let direction = match kind {
            OperationKind::Deposit => Direction::Credit,
            _ => Direction::Debit,
        };
        Self {
            id: OperationId(Uuid::now_v7()),
            user_id: user,
            kind,
            direction,
            money,
            status: OperationStatus::Pending,
            destination: None,
            provider_reference: None,
            transaction_id: None,
            failure_reason: None,
            memo: None,
            created_at: at,
            updated_at: at,
        }
    }
}

/// Filters of the transaction history; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Only this kind.
    pub kind: Option<OperationKind>,
    /// Only this status.
    pub status: Option<OperationStatus>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created strictly before.
    pub to: Option<DateTime<Utc>>,
}

impl HistoryFilter {
    /// Whether `operation` passes the filter.
    pub fn matches(&self, operation: &Operation) -> bool {
        self.kind.is_none_or(|k| k == operation.kind)
            && self.status.is_none_or(|s| s == operation.status)
            && self.from.is_none_or(|f| operation.created_at >= f)
            && self.to.is_none_or(|t| operation.created_at < t)
    }
}

/// A history position: the last item of the previous page (newest first, by creation time then
/// id), so pages stay stable while new operations arrive.
pub type HistoryCursor = (DateTime<Utc>, OperationId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in [
            OperationKind::Deposit,
            OperationKind::Withdrawal,
            OperationKind::Reversal,
            OperationKind::Adjustment,
        ] {
            assert_eq!(OperationKind::parse(kind.as_str()), Some(kind));
        }
        for status in [
            OperationStatus::Pending,
            OperationStatus::Succeeded,
            OperationStatus::Failed,
        ] {
            assert_eq!(OperationStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OperationStatus::parse("Pending"), None);
    }

    #[test]
    fn filters_combine() {
        let at = Utc::now();
        let money = Money::parse(10, "ZAR").expect("valid");
        let op = Operation::new(UserId(Uuid::now_v7()), OperationKind::Deposit, money, at);
        assert!(HistoryFilter::default().matches(&op));
        let deposits = HistoryFilter {
            kind: Some(OperationKind::Deposit),
            status: Some(OperationStatus::Pending),
            from: Some(at),
            to: Some(at + chrono::Duration::seconds(1)),
        };
        assert!(deposits.matches(&op));
        let later = HistoryFilter {
            from: Some(at + chrono::Duration::seconds(1)),
            ..HistoryFilter::default()
        };
        assert!(!later.matches(&op));
        let until = HistoryFilter {
            to: Some(at),
            ..HistoryFilter::default()
        };
        assert!(!until.matches(&op), "`to` is exclusive");
    }
}
