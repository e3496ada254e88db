//! The wallet's tables (kept by hand in step with `migrations/…_wallet`) and their rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use keel_domain::StoreError;
use keel_domain::identity::user::UserId;
use keel_domain::wallet::{
    AccountRef, Adjustment, AdjustmentId, AdjustmentStatus, DeliveryOutcome, Direction, Mismatch,
    MismatchKind, Money, Operation, OperationId, OperationKind, OperationStatus, TransactionId,
    WebhookDelivery,
};
use uuid::Uuid;

diesel::table! {
    /// One account per (owner, purpose, currency), with its stored balance.
    ledger_accounts (id) {
        /// Identity.
        id -> Uuid,
        /// The wallet owner; NULL for system accounts.
        user_id -> Nullable<Uuid>,
        /// `available`, `held` or a system account's name.
        purpose -> Text,
        /// ISO 4217 code.
        currency -> Bpchar,
        /// Sum of the account's postings.
        balance -> BigInt,
        /// System accounts may go below zero.
        allow_negative -> Bool,
    }
}

diesel::table! {
    /// Balanced, immutable transactions.
    ledger_transactions (id) {
        /// Identity.
        id -> Uuid,
        /// What it records.
        kind -> Text,
        /// The operation it belongs to.
        operation_id -> Nullable<Uuid>,
        /// The transaction it mirrors (unique).
        reverses -> Nullable<Uuid>,
        /// The hold it posts or voids (unique).
        resolves -> Nullable<Uuid>,
        /// Booked at.
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// The legs of the transactions.
    ledger_postings (transaction_id, position) {
        /// The transaction.
        transaction_id -> Uuid,
        /// The leg's place in its transaction.
        position -> Integer,
        /// The account.
        account_id -> Uuid,
        /// Signed, non-zero.
        amount -> BigInt,
    }
}

diesel::table! {
    /// What users see in their history.
    wallet_operations (id) {
        /// Identity and provider reference.
        id -> Uuid,
        /// The wallet owner.
        user_id -> Uuid,
        /// Deposit, withdrawal, reversal, adjustment.
        kind -> Text,
        /// Credit or debit.
        direction -> Text,
        /// Minor units, positive.
        amount_minor -> BigInt,
        /// ISO 4217 code.
        currency -> Bpchar,
        /// Pending, succeeded, failed.
        status -> Text,
        /// Payout destination.
        destination -> Nullable<Text>,
        /// Provider checkout reference.
        provider_reference -> Nullable<Text>,
        /// The hold or the booking transaction.
        transaction_id -> Nullable<Uuid>,
        /// Why it failed.
        failure_reason -> Nullable<Text>,
        /// Admin's reason.
        memo -> Nullable<Text>,
        /// Created.
        created_at -> Timestamptz,
        /// Last status change.
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// Provider events applied, once each.
    provider_events (event_id) {
        /// The provider's event id.
        event_id -> Text,
        /// The operation it settled.
        operation_id -> Uuid,
        /// When.
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    /// Maker-checker adjustments.
    wallet_adjustments (id) {
        /// Identity.
        id -> Uuid,
        /// The wallet.
        user_id -> Uuid,
        /// Minor units, positive.
        amount_minor -> BigInt,
        /// ISO 4217 code.
        currency -> Bpchar,
        /// Credit or debit.
        direction -> Text,
        /// Why.
        reason -> Text,
        /// The proposing admin.
        proposed_by -> Uuid,
        /// A second admin must approve.
        needs_approval -> Bool,
        /// The approving admin.
        approved_by -> Nullable<Uuid>,
        /// `pending_approval` or `applied`.
        status -> Text,
        /// The operation that booked it.
        operation_id -> Nullable<Uuid>,
        /// Proposed.
        created_at -> Timestamptz,
        /// Applied.
        decided_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// Reconciliation findings.
    reconciliation_mismatches (id) {
        /// Identity.
        id -> Uuid,
        /// The operation, when known.
        operation_id -> Nullable<Uuid>,
        /// What kind.
        kind -> Text,
        /// Details.
        detail -> Text,
        /// Found at.
        found_at -> Timestamptz,
    }
}

diesel::table! {
    /// Every webhook delivery.
    webhook_logs (id) {
        /// Identity.
        id -> Uuid,
        /// Arrival.
        received_at -> Timestamptz,
        /// Event id header.
        event_id -> Nullable<Text>,
        /// Event type.
        event_type -> Nullable<Text>,
        /// What became of it.
        outcome -> Text,
        /// Why.
        reason -> Text,
        /// The raw body (lossy, bounded).
        body -> Text,
    }
}

diesel::joinable!(ledger_postings -> ledger_accounts (account_id));
diesel::joinable!(ledger_postings -> ledger_transactions (transaction_id));
diesel::allow_tables_to_appear_in_same_query!(
    ledger_accounts,
    ledger_transactions,
    ledger_postings,
    wallet_operations,
);

/// Stored data that does not parse.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// An account rebuilt from its stored owner, purpose and currency.
pub(crate) fn account_ref(
    user: Option<Uuid>,
    purpose: &str,
    currency: &str,
) -> Result<AccountRef, StoreError> {
    AccountRef::from_parts(user.map(UserId), purpose, currency.trim_end()).map_err(corrupt)
}

fn money(amount: i64, currency: &str) -> Result<Money, StoreError> {
    Money::parse(amount, currency.trim_end()).map_err(corrupt)
}

/// A `wallet_operations` row.
#[derive(Queryable, Selectable)]
#[diesel(table_name = wallet_operations, check_for_backend(diesel::pg::Pg))]
pub(crate) struct OperationRow {
    id: Uuid,
    user_id: Uuid,
    kind: String,
    direction: String,
    amount_minor: i64,
    currency: String,
    status: String,
    destination: Option<String>,
    provider_reference: Option<String>,
    transaction_id: Option<Uuid>,
    failure_reason: Option<String>,
    memo: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl OperationRow {
    /// The domain value.
    pub(crate) fn into_operation(self) -> Result<Operation, StoreError> {
        Ok(Operation {
            id: OperationId(self.id),
            user_id: UserId(self.user_id),
            kind: OperationKind::parse(&self.kind)
                .ok_or_else(|| corrupt(format!("operation kind {:?}", self.kind)))?,
            direction: Direction::parse(&self.direction)
                .ok_or_else(|| corrupt(format!("direction {:?}", self.direction)))?,
            money: money(self.amount_minor, &self.currency)?,
            status: OperationStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("operation status {:?}", self.status)))?,
            destination: self.destination,
            provider_reference: self.provider_reference,
            transaction_id: self.transaction_id.map(TransactionId),
            failure_reason: self.failure_reason,
            memo: self.memo,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Inserts `operation` as it is.
pub(crate) async fn insert_operation(
    conn: &mut diesel_async::AsyncPgConnection,
    operation: &Operation,
) -> Result<(), diesel::result::Error> {
    use wallet_operations as o;
    let insert = diesel::insert_into(o::table).values((
        o::id.eq(operation.id.0),
        o::user_id.eq(operation.user_id.0),
        o::kind.eq(operation.kind.as_str()),
        o::direction.eq(operation.direction.as_str()),
        o::amount_minor.eq(operation.money.amount.minor()),
        o::currency.eq(operation.money.currency.as_str()),
        o::status.eq(operation.status.as_str()),
        o::destination.eq(operation.destination.as_deref()),
        o::provider_reference.eq(operation.provider_reference.as_deref()),
        o::transaction_id.eq(operation.transaction_id.map(|t| t.0)),
        o::failure_reason.eq(operation.failure_reason.as_deref()),
        o::memo.eq(operation.memo.as_deref()),
        o::created_at.eq(operation.created_at),
        o::updated_at.eq(operation.updated_at),
    ));
    diesel_async::RunQueryDsl::execute(insert, conn)
        .await
        .map(drop)
}

/// A `wallet_adjustments` row.
#[derive(Queryable, Selectable)]
#[diesel(table_name = wallet_adjustments, check_for_backend(diesel::pg::Pg))]
pub(crate) struct AdjustmentRow {
    id: Uuid,
    user_id: Uuid,
    amount_minor: i64,
    currency: String,
    direction: String,
    reason: String,
    proposed_by: Uuid,
    needs_approval: bool,
    approved_by: Option<Uuid>,
    status: String,
    operation_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl AdjustmentRow {
    /// The domain value.
    pub(crate) fn into_adjustment(self) -> Result<Adjustment, StoreError> {
        Ok(Adjustment {
            id: AdjustmentId(self.id),
            user_id: UserId(self.user_id),
            money: money(self.amount_minor, &self.currency)?,
            direction: Direction::parse(&self.direction)
                .ok_or_else(|| corrupt(format!("direction {:?}", self.direction)))?,
            reason: self.reason,
            proposed_by: UserId(self.proposed_by),
            needs_approval: self.needs_approval,
            approved_by: self.approved_by.map(UserId),
            status: AdjustmentStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("adjustment status {:?}", self.status)))?,
            operation_id: self.operation_id.map(OperationId),
            created_at: self.created_at,
        })
    }
}

/// A `reconciliation_mismatches` row.
#[derive(Queryable, Selectable)]
#[diesel(table_name = reconciliation_mismatches, check_for_backend(diesel::pg::Pg))]
pub(crate) struct MismatchRow {
    id: Uuid,
    operation_id: Option<Uuid>,
    kind: String,
    detail: String,
    found_at: DateTime<Utc>,
}

impl MismatchRow {
    /// The domain value.
    pub(crate) fn into_mismatch(self) -> Result<Mismatch, StoreError> {
        Ok(Mismatch {
            id: self.id,
            operation_id: self.operation_id.map(OperationId),
            kind: MismatchKind::parse(&self.kind)
                .ok_or_else(|| corrupt(format!("mismatch kind {:?}", self.kind)))?,
            detail: self.detail,
            found_at: self.found_at,
        })
    }
}

/// A `webhook_logs` row.
#[derive(Queryable, Selectable)]
#[diesel(table_name = webhook_logs, check_for_backend(diesel::pg::Pg))]
pub(crate) struct DeliveryRow {
    id: Uuid,
    received_at: DateTime<Utc>,
    event_id: Option<String>,
    event_type: Option<String>,
    outcome: String,
    reason: String,
    body: String,
}

impl DeliveryRow {
    /// The domain value.
    pub(crate) fn into_delivery(self) -> Result<WebhookDelivery, StoreError> {
        Ok(WebhookDelivery {
            id: self.id,
            received_at: self.received_at,
            event_id: self.event_id,
            event_type: self.event_type,
            outcome: DeliveryOutcome::parse(&self.outcome)
                .ok_or_else(|| corrupt(format!("delivery outcome {:?}", self.outcome)))?,
            reason: self.reason,
            body: self.body,
        })
    }
}
