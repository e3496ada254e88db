//! The `keel` binary itself: help, bad settings, serving in memory, graceful SIGTERM, migrate.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_adapters_postgres::testkit::TestDatabase;

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

fn keel(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(KEEL);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs keel to completion, requires success and returns its stdout.
fn keel_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = keel(args, env).output().unwrap();
    assert!(
        out.status.success(),
        "keel {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `keel serve` and waits for its "listening" log line; later lines of stdout and
/// stderr alike keep arriving on the returned receiver.
pub(crate) fn start_server_with(
    port: u16,
    env: &[(&str, &str)],
) -> (Child, Vec<String>, std::sync::mpsc::Receiver<String>) {
    let bind = format!("127.0.0.1:{port}");
    let mut all = vec![("KEEL_BIND", bind.as_str()), ("KEEL_LOG_FORMAT", "json")];
    all.extend_from_slice(env);
    let mut child = keel(&["serve"], &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines are read on threads of their own so the deadline holds even if keel prints nothing.
    let (sender, receiver) = std::sync::mpsc::channel();
    forward_lines(child.stdout.take().unwrap(), sender.clone());
    forward_lines(child.stderr.take().unwrap(), sender);
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = receiver.recv_timeout(left) else {
            break;
        };
        let listening = line.contains("keel listening");
        lines.push(line);
        if listening {
            return (child, lines, receiver);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("keel did not start: {lines:?}");
}

/// Sends each line of `output` to `sender` from a thread of its own, draining to the end.
fn forward_lines(
    output: impl std::io::Read + Send + 'static,
    sender: std::sync::mpsc::Sender<String>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                // The test has what it needs; keep draining so keel never blocks on its output.
                continue;
            }
        }
    });
}

/// Starts `keel serve` with default settings.
fn start_server(port: u16) -> (Child, Vec<String>) {
    let (child, lines, _) = start_server_with(port, &[]);
    (child, lines)
}

pub(crate) fn stop(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            return exit;
        }
        assert!(Instant::now() < deadline, "keel did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn help_explains_each_command() {
    let text = keel_ok(&["--help"], &[]);
    assert!(text.contains("serve") && text.contains("migrate"), "{text}");
}

