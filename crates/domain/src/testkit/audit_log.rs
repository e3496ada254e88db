//! The contract every [`AuditLog`] keeps.
//!
//! Cases filter by a fresh random actor, action or subject, so the suite may share a log with
//! other tests; the whole chain is verified and must stay unbroken.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use futures_util::future::join_all;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{
    Actor, AuditCursor, AuditEntry, AuditLimit, AuditLog, AuditPage, AuditQuery, ChainReport,
    RecordedEntry, canonical, chain,
};

/// Appends made at once by the concurrency case.
const CONCURRENT_APPENDS: usize = 50;

/// Runs every case of the contract against `log`.
pub async fn run_all(log: &dyn AuditLog) {
    appends_link_each_entry_to_the_previous(log).await;
    entries_read_back_as_appended(log).await;
    list_filters_by_actor_action_subject_and_time(log).await;
    list_pages_newest_first_with_a_stable_cursor(log).await;
    verify_passes_on_an_intact_chain(log).await;
    concurrent_appends_form_one_unbroken_chain(log).await;
}

use super::support::{ok, whole_second_now as now};

fn token() -> String {
    Uuid::new_v4().simple().to_string()
}

fn entry(subject: &str, at: DateTime<Utc>) -> AuditEntry {
    AuditEntry::new(Actor::system(), "test.appended", subject, at)
}

async fn list(log: &dyn AuditLog, query: AuditQuery) -> AuditPage {
    ok(log.list(&query).await)
}

async fn seqs(log: &dyn AuditLog, query: AuditQuery) -> Vec<i64> {
    let page = list(log, query).await;
    assert_eq!(page.next_cursor, None, "expected a single page");
    page.items.iter().map(|e| e.seq).collect()
}

fn limit(n: u32) -> AuditLimit {
    AuditLimit::new(n).unwrap_or_else(|e| panic!("{e}"))
}

async fn verify_intact(log: &dyn AuditLog) -> ChainReport {
    let report = ok(log.verify().await);
    if let Some(broken) = report.broken {
        panic!("the chain must be intact: {broken}");
    }
    report
}

async fn appends_link_each_entry_to_the_previous(log: &dyn AuditLog) {
    let subject = format!("thing:{}", token());
    let at = now();
    let mut recorded = Vec::new();
    for i in 0..3 {
        recorded.push(ok(log
            .append(entry(&subject, at + Duration::seconds(i)))
            .await));
    }
    for e in &recorded {
        assert!(e.seq >= 1);
        assert!(e.is_intact(), "the returned hash must be the entry's hash");
        assert_eq!(e.hash, chain::hash(&e.prev_hash, e.seq, &e.entry));
        assert_eq!(e.entry.subject, subject);
    }
    for pair in recorded.windows(2) {
        assert!(pair[1].seq > pair[0].seq, "seq must increase");
        if pair[1].seq == pair[0].seq + 1 {
            assert_eq!(pair[1].prev_hash, pair[0].hash, "consecutive entries link");
        }
    }
    if recorded[0].seq == 1 {
        assert_eq!(recorded[0].prev_hash, chain::GENESIS);
    }
}

