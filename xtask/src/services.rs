//! Local Postgres and Redis for development and CI: check, start when down, print URLs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{run_command, workspace_root};

/// Default local service URLs (PostgreSQL 15 with trust auth, Redis on its standard port).
pub const DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// See [`DATABASE_URL`].
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

fn quiet_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn postgres_up() -> bool {
    quiet_ok("pg_isready", &["-q", "-h", "127.0.0.1", "-p", "5432"])
}

fn redis_up() -> bool {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "ping"])
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
}

fn wait_for(what: &str, up: fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if up() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!("{what} did not come up within 30 s"))
}

pub fn run() -> Result<(), String> {
    if !postgres_up() {
        println!("starting PostgreSQL…");
        if !quiet_ok("service", &["postgresql", "start"]) {
            let _ = quiet_ok(
                "sh",
                &[
                    "-c",
                    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -1) main start",
                ],
            );
        }
        wait_for("PostgreSQL", postgres_up)?;
    }
    if !redis_up() {
        println!("starting Redis…");
        run_command(Command::new("redis-server").args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ]))?;
        wait_for("Redis", redis_up)?;
    }
    println!("export DATABASE_URL={DATABASE_URL}");
    println!("export REDIS_URL={REDIS_URL}");
    Ok(())
}

pub fn migrate() -> Result<(), String> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DATABASE_URL.to_owned());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_command(
        Command::new(cargo)
            .args([
                "run",
                "--quiet",
                "-p",
                "keel-app-http",
                "--bin",
                "keel",
                "--",
                "migrate",
            ])
            .env("DATABASE_URL", url)
            .current_dir(workspace_root()),
    )
}
