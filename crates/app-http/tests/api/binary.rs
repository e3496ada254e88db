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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `keel serve` and waits for its "listening" log line.
fn start_server(port: u16) -> (Child, Vec<String>) {
    let bind = format!("127.0.0.1:{port}");
    let mut child = keel(
        &["serve"],
        &[("KEEL_BIND", &bind), ("KEEL_LOG_FORMAT", "json")],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Lines are read on a thread of their own so the deadline holds even if keel prints nothing.
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                // The test has what it needs; keep draining so keel never blocks on stdout.
                continue;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = receiver.recv_timeout(left) else {
            break;
        };
        let listening = line.contains("keel listening");
        lines.push(line);
        if listening {
            return (child, lines);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("keel did not start: {lines:?}");
}

#[test]
fn help_explains_each_command() {
    let out = keel(&["--help"], &[]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
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

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "keel did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "graceful stop exits 0, got {exit:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_applies_embedded_migrations() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let out = keel(&["migrate"], &[("DATABASE_URL", db.url())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("up to date")
    );
}
