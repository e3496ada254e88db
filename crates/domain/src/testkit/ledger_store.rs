//! Contract suite of the [`LedgerStore`] and [`WebhookLogStore`] ports: deposits settle once,
//! holds move available to held and resolve once, wallets are never overdrawn (not even by 100
//! racing withdrawals), reversals and maker-checker adjustments book once, history pages are
//! stable, and the ledger always verifies.
//!
//! Every case uses fresh random users, so the suite may share a store with others; the cases
//! that read global lists (`stale_pending`, findings, the webhook log) use times or ids no other
//! case uses.

use std::fmt::Display;

use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;
use uuid::Uuid;

use super::support::{ok, whole_second_now};
use crate::identity::user::UserId;
use crate::jobs::{JobFilter, JobKind, JobQueue};
use crate::wallet::{
    AccountRef, Adjustment, AdjustmentId, AdjustmentStatus, ApplyOutcome, Balance, Booked,
    Currency, DeliveryOutcome, Direction, HistoryFilter, LedgerStore, Mismatch, MismatchKind,
    Money, Operation, OperationId, OperationKind, OperationStatus, ReverseOutcome, SendPayout,
    SettleOutcome, Settlement, SystemAccount, Transaction, WebhookDelivery, WebhookLogStore,
};

/// Withdrawals racing in the concurrency case.
pub const RACERS: usize = 100;
/// The balance they race for (each withdraws [`RACE_AMOUNT`]).
pub const RACE_BALANCE: i64 = 500;
/// What each racer withdraws.
pub const RACE_AMOUNT: i64 = 10;

/// What a suite run needs.
pub struct Fixture<'a, S> {
    /// The store under test.
    pub store: &'a S,
    /// The queue `place_withdrawal` enqueues into, when the store has one the suite can read
    /// (its payout jobs are then checked too).
    pub jobs: Option<&'a dyn JobQueue>,
}

/// Runs every case of the contract, then checks the whole ledger verifies.
pub async fn run_all<S: LedgerStore + WebhookLogStore>(f: &Fixture<'_, S>) {
    deposits_settle_once(f).await;
    a_failed_deposit_moves_nothing(f).await;
    withdrawals_hold_funds_or_write_nothing(f).await;
    posting_a_hold_pays_it_out(f).await;
    voiding_a_hold_restores_the_funds(f).await;
    a_hold_is_never_both_posted_and_voided(f).await;
    reversals_book_once_and_never_overdraw(f).await;
    immediate_adjustments_book_at_once(f).await;
    pending_adjustments_apply_once(f).await;
    history_pages_are_newest_first_filtered_and_stable(f).await;
    stale_pending_lists_old_pending_operations(f).await;
    mismatches_are_kept_once_per_operation_and_kind(f).await;
    webhook_deliveries_are_logged(f).await;
    racing_withdrawals_never_overspend(f).await;
    racing_settlements_of_a_withdrawal_settle_once(f).await;
    racing_provider_events_settle_a_deposit_once(f).await;
    racing_reversals_reverse_once(f).await;
    racing_approvals_apply_once(f).await;
    the_ledger_verifies(f.store).await;
}

fn must<T, E: Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The suite's currency.
pub fn zar() -> Currency {
    must(Currency::parse("ZAR"), "currency")
}

/// `minor` units of the suite's currency.
pub fn money(minor: i64) -> Money {
    must(Money::parse(minor, "ZAR"), "money")
}

fn user() -> UserId {
    UserId(Uuid::now_v7())
}

fn random_offset() -> i64 {
    let bytes = Uuid::new_v4().into_bytes();
    i64::from(u16::from_le_bytes([bytes[0], bytes[1]]))
}

/// `user`'s balance in the suite's currency.
pub async fn balance<S: LedgerStore>(store: &S, user: UserId) -> Balance {
    ok(store.balance(user, zar()).await)
}

async fn assert_balance<S: LedgerStore>(store: &S, user: UserId, available: i64, held: i64) {
    let b = balance(store, user).await;
    assert_eq!(
        (b.available, b.held, b.total),
        (available, held, available + held),
        "balance of {user:?}"
    );
}

async fn status<S: LedgerStore>(store: &S, id: OperationId) -> OperationStatus {
    ok(store.operation(id).await)
        .unwrap_or_else(|| panic!("operation {id:?} vanished"))
        .status
}

/// Opens a pending deposit of `minor` for `user` created at `at`.
pub async fn open_deposit<S: LedgerStore>(
    store: &S,
    user: UserId,
    minor: i64,
    at: DateTime<Utc>,
) -> Operation {
    let mut operation = Operation::new(user, OperationKind::Deposit, money(minor), at);
    operation.provider_reference = Some(format!("chk-{}", operation.id.0.simple()));
    assert!(
        !ok(store.open_deposit(&operation, None).await),
        "no receipt"
    );
    operation
}

