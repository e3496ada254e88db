use chrono::{DateTime, Utc};
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use keel_adapters_postgres::PgAuditLog;
use keel_adapters_postgres::audit::append_in;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_domain::audit::{
    Actor, AuditEntry, AuditLog, AuditQuery, BreakReason, ChainBreak, RecordedEntry, chain,
};
use keel_domain::testkit::audit_log;
use serde_json::json;

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

fn entry(i: usize) -> AuditEntry {
    AuditEntry::new(
        Actor::user(format!("admin-{i}")),
        "user.role_changed",
        format!("user:{i}"),
        at(),
    )
    .with_before(json!({"role": "player"}))
    .with_after(json!({"role": "organizer", "n": i}))
    .with_reason("test")
    .with_request_id(format!("req-{i}"))
}

async fn seed(log: &PgAuditLog, n: usize) -> Vec<RecordedEntry> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(log.append(entry(i)).await.unwrap());
    }
    out
}

/// Runs `sql` with the append-only triggers disabled, as a superuser going around them would.
async fn behind_the_triggers(db: &TestDatabase, sql: &str) {
    let mut conn = db.pool().get().await.unwrap();
    conn.batch_execute(&format!(
        "BEGIN; ALTER TABLE audit_log DISABLE TRIGGER USER; {sql}; \
         ALTER TABLE audit_log ENABLE TRIGGER USER; COMMIT;"
    ))
    .await
    .unwrap();
}

