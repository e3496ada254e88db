//! The wallet's JSON shapes and how domain values map to them.

use chrono::{DateTime, Utc};
use keel_domain::wallet::{
    AccountRef, Adjustment, Balance, LedgerReport, Mismatch, Operation, Transaction,
    WebhookDelivery,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::routes::admin::AuditVerification;

/// `POST /wallet/deposits` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewDeposit {
    /// Minor units (cents), at least 1.
    pub amount_minor: i64,
    /// ISO 4217 code, e.g. `ZAR`.
    pub currency: String,
}

/// `POST /wallet/withdrawals` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewWithdrawal {
    /// Minor units (cents), at least 1.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Where the payout goes (bank account or wallet reference), 1–100 characters.
    pub destination: String,
}

/// A wallet operation: a deposit, withdrawal, reversal or adjustment.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationView {
    /// Operation id (the provider's reference).
    pub id: Uuid,
    /// `deposit`, `withdrawal`, `reversal` or `adjustment`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `pending`, `succeeded` or `failed`.
    pub status: &'static str,
    /// `credit` or `debit` of the wallet.
    pub direction: &'static str,
    /// Minor units, positive.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Withdrawals: the payout destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Deposits: the provider's checkout reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkout_reference: Option<String>,
    /// The ledger transaction (a withdrawal's hold; otherwise the booking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<Uuid>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Reversals and adjustments: the admin's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
}

impl From<&Operation> for OperationView {
    fn from(o: &Operation) -> Self {
        Self {
            id: o.id.0,
            kind: o.kind.as_str(),
            status: o.status.as_str(),
            direction: o.direction.as_str(),
            amount_minor: o.money.amount.minor(),
            currency: o.money.currency.to_string(),
            destination: o.destination.clone(),
            checkout_reference: o.provider_reference.clone(),
            transaction_id: o.transaction_id.map(|t| t.0),
            failure_reason: o.failure_reason.clone(),
            memo: o.memo.clone(),
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// A page of the caller's history, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationList {
    /// The operations.
    pub items: Vec<OperationView>,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// Filters and paging of `GET /wallet/transactions` (and its CSV twin).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `deposit`, `withdrawal`, `reversal` or `adjustment`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `pending`, `succeeded` or `failed`.
    pub status: Option<String>,
    /// Created at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
}

/// `GET /wallet/balance` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BalanceQuery {
    /// ISO 4217 code; the configured default currency when absent.
    pub currency: Option<String>,
}

/// The caller's funds in one currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    /// Spendable now: total − held.
    pub available: i64,
    /// Reserved by pending withdrawals.
    pub held: i64,
    /// Everything the caller owns in this currency.
    pub total: i64,
    /// ISO 4217 code.
    pub currency: String,
}

impl From<Balance> for BalanceView {
    fn from(b: Balance) -> Self {
        Self {
            available: b.available,
            held: b.held,
            total: b.total,
            currency: b.currency.to_string(),
        }
    }
}

/// `POST /admin/ledger/reversals` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewReversal {
    /// The deposit or adjustment transaction to mirror.
    pub transaction_id: Uuid,
    /// Why (1–500 characters, audited).
    pub reason: String,
}

/// `POST /admin/ledger/adjustments` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewAdjustment {
    /// The wallet's owner.
    pub user_id: Uuid,
    /// Minor units, at least 1.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `credit` or `debit`.
    pub direction: String,
    /// Why (1–500 characters, audited).
    pub reason: String,
}

/// An adjustment and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdjustmentView {
    /// Adjustment id.
    pub id: Uuid,
    /// The wallet's owner.
    pub user_id: Uuid,
    /// Minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `credit` or `debit`.
    pub direction: &'static str,
    /// Why.
    pub reason: String,
    /// `pending_approval` or `applied`.
    pub status: &'static str,
    /// Whether a second admin must approve it.
    pub needs_approval: bool,
    /// The proposing admin.
    pub proposed_by: Uuid,
    /// The approving admin.
    pub approved_by: Option<Uuid>,
    /// The operation that booked it.
    pub operation_id: Option<Uuid>,
    /// Proposed.
    pub created_at: DateTime<Utc>,
}

impl From<&Adjustment> for AdjustmentView {
    fn from(a: &Adjustment) -> Self {
        Self {
            id: a.id.0,
            user_id: a.user_id.0,
            amount_minor: a.money.amount.minor(),
            currency: a.money.currency.to_string(),
            direction: a.direction.as_str(),
            reason: a.reason.clone(),
            status: a.status.as_str(),
            needs_approval: a.needs_approval,
            proposed_by: a.proposed_by.0,
            approved_by: a.approved_by.map(|u| u.0),
            operation_id: a.operation_id.map(|o| o.0),
            created_at: a.created_at,
        }
    }
}