/// Settles `deposit` as paid (with `event`), booking its deposit transaction.
pub async fn settle_deposit<S: LedgerStore>(
    store: &S,
    deposit: &Operation,
    event: Option<&str>,
) -> (SettleOutcome, Transaction) {
    let at = whole_second_now();
    let tx = Transaction::deposit(deposit.user_id, deposit.money, deposit.id, at);
    let outcome = ok(store
        .settle(Settlement {
            operation: deposit.id,
            to: OperationStatus::Succeeded,
            transaction: Some(&tx),
            provider_event: event,
            failure_reason: None,
            at,
        })
        .await);
    (outcome, tx)
}

/// Credits `minor` to `user` through a settled deposit; returns its transaction.
pub async fn fund<S: LedgerStore>(store: &S, user: UserId, minor: i64) -> Transaction {
    let deposit = open_deposit(store, user, minor, whole_second_now()).await;
    let event = format!("evt-{}", Uuid::new_v4());
    let (outcome, tx) = settle_deposit(store, &deposit, Some(&event)).await;
    assert_eq!(outcome, SettleOutcome::Settled);
    tx
}

/// A withdrawal of `minor` by `user` at `at`, its hold and its payout job.
pub struct Withdrawal {
    /// The operation.
    pub operation: Operation,
    /// Its hold.
    pub hold: Transaction,
    /// What the store answered.
    pub booked: Booked,
}

/// Places a withdrawal of `minor` for `user` at `at`, with its `SendPayout` job.
pub async fn withdraw_at<S: LedgerStore>(
    store: &S,
    user: UserId,
    minor: i64,
    at: DateTime<Utc>,
) -> Withdrawal {
    let mut operation = Operation::new(user, OperationKind::Withdrawal, money(minor), at);
    let hold = Transaction::hold(user, money(minor), operation.id, at);
    operation.destination = Some("ZA-BANK-0001".into());
    operation.transaction_id = Some(hold.id);
    let job = must(
        SendPayout {
            operation_id: operation.id,
        }
        .to_new_job(at),
        "payout job",
    );
    let booked = ok(store
        .place_withdrawal(&operation, &hold, &[job], None)
        .await);
    Withdrawal {
        operation,
        hold,
        booked,
    }
}

/// Places a withdrawal of `minor` for `user` now.
pub async fn withdraw<S: LedgerStore>(store: &S, user: UserId, minor: i64) -> Withdrawal {
    withdraw_at(store, user, minor, whole_second_now()).await
}

/// Settles a withdrawal: posts its hold (`succeeded`) or voids it.
async fn finish_withdrawal<S: LedgerStore>(
    store: &S,
    w: &Withdrawal,
    succeeded: bool,
    event: Option<&str>,
) -> SettleOutcome {
    let at = whole_second_now();
    let tx = if succeeded {
        Transaction::post_hold(&w.hold, at)
    } else {
        Transaction::void_hold(&w.hold, at)
    }
    .unwrap_or_else(|| panic!("a hold"));
    ok(store
        .settle(Settlement {
            operation: w.operation.id,
            to: if succeeded {
                OperationStatus::Succeeded
            } else {
                OperationStatus::Failed
            },
            transaction: Some(&tx),
            provider_event: event,
            failure_reason: (!succeeded).then_some("payout refused"),
            at,
        })
        .await)
}

async fn has_payout_job<S>(f: &Fixture<'_, S>, operation: OperationId) -> Option<bool> {
    let jobs = f.jobs?;
    let listed = ok(jobs
        .list(&JobFilter {
            kind: Some(SendPayout::KIND.to_owned()),
            limit: 100_000,
            ..JobFilter::default()
        })
        .await);
    let key = operation.0.to_string();
    Some(listed.iter().any(|j| j.unique_key.as_deref() == Some(&key)))
}

async fn deposits_settle_once<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    let deposit = open_deposit(store, u, 500, whole_second_now()).await;
    assert_eq!(ok(store.operation(deposit.id).await), Some(deposit.clone()));
    assert_balance(store, u, 0, 0).await;

    let event = format!("evt-{}", Uuid::new_v4());
    let (outcome, tx) = settle_deposit(store, &deposit, Some(&event)).await;
    assert_eq!(outcome, SettleOutcome::Settled);
    assert_balance(store, u, 500, 0).await;
    assert_eq!(status(store, deposit.id).await, OperationStatus::Succeeded);
    assert_eq!(ok(store.transaction(tx.id).await), Some(tx.clone()));
    let settled = ok(store.operation(deposit.id).await).unwrap_or_else(|| panic!("stored"));
    assert_eq!(
        settled.transaction_id,
        Some(tx.id),
        "a deposit names its booking"
    );

    // The same event again, then another event for the final operation: nothing moves.
    let (again, _) = settle_deposit(store, &deposit, Some(&event)).await;
    assert_eq!(again, SettleOutcome::DuplicateEvent);
    let other = format!("evt-{}", Uuid::new_v4());
    let (late, _) = settle_deposit(store, &deposit, Some(&other)).await;
    assert_eq!(
        late,
        SettleOutcome::AlreadyFinal(OperationStatus::Succeeded)
    );
    // The refused event was not recorded: it is still news for another operation.
    let second = open_deposit(store, u, 100, whole_second_now()).await;
    let (fresh, _) = settle_deposit(store, &second, Some(&other)).await;
    assert_eq!(fresh, SettleOutcome::Settled);
    assert_balance(store, u, 600, 0).await;
    assert_eq!(
        ok(store.account_balance(AccountRef::available(u, zar())).await),
        600
    );

    let unknown = Operation::new(u, OperationKind::Deposit, money(1), whole_second_now());
    let (missing, _) = settle_deposit(store, &unknown, None).await;
    assert_eq!(missing, SettleOutcome::NotFound);
    assert_eq!(
        ok(store
            .transaction(crate::wallet::TransactionId(Uuid::now_v7()))
            .await),
        None
    );
}

