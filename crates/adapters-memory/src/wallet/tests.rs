//! The wallet use cases end to end on the memory ledger, with a scripted provider: deposits,
//! withdrawals, provider events in any order, reversals, maker-checker, reconciliation, a race
//! of withdrawals and a property test of random sequences.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use keel_domain::identity::user::UserId;
use keel_domain::jobs::{JobFilter, JobQueue};
use keel_domain::wallet::{
    ApprovalPolicy, Checkout, CheckoutRequest, Currency, Direction, EventOutcome, LedgerStore,
    MismatchKind, Money, OperationId, OperationStatus, PaymentProvider, PayoutRequest,
    ProviderError, ProviderEvent, ProviderEventData, ProviderEventType, ProviderStatus,
    TransactionId, WalletError, WalletPolicy, WalletService,
};
use uuid::Uuid;

use super::MemoryLedgerStore;
use crate::{ManualClock, MemoryJobQueue};

/// A provider that answers from a table the test fills in.
#[derive(Default)]
struct ScriptedProvider {
    statuses: Mutex<HashMap<OperationId, ProviderStatus>>,
    payouts: Mutex<Vec<PayoutRequest>>,
}

#[async_trait::async_trait]
impl PaymentProvider for ScriptedProvider {
    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<Checkout, ProviderError> {
        Ok(Checkout {
            checkout_reference: format!("chk_{}", request.reference.0.simple()),
            checkout_url: None,
        })
    }

    async fn create_payout(&self, request: &PayoutRequest) -> Result<(), ProviderError> {
        self.payouts
            .lock()
            .expect("not poisoned")
            .push(request.clone());
        Ok(())
    }

    async fn status(&self, reference: OperationId) -> Result<ProviderStatus, ProviderError> {
        Ok(self
            .statuses
            .lock()
            .expect("not poisoned")
            .get(&reference)
            .cloned()
            .unwrap_or(ProviderStatus::Unknown))
    }
}

struct Fixture {
    wallet: WalletService,
    store: MemoryLedgerStore,
    jobs: MemoryJobQueue,
    provider: Arc<ScriptedProvider>,
    clock: Arc<ManualClock>,
}

fn zar() -> Currency {
    Currency::parse("ZAR").expect("valid")
}

fn zar_of(minor: i64) -> Money {
    Money::parse(minor, "ZAR").expect("valid")
}

fn fixture() -> Fixture {
    let jobs = MemoryJobQueue::new();
    let store = MemoryLedgerStore::new(jobs.clone());
    let provider = Arc::new(ScriptedProvider::default());
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let policy = WalletPolicy {
        approval: ApprovalPolicy {
            approval_threshold: 1_000,
        },
        reconcile_after: Duration::minutes(10),
        default_currency: zar(),
    };
    let wallet = WalletService::new(
        Arc::new(store.clone()),
        provider.clone(),
        clock.clone(),
        policy,
    );
    Fixture {
        wallet,
        store,
        jobs,
        provider,
        clock,
    }
}

fn event(kind: ProviderEventType, reference: OperationId, minor: i64) -> ProviderEvent {
    ProviderEvent {
        id: format!("evt_{}", Uuid::now_v7().simple()),
        event_type: kind,
        created_at: Utc::now(),
        data: ProviderEventData {
            reference,
            amount_minor: minor,
            currency: zar(),
            reason: None,
        },
    }
}

impl Fixture {
    /// Deposits and settles `minor` for `user`; returns the deposit's transaction.
    async fn funded(&self, user: UserId, minor: i64) -> TransactionId {
        let opened = self
            .wallet
            .deposit(user, zar_of(minor), None)
            .await
            .expect("opened");
        let settled = self
            .wallet
            .handle_event(&event(
                ProviderEventType::DepositSucceeded,
                opened.operation.id,
                minor,
            ))
            .await
            .expect("handled");
        assert_eq!(settled, EventOutcome::Settled);
        self.store
            .operation(opened.operation.id)
            .await
            .expect("readable")
            .and_then(|o| self.store.transaction_of(o.id).map(|t| t.id))
            .expect("booked")
    }

