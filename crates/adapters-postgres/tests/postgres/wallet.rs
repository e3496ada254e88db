//! The ledger store contract on Postgres, and what the schema adds: append-only ledger rows, the
//! balance checks (one complete balanced group of postings per transaction, postings by commit),
//! the no-overdraft CHECK and final operations staying final.

use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};
use keel_adapters_postgres::testkit::TestDatabase;
use keel_adapters_postgres::{PgJobQueue, PgLedgerStore};
use keel_domain::testkit::ledger_store::{Fixture, fund, open_deposit, run_all, settle_deposit};
use keel_domain::testkit::support::whole_second_now;
use keel_domain::wallet::{LedgerStore, SettleOutcome};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn postgres_ledger_keeps_the_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let jobs = PgJobQueue::new(db.pool().clone());
    run_all(&Fixture {
        store: &store,
        jobs: Some(&jobs),
    })
    .await;
}

/// A funded wallet, and the ids of its deposit transaction's rows.
async fn funded(store: &PgLedgerStore) -> (keel_domain::identity::user::UserId, Uuid) {
    let user = keel_domain::identity::user::UserId(Uuid::now_v7());
    let tx = fund(store, user, 500).await;
    (user, tx.id.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_and_postings_are_append_only() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let (_, tx) = funded(&store).await;
    let mut conn = db.pool().get().await.unwrap();
    for sql in [
        "UPDATE ledger_transactions SET created_at = now() WHERE id = $1",
        "DELETE FROM ledger_transactions WHERE id = $1",
        "UPDATE ledger_postings SET amount = amount * 2 WHERE transaction_id = $1",
        "DELETE FROM ledger_postings WHERE transaction_id = $1",
    ] {
        let refused = diesel::sql_query(sql)
            .bind::<SqlUuid, _>(tx)
            .execute(&mut conn)
            .await;
        assert!(refused.is_err(), "{sql} must be refused");
    }
    for table in ["ledger_postings", "ledger_transactions"] {
        let refused = diesel::sql_query(format!("TRUNCATE {table} CASCADE"))
            .execute(&mut conn)
            .await;
        assert!(refused.is_err(), "TRUNCATE {table} must be refused");
    }
    let postings: Vec<Count> =
        diesel::sql_query("SELECT count(*) AS n FROM ledger_postings WHERE transaction_id = $1")
            .bind::<SqlUuid, _>(tx)
            .load(&mut conn)
            .await
            .unwrap();
    assert_eq!(postings[0].n, 2);
    assert!(store.verify().await.unwrap().is_consistent());
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Writes a transaction by hand: `amounts` posted to the user's available account and the
/// clearing account, in one database transaction.
async fn raw_transaction(
    conn: &mut diesel_async::AsyncPgConnection,
    available: i64,
    clearing: i64,
) -> Result<(), diesel::result::Error> {
    conn.transaction(async |conn| {
        let tx = Uuid::now_v7();
        diesel::sql_query(
            "INSERT INTO ledger_transactions (id, kind, created_at) VALUES ($1, 'deposit', now())",
        )
        .bind::<SqlUuid, _>(tx)
        .execute(conn)
        .await?;
        diesel::sql_query(
            "INSERT INTO ledger_postings (transaction_id, position, account_id, amount) \
             SELECT $1, 0, id, $2 FROM ledger_accounts WHERE purpose = 'provider_clearing' \
             UNION ALL \
             SELECT $1, 1, id, $3 FROM ledger_accounts WHERE purpose = 'available' LIMIT 2",
        )
        .bind::<SqlUuid, _>(tx)
        .bind::<BigInt, _>(clearing)
        .bind::<BigInt, _>(available)
        .execute(conn)
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deferred_trigger_refuses_unbalanced_transactions_at_commit() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    funded(&store).await;
    let mut conn = db.pool().get().await.unwrap();
    // Balanced by hand: accepted (balances are not touched, so verify would see drift; the
    // point here is only the trigger).
    raw_transaction(&mut conn, 7, -7).await.unwrap();
    let refused = raw_transaction(&mut conn, 7, -6).await;
    assert!(refused.is_err(), "unbalanced postings must fail at commit");
    // A transaction without postings is refused too.
    let empty = conn
        .transaction(async |conn| {
            diesel::sql_query(
                "INSERT INTO ledger_transactions (id, kind, created_at) \
                 VALUES ($1, 'deposit', now())",
            )
            .bind::<SqlUuid, _>(Uuid::now_v7())
            .execute(conn)
            .await
        })
        .await;
    assert!(empty.is_err(), "a transaction needs postings");
    // A link its kind cannot have is refused by the CHECK.
    let linked = diesel::sql_query(
        "INSERT INTO ledger_transactions (id, kind, reverses, created_at) \
         SELECT $1, 'deposit', id, now() FROM ledger_transactions LIMIT 1",
    )
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .execute(&mut conn)
    .await;
    assert!(linked.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_check_refuses_a_negative_wallet_balance() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let (user, _) = funded(&store).await;
    let mut conn = db.pool().get().await.unwrap();
    let refused = diesel::sql_query(
        "UPDATE ledger_accounts SET balance = -1 WHERE user_id = $1 AND purpose = 'available'",
    )
    .bind::<SqlUuid, _>(user.0)
    .execute(&mut conn)
    .await;
    assert!(refused.is_err(), "a wallet never goes below zero");
    // System accounts may.
    let clearing = diesel::sql_query(
        "UPDATE ledger_accounts SET balance = balance WHERE purpose = 'provider_clearing'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(clearing, 1);
    let balance = store
        .balance(user, keel_domain::testkit::ledger_store::zar())
        .await
        .unwrap();
    assert_eq!((balance.available, balance.held), (500, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_final_operation_cannot_be_reopened() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let user = keel_domain::identity::user::UserId(Uuid::now_v7());
    let deposit = open_deposit(&store, user, 100, whole_second_now()).await;
    let mut conn = db.pool().get().await.unwrap();
    // Pending: its state may change.
    diesel::sql_query("UPDATE wallet_operations SET provider_reference = 'chk-2' WHERE id = $1")
        .bind::<SqlUuid, _>(deposit.id.0)
        .execute(&mut conn)
        .await
        .unwrap();
    let (outcome, _) = settle_deposit(&store, &deposit, None).await;
    assert_eq!(outcome, SettleOutcome::Settled);
    for sql in [
        "UPDATE wallet_operations SET status = 'pending' WHERE id = $1",
        "UPDATE wallet_operations SET status = 'failed' WHERE id = $1",
        "DELETE FROM wallet_operations WHERE id = $1",
    ] {
        let refused = diesel::sql_query(sql)
            .bind::<SqlUuid, _>(deposit.id.0)
            .execute(&mut conn)
            .await;
        assert!(refused.is_err(), "{sql} must be refused");
    }
    let stored = store.operation(deposit.id).await.unwrap().unwrap();
    assert_eq!(
        stored.status,
        keel_domain::wallet::OperationStatus::Succeeded
    );
}

struct Receipt(keel_domain::idempotency::Claim);

impl keel_domain::wallet::OperationReceipt for Receipt {
    fn claim(&self) -> &keel_domain::idempotency::Claim {
        &self.0
    }

    fn response(
        &self,
        operation: &keel_domain::wallet::Operation,
    ) -> Result<keel_domain::idempotency::StoredResponse, keel_domain::StoreError> {
        Ok(keel_domain::idempotency::StoredResponse {
            status: 201,
            headers: vec![],
            body: operation.id.0.to_string().into_bytes(),
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_idempotent_response_commits_with_the_withdrawal_or_not_at_all() {
    use keel_adapters_postgres::PgIdempotencyStore;
    use keel_domain::idempotency::{
        ClaimOutcome, IdempotencyKey, IdempotencyPolicy, IdempotencyStore, RequestFingerprint,
        Scope, StoredResponse,
    };
    use keel_domain::jobs::JobKind;
    use keel_domain::testkit::ledger_store::money;
    use keel_domain::wallet::{Booked, Operation, OperationKind, SendPayout, Transaction};

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let keys = PgIdempotencyStore::new(db.pool().clone());
    let (user, _) = funded(&store).await;
    let fp = RequestFingerprint::compute("POST", "/wallet/withdrawals", "u", b"");
    let claim = async |key: &str| match keys
        .claim(
            &Scope::user("u"),
            &IdempotencyKey::parse(key).unwrap(),
            &fp,
            IdempotencyPolicy::default(),
            whole_second_now(),
        )
        .await
        .unwrap()
    {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("{other:?}"),
    };
    let withdrawal = |minor: i64| {
        let at = whole_second_now();
        let mut operation = Operation::new(user, OperationKind::Withdrawal, money(minor), at);
        let hold = Transaction::hold(user, money(minor), operation.id, at);
        operation.transaction_id = Some(hold.id);
        let job = SendPayout {
            operation_id: operation.id,
        }
        .to_new_job(at)
        .unwrap();
        (operation, hold, job)
    };

    let (operation, hold, job) = withdrawal(100);
    let receipt = Receipt(claim("w-1").await);
    let booked = store
        .place_withdrawal(&operation, &hold, &[job], Some(&receipt))
        .await
        .unwrap();
    assert_eq!(
        booked,
        Booked::Done {
            receipt_stored: true
        }
    );
    let replay = keys
        .claim(
            &Scope::user("u"),
            &IdempotencyKey::parse("w-1").unwrap(),
            &fp,
            IdempotencyPolicy::default(),
            whole_second_now(),
        )
        .await
        .unwrap();
    match replay {
        ClaimOutcome::Replay(response) => {
            assert_eq!(response.body, operation.id.0.to_string().into_bytes());
        }
        other => panic!("expected a replay, got {other:?}"),
    }

    // A claim completed elsewhere cannot be completed again: the hold rolls back.
    let (operation, hold, job) = withdrawal(100);
    let lost = Receipt(claim("w-2").await);
    keys.complete(
        &lost.0,
        &StoredResponse {
            status: 500,
            headers: vec![],
            body: vec![],
        },
    )
    .await
    .unwrap();
    assert!(
        store
            .place_withdrawal(&operation, &hold, &[job], Some(&lost))
            .await
            .is_err()
    );
    assert_eq!(store.operation(operation.id).await.unwrap(), None);
    let balance = store
        .balance(user, keel_domain::testkit::ledger_store::zar())
        .await
        .unwrap();
    assert_eq!((balance.available, balance.held), (400, 100));
    assert!(store.verify().await.unwrap().is_consistent());
}

/// The ledger check is worth something only if it finds what the schema normally prevents: the
/// test database's rules are switched off by hand to write each kind of damage.
#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_drift_unbalanced_transactions_and_overdrawn_wallets() {
    use keel_domain::testkit::ledger_store::zar;
    use keel_domain::wallet::{AccountRef, SystemAccount, TransactionId};

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let (user, _) = funded(&store).await;
    assert!(store.verify().await.unwrap().is_consistent());
    let mut conn = db.pool().get().await.unwrap();

    // Postings written by hand without their balance changes: both accounts drift.
    raw_transaction(&mut conn, 7, -7).await.unwrap();
    let report = store.verify().await.unwrap();
    let mut drifted: Vec<_> = report
        .drifted
        .iter()
        .map(|d| (d.account, d.stored, d.rebuilt))
        .collect();
    drifted.sort();
    let mut expected = vec![
        (AccountRef::available(user, zar()), 500, 507),
        (
            AccountRef::system(SystemAccount::ProviderClearing, zar()),
            -500,
            -507,
        ),
    ];
    expected.sort();
    assert_eq!(drifted, expected);
    assert!(report.unbalanced.is_empty() && report.overdrawn.is_empty());
    assert_eq!((report.accounts, report.transactions), (2, 2));

    // With the triggers and the overdraft CHECK off: an unbalanced transaction and an
    // overdrawn wallet.
    let unbalanced = Uuid::now_v7();
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut *conn,
        &format!(
            "SET session_replication_role = replica; \
         ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_no_overdraft; \
         INSERT INTO ledger_transactions (id, kind, created_at) \
             VALUES ('{unbalanced}', 'deposit', now()); \
         INSERT INTO ledger_postings (transaction_id, position, account_id, amount) \
             SELECT '{unbalanced}', 0, id, 5 FROM ledger_accounts WHERE purpose = 'available'; \
         UPDATE ledger_accounts SET balance = -1 WHERE purpose = 'available'; \
         SET session_replication_role = origin;"
        ),
    )
    .await
    .unwrap();
    let report = store.verify().await.unwrap();
    assert_eq!(report.unbalanced, [TransactionId(unbalanced)]);
    assert_eq!(report.overdrawn, [AccountRef::available(user, zar())]);
    assert!(!report.is_consistent());
}

/// A transfer of `minor` between two wallets' available funds (kind `adjustment`, no operation:
/// the ledger has no transfer kind of its own; the shape is what matters here).
fn transfer(
    from: keel_domain::identity::user::UserId,
    to: keel_domain::identity::user::UserId,
    minor: i64,
) -> keel_domain::wallet::Transaction {
    use keel_domain::wallet::{AccountRef, Currency, Posting, Transaction, TransactionId};
    let zar = Currency::parse("ZAR").expect("ZAR");
    let tx = Transaction {
        id: TransactionId(Uuid::now_v7()),
        kind: keel_domain::wallet::TransactionKind::Adjustment,
        operation: None,
        reverses: None,
        resolves: None,
        postings: vec![
            Posting {
                account: AccountRef::available(from, zar),
                amount: -minor,
            },
            Posting {
                account: AccountRef::available(to, zar),
                amount: minor,
            },
        ],
        created_at: whole_second_now(),
    };
    tx.validate().expect("a valid transfer");
    tx
}

/// Funded wallets (500 each) and a reader of their available balances.
async fn funded_wallets(
    store: &PgLedgerStore,
    n: usize,
) -> Vec<keel_domain::identity::user::UserId> {
    let mut users = Vec::new();
    for _ in 0..n {
        users.push(funded(store).await.0);
    }
    users
}

async fn available(
    store: &PgLedgerStore,
    users: &[keel_domain::identity::user::UserId],
) -> Vec<i64> {
    let zar = keel_domain::wallet::Currency::parse("ZAR").expect("ZAR");
    let mut balances = Vec::new();
    for user in users {
        let balance = store.balance(*user, zar).await.expect("balance");
        balances.push(balance.available);
    }
    balances
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_books_every_transfer_in_one_transaction() {
    use keel_domain::wallet::Booked;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let users = funded_wallets(&store, 6).await;
    let mut batch = Vec::new();
    // A ring of transfers, twice around, plus one wallet spending money it receives in the
    // same batch (its net change is what the overdraft rule checks).
    for round in 0..2 {
        for i in 0..users.len() {
            let j = (i + 1) % users.len();
            let minor = 10 * (i as i64 + 1) + round;
            batch.push(transfer(users[i], users[j], minor));
        }
    }
    // Wallet 2: 500 + (20 + 21) in − (30 + 31) out = 480; it gets 100 more and sends 580.
    batch.push(transfer(users[1], users[2], 100));
    batch.push(transfer(users[2], users[3], 580));
    let mut check = vec![500_i64; users.len()];
    for tx in &batch {
        for leg in &tx.postings {
            let owner = leg.account.user().expect("a wallet");
            let k = users.iter().position(|u| *u == owner).expect("known");
            check[k] += leg.amount;
        }
    }
    assert_eq!(check[2], 0);
    assert_eq!(
        store.book_batch(&batch).await.expect("booked"),
        Booked::Done {
            receipt_stored: false
        }
    );
    assert_eq!(available(&store, &users).await, check);
    for tx in &batch {
        let stored = store.transaction(tx.id).await.expect("read");
        assert_eq!(stored.as_ref(), Some(tx));
    }
    // The single path books one transfer the same way.
    let single = transfer(users[0], users[5], 7);
    assert!(matches!(
        store.book(&single).await.expect("booked"),
        Booked::Done { .. }
    ));
    check[0] -= 7;
    check[5] += 7;
    assert_eq!(available(&store, &users).await, check);
    let report = store.verify().await.expect("verify");
    assert!(report.is_consistent(), "{report:?}");
    // 6 deposits, the batch and the single transfer.
    assert_eq!(report.transactions, 6 + batch.len() as u64 + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_with_one_overdraft_books_nothing() {
    use keel_domain::wallet::Booked;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let users = funded_wallets(&store, 6).await;
    let mut batch: Vec<_> = (0..users.len())
        .map(|i| transfer(users[i], users[(i + 1) % users.len()], 50))
        .collect();
    // Wallet 4 sends more than it has plus what it receives in the batch.
    batch.insert(3, transfer(users[4], users[0], 501));
    assert_eq!(
        store.book_batch(&batch).await.expect("answered"),
        Booked::InsufficientFunds
    );
    assert_eq!(available(&store, &users).await, vec![500; users.len()]);
    for tx in &batch {
        assert_eq!(store.transaction(tx.id).await.expect("read"), None);
    }
    // The single path refuses an overdraft the same way.
    assert_eq!(
        store
            .book(&transfer(users[0], users[1], 501))
            .await
            .expect("answered"),
        Booked::InsufficientFunds
    );
    // A batch whose link is taken is a conflict, and writes nothing either.
    let first = transfer(users[0], users[1], 5);
    let again = vec![transfer(users[1], users[2], 5), first.clone()];
    assert!(matches!(
        store.book(&first).await.expect("booked"),
        Booked::Done { .. }
    ));
    assert!(store.book_batch(&again).await.is_err());
    assert_eq!(
        available(&store, &users).await,
        vec![495, 505, 500, 500, 500, 500]
    );
    let report = store.verify().await.expect("verify");
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(report.transactions, 6 + 1);
}

/// Runs each statement (binding `id`) and asserts the database refuses it.
async fn refused(conn: &mut diesel_async::AsyncPgConnection, id: Uuid, statements: &[&str]) {
    for sql in statements {
        let result = diesel::sql_query(*sql)
            .bind::<SqlUuid, _>(id)
            .execute(conn)
            .await;
        assert!(result.is_err(), "{sql} must be refused");
    }
}

/// Runs each statement (binding `id`) and asserts it changed one row.
async fn accepted(conn: &mut diesel_async::AsyncPgConnection, id: Uuid, statements: &[&str]) {
    for sql in statements {
        let changed = diesel::sql_query(*sql)
            .bind::<SqlUuid, _>(id)
            .execute(conn)
            .await
            .unwrap_or_else(|e| panic!("{sql} must be accepted: {e}"));
        assert_eq!(changed, 1, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_operation_changes_only_its_state() {
    use keel_domain::testkit::ledger_store::withdraw;

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let user = keel_domain::identity::user::UserId(Uuid::now_v7());
    let deposit = open_deposit(&store, user, 100, whole_second_now()).await;
    let mut conn = db.pool().get().await.expect("a connection");
    refused(
        &mut conn,
        deposit.id.0,
        &[
            "UPDATE wallet_operations SET user_id = gen_random_uuid() WHERE id = $1",
            "UPDATE wallet_operations SET kind = 'adjustment' WHERE id = $1",
            "UPDATE wallet_operations SET direction = 'debit' WHERE id = $1",
            "UPDATE wallet_operations SET amount_minor = 1000000 WHERE id = $1",
            "UPDATE wallet_operations SET currency = 'USD' WHERE id = $1",
            "UPDATE wallet_operations SET destination = 'ZA-BANK-9999' WHERE id = $1",
            "UPDATE wallet_operations SET memo = 'note' WHERE id = $1",
            "UPDATE wallet_operations SET created_at = now() WHERE id = $1",
            "UPDATE wallet_operations SET id = gen_random_uuid() WHERE id = $1",
            "DELETE FROM wallet_operations WHERE id = $1",
        ],
    )
    .await;
    accepted(
        &mut conn,
        deposit.id.0,
        &[
            "UPDATE wallet_operations SET provider_reference = 'chk-new' WHERE id = $1",
            "UPDATE wallet_operations SET updated_at = now(), failure_reason = 'x' WHERE id = $1",
        ],
    )
    .await;
    let truncate = diesel::sql_query("TRUNCATE wallet_operations CASCADE")
        .execute(&mut conn)
        .await;
    assert!(
        truncate.is_err(),
        "TRUNCATE wallet_operations must be refused"
    );

    // A withdrawal names its hold from the start: the link never changes or goes.
    fund(&store, user, 500).await;
    let w = withdraw(&store, user, 200).await;
    let other = fund(&store, user, 1).await;
    refused(
        &mut conn,
        w.operation.id.0,
        &["UPDATE wallet_operations SET transaction_id = NULL WHERE id = $1"],
    )
    .await;
    let relinked =
        diesel::sql_query("UPDATE wallet_operations SET transaction_id = $2 WHERE id = $1")
            .bind::<SqlUuid, _>(w.operation.id.0)
            .bind::<SqlUuid, _>(other.id.0)
            .execute(&mut conn)
            .await;
    assert!(relinked.is_err(), "a named transaction is never replaced");
    // The legitimate paths still work: settling names the deposit's booking (NULL → value).
    let (outcome, tx) = settle_deposit(&store, &deposit, None).await;
    assert_eq!(outcome, SettleOutcome::Settled);
    let stored = store
        .operation(deposit.id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.transaction_id, Some(tx.id));
    assert_eq!(stored.provider_reference.as_deref(), Some("chk-new"));
    assert!(store.verify().await.expect("verify").is_consistent());
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_events_are_append_only() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let user = keel_domain::identity::user::UserId(Uuid::now_v7());
    let deposit = open_deposit(&store, user, 100, whole_second_now()).await;
    let (outcome, _) = settle_deposit(&store, &deposit, Some("evt-append-only")).await;
    assert_eq!(outcome, SettleOutcome::Settled);
    let mut conn = db.pool().get().await.expect("a connection");
    refused(
        &mut conn,
        deposit.id.0,
        &[
            "UPDATE provider_events SET event_id = 'evt-other' WHERE operation_id = $1",
            "UPDATE provider_events SET processed_at = now() WHERE operation_id = $1",
            "DELETE FROM provider_events WHERE operation_id = $1",
        ],
    )
    .await;
    let truncate = diesel::sql_query("TRUNCATE provider_events")
        .execute(&mut conn)
        .await;
    assert!(
        truncate.is_err(),
        "TRUNCATE provider_events must be refused"
    );
    // Still recorded: the same event is a duplicate.
    assert_eq!(
        settle_deposit(&store, &deposit, Some("evt-append-only"))
            .await
            .0,
        SettleOutcome::DuplicateEvent
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adjustment_only_moves_from_pending_to_applied() {
    use keel_domain::testkit::ledger_store::{adjustment, adjustment_booking};
    use keel_domain::wallet::{AdjustmentStatus, ApplyOutcome, Direction};

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let (user, maker, checker) = (
        keel_domain::identity::user::UserId(Uuid::now_v7()),
        keel_domain::identity::user::UserId(Uuid::now_v7()),
        keel_domain::identity::user::UserId(Uuid::now_v7()),
    );
    let pending = adjustment(user, maker, 5_000, Direction::Credit, true);
    assert_eq!(
        store
            .create_adjustment(&pending, None, None)
            .await
            .expect("proposed")
            .0,
        ApplyOutcome::Proposed
    );
    let mut conn = db.pool().get().await.expect("a connection");
    refused(
        &mut conn,
        pending.id.0,
        &[
            "UPDATE wallet_adjustments SET amount_minor = 9999999 WHERE id = $1",
            "UPDATE wallet_adjustments SET direction = 'debit' WHERE id = $1",
            "UPDATE wallet_adjustments SET reason = 'other' WHERE id = $1",
            "UPDATE wallet_adjustments SET proposed_by = gen_random_uuid() WHERE id = $1",
            "UPDATE wallet_adjustments SET needs_approval = false WHERE id = $1",
            // Approving needs the approver, the operation and the time, all at once.
            "UPDATE wallet_adjustments SET approved_by = gen_random_uuid() WHERE id = $1",
            "DELETE FROM wallet_adjustments WHERE id = $1",
        ],
    )
    .await;
    let truncate = diesel::sql_query("TRUNCATE wallet_adjustments")
        .execute(&mut conn)
        .await;
    assert!(
        truncate.is_err(),
        "TRUNCATE wallet_adjustments must be refused"
    );

    // The approval path still works.
    let (operation, tx) = adjustment_booking(&pending);
    assert_eq!(
        store
            .apply_adjustment(pending.id, checker, &operation, &tx)
            .await
            .expect("applied"),
        ApplyOutcome::Applied
    );
    refused(
        &mut conn,
        pending.id.0,
        &[
            "UPDATE wallet_adjustments SET status = 'pending_approval', approved_by = NULL, \
             operation_id = NULL, decided_at = NULL WHERE id = $1",
            "UPDATE wallet_adjustments SET approved_by = gen_random_uuid() WHERE id = $1",
            "UPDATE wallet_adjustments SET decided_at = now() WHERE id = $1",
            "UPDATE wallet_adjustments SET status = 'applied' WHERE id = $1",
            "DELETE FROM wallet_adjustments WHERE id = $1",
        ],
    )
    .await;
    let stored = store
        .adjustment(pending.id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.status, AdjustmentStatus::Applied);
    assert_eq!(stored.approved_by, Some(checker));
    assert_eq!(stored.operation_id, Some(operation.id));
}

#[tokio::test(flavor = "multi_thread")]
async fn links_point_at_transactions_of_the_right_kind() {
    use keel_domain::testkit::ledger_store::withdraw;

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let (user, deposit) = funded(&store).await;
    let hold = withdraw(&store, user, 100).await.hold.id.0;
    let mut conn = db.pool().get().await.expect("a connection");
    for (kind, column, target, what) in [
        ("post_hold", "resolves", deposit, "not a hold"),
        ("void_hold", "resolves", deposit, "not a hold"),
        ("reversal", "reverses", hold, "not a deposit or adjustment"),
    ] {
        let result = conn
            .transaction(async |conn| {
                diesel::sql_query(format!(
                    "INSERT INTO ledger_transactions (id, kind, {column}, created_at) \
                     VALUES ($1, '{kind}', $2, now())"
                ))
                .bind::<SqlUuid, _>(Uuid::now_v7())
                .bind::<SqlUuid, _>(target)
                .execute(conn)
                .await
            })
            .await;
        let error = result.expect_err("a link to the wrong kind is refused");
        assert!(error.to_string().contains(what), "{kind}: {error}");
    }
    assert!(store.verify().await.expect("verify").is_consistent());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_changes_only_its_balance() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let (user, _) = funded(&store).await;
    let mut conn = db.pool().get().await.expect("a connection");
    refused(
        &mut conn,
        user.0,
        &[
            "UPDATE ledger_accounts SET user_id = gen_random_uuid() WHERE user_id = $1",
            "UPDATE ledger_accounts SET purpose = 'held' WHERE user_id = $1",
            "UPDATE ledger_accounts SET currency = 'USD' WHERE user_id = $1",
            "UPDATE ledger_accounts SET id = gen_random_uuid() WHERE user_id = $1",
            "UPDATE ledger_accounts SET allow_negative = true WHERE user_id = $1",
            "DELETE FROM ledger_accounts WHERE user_id = $1",
        ],
    )
    .await;
    // Even an account without postings (nothing references it) is never removed.
    let empty = Uuid::now_v7();
    accepted(
        &mut conn,
        empty,
        &[
            "INSERT INTO ledger_accounts (id, user_id, purpose, currency, allow_negative) \
           VALUES (gen_random_uuid(), $1, 'held', 'ZAR', false)",
        ],
    )
    .await;
    refused(
        &mut conn,
        empty,
        &["DELETE FROM ledger_accounts WHERE user_id = $1"],
    )
    .await;
    let truncate = diesel::sql_query("TRUNCATE ledger_accounts CASCADE")
        .execute(&mut conn)
        .await;
    assert!(
        truncate.is_err(),
        "TRUNCATE ledger_accounts must be refused"
    );
    accepted(
        &mut conn,
        user.0,
        &["UPDATE ledger_accounts SET balance = balance WHERE user_id = $1"],
    )
    .await;
    assert!(store.verify().await.expect("verify").is_consistent());
}

/// Runs `sql` (with `$1` = a fresh transaction id) after inserting that transaction's row, in
/// one database transaction; `Err` when anything is refused, up to and including the commit.
async fn raw_postings(
    conn: &mut diesel_async::AsyncPgConnection,
    statements: &[&str],
) -> Result<Uuid, diesel::result::Error> {
    let tx = Uuid::now_v7();
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        diesel::sql_query(
            "INSERT INTO ledger_transactions (id, kind, created_at) VALUES ($1, 'deposit', now())",
        )
        .bind::<SqlUuid, _>(tx)
        .execute(conn)
        .await?;
        for sql in statements {
            diesel::sql_query(*sql)
                .bind::<SqlUuid, _>(tx)
                .execute(conn)
                .await?;
        }
        Ok(())
    })
    .await?;
    Ok(tx)
}

#[tokio::test(flavor = "multi_thread")]
async fn postings_arrive_as_one_complete_balanced_group() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let (user, deposit) = funded(&store).await;
    let mut conn = db.pool().get().await.expect("a connection");
    // Two system accounts in USD beside the ZAR wallet and clearing account.
    diesel::sql_query(
        "INSERT INTO ledger_accounts (id, user_id, purpose, currency, allow_negative) \
         VALUES (gen_random_uuid(), NULL, 'suspense', 'USD', true), \
                (gen_random_uuid(), NULL, 'fees', 'USD', true)",
    )
    .execute(&mut conn)
    .await
    .expect("USD accounts");
    let leg = |position: u32, purpose: &str, currency: &str, amount: i64| {
        format!(
            "SELECT $1, {position}, id, {amount}::bigint FROM ledger_accounts \
             WHERE purpose = '{purpose}' AND currency = '{currency}'"
        )
    };
    let insert = |legs: &[String]| {
        format!(
            "INSERT INTO ledger_postings (transaction_id, position, account_id, amount) {}",
            legs.join(" UNION ALL ")
        )
    };
    let zar = |position, amount| leg(position, "provider_clearing", "ZAR", amount);
    let wallet = |position, amount| leg(position, "available", "ZAR", amount);
    let usd = |position, purpose, amount| leg(position, purpose, "USD", amount);

    // One group per transaction, balanced per currency: accepted (two currencies too).
    raw_postings(&mut conn, &[&insert(&[zar(0, -3), wallet(1, 3)])])
        .await
        .expect("balanced");
    raw_postings(
        &mut conn,
        &[&insert(&[
            zar(0, -3),
            usd(1, "suspense", 8),
            wallet(2, 3),
            usd(3, "fees", -8),
        ])],
    )
    .await
    .expect("balanced in each currency");

    let refusals: [(&str, Vec<String>); 6] = [
        ("unbalanced", vec![insert(&[zar(0, -3), wallet(1, 4)])]),
        ("one leg", vec![insert(&[zar(0, -3)])]),
        (
            "zero in sum but not per currency",
            vec![insert(&[zar(0, -3), usd(1, "suspense", 3)])],
        ),
        ("a gap", vec![insert(&[zar(0, -3), wallet(2, 3)])]),
        ("no position 0", vec![insert(&[zar(1, -3), wallet(2, 3)])]),
        (
            "balanced only across two statements",
            vec![insert(&[zar(0, -3), wallet(1, 2)]), insert(&[wallet(2, 1)])],
        ),
    ];
    for (what, statements) in &refusals {
        let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
        let refused = raw_postings(&mut conn, &statements).await;
        let error = refused.expect_err(what).to_string();
        assert!(error.contains("inserted together"), "{what}: {error}");
    }

    // A booked transaction is closed: legs added later are refused, balanced or not, with or
    // without a position 0.
    for (legs, why) in [
        (vec![zar(2, -1), wallet(3, 1)], "inserted together"),
        (vec![zar(0, -1), wallet(1, 1)], "duplicate key"),
    ] {
        let added = conn
            .transaction(async |conn| {
                diesel::sql_query(insert(&legs))
                    .bind::<SqlUuid, _>(deposit)
                    .execute(conn)
                    .await
            })
            .await;
        let error = added
            .expect_err("legs added to a booked transaction")
            .to_string();
        assert!(error.contains(why), "{error}");
    }
    let balance = store
        .balance(
            user,
            keel_domain::wallet::Currency::parse("ZAR").expect("ZAR"),
        )
        .await
        .expect("balance");
    assert_eq!(balance.available, 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_crossing_transfers_never_deadlock() {
    use keel_domain::wallet::Booked;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgLedgerStore::new(db.pool().clone());
    let users = funded_wallets(&store, 4).await;
    // Every client books single transfers and batches both ways between the same wallets, so
    // their account locks cross unless every writer takes them in one order.
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..8_usize {
        let store = store.clone();
        let users = users.clone();
        clients.spawn(async move {
            let mut booked = 0_i64;
            for i in 0..20_usize {
                let a = users[(client + i) % users.len()];
                let b = users[(client + i + 1 + client % 3) % users.len()];
                let answer = if i % 2 == 0 {
                    store.book(&transfer(a, b, 1)).await
                } else {
                    store
                        .book_batch(&[transfer(b, a, 1), transfer(a, b, 2), transfer(b, a, 3)])
                        .await
                };
                match answer.expect("no error, no deadlock") {
                    Booked::Done { .. } => booked += 1,
                    Booked::InsufficientFunds => {}
                }
            }
            booked
        });
    }
    let mut booked = 0;
    while let Some(done) = clients.join_next().await {
        booked += done.expect("client");
    }
    assert_eq!(booked, 8 * 20, "funds never run short here");
    let report = store.verify().await.expect("verify");
    assert!(report.is_consistent(), "{report:?}");
    let total: i64 = available(&store, &users).await.iter().sum();
    assert_eq!(total, 500 * users.len() as i64);
}