async fn a_failed_deposit_moves_nothing<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    let deposit = open_deposit(store, u, 300, whole_second_now()).await;
    let outcome = ok(store
        .settle(Settlement {
            operation: deposit.id,
            to: OperationStatus::Failed,
            transaction: None,
            provider_event: None,
            failure_reason: Some("card declined"),
            at: whole_second_now(),
        })
        .await);
    assert_eq!(outcome, SettleOutcome::Settled);
    let stored = ok(store.operation(deposit.id).await).unwrap_or_else(|| panic!("stored"));
    assert_eq!(stored.status, OperationStatus::Failed);
    assert_eq!(stored.failure_reason.as_deref(), Some("card declined"));
    assert_balance(store, u, 0, 0).await;
    let (late, _) = settle_deposit(store, &deposit, None).await;
    assert_eq!(late, SettleOutcome::AlreadyFinal(OperationStatus::Failed));
    assert_balance(store, u, 0, 0).await;
}

async fn withdrawals_hold_funds_or_write_nothing<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    fund(store, u, 500).await;
    let w = withdraw(store, u, 200).await;
    assert_eq!(
        w.booked,
        Booked::Done {
            receipt_stored: false
        }
    );
    assert_balance(store, u, 300, 200).await;
    assert_eq!(
        ok(store.operation(w.operation.id).await),
        Some(w.operation.clone())
    );
    assert_eq!(ok(store.transaction(w.hold.id).await), Some(w.hold.clone()));
    assert_ne!(has_payout_job(f, w.operation.id).await, Some(false));

    let refused = withdraw(store, u, 301).await;
    assert_eq!(refused.booked, Booked::InsufficientFunds);
    assert_eq!(ok(store.operation(refused.operation.id).await), None);
    assert_eq!(ok(store.transaction(refused.hold.id).await), None);
    assert_ne!(has_payout_job(f, refused.operation.id).await, Some(true));
    assert_balance(store, u, 300, 200).await;

    // A user with no funds at all.
    let broke = user();
    assert_eq!(
        withdraw(store, broke, 1).await.booked,
        Booked::InsufficientFunds
    );
    assert_balance(store, broke, 0, 0).await;
}

async fn posting_a_hold_pays_it_out<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    fund(store, u, 500).await;
    let w = withdraw(store, u, 200).await;
    let clearing = AccountRef::system(SystemAccount::ProviderClearing, zar());
    let before = ok(store.account_balance(clearing).await);
    assert_eq!(
        finish_withdrawal(store, &w, true, None).await,
        SettleOutcome::Settled
    );
    assert_balance(store, u, 300, 0).await;
    assert_eq!(
        status(store, w.operation.id).await,
        OperationStatus::Succeeded
    );
    let paid = ok(store.operation(w.operation.id).await).unwrap_or_else(|| panic!("stored"));
    assert_eq!(
        paid.transaction_id, w.operation.transaction_id,
        "a withdrawal keeps its hold"
    );
    // Other cases may move the clearing account meanwhile only if they run concurrently;
    // the suite runs its cases one by one.
    assert_eq!(ok(store.account_balance(clearing).await), before + 200);
    assert_eq!(
        finish_withdrawal(store, &w, false, None).await,
        SettleOutcome::AlreadyFinal(OperationStatus::Succeeded)
    );
    assert_balance(store, u, 300, 0).await;
}

async fn voiding_a_hold_restores_the_funds<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    fund(store, u, 500).await;
    let w = withdraw(store, u, 200).await;
    assert_eq!(
        finish_withdrawal(store, &w, false, Some(&format!("evt-{}", Uuid::new_v4()))).await,
        SettleOutcome::Settled
    );
    assert_balance(store, u, 500, 0).await;
    let stored = ok(store.operation(w.operation.id).await).unwrap_or_else(|| panic!("stored"));
    assert_eq!(stored.status, OperationStatus::Failed);
    assert_eq!(stored.failure_reason.as_deref(), Some("payout refused"));
    assert_eq!(
        finish_withdrawal(store, &w, true, None).await,
        SettleOutcome::AlreadyFinal(OperationStatus::Failed)
    );
    assert_balance(store, u, 500, 0).await;
}