    async fn balance(&self, user: UserId) -> (i64, i64, i64) {
        let b = self.wallet.balance(user, None).await.expect("balance");
        (b.available, b.held, b.total)
    }

    async fn consistent(&self) {
        let report = self.wallet.verify().await.expect("verify");
        assert!(report.is_consistent(), "{report:?}");
    }
}

#[tokio::test]
async fn a_deposit_settles_once_whatever_the_deliveries() {
    let f = fixture();
    let user = UserId(Uuid::now_v7());
    let opened = f
        .wallet
        .deposit(user, zar_of(500), None)
        .await
        .expect("opened");
    assert_eq!(opened.operation.status, OperationStatus::Pending);
    assert!(opened.checkout.checkout_reference.starts_with("chk_"));
    assert_eq!(
        f.balance(user).await,
        (0, 0, 0),
        "nothing moves before the webhook"
    );

    let paid = event(
        ProviderEventType::DepositSucceeded,
        opened.operation.id,
        500,
    );
    assert_eq!(
        f.wallet.handle_event(&paid).await.expect("ok"),
        EventOutcome::Settled
    );
    assert_eq!(
        f.wallet.handle_event(&paid).await.expect("ok"),
        EventOutcome::Duplicate
    );
    let again = event(
        ProviderEventType::DepositSucceeded,
        opened.operation.id,
        500,
    );
    assert_eq!(
        f.wallet.handle_event(&again).await.expect("ok"),
        EventOutcome::AlreadyFinal {
            status: OperationStatus::Succeeded,
            contradicts: false
        }
    );
    let late_failure = event(ProviderEventType::DepositFailed, opened.operation.id, 500);
    assert_eq!(
        f.wallet.handle_event(&late_failure).await.expect("ok"),
        EventOutcome::AlreadyFinal {
            status: OperationStatus::Succeeded,
            contradicts: true
        }
    );
    assert_eq!(f.balance(user).await, (500, 0, 500));
    f.consistent().await;
}

#[tokio::test]
async fn events_that_do_not_match_their_operation_change_nothing_and_are_reported() {
    let f = fixture();
    let user = UserId(Uuid::now_v7());
    let opened = f
        .wallet
        .deposit(user, zar_of(500), None)
        .await
        .expect("opened");
    let wrong_amount = event(
        ProviderEventType::DepositSucceeded,
        opened.operation.id,
        501,
    );
    assert_eq!(
        f.wallet.handle_event(&wrong_amount).await.expect("ok"),
        EventOutcome::Mismatch(MismatchKind::AmountDiffers)
    );
    let wrong_type = event(ProviderEventType::PayoutSucceeded, opened.operation.id, 500);
    assert_eq!(
        f.wallet.handle_event(&wrong_type).await.expect("ok"),
        EventOutcome::Mismatch(MismatchKind::WrongEventType)
    );
    let unknown = event(
        ProviderEventType::DepositSucceeded,
        OperationId(Uuid::now_v7()),
        5,
    );
    assert_eq!(
        f.wallet.handle_event(&unknown).await.expect("ok"),
        EventOutcome::Mismatch(MismatchKind::UnknownReference)
    );
    assert_eq!(f.balance(user).await, (0, 0, 0));
    let kinds: Vec<MismatchKind> = f
        .wallet
        .mismatches(10)
        .await
        .expect("listed")
        .into_iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            MismatchKind::UnknownReference,
            MismatchKind::WrongEventType,
            MismatchKind::AmountDiffers
        ]
    );
}