fn refused(result: Result<usize, DieselError>, op: &str) {
    match result {
        Err(DieselError::DatabaseError(_, info)) => assert!(
            info.message()
                .contains(&format!("audit_log is append-only: {op} refused")),
            "{op}: unexpected error {:?}",
            info.message()
        ),
        other => panic!("{op} must be refused by the trigger, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keeps_the_audit_log_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    audit_log::run_all(&PgAuditLog::new(db.pool().clone())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_appending_at_once_keep_one_chain() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let node_a = PgAuditLog::new(db.pool().clone());
    let node_b = PgAuditLog::new(db.pool().clone());
    tokio::join!(audit_log::run_all(&node_a), audit_log::run_all(&node_b));
    let report = node_a.verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    let head = report.head.unwrap();
    assert_eq!(report.checked, u64::try_from(head.seq).unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn update_delete_and_truncate_are_refused() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let log = PgAuditLog::new(db.pool().clone());
    seed(&log, 3).await;
    let mut conn = db.pool().get().await.unwrap();
    for (op, sql) in [
        (
            "UPDATE",
            "UPDATE audit_log SET reason = 'edited' WHERE seq = 2",
        ),
        ("DELETE", "DELETE FROM audit_log WHERE seq = 2"),
        ("TRUNCATE", "TRUNCATE audit_log"),
    ] {
        refused(diesel::sql_query(sql).execute(&mut conn).await, op);
    }
    let report = log.verify().await.unwrap();
    assert!(report.is_intact());
    assert_eq!(report.checked, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_row_is_named_by_verify() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let log = PgAuditLog::new(db.pool().clone());
    seed(&log, 5).await;
    behind_the_triggers(
        &db,
        r#"UPDATE audit_log SET after = '{"role": "admin", "n": 2}' WHERE seq = 3"#,
    )
    .await;
    let report = log.verify().await.unwrap();
    assert_eq!(
        report.broken,
        Some(ChainBreak {
            seq: 3,
            reason: BreakReason::Edited
        })
    );
    assert_eq!(report.checked, 2);
    // The triggers are back on.
    let mut conn = db.pool().get().await.unwrap();
    refused(
        diesel::sql_query("UPDATE audit_log SET reason = NULL")
            .execute(&mut conn)
            .await,
        "UPDATE",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_rewritten_with_a_recomputed_hash_breaks_the_next_link() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let log = PgAuditLog::new(db.pool().clone());
    let entries = seed(&log, 5).await;
    let mut forged = entries[2].entry.clone();
    forged.after = Some(json!({"role": "admin"}));
    let hash = chain::hash(&entries[2].prev_hash, 3, &forged);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    behind_the_triggers(
        &db,
        &format!(
            r#"UPDATE audit_log SET after = '{{"role": "admin"}}', hash = '\x{hex}' WHERE seq = 3"#
        ),
    )
    .await;
    let report = log.verify().await.unwrap();
    assert_eq!(
        report.broken,
        Some(ChainBreak {
            seq: 4,
            reason: BreakReason::Unlinked
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_row_is_detected() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let log = PgAuditLog::new(db.pool().clone());
    seed(&log, 5).await;
    behind_the_triggers(&db, "DELETE FROM audit_log WHERE seq = 3").await;
    let report = log.verify().await.unwrap();
    assert_eq!(
        report.broken,
        Some(ChainBreak {
            seq: 4,
            reason: BreakReason::Missing { expected: 3 }
        })
    );
    assert_eq!(report.checked, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_row_with_renumbered_successors_is_detected() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let log = PgAuditLog::new(db.pool().clone());
    seed(&log, 5).await;
    behind_the_triggers(
        &db,
        "DELETE FROM audit_log WHERE seq = 3; UPDATE audit_log SET seq = seq - 1 WHERE seq > 3",
    )
    .await;
    let report = log.verify().await.unwrap();
    assert_eq!(
        report.broken,
        Some(ChainBreak {
            seq: 3,
            reason: BreakReason::Edited
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reads_the_chain_in_batches() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let log = PgAuditLog::new(db.pool().clone()).with_verify_batch(7);
    seed(&log, 21).await;
    let report = log.verify().await.unwrap();
    assert!(report.is_intact());
    assert_eq!(report.checked, 21);
    assert_eq!(report.head.map(|h| h.seq), Some(21));
    behind_the_triggers(&db, "UPDATE audit_log SET actor = 'system' WHERE seq = 16").await;
    let report = log.verify().await.unwrap();
    assert_eq!(
        report.broken,
        Some(ChainBreak {
            seq: 16,
            reason: BreakReason::Edited
        })
    );
    assert_eq!(report.checked, 15);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_append_in_leaves_no_row_and_no_gap() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let log = PgAuditLog::new(db.pool().clone());
    let first = seed(&log, 2).await;
    let mut conn = db.pool().get().await.unwrap();
    let ghost = AuditEntry::new(Actor::system(), "test.ghost", "ghost:1", at());
    let result = conn
        .transaction(async |conn| {
            let recorded = append_in(conn, ghost).await.unwrap();
            assert_eq!(recorded.seq, 3);
            Err::<(), _>(DieselError::RollbackTransaction)
        })
        .await;
    assert!(matches!(result, Err(DieselError::RollbackTransaction)));
    let ghosts = log
        .list(&AuditQuery {
            subject: Some("ghost:1".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(
        ghosts.items.is_empty(),
        "the rolled-back entry must be gone"
    );

    let next = log.append(entry(9)).await.unwrap();
    assert_eq!(next.seq, 3, "no seq gap after a rollback");
    assert_eq!(next.prev_hash, first[1].hash);

    // Committed with the caller's transaction, the entry stays.
    let kept = AuditEntry::new(Actor::system(), "test.kept", "kept:1", at());
    let recorded = conn
        .transaction(async |conn| {
            append_in(conn, kept)
                .await
                .map_err(|_| DieselError::NotFound)
        })
        .await
        .unwrap();
    assert_eq!(recorded.seq, 4);
    let report = log.verify().await.unwrap();
    assert!(report.is_intact());
    assert_eq!(report.checked, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn values_normalised_by_jsonb_still_hash_the_same() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let log = PgAuditLog::new(db.pool().clone());
    let after = json!({"z": [1e19, 1.5e-7, 2.0, -4.796566914205686e18], "a": {"y": 1, "b": 0.1}});
    let recorded = log
        .append(entry(1).with_after(after.clone()))
        .await
        .unwrap();
    // jsonb stored the value in its own layout and notation.
    let mut conn = db.pool().get().await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Text {
        #[diesel(sql_type = diesel::sql_types::Text)]
        text: String,
    }
    let stored: Text = diesel::sql_query("SELECT after::text AS text FROM audit_log WHERE seq = 1")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(
        stored
            .text
            .starts_with(r#"{"a": {"b": 0.1, "y": 1}, "z": [10000000000000000000, "#),
        "{}",
        stored.text
    );
    assert!(stored.text.contains("0.00000015"), "{}", stored.text);
    let read = log.list(&AuditQuery::default()).await.unwrap();
    let read = &read.items[0];
    assert_ne!(
        read.entry.after,
        Some(after),
        "the value came back in another shape"
    );
    assert!(read.is_intact(), "yet it hashes the same");
    assert_eq!(read.hash, recorded.hash);
    assert!(log.verify().await.unwrap().is_intact());
}