async fn a_hold_is_never_both_posted_and_voided<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    fund(store, u, 500).await;
    let w = withdraw(store, u, 200).await;
    // Enough held funds for a second resolution to be possible money-wise.
    let other = withdraw(store, u, 200).await;
    assert_eq!(
        finish_withdrawal(store, &w, true, None).await,
        SettleOutcome::Settled
    );
    // Voiding the posted hold through another pending operation is refused (unique link).
    let carrier = open_deposit(store, u, 1, whole_second_now()).await;
    let void =
        Transaction::void_hold(&w.hold, whole_second_now()).unwrap_or_else(|| panic!("a hold"));
    let refused = store
        .settle(Settlement {
            operation: carrier.id,
            to: OperationStatus::Failed,
            transaction: Some(&void),
            provider_event: None,
            failure_reason: None,
            at: whole_second_now(),
        })
        .await;
    assert!(
        !matches!(refused, Ok(SettleOutcome::Settled)),
        "a posted hold was voided too: {refused:?}"
    );
    assert_eq!(ok(store.transaction(void.id).await), None);
    assert_eq!(status(store, carrier.id).await, OperationStatus::Pending);
    assert_balance(store, u, 100, 200).await;
    assert_eq!(
        status(store, other.operation.id).await,
        OperationStatus::Pending
    );
}

fn reversal_of(original: &Transaction, user: UserId, minor: i64) -> (Operation, Transaction) {
    let at = whole_second_now();
    let mut operation = Operation::new(user, OperationKind::Reversal, money(minor), at);
    operation.status = OperationStatus::Succeeded;
    operation.direction = Direction::Debit;
    operation.memo = Some("contract reversal".into());
    let reversal = Transaction::reversal_of(original, operation.id, at)
        .unwrap_or_else(|| panic!("reversible"));
    operation.transaction_id = Some(reversal.id);
    (operation, reversal)
}

async fn reversals_book_once_and_never_overdraw<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    let deposit = fund(store, u, 500).await;
    let (operation, reversal) = reversal_of(&deposit, u, 500);
    assert_eq!(
        ok(store.reverse(&reversal, &operation, None).await),
        ReverseOutcome::Reversed {
            receipt_stored: false
        }
    );
    assert_balance(store, u, 0, 0).await;
    assert_eq!(ok(store.operation(operation.id).await), Some(operation));
    assert_eq!(ok(store.transaction(reversal.id).await), Some(reversal));

    fund(store, u, 500).await;
    let (again, twice) = reversal_of(&deposit, u, 500);
    assert_eq!(
        ok(store.reverse(&twice, &again, None).await),
        ReverseOutcome::AlreadyReversed
    );
    assert_eq!(ok(store.operation(again.id).await), None);
    assert_balance(store, u, 500, 0).await;

    // The money of this deposit is partly held by a withdrawal: reversing it would overdraw.
    let spent = user();
    let deposit = fund(store, spent, 500).await;
    assert!(matches!(
        withdraw(store, spent, 300).await.booked,
        Booked::Done { .. }
    ));
    let (operation, reversal) = reversal_of(&deposit, spent, 500);
    assert_eq!(
        ok(store.reverse(&reversal, &operation, None).await),
        ReverseOutcome::InsufficientFunds
    );
    assert_eq!(ok(store.operation(operation.id).await), None);
    assert_eq!(ok(store.transaction(reversal.id).await), None);
    assert_balance(store, spent, 200, 300).await;
}

/// An adjustment of `minor` for `user` proposed by `admin`, and what books it.
pub fn adjustment(
    user: UserId,
    admin: UserId,
    minor: i64,
    direction: Direction,
    needs_approval: bool,
) -> Adjustment {
    Adjustment {
        id: AdjustmentId(Uuid::now_v7()),
        user_id: user,
        money: money(minor),
        direction,
        reason: "contract correction".into(),
        proposed_by: admin,
        needs_approval,
        approved_by: None,
        status: AdjustmentStatus::PendingApproval,
        operation_id: None,
        created_at: whole_second_now(),
    }
}

/// The operation and transaction that book `a` when it is applied.
pub fn adjustment_booking(a: &Adjustment) -> (Operation, Transaction) {
    let at = whole_second_now();
    let mut operation = Operation::new(a.user_id, OperationKind::Adjustment, a.money, at);
    operation.direction = a.direction;
    operation.status = OperationStatus::Succeeded;
    operation.memo = Some(a.reason.clone());
    let tx = Transaction::adjustment(
        a.user_id,
        a.money,
        a.direction == Direction::Credit,
        operation.id,
        at,
    );
    operation.transaction_id = Some(tx.id);
    (operation, tx)
}

async fn immediate_adjustments_book_at_once<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let (u, admin) = (user(), user());
    let mut credit = adjustment(u, admin, 700, Direction::Credit, false);
    let (operation, tx) = adjustment_booking(&credit);
    credit.approved_by = Some(admin);
    credit.status = AdjustmentStatus::Applied;
    credit.operation_id = Some(operation.id);
    assert_eq!(
        ok(store
            .create_adjustment(&credit, Some((&operation, &tx)), None)
            .await)
        .0,
        ApplyOutcome::Applied
    );
    assert_balance(store, u, 700, 0).await;
    assert_eq!(ok(store.adjustment(credit.id).await), Some(credit));
    assert_eq!(ok(store.operation(operation.id).await), Some(operation));

    let mut debit = adjustment(u, admin, 701, Direction::Debit, false);
    let (operation, tx) = adjustment_booking(&debit);
    debit.approved_by = Some(admin);
    debit.status = AdjustmentStatus::Applied;
    debit.operation_id = Some(operation.id);
    assert_eq!(
        ok(store
            .create_adjustment(&debit, Some((&operation, &tx)), None)
            .await)
        .0,
        ApplyOutcome::InsufficientFunds
    );
    assert_eq!(ok(store.adjustment(debit.id).await), None);
    assert_eq!(ok(store.operation(operation.id).await), None);
    assert_balance(store, u, 700, 0).await;
}

