//! The ledger check: balances rebuilt from postings against the stored ones.

use serde::{Deserialize, Serialize};

use super::AccountRef;
use super::transaction::TransactionId;

/// An account whose stored balance differs from the sum of its postings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDrift {
    /// The account.
    pub account: AccountRef,
    /// Its stored balance.
    pub stored: i64,
    /// The sum of its postings.
    pub rebuilt: i64,
}

/// What [`super::LedgerStore::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerReport {
    /// Accounts checked.
    pub accounts: u64,
    /// Transactions checked.
    pub transactions: u64,
    /// Accounts whose stored balance ≠ rebuilt balance.
    pub drifted: Vec<AccountDrift>,
    /// Transactions whose postings do not sum to zero per currency (or have fewer than two).
    pub unbalanced: Vec<TransactionId>,
    /// Wallet accounts below zero.
    pub overdrawn: Vec<AccountRef>,
}

impl LedgerReport {
    /// Whether the ledger is consistent.
    pub fn is_consistent(&self) -> bool {
        self.drifted.is_empty() && self.unbalanced.is_empty() && self.overdrawn.is_empty()
    }
}