async fn entries_read_back_as_appended(log: &dyn AuditLog) {
    let subject = format!("user:{}", token());
    // Sub-microsecond digits are dropped by every store.
    let at = now() + Duration::nanoseconds(123_456_789);
    let minimal =
        AuditEntry::new(Actor::user(token()), "user.viewed", &subject, at).with_before(Value::Null);
    // Keys out of order, nested values, numbers that Postgres jsonb prints differently
    // (1e19 comes back as an integer, 1e-7 in plain notation), non-ASCII text.
    let tricky = json!({
        "z": {
            "numbers": [1, -2, 2.5, -0.125, 0.1, 1e-7, 1e300, 2.0, 1e19,
                        18_446_744_073_709_551_615u64, -9_223_372_036_854_775_808i64],
            "text": "é 😀 \"quoted\" \\ \n tab\t",
        },
        "a": [true, false, null, {}, [], {"y": 1, "x": {"k": "v"}}],
    });
    let plain = json!({"role": "player", "phone": "+27•••••321", "nested": {"b": 1, "a": [1, 2]}});
    let full = AuditEntry::new(Actor::system(), "user.role_changed", &subject, at)
        .with_before(plain.clone())
        .with_after(tricky.clone())
        .with_reason("requested by the owner — ticket #12")
        .with_request_id(format!("req-{}", token()));

    let first = ok(log.append(minimal.clone()).await);
    let second = ok(log.append(full.clone()).await);
    let expected_at = at.trunc_subsecs(6);
    assert_eq!(first.entry, minimal.normalized());
    assert_eq!(first.entry.at, expected_at);
    assert_eq!(second.entry, full.normalized());

    let page = list(
        log,
        AuditQuery {
            subject: Some(subject.clone()),
            ..AuditQuery::default()
        },
    )
    .await;
    assert_eq!(page.next_cursor, None);
    let [read_second, read_first] = page.items.as_slice() else {
        panic!("expected both entries, got {:?}", page.items);
    };
    for (read, written) in [(read_first, &first), (read_second, &second)] {
        assert_eq!(read.seq, written.seq);
        assert_eq!(read.prev_hash, written.prev_hash);
        assert_eq!(read.hash, written.hash);
        assert!(
            read.is_intact(),
            "an entry read back must hash as it did when appended: {read:?}"
        );
        let (r, w) = (&read.entry, &written.entry);
        assert_eq!(
            (
                &r.actor,
                &r.action,
                &r.subject,
                &r.reason,
                &r.request_id,
                r.at
            ),
            (
                &w.actor,
                &w.action,
                &w.subject,
                &w.reason,
                &w.request_id,
                w.at
            )
        );
    }
    // `Some(null)` and `None` stay apart.
    assert_eq!(read_first.entry.before, Some(Value::Null));
    assert_eq!(read_first.entry.after, None);
    assert_eq!(read_second.entry.before, Some(plain));
    let after = read_second
        .entry
        .after
        .as_ref()
        .unwrap_or_else(|| panic!("the after snapshot must be kept"));
    assert_eq!(
        canonical::encode_json(after),
        canonical::encode_json(&tricky)
    );
}

async fn list_filters_by_actor_action_subject_and_time(log: &dyn AuditLog) {
    let t = token();
    let (a, b) = (Actor::user(format!("{t}-a")), Actor::user(format!("{t}-b")));
    let (one, two) = (format!("test.{t}.one"), format!("test.{t}.two"));
    let (s1, s2) = (format!("thing:{t}:1"), format!("thing:{t}:2"));
    let base = now();
    let minutes = |m: i64| base + Duration::minutes(m);
    let mut seq = Vec::new();
    for (actor, action, subject, at) in [
        (&a, &one, &s1, minutes(0)),
        (&b, &one, &s2, minutes(1)),
        (&a, &two, &s2, minutes(2)),
        (&b, &two, &s1, minutes(3)),
    ] {
        let e = AuditEntry::new(actor.clone(), action.as_str(), subject.as_str(), at);
        seq.push(ok(log.append(e).await).seq);
    }
    let q = AuditQuery::default;
    let by_actor = |actor: &Actor| AuditQuery {
        actor: Some(actor.clone()),
        ..q()
    };
    assert_eq!(seqs(log, by_actor(&a)).await, [seq[2], seq[0]]);
    assert_eq!(seqs(log, by_actor(&b)).await, [seq[3], seq[1]]);
    let by_action = AuditQuery {
        action: Some(one.clone()),
        ..q()
    };
    assert_eq!(seqs(log, by_action).await, [seq[1], seq[0]]);
    let by_subject = AuditQuery {
        subject: Some(s2.clone()),
        ..q()
    };
    assert_eq!(seqs(log, by_subject).await, [seq[2], seq[1]]);
    let combined = AuditQuery {
        subject: Some(s1.clone()),
        ..by_actor(&a)
    };
    assert_eq!(seqs(log, combined).await, [seq[0]]);
    // `from` is inclusive, `to` exclusive.
    let window = AuditQuery {
        from: Some(minutes(1)),
        to: Some(minutes(3)),
        ..by_actor(&b)
    };
    assert_eq!(seqs(log, window).await, [seq[1]]);
    let since = AuditQuery {
        from: Some(minutes(2)),
        ..by_actor(&a)
    };
    assert_eq!(seqs(log, since).await, [seq[2]]);
    let until = AuditQuery {
        action: Some(two.clone()),
        to: Some(minutes(3)),
        ..q()
    };
    assert_eq!(seqs(log, until).await, [seq[2]]);
    let nobody = by_actor(&Actor::user(format!("{t}-nobody")));
    assert_eq!(seqs(log, nobody).await, Vec::<i64>::new());
}