async fn pending_adjustments_apply_once<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let (u, maker, checker) = (user(), user(), user());
    let pending = adjustment(u, maker, 50_000, Direction::Credit, true);
    assert_eq!(
        ok(store.create_adjustment(&pending, None, None).await).0,
        ApplyOutcome::Proposed
    );
    assert_eq!(
        ok(store.adjustment(pending.id).await),
        Some(pending.clone())
    );
    assert_balance(store, u, 0, 0).await;

    // Two checkers racing: one books it.
    let bookings = [adjustment_booking(&pending), adjustment_booking(&pending)];
    let outcomes = join_all(
        bookings
            .iter()
            .map(|(op, tx)| store.apply_adjustment(pending.id, checker, op, tx)),
    )
    .await;
    let outcomes: Vec<ApplyOutcome> = outcomes.into_iter().map(ok).collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == ApplyOutcome::Applied)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&ApplyOutcome::AlreadyApplied),
        "{outcomes:?}"
    );
    assert_balance(store, u, 50_000, 0).await;
    let applied = ok(store.adjustment(pending.id).await).unwrap_or_else(|| panic!("stored"));
    assert_eq!(applied.status, AdjustmentStatus::Applied);
    assert_eq!(applied.approved_by, Some(checker));
    let winner = outcomes
        .iter()
        .position(|o| *o == ApplyOutcome::Applied)
        .and_then(|i| bookings.get(i))
        .unwrap_or_else(|| panic!("a winner"));
    assert_eq!(applied.operation_id, Some(winner.0.id));

    // Later approvals change nothing; unknown ids are not found.
    let (op, tx) = adjustment_booking(&pending);
    assert_eq!(
        ok(store.apply_adjustment(pending.id, checker, &op, &tx).await),
        ApplyOutcome::AlreadyApplied
    );
    assert_eq!(ok(store.operation(op.id).await), None);
    assert_eq!(
        ok(store
            .apply_adjustment(AdjustmentId(Uuid::now_v7()), checker, &op, &tx)
            .await),
        ApplyOutcome::NotFound
    );
    assert_balance(store, u, 50_000, 0).await;

    // A pending debit larger than the funds is refused when applied, and stays pending.
    let debit = adjustment(u, maker, 50_001, Direction::Debit, true);
    assert_eq!(
        ok(store.create_adjustment(&debit, None, None).await).0,
        ApplyOutcome::Proposed
    );
    let (op, tx) = adjustment_booking(&debit);
    assert_eq!(
        ok(store.apply_adjustment(debit.id, checker, &op, &tx).await),
        ApplyOutcome::InsufficientFunds
    );
    assert_eq!(ok(store.adjustment(debit.id).await), Some(debit));
    assert_balance(store, u, 50_000, 0).await;
}

async fn history_pages_are_newest_first_filtered_and_stable<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    // Far-future times, whole seconds apart, two sharing one instant (ordered by id).
    let base =
        DateTime::from_timestamp(7_000_000_000 + random_offset() * 100, 0).unwrap_or_default();
    let mut made = Vec::new();
    for n in [0, 1, 2, 2, 3] {
        made.push(open_deposit(store, u, 10 + n, base + Duration::seconds(n)).await);
    }
    fund(store, u, 100).await;
    let w = withdraw_at(store, u, 5, base + Duration::seconds(4)).await;
    assert!(matches!(w.booked, Booked::Done { .. }));
    let (outcome, _) = settle_deposit(store, &made[1], None).await;
    assert_eq!(outcome, SettleOutcome::Settled);

    let mut expected: Vec<OperationId> = made.iter().map(|o| o.id).collect();
    expected.push(w.operation.id);
    expected.sort_by_key(|id| std::cmp::Reverse(*id));
    // Within the window [base, base + 5s): the deposits and the withdrawal, newest first.
    let window = HistoryFilter {
        from: Some(base),
        to: Some(base + Duration::seconds(5)),
        ..HistoryFilter::default()
    };
    let all = ok(store.operations(u, &window, None, 100).await);
    let ids: Vec<OperationId> = all.iter().map(|o| o.id).collect();
    assert_eq!(ids.len(), 6);
    assert!(
        all.windows(2)
            .all(|p| (p[0].created_at, p[0].id) > (p[1].created_at, p[1].id)),
        "newest first: {ids:?}"
    );
    assert_eq!(ids.first(), Some(&w.operation.id));
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| std::cmp::Reverse(*id));
    assert_eq!(sorted, expected);

    // Filters.
    let deposits = ok(store
        .operations(
            u,
            &HistoryFilter {
                kind: Some(OperationKind::Deposit),
                ..window.clone()
            },
            None,
            100,
        )
        .await);
    assert_eq!(deposits.len(), 5);
    let succeeded = ok(store
        .operations(
            u,
            &HistoryFilter {
                status: Some(OperationStatus::Succeeded),
                ..window.clone()
            },
            None,
            100,
        )
        .await);
    assert_eq!(
        succeeded.iter().map(|o| o.id).collect::<Vec<_>>(),
        [made[1].id]
    );
    let early = ok(store
        .operations(
            u,
            &HistoryFilter {
                to: Some(base + Duration::seconds(2)),
                ..window.clone()
            },
            None,
            100,
        )
        .await);
    assert_eq!(
        early.iter().map(|o| o.id).collect::<Vec<_>>(),
        [made[1].id, made[0].id]
    );
    assert!(
        ok(store
            .operations(user(), &HistoryFilter::default(), None, 10)
            .await)
        .is_empty()
    );

    // Keyset pages of 2, with a newer operation arriving mid-way: the pages do not shift.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        if paged.len() == 2 {
            open_deposit(store, u, 99, base + Duration::seconds(4)).await;
        }
        let page = ok(store.operations(u, &window, after, 2).await);
        let Some(last) = page.last() else { break };
        after = Some((last.created_at, last.id));
        paged.extend(page.iter().map(|o| o.id));
        assert!(page.len() <= 2);
    }
    assert_eq!(paged, ids);
}