#[tokio::test]
async fn a_withdrawal_holds_at_once_and_is_posted_or_voided_exactly_once() {
    let f = fixture();
    let user = UserId(Uuid::now_v7());
    f.funded(user, 1_000).await;
    let refused = f.wallet.withdraw(user, zar_of(1_001), "bank:1", None).await;
    assert!(matches!(refused, Err(WalletError::InsufficientFunds)));
    let payouts = JobFilter {
        kind: Some("wallet.payout".into()),
        limit: 10,
        ..JobFilter::default()
    };
    assert!(
        f.jobs.list(&payouts).await.expect("jobs").is_empty(),
        "no job without a hold"
    );

    let placed = f
        .wallet
        .withdraw(user, zar_of(600), "bank:1", None)
        .await
        .expect("placed");
    assert_eq!(
        f.balance(user).await,
        (400, 600, 1_000),
        "held at once, total unchanged"
    );
    assert_eq!(
        f.jobs.list(&payouts).await.expect("jobs").len(),
        1,
        "payout enqueued with it"
    );
    let second = f.wallet.withdraw(user, zar_of(401), "bank:1", None).await;
    assert!(
        matches!(second, Err(WalletError::InsufficientFunds)),
        "holds count against the available balance"
    );

    f.wallet
        .send_payout(placed.operation.id)
        .await
        .expect("sent");
    assert_eq!(f.provider.payouts.lock().expect("ok").len(), 1);
    let sent = event(ProviderEventType::PayoutSucceeded, placed.operation.id, 600);
    assert_eq!(
        f.wallet.handle_event(&sent).await.expect("ok"),
        EventOutcome::Settled
    );
    assert_eq!(f.balance(user).await, (400, 0, 400));
    let failed = event(ProviderEventType::PayoutFailed, placed.operation.id, 600);
    assert!(matches!(
        f.wallet.handle_event(&failed).await.expect("ok"),
        EventOutcome::AlreadyFinal {
            contradicts: true,
            ..
        }
    ));
    f.wallet
        .release_withdrawal(placed.operation.id, "late")
        .await
        .expect("a no-op once final");
    assert_eq!(
        f.balance(user).await,
        (400, 0, 400),
        "never both posted and voided"
    );
    f.wallet
        .send_payout(placed.operation.id)
        .await
        .expect("no-op");
    assert_eq!(
        f.provider.payouts.lock().expect("ok").len(),
        1,
        "final: not sent again"
    );
    f.consistent().await;
}

#[tokio::test]
async fn a_failed_payout_releases_the_hold_and_a_late_success_is_reported() {
    let f = fixture();
    let user = UserId(Uuid::now_v7());
    f.funded(user, 300).await;
    let placed = f
        .wallet
        .withdraw(user, zar_of(300), "bank:1", None)
        .await
        .expect("placed");
    f.wallet
        .release_withdrawal(placed.operation.id, "payout failed after 5 attempt(s)")
        .await
        .expect("released");
    f.wallet
        .release_withdrawal(placed.operation.id, "again")
        .await
        .expect("idempotent");
    assert_eq!(f.balance(user).await, (300, 0, 300));
    let op = f
        .wallet
        .operation(user, placed.operation.id)
        .await
        .expect("own");
    assert_eq!(op.status, OperationStatus::Failed);
    assert_eq!(
        op.failure_reason.as_deref(),
        Some("payout failed after 5 attempt(s)")
    );

    let late = event(ProviderEventType::PayoutSucceeded, placed.operation.id, 300);
    assert!(matches!(
        f.wallet.handle_event(&late).await.expect("ok"),
        EventOutcome::AlreadyFinal {
            contradicts: true,
            ..
        }
    ));
    let found = f.wallet.mismatches(10).await.expect("listed");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, MismatchKind::SucceededAfterFailure);
    f.consistent().await;
}

