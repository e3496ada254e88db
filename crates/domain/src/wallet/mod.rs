//! Wallet: an append-only double-entry ledger with holds, provider deposits and payouts,
//! reversals, maker-checker adjustments and reconciliation.
//!
//! - [`money`]: ISO 4217 currencies and positive minor-unit amounts.
//! - [`account`]: each user's `available` and `held` accounts per currency, and the system
//!   accounts (provider clearing, fees, suspense, adjustments); `total = available + held`.
//! - [`transaction`]: balanced, immutable transactions and the only shapes the wallet books
//!   (deposit, hold, post/void of a hold, reversal, adjustment).
//! - [`operation`]: what a user sees in their history, with a status.
//! - [`store`]: the [`LedgerStore`] and [`WebhookLogStore`] ports and their contract.
//! - [`provider`]: the [`PaymentProvider`] port and the events its webhooks carry.
//! - [`service`]: the use cases; [`payout`] and [`reconcile`]: the background jobs.
//! - [`adjustment`], [`verify`], [`webhook_log`]: maker-checker, the ledger check, delivery logs.

pub mod account;
pub mod adjustment;
pub mod money;
pub mod operation;
pub mod payout;
pub mod provider;
pub mod reconcile;
pub mod service;
pub mod store;
pub mod transaction;
pub mod verify;
pub mod webhook_log;

pub use account::{AccountRef, Balance, SystemAccount, WalletPart};
pub use adjustment::{Adjustment, AdjustmentId, AdjustmentStatus, ApprovalPolicy};
pub use money::{Amount, Currency, Money, MoneyError};
pub use operation::{
    Direction, HistoryCursor, HistoryFilter, Operation, OperationId, OperationKind, OperationStatus,
};
pub use payout::{SendPayout, SendPayoutHandler};
pub use provider::{
    Checkout, CheckoutRequest, PaymentProvider, PayoutRequest, ProviderError, ProviderEvent,
    ProviderEventData, ProviderEventType, ProviderStatus,
};
pub use reconcile::{
    Mismatch, MismatchKind, ReconcileObserver, ReconcileReport, ReconcileWallet,
    ReconcileWalletHandler,
};
pub use service::{
    DepositOpened, EventOutcome, Recorded, WalletError, WalletPolicy, WalletService,
};
pub use store::{
    AdjustmentReceipt, ApplyOutcome, Booked, LedgerStore, OperationReceipt, ReverseOutcome,
    SettleOutcome, Settlement, WebhookLogStore,
};
pub use transaction::{LedgerRuleError, Posting, Transaction, TransactionId, TransactionKind};
pub use verify::{AccountDrift, LedgerReport};
pub use webhook_log::{DeliveryOutcome, WebhookDelivery};

#[cfg(test)]
pub use provider::MockPaymentProvider;
#[cfg(test)]
pub use store::{MockLedgerStore, MockWebhookLogStore};