async fn stale_pending_lists_old_pending_operations<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    // Far-past times no other case uses.
    let base =
        DateTime::from_timestamp(1_000_000_000 + random_offset() * 100, 0).unwrap_or_default();
    let old_deposit = open_deposit(store, u, 10, base).await;
    let settled = open_deposit(store, u, 100, base + Duration::seconds(1)).await;
    let (outcome, _) = settle_deposit(store, &settled, None).await;
    assert_eq!(outcome, SettleOutcome::Settled);
    let old_withdrawal = withdraw_at(store, u, 20, base + Duration::seconds(2)).await;
    assert!(matches!(old_withdrawal.booked, Booked::Done { .. }));
    let recent = open_deposit(store, u, 10, base + Duration::seconds(30)).await;

    let before = base + Duration::seconds(10);
    let stale = ok(store.stale_pending(before, 10_000).await);
    assert!(stale.iter().all(|o| o.status == OperationStatus::Pending
        && o.created_at < before
        && matches!(o.kind, OperationKind::Deposit | OperationKind::Withdrawal)));
    assert!(
        stale
            .windows(2)
            .all(|p| (p[0].created_at, p[0].id) <= (p[1].created_at, p[1].id)),
        "oldest first"
    );
    let mine: Vec<OperationId> = stale
        .iter()
        .filter(|o| o.user_id == u)
        .map(|o| o.id)
        .collect();
    assert_eq!(mine, [old_deposit.id, old_withdrawal.operation.id]);
    assert!(!stale.iter().any(|o| o.id == recent.id));
    assert_eq!(ok(store.stale_pending(before, 1).await).len(), 1);
}

async fn mismatches_are_kept_once_per_operation_and_kind<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let operation = open_deposit(store, user(), 10, whole_second_now()).await;
    // A far-future instant, so these are the newest findings.
    let at = DateTime::from_timestamp(8_000_000_000 + random_offset() * 100, 0).unwrap_or_default();
    let finding = |op: Option<OperationId>, kind: MismatchKind, seconds: i64| Mismatch {
        id: Uuid::now_v7(),
        operation_id: op,
        kind,
        detail: format!("contract {}", kind.as_str()),
        found_at: at + Duration::seconds(seconds),
    };
    let first = finding(Some(operation.id), MismatchKind::AmountDiffers, 0);
    assert!(ok(store.record_mismatch(&first).await));
    let repeat = finding(Some(operation.id), MismatchKind::AmountDiffers, 1);
    assert!(!ok(store.record_mismatch(&repeat).await), "kept once");
    let other_kind = finding(Some(operation.id), MismatchKind::MissingAtProvider, 2);
    assert!(ok(store.record_mismatch(&other_kind).await));
    let unknown = [
        finding(None, MismatchKind::UnknownReference, 3),
        finding(None, MismatchKind::UnknownReference, 4),
    ];
    for u in &unknown {
        assert!(ok(store.record_mismatch(u).await), "no operation: all kept");
    }
    let latest = ok(store.mismatches(4).await);
    assert_eq!(
        latest,
        [unknown[1].clone(), unknown[0].clone(), other_kind, first]
    );
}

async fn webhook_deliveries_are_logged<S: WebhookLogStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let at = DateTime::from_timestamp(8_000_000_000 + random_offset() * 100, 0).unwrap_or_default();
    let rejected = WebhookDelivery::new(
        at,
        None,
        DeliveryOutcome::Rejected,
        "bad-signature",
        b"{\"not\":\"trusted\"}",
    );
    let mut processed = WebhookDelivery::new(
        at + Duration::seconds(1),
        Some(format!("evt-{}", Uuid::new_v4())),
        DeliveryOutcome::Processed,
        "settled",
        b"{}",
    );
    processed.event_type = Some("deposit.succeeded".into());
    ok(store.record(&rejected).await);
    ok(store.record(&processed).await);
    assert_eq!(ok(store.recent(2).await), [processed, rejected]);
    assert_eq!(ok(store.recent(1).await).len(), 1);
}