#[tokio::test]
async fn reversals_mirror_deposits_once_and_never_overdraw() {
    let f = fixture();
    let user = UserId(Uuid::now_v7());
    let deposit = f.funded(user, 700).await;
    let reversed = f
        .wallet
        .reverse(deposit, "chargeback", None)
        .await
        .expect("reversed");
    assert_eq!(reversed.operation.direction, Direction::Debit);
    assert_eq!(reversed.operation.memo.as_deref(), Some("chargeback"));
    assert_eq!(f.balance(user).await, (0, 0, 0));
    assert!(matches!(
        f.wallet.reverse(deposit, "again", None).await,
        Err(WalletError::AlreadyReversed)
    ));
    let reversal_tx = reversed.operation.transaction_id.expect("booked");
    assert!(matches!(
        f.wallet.reverse(reversal_tx, "undo", None).await,
        Err(WalletError::NotReversible)
    ));

    let spent = f.funded(user, 200).await;
    let hold = f
        .wallet
        .withdraw(user, zar_of(150), "bank:1", None)
        .await
        .expect("placed");
    assert!(matches!(
        f.wallet.reverse(spent, "chargeback", None).await,
        Err(WalletError::InsufficientFunds)
    ));
    let hold_tx = hold.operation.transaction_id.expect("hold");
    assert!(matches!(
        f.wallet.reverse(hold_tx, "no", None).await,
        Err(WalletError::NotReversible)
    ));
    assert!(matches!(
        f.wallet
            .reverse(TransactionId(Uuid::now_v7()), "no", None)
            .await,
        Err(WalletError::NotFound)
    ));
    assert!(matches!(
        f.wallet.reverse(spent, "  ", None).await,
        Err(WalletError::Invalid {
            field: "reason",
            ..
        })
    ));
    f.consistent().await;
}

#[tokio::test]
async fn large_adjustments_need_a_second_admin_and_apply_once() {
    let f = fixture();
    let (maker, checker, user) = (
        UserId(Uuid::now_v7()),
        UserId(Uuid::now_v7()),
        UserId(Uuid::now_v7()),
    );
    let small = f
        .wallet
        .adjust(
            maker,
            user,
            zar_of(1_000),
            Direction::Credit,
            "goodwill",
            None,
        )
        .await
        .expect("applied")
        .0;
    assert_eq!(small.approved_by, Some(maker));
    assert_eq!(f.balance(user).await.0, 1_000);

    let large = f
        .wallet
        .adjust(
            maker,
            user,
            zar_of(5_000),
            Direction::Credit,
            "migration",
            None,
        )
        .await
        .expect("proposed")
        .0;
    assert!(large.needs_approval);
    assert_eq!(
        f.balance(user).await.0,
        1_000,
        "nothing moves before approval"
    );
    assert!(matches!(
        f.wallet.approve(maker, large.id).await,
        Err(WalletError::SameApprover)
    ));
    let applied = f.wallet.approve(checker, large.id).await.expect("approved");
    assert_eq!(applied.approved_by, Some(checker));
    assert_eq!(f.balance(user).await.0, 6_000);
    assert!(matches!(
        f.wallet.approve(checker, large.id).await,
        Err(WalletError::AlreadyApplied)
    ));

    let too_much = f
        .wallet
        .adjust(maker, user, zar_of(7_000), Direction::Debit, "error", None)
        .await
        .expect("proposed")
        .0;
    assert!(matches!(
        f.wallet.approve(checker, too_much.id).await,
        Err(WalletError::InsufficientFunds)
    ));
    assert_eq!(f.balance(user).await.0, 6_000);
    assert!(matches!(
        f.wallet
            .adjust(maker, maker, zar_of(10), Direction::Credit, "for me", None)
            .await,
        Err(WalletError::SelfAdjustment)
    ));
    f.consistent().await;
}