/// One leg of a ledger transaction.
#[derive(Debug, Serialize, ToSchema)]
pub struct PostingView {
    /// The account, e.g. `user:<id>:available:ZAR` or `system:provider_clearing:ZAR`.
    pub account: String,
    /// Signed minor units: positive credits the account.
    pub amount: i64,
}

/// A ledger transaction with its postings.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionView {
    /// Transaction id.
    pub id: Uuid,
    /// `deposit`, `hold`, `post_hold`, `void_hold`, `reversal` or `adjustment`.
    pub kind: &'static str,
    /// The wallet operation it belongs to.
    pub operation_id: Option<Uuid>,
    /// The transaction it mirrors.
    pub reverses: Option<Uuid>,
    /// The hold it posts or voids.
    pub resolves: Option<Uuid>,
    /// The legs; they sum to zero per currency.
    pub postings: Vec<PostingView>,
    /// Booked.
    pub created_at: DateTime<Utc>,
}

impl From<&Transaction> for TransactionView {
    fn from(t: &Transaction) -> Self {
        Self {
            id: t.id.0,
            kind: t.kind.as_str(),
            operation_id: t.operation.map(|o| o.0),
            reverses: t.reverses.map(|r| r.0),
            resolves: t.resolves.map(|r| r.0),
            postings: t
                .postings
                .iter()
                .map(|p| PostingView {
                    account: p.account.to_string(),
                    amount: p.amount,
                })
                .collect(),
            created_at: t.created_at,
        }
    }
}

/// An account whose stored balance differs from its postings.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftView {
    /// The account.
    pub account: String,
    /// Stored balance.
    pub stored: i64,
    /// Sum of postings.
    pub rebuilt: i64,
}

/// `GET /admin/ledger/verify`: balances rebuilt from postings vs stored, and the audit chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyView {
    /// Ledger and audit chain both consistent.
    pub consistent: bool,
    /// Accounts checked.
    pub accounts: u64,
    /// Transactions checked.
    pub transactions: u64,
    /// Accounts whose stored balance ≠ the sum of their postings.
    pub drifted: Vec<DriftView>,
    /// Transactions that do not balance.
    pub unbalanced: Vec<Uuid>,
    /// Wallet accounts below zero.
    pub overdrawn: Vec<String>,
    /// The audit chain.
    pub audit_chain: AuditVerification,
}

impl VerifyView {
    /// The view of a ledger report and the chain's state.
    pub fn new(report: &LedgerReport, audit_chain: AuditVerification) -> Self {
        let account = |a: &AccountRef| a.to_string();
        Self {
            consistent: report.is_consistent() && audit_chain.intact,
            accounts: report.accounts,
            transactions: report.transactions,
            drifted: report
                .drifted
                .iter()
                .map(|d| DriftView {
                    account: account(&d.account),
                    stored: d.stored,
                    rebuilt: d.rebuilt,
                })
                .collect(),
            unbalanced: report.unbalanced.iter().map(|t| t.0).collect(),
            overdrawn: report.overdrawn.iter().map(account).collect(),
            audit_chain,
        }
    }
}

/// A reconciliation finding.
#[derive(Debug, Serialize, ToSchema)]
pub struct MismatchView {
    /// Finding id.
    pub id: Uuid,
    /// The operation, when known.
    pub operation_id: Option<Uuid>,
    /// `amount-differs`, `succeeded-after-failure`, `unknown-reference`,
    /// `missing-at-provider` or `wrong-event-type`.
    pub kind: &'static str,
    /// Details.
    pub detail: String,
    /// Found.
    pub found_at: DateTime<Utc>,
}

impl From<&Mismatch> for MismatchView {
    fn from(m: &Mismatch) -> Self {
        Self {
            id: m.id,
            operation_id: m.operation_id.map(|o| o.0),
            kind: m.kind.as_str(),
            detail: m.detail.clone(),
            found_at: m.found_at,
        }
    }
}

/// A logged webhook delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Log id.
    pub id: Uuid,
    /// Received.
    pub received_at: DateTime<Utc>,
    /// The event id header.
    pub event_id: Option<String>,
    /// The event type.
    pub event_type: Option<String>,
    /// `processed`, `duplicate`, `ignored`, `rejected` or `failed`.
    pub outcome: &'static str,
    /// Why.
    pub reason: String,
}

impl From<&WebhookDelivery> for DeliveryView {
    fn from(d: &WebhookDelivery) -> Self {
        Self {
            id: d.id,
            received_at: d.received_at,
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            outcome: d.outcome.as_str(),
            reason: d.reason.clone(),
        }
    }
}

/// A list of admin items.
#[derive(Debug, Serialize, ToSchema)]
pub struct Items<T: ToSchema> {
    /// The items, newest first.
    pub items: Vec<T>,
}