async fn racing_withdrawals_never_overspend<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    fund(store, u, RACE_BALANCE).await;
    let racers = join_all((0..RACERS).map(|_| withdraw(store, u, RACE_AMOUNT))).await;
    let done: Vec<&Withdrawal> = racers
        .iter()
        .filter(|w| matches!(w.booked, Booked::Done { .. }))
        .collect();
    let refused = racers
        .iter()
        .filter(|w| w.booked == Booked::InsufficientFunds)
        .count();
    let winners = usize::try_from(RACE_BALANCE / RACE_AMOUNT).unwrap_or_default();
    assert_eq!(done.len(), winners);
    assert_eq!(refused, RACERS - winners);
    assert_balance(store, u, 0, RACE_BALANCE).await;
    for w in racers
        .iter()
        .filter(|w| w.booked == Booked::InsufficientFunds)
    {
        assert_eq!(ok(store.operation(w.operation.id).await), None);
    }
    if f.jobs.is_some() {
        for w in &done {
            assert_eq!(has_payout_job(f, w.operation.id).await, Some(true));
        }
    }
    the_ledger_verifies(store).await;
}

/// Asserts the whole ledger verifies.
pub async fn the_ledger_verifies<S: LedgerStore>(store: &S) {
    let report = ok(store.verify().await);
    assert!(report.is_consistent(), "{report:?}");
    assert!(report.accounts > 0 && report.transactions > 0, "{report:?}");
}

/// Concurrent callers in the racing cases below.
pub const CONTENDERS: usize = 10;

fn count<T: PartialEq>(outcomes: &[T], wanted: &T) -> usize {
    outcomes.iter().filter(|o| *o == wanted).count()
}

async fn racing_settlements_of_a_withdrawal_settle_once<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    fund(store, u, 500).await;
    let w = withdraw(store, u, 200).await;
    assert!(matches!(w.booked, Booked::Done { .. }));
    let clearing = AccountRef::system(SystemAccount::ProviderClearing, zar());
    let clearing_before = ok(store.account_balance(clearing).await);
    let at = whole_second_now();
    // Even indices post the hold (paid), odd ones void it (refused).
    let settlements: Vec<(bool, Transaction)> = (0..2 * CONTENDERS)
        .map(|i| {
            let paid = i % 2 == 0;
            let tx = if paid {
                Transaction::post_hold(&w.hold, at)
            } else {
                Transaction::void_hold(&w.hold, at)
            };
            (paid, tx.unwrap_or_else(|| panic!("a hold")))
        })
        .collect();
    let outcomes = join_all(settlements.iter().map(|(paid, tx)| {
        store.settle(Settlement {
            operation: w.operation.id,
            to: if *paid {
                OperationStatus::Succeeded
            } else {
                OperationStatus::Failed
            },
            transaction: Some(tx),
            provider_event: None,
            failure_reason: (!paid).then_some("payout refused"),
            at,
        })
    }))
    .await;
    let settled: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Ok(SettleOutcome::Settled)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(settled.len(), 1, "{outcomes:?}");
    let winner = settled
        .first()
        .and_then(|i| settlements.get(*i))
        .unwrap_or_else(|| panic!("a winner"));
    let final_status = if winner.0 {
        OperationStatus::Succeeded
    } else {
        OperationStatus::Failed
    };
    for outcome in &outcomes {
        assert!(
            matches!(
                outcome,
                Ok(SettleOutcome::Settled) | Ok(SettleOutcome::AlreadyFinal(_)) | Err(_)
            ),
            "{outcomes:?}"
        );
        if let Ok(SettleOutcome::AlreadyFinal(status)) = outcome {
            assert_eq!(*status, final_status, "{outcomes:?}");
        }
    }
    assert_eq!(status(store, w.operation.id).await, final_status);
    // Exactly one resolving transaction: the winner's.
    for (i, (_, tx)) in settlements.iter().enumerate() {
        let stored = ok(store.transaction(tx.id).await);
        assert_eq!(stored.is_some(), settled.contains(&i), "transaction {i}");
    }
    if winner.0 {
        assert_balance(store, u, 300, 0).await;
        assert_eq!(
            ok(store.account_balance(clearing).await),
            clearing_before + 200
        );
    } else {
        assert_balance(store, u, 500, 0).await;
        assert_eq!(ok(store.account_balance(clearing).await), clearing_before);
    }
}