#[tokio::test]
async fn reconciliation_settles_what_the_provider_knows_and_reports_the_rest() {
    let f = fixture();
    let user = UserId(Uuid::now_v7());
    let paid = f
        .wallet
        .deposit(user, zar_of(100), None)
        .await
        .expect("opened");
    let lost = f
        .wallet
        .deposit(user, zar_of(200), None)
        .await
        .expect("opened");
    let skewed = f
        .wallet
        .deposit(user, zar_of(300), None)
        .await
        .expect("opened");
    let waiting = f
        .wallet
        .deposit(user, zar_of(400), None)
        .await
        .expect("opened");
    let refused = f
        .wallet
        .deposit(user, zar_of(500), None)
        .await
        .expect("opened");
    {
        let mut statuses = f.provider.statuses.lock().expect("ok");
        statuses.insert(
            paid.operation.id,
            ProviderStatus::Succeeded { money: zar_of(100) },
        );
        statuses.insert(
            skewed.operation.id,
            ProviderStatus::Succeeded { money: zar_of(299) },
        );
        statuses.insert(waiting.operation.id, ProviderStatus::Pending);
        statuses.insert(
            refused.operation.id,
            ProviderStatus::Failed {
                reason: "card declined".into(),
            },
        );
    }
    let early = f.wallet.reconcile().await.expect("ran");
    assert_eq!(
        early.checked, 0,
        "young operations are left to their webhooks"
    );

    f.clock.advance(Duration::minutes(11));
    let report = f.wallet.reconcile().await.expect("ran");
    assert_eq!(
        (report.checked, report.settled, report.still_pending),
        (5, 2, 1)
    );
    assert_eq!(report.mismatches, 2, "a lost deposit and a skewed amount");
    assert_eq!(f.balance(user).await, (100, 0, 100));
    let op = f
        .wallet
        .operation(user, refused.operation.id)
        .await
        .expect("own");
    assert_eq!(op.failure_reason.as_deref(), Some("card declined"));
    let again = f.wallet.reconcile().await.expect("ran");
    assert_eq!(again.mismatches, 0, "a finding is kept once");
    let lost_op = f
        .wallet
        .operation(user, lost.operation.id)
        .await
        .expect("own");
    assert_eq!(
        lost_op.status,
        OperationStatus::Pending,
        "left for an admin"
    );
    f.consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_withdrawals_never_overspend() {
    let f = fixture();
    let user = UserId(Uuid::now_v7());
    f.funded(user, 500).await;
    let attempts = (0..100).map(|_| {
        let wallet = f.wallet.clone();
        tokio::spawn(async move { wallet.withdraw(user, zar_of(10), "bank:1", None).await })
    });
    let mut accepted = 0;
    for attempt in attempts {
        match attempt.await.expect("joined") {
            Ok(_) => accepted += 1,
            Err(WalletError::InsufficientFunds) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(accepted, 50);
    assert_eq!(f.balance(user).await, (0, 500, 500));
    f.consistent().await;
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// One step of a random wallet history.
    #[derive(Debug, Clone)]
    enum Step {
        Deposit {
            user: usize,
            minor: i64,
            pays: bool,
        },
        Withdraw {
            user: usize,
            minor: i64,
        },
        Resolve {
            nth: usize,
            succeeds: bool,
        },
        Reverse {
            nth: usize,
        },
        Adjust {
            user: usize,
            minor: i64,
            credit: bool,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..3usize, 1..500i64, any::<bool>()).prop_map(|(user, minor, pays)| Step::Deposit {
                user,
                minor,
                pays
            }),
            (0..3usize, 1..400i64).prop_map(|(user, minor)| Step::Withdraw { user, minor }),
            (0..20usize, any::<bool>()).prop_map(|(nth, succeeds)| Step::Resolve { nth, succeeds }),
            (0..20usize).prop_map(|nth| Step::Reverse { nth }),
            (0..3usize, 1..300i64, any::<bool>()).prop_map(|(user, minor, credit)| Step::Adjust {
                user,
                minor,
                credit
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sequence of deposits, withdrawals, posts, voids, reversals and adjustments keeps
        /// every transaction balanced, the stored balances equal to the rebuilt ones, and no
        /// wallet below zero; the balances match a simple model.
        #[test]
        fn random_histories_keep_the_ledger_consistent(steps in prop::collection::vec(step(), 1..40)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let f = fixture();
                let admin = UserId(Uuid::now_v7());
                let users: Vec<UserId> = (0..3).map(|_| UserId(Uuid::now_v7())).collect();
                let mut model = [(0i64, 0i64); 3]; // (available, held)
                let mut withdrawals: Vec<(usize, OperationId, i64)> = Vec::new();
                let mut reversible: Vec<(usize, TransactionId, i64)> = Vec::new();
                for step in steps {
                    match step {
                        Step::Deposit { user, minor, pays } => {
                            let opened = f.wallet.deposit(users[user], zar_of(minor), None).await.expect("opened");
                            let kind = if pays { ProviderEventType::DepositSucceeded } else { ProviderEventType::DepositFailed };
                            f.wallet.handle_event(&event(kind, opened.operation.id, minor)).await.expect("handled");
                            if pays {
                                model[user].0 += minor;
                                let tx = f.store.transaction_of(opened.operation.id).expect("booked");
                                reversible.push((user, tx.id, minor));
                            }
                        }
                        Step::Withdraw { user, minor } => {
                            match f.wallet.withdraw(users[user], zar_of(minor), "bank", None).await {
                                Ok(placed) => {
                                    model[user].0 -= minor;
                                    model[user].1 += minor;
                                    withdrawals.push((user, placed.operation.id, minor));
                                }
                                Err(WalletError::InsufficientFunds) => prop_assert!(model[user].0 < minor),
                                Err(e) => panic!("unexpected {e}"),
                            }
                        }
                        Step::Resolve { nth, succeeds } => {
                            if withdrawals.is_empty() { continue; }
                            let (user, id, minor) = withdrawals.remove(nth % withdrawals.len());
                            let kind = if succeeds { ProviderEventType::PayoutSucceeded } else { ProviderEventType::PayoutFailed };
                            f.wallet.handle_event(&event(kind, id, minor)).await.expect("handled");
                            model[user].1 -= minor;
                            if !succeeds { model[user].0 += minor; }
                        }
                        Step::Reverse { nth } => {
                            if reversible.is_empty() { continue; }
                            let (user, tx, signed) = reversible.remove(nth % reversible.len());
                            match f.wallet.reverse(tx, "test", None).await {
                                Ok(_) => model[user].0 -= signed,
                                Err(WalletError::InsufficientFunds) => prop_assert!(model[user].0 < signed),
                                Err(e) => panic!("unexpected {e}"),
                            }
                        }
                        Step::Adjust { user, minor, credit } => {
                            let direction = if credit { Direction::Credit } else { Direction::Debit };
                            match f.wallet.adjust(admin, users[user], zar_of(minor), direction, "test", None).await {
                                Ok((adjustment, _)) => {
                                    let signed = if credit { minor } else { -minor };
                                    model[user].0 += signed;
                                    if let Some(op) = adjustment.operation_id {
                                        let tx = f.store.transaction_of(op).expect("booked");
                                        reversible.push((user, tx.id, signed));
                                    }
                                }
                                Err(WalletError::InsufficientFunds) => prop_assert!(!credit && model[user].0 < minor),
                                Err(e) => panic!("unexpected {e}"),
                            }
                        }
                    }
                    for (i, user) in users.iter().enumerate() {
                        let (available, held, total) = f.balance(*user).await;
                        prop_assert!(available >= 0);
                        prop_assert_eq!((available, held), model[i]);
                        prop_assert_eq!(total, available + held);
                    }
                }
                let report = f.wallet.verify().await.expect("verify");
                prop_assert!(report.is_consistent(), "{:?}", report);
                Ok(())
            })?;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_ledger_keeps_the_contract() {
    use keel_domain::testkit::ledger_store::{Fixture as Contract, run_all};
    let jobs = MemoryJobQueue::new();
    let store = MemoryLedgerStore::new(jobs.clone());
    run_all(&Contract {
        store: &store,
        jobs: Some(&jobs),
    })
    .await;
}

#[tokio::test]
async fn a_dead_payout_the_provider_made_is_posted_not_released() {
    let f = fixture();
    let user = UserId(Uuid::now_v7());
    f.funded(user, 300).await;
    let placed = f
        .wallet
        .withdraw(user, zar_of(100), "bank:1", None)
        .await
        .expect("placed");
    f.provider
        .statuses
        .lock()
        .expect("ok")
        .insert(placed.operation.id, ProviderStatus::Pending);
    f.wallet
        .release_withdrawal(placed.operation.id, "dead")
        .await
        .expect("asked");
    assert_eq!(
        f.balance(user).await,
        (200, 100, 300),
        "still in flight: held"
    );
    f.provider.statuses.lock().expect("ok").insert(
        placed.operation.id,
        ProviderStatus::Succeeded { money: zar_of(100) },
    );
    f.wallet
        .release_withdrawal(placed.operation.id, "dead")
        .await
        .expect("asked");
    assert_eq!(
        f.balance(user).await,
        (200, 0, 200),
        "paid: posted, not released"
    );
    f.consistent().await;
}