#[test]
fn a_bad_setting_stops_start_up_with_its_name() {
    let out = keel(&["serve"], &[("KEEL_BIND", "nowhere")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("KEEL_BIND"), "{stderr}");
}

#[test]
fn migrate_without_a_database_is_refused() {
    let out = keel(&["migrate"], &[]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("DATABASE_URL")
    );
}

#[tokio::test]
async fn serves_from_memory_by_default_and_drains_on_sigterm() {
    let port = free_port();
    let (mut child, lines) = start_server(port);
    let log = lines.join("");
    assert!(
        log.contains("IN-MEMORY"),
        "the embedded default must be announced: {log}"
    );
    assert!(
        log.contains("DEV-ONLY DEFAULT SECRET"),
        "dev secrets must be flagged: {log}"
    );

    let response = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let live_heap = metrics
        .lines()
        .find_map(|l| l.strip_prefix("keel_process_heap_allocated_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(
        live_heap.is_some_and(|bytes| bytes > 0.0),
        "the binary reports jemalloc's live heap: {live_heap:?}"
    );

    let exit = stop(&mut child);
    assert!(exit.success(), "graceful stop exits 0, got {exit:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_applies_embedded_migrations() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    assert!(keel_ok(&["migrate"], &[("DATABASE_URL", db.url())]).contains("up to date"));
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_reports_an_intact_chain_and_names_a_tampered_entry() {
    use diesel_async::SimpleAsyncConnection;
    use keel_adapters_postgres::PgAuditLog;
    use keel_domain::audit::{Actor, AuditEntry, AuditLog};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let log = PgAuditLog::new(db.pool().clone());
    for i in 0..3 {
        let entry = AuditEntry::new(
            Actor::system(),
            "test.event",
            format!("thing:{i}"),
            chrono::Utc::now(),
        );
        log.append(entry).await.unwrap();
    }
    assert!(
        keel_ok(&["audit", "verify"], &[("DATABASE_URL", db.url())]).contains("intact (3 entries)")
    );

    let mut conn = db.pool().get().await.unwrap();
    conn.batch_execute(
        "ALTER TABLE audit_log DISABLE TRIGGER USER; \
         UPDATE audit_log SET subject = 'thing:forged' WHERE seq = 2; \
         ALTER TABLE audit_log ENABLE TRIGGER USER",
    )
    .await
    .unwrap();
    let out = keel(&["audit", "verify"], &[("DATABASE_URL", db.url())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("BROKEN at entry 2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_pii_keys_moves_stored_values_to_the_new_key() {
    use std::collections::BTreeMap;

    use keel_adapters_postgres::PgUserStore;
    use keel_domain::identity::store::UserStore;
    use keel_domain::identity::user::{NewUser, UserId};
    use keel_domain::identity::values::{DisplayName, Email, Role};
    use keel_domain::pii::{Cipher, KeyRing, PiiField, XChaChaCipher};

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let old_key = "old:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let new_key = "new:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let old = XChaChaCipher::new(KeyRing::parse(old_key).unwrap());
    let users = PgUserStore::new(db.pool().clone());
    let id = UserId::new_random();
    let mut pii = BTreeMap::new();
    pii.insert(
        PiiField::Phone,
        old.seal(&id.to_string(), PiiField::Phone, "+27821234321")
            .unwrap(),
    );
    let user = NewUser {
        id,
        email: Email::parse("rotate@example.com").unwrap(),
        display_name: DisplayName::parse("Rotate").unwrap(),
        role: Role::Participant,
        password_hash: "unused".into(),
        pii,
        created_at: chrono::Utc::now(),
    };
    users.create(&user).await.unwrap();

    let ring = format!("{new_key},{old_key}");
    let env = [("DATABASE_URL", db.url()), ("KEEL_PII_KEYS", ring.as_str())];
    assert!(
        keel_ok(&["rotate-pii-keys", "--batch", "10"], &env)
            .contains("1 PII values re-encrypted to key new")
    );
    let stored = users.find_by_id(id).await.unwrap().unwrap();
    let sealed = &stored.pii[&PiiField::Phone];
    assert_eq!(sealed.key_id, "new");
    let both = XChaChaCipher::new(KeyRing::parse(&ring).unwrap());
    assert_eq!(
        both.open(&id.to_string(), PiiField::Phone, sealed).unwrap(),
        "+27821234321"
    );
    // Resumable: a second run has nothing left to do.
    assert!(keel_ok(&["rotate-pii-keys"], &env).contains("0 PII values re-encrypted"));
}

#[tokio::test(flavor = "multi_thread")]
async fn keel_worker_runs_periodic_jobs_without_http_and_stops_on_sigterm() {
    use keel_domain::jobs::{JobFilter, JobQueue, JobState};

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    assert!(
        !keel(&["worker"], &[]).output().unwrap().status.success(),
        "keel worker needs DATABASE_URL"
    );
    let mut child = keel(
        &["worker"],
        &[("DATABASE_URL", db.url()), ("KEEL_LOG_FORMAT", "json")],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // At start the scheduler enqueues the current slot of the idempotency purge, and a worker
    // runs it: the purge now lives on the queue.
    let queue = keel_adapters_postgres::PgJobQueue::new(db.pool().clone());
    let filter = JobFilter {
        state: Some(JobState::Completed),
        kind: Some("idempotency.purge".into()),
        before: None,
        limit: 10,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.list(&filter).await.unwrap().is_empty() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("keel worker never ran the idempotency purge");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exit = stop(&mut child);
    assert!(exit.success(), "graceful stop exits 0, got {exit:?}");
}