async fn racing_provider_events_settle_a_deposit_once<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    let deposit = open_deposit(store, u, 300, whole_second_now()).await;
    let events: Vec<String> = (0..CONTENDERS)
        .map(|_| format!("evt-{}", Uuid::new_v4()))
        .collect();
    let outcomes: Vec<(SettleOutcome, Transaction)> = join_all(
        events
            .iter()
            .map(|event| settle_deposit(store, &deposit, Some(event))),
    )
    .await;
    let answers: Vec<SettleOutcome> = outcomes.iter().map(|(o, _)| *o).collect();
    assert_eq!(count(&answers, &SettleOutcome::Settled), 1, "{answers:?}");
    assert_eq!(
        count(
            &answers,
            &SettleOutcome::AlreadyFinal(OperationStatus::Succeeded)
        ),
        CONTENDERS - 1,
        "{answers:?}"
    );
    let winner = answers
        .iter()
        .position(|o| *o == SettleOutcome::Settled)
        .unwrap_or_else(|| panic!("a winner"));
    for (i, (_, tx)) in outcomes.iter().enumerate() {
        assert_eq!(
            ok(store.transaction(tx.id).await).is_some(),
            i == winner,
            "deposit transaction {i}"
        );
    }
    let stored = ok(store.operation(deposit.id).await).unwrap_or_else(|| panic!("stored"));
    assert_eq!(stored.status, OperationStatus::Succeeded);
    assert_eq!(
        stored.transaction_id,
        outcomes.get(winner).map(|(_, tx)| tx.id)
    );
    assert_balance(store, u, 300, 0).await;
    // The winner's event again is a duplicate; a loser's event is not, but the deposit is final.
    let winning_event = events.get(winner).unwrap_or_else(|| panic!("an event"));
    assert_eq!(
        settle_deposit(store, &deposit, Some(winning_event)).await.0,
        SettleOutcome::DuplicateEvent
    );
    let losing_event = events
        .get((winner + 1) % CONTENDERS)
        .unwrap_or_else(|| panic!("an event"));
    assert_eq!(
        settle_deposit(store, &deposit, Some(losing_event)).await.0,
        SettleOutcome::AlreadyFinal(OperationStatus::Succeeded)
    );
    assert_balance(store, u, 300, 0).await;
}

async fn racing_reversals_reverse_once<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let u = user();
    let deposit = fund(store, u, 400).await;
    // Extra funds, so the losers could afford a second reversal: only the link stops them.
    fund(store, u, 400).await;
    let reversals: Vec<(Operation, Transaction)> = (0..CONTENDERS)
        .map(|_| reversal_of(&deposit, u, 400))
        .collect();
    let outcomes: Vec<ReverseOutcome> = join_all(
        reversals
            .iter()
            .map(|(operation, reversal)| store.reverse(reversal, operation, None)),
    )
    .await
    .into_iter()
    .map(ok)
    .collect();
    let reversed = ReverseOutcome::Reversed {
        receipt_stored: false,
    };
    assert_eq!(count(&outcomes, &reversed), 1, "{outcomes:?}");
    assert_eq!(
        count(&outcomes, &ReverseOutcome::AlreadyReversed),
        CONTENDERS - 1,
        "{outcomes:?}"
    );
    for ((operation, reversal), outcome) in reversals.iter().zip(&outcomes) {
        let won = *outcome == reversed;
        assert_eq!(ok(store.operation(operation.id).await).is_some(), won);
        assert_eq!(ok(store.transaction(reversal.id).await).is_some(), won);
    }
    assert_balance(store, u, 400, 0).await;
}

async fn racing_approvals_apply_once<S: LedgerStore>(f: &Fixture<'_, S>) {
    let store = f.store;
    let (u, maker) = (user(), user());
    let pending = adjustment(u, maker, 9_000, Direction::Credit, true);
    assert_eq!(
        ok(store.create_adjustment(&pending, None, None).await).0,
        ApplyOutcome::Proposed
    );
    let approvals: Vec<(UserId, Operation, Transaction)> = (0..CONTENDERS)
        .map(|_| {
            let (operation, tx) = adjustment_booking(&pending);
            (user(), operation, tx)
        })
        .collect();
    let outcomes: Vec<ApplyOutcome> = join_all(
        approvals
            .iter()
            .map(|(checker, op, tx)| store.apply_adjustment(pending.id, *checker, op, tx)),
    )
    .await
    .into_iter()
    .map(ok)
    .collect();
    assert_eq!(count(&outcomes, &ApplyOutcome::Applied), 1, "{outcomes:?}");
    assert_eq!(
        count(&outcomes, &ApplyOutcome::AlreadyApplied),
        CONTENDERS - 1,
        "{outcomes:?}"
    );
    let winner = outcomes
        .iter()
        .position(|o| *o == ApplyOutcome::Applied)
        .and_then(|i| approvals.get(i))
        .unwrap_or_else(|| panic!("a winner"));
    let applied = ok(store.adjustment(pending.id).await).unwrap_or_else(|| panic!("stored"));
    assert_eq!(applied.status, AdjustmentStatus::Applied);
    assert_eq!(applied.approved_by, Some(winner.0));
    assert_eq!(applied.operation_id, Some(winner.1.id));
    for (_, operation, tx) in &approvals {
        let won = operation.id == winner.1.id;
        assert_eq!(ok(store.operation(operation.id).await).is_some(), won);
        assert_eq!(ok(store.transaction(tx.id).await).is_some(), won);
    }
    assert_balance(store, u, 9_000, 0).await;
}