async fn list_pages_newest_first_with_a_stable_cursor(log: &dyn AuditLog) {
    let subject = format!("thing:{}", token());
    let at = now();
    let mut seq = Vec::new();
    for i in 0..5 {
        seq.push(ok(log.append(entry(&subject, at + Duration::seconds(i))).await).seq);
    }
    let query = AuditQuery {
        subject: Some(subject.clone()),
        limit: limit(2),
        ..AuditQuery::default()
    };
    let page = list(log, query.clone()).await;
    let got: Vec<i64> = page.items.iter().map(|e| e.seq).collect();
    assert_eq!(got, [seq[4], seq[3]]);
    let cursor = page
        .next_cursor
        .unwrap_or_else(|| panic!("a full first page must have a cursor"));
    // The cursor travels as opaque text.
    let cursor = AuditCursor::parse(&cursor.to_string()).unwrap_or_else(|e| panic!("{e}"));

    // New entries arrive while the client pages: later pages neither shift nor repeat.
    let newer = [
        ok(log
            .append(entry(&subject, at + Duration::seconds(10)))
            .await)
        .seq,
        ok(log
            .append(entry(&subject, at + Duration::seconds(11)))
            .await)
        .seq,
    ];
    let page = list(
        log,
        AuditQuery {
            cursor: Some(cursor),
            ..query.clone()
        },
    )
    .await;
    let got: Vec<i64> = page.items.iter().map(|e| e.seq).collect();
    assert_eq!(got, [seq[2], seq[1]]);
    let page = list(
        log,
        AuditQuery {
            cursor: page.next_cursor,
            ..query.clone()
        },
    )
    .await;
    let got: Vec<i64> = page.items.iter().map(|e| e.seq).collect();
    assert_eq!(got, [seq[0]]);
    assert_eq!(page.next_cursor, None, "the last page has no cursor");

    // A fresh first page starts with the newest entries.
    let fresh = list(log, query.clone()).await;
    let got: Vec<i64> = fresh.items.iter().map(|e| e.seq).collect();
    assert_eq!(got, [newer[1], newer[0]]);
    // A page exactly as long as what is left has no cursor.
    let whole = list(
        log,
        AuditQuery {
            limit: limit(7),
            ..query
        },
    )
    .await;
    assert_eq!(whole.items.len(), 7);
    assert_eq!(whole.next_cursor, None);
}

async fn verify_passes_on_an_intact_chain(log: &dyn AuditLog) {
    let before = verify_intact(log).await;
    let last = ok(log
        .append(entry(&format!("thing:{}", token()), now()))
        .await);
    let after = verify_intact(log).await;
    assert!(after.checked > before.checked);
    assert!(after.checked >= u64::try_from(last.seq).unwrap_or_default());
    let head = after
        .head
        .unwrap_or_else(|| panic!("a non-empty log has a head"));
    assert!(head.seq >= last.seq);
    if head.seq == last.seq {
        assert_eq!(head.hash, last.hash);
    }
}

async fn concurrent_appends_form_one_unbroken_chain(log: &dyn AuditLog) {
    let before = verify_intact(log).await;
    let subject = format!("thing:{}", token());
    let at = now();
    let appends = (0..CONCURRENT_APPENDS).map(|i| {
        let e = entry(&subject, at).with_after(json!({ "i": i }));
        log.append(e)
    });
    let mut recorded: Vec<RecordedEntry> = join_all(appends).await.into_iter().map(ok).collect();
    recorded.sort_by_key(|e| e.seq);
    for pair in recorded.windows(2) {
        assert!(pair[1].seq > pair[0].seq, "every append gets its own seq");
        if pair[1].seq == pair[0].seq + 1 {
            assert_eq!(pair[1].prev_hash, pair[0].hash);
        }
    }
    // No fork: no two entries claim the same predecessor.
    let mut prevs: Vec<[u8; 32]> = recorded.iter().map(|e| e.prev_hash).collect();
    prevs.sort_unstable();
    prevs.dedup();
    assert_eq!(prevs.len(), CONCURRENT_APPENDS, "the chain forked");

    let listed = list(
        log,
        AuditQuery {
            subject: Some(subject),
            limit: limit(AuditLimit::MAX),
            ..AuditQuery::default()
        },
    )
    .await;
    assert_eq!(listed.items.len(), CONCURRENT_APPENDS);
    let after = verify_intact(log).await;
    assert!(
        after.checked >= before.checked + CONCURRENT_APPENDS as u64,
        "{after:?} after {before:?}"
    );
}
