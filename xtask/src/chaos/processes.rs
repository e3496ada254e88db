//! keel's processes in the run: two `keel serve` nodes, one `keel worker` and the Revio
//! simulator, each restartable on its port and SIGKILLed when dropped. Logs go to files in the
//! run's temp directory.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_domain::webhooks::DEV_REVIO_PUBLIC_KEY_PEM;

use crate::bench::process::{free_port, wait_listening};

/// How a process is started again after a kill.
struct Spec {
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

/// One child process: killed with SIGKILL on demand and when dropped.
pub struct Proc {
    spec: Spec,
    child: Option<Child>,
    /// The port it listens on (`None` for the worker).
    pub port: Option<u16>,
}

impl Proc {
    /// Starts `binary args` with exactly `env` added to a cleaned environment; waits until it
    /// listens on `port` (when it has one).
    pub fn start(
        binary: &Path,
        args: &[&str],
        env: &[(String, String)],
        port: Option<u16>,
        log: PathBuf,
    ) -> Result<Self, String> {
        let spec = Spec {
            binary: binary.to_path_buf(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env.to_vec(),
            log,
        };
        let mut proc = Self {
            spec,
            child: None,
            port,
        };
        proc.restart()?;
        Ok(proc)
    }

    /// SIGKILL, no grace.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same command, port and settings.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let log = open_log(&self.spec.log)?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.spec.binary);
        cmd.args(&self.spec.args)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("KEEL_MIGRATE")
            .env_remove("KEEL_CONFIG")
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        self.child = Some(child);
        match self.port {
            Some(port) => {
                wait_listening(port, Instant::now() + Duration::from_secs(60)).map_err(|e| {
                    format!(
                        "{:?}: {e}; its log ends:\n{}",
                        self.spec.args,
                        tail(&self.spec.log)
                    )
                })
            }
            None => Ok(()),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port.unwrap_or(0))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn open_log(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {path:?}: {e}"))
}

/// Settings shared by every keel process of the run.
pub struct KeelEnv {
    /// `DATABASE_URL`, `REDIS_URL`, secrets, rate classes off, short leases.
    pub common: Vec<(String, String)>,
}

/// The admin created at start (`KEEL_BOOTSTRAP_ADMIN_*`).
pub const ADMIN_EMAIL: &str = "chaos-admin@keel.test";
/// Its password.
pub const ADMIN_PASSWORD: &str = "chaos-admin-password-123";
/// HS256 key of the run's access tokens.
pub const JWT_SECRET: &str = "keel-chaos-jwt-secret-0123456789-abcdefghij";

impl KeelEnv {
    /// The settings: own stores, the simulator at `sim_port`, no rate limits (load must not be
    /// refused), short leases so killed processes' work is taken over within the run.
    pub fn new(database_url: &str, redis_url: &str, sim_port: u16) -> Self {
        let pairs = [
            ("DATABASE_URL", database_url.to_owned()),
            ("REDIS_URL", redis_url.to_owned()),
            ("KEEL_LOG", "warn".to_owned()),
            ("KEEL_LOG_FORMAT", "json".to_owned()),
            ("KEEL_JWT_SECRET", JWT_SECRET.to_owned()),
            ("KEEL_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
            ("KEEL_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ("KEEL_RATE_AUTH", "off".to_owned()),
            ("KEEL_RATE_SCAN", "off".to_owned()),
            ("KEEL_RATE_SCORE", "off".to_owned()),
            ("KEEL_RATE_EXPENSIVE", "off".to_owned()),
            ("KEEL_RATE_DEFAULT", "off".to_owned()),
            ("KEEL_HTTP_WORKERS", "1".to_owned()),
            ("KEEL_DB_POOL_SIZE", "8".to_owned()),
            ("KEEL_IDEMPOTENCY_LEASE_SECS", "5".to_owned()),
            ("KEEL_JOBS_LEASE_SECS", "5".to_owned()),
            ("KEEL_JOBS_POLL_INTERVAL_MS", "500".to_owned()),
            ("KEEL_SHUTDOWN_TIMEOUT_SECS", "2".to_owned()),
            ("KEEL_REVIO_URL", format!("http://127.0.0.1:{sim_port}")),
            // The simulator signs with the public dev-only RSA key.
            ("KEEL_REVIO_PUBLIC_KEY", DEV_REVIO_PUBLIC_KEY_PEM.to_owned()),
            ("KEEL_WALLET_RECONCILE_AFTER_SECS", "5".to_owned()),
            ("KEEL_WALLET_RECONCILE_INTERVAL_SECS", "5".to_owned()),
            ("KEEL_SCOREBOARD_DRIFT_INTERVAL_SECS", "10".to_owned()),
        ];
        Self {
            common: pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    fn with(&self, extra: &[(&str, String)]) -> Vec<(String, String)> {
        let mut env = self.common.clone();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        env
    }
}

/// Every keel process of the run.
pub struct Fleet {
    /// The two HTTP nodes (no job workers).
    pub nodes: Vec<Proc>,
    /// `keel worker`.
    pub worker: Proc,
    /// `keel revio-sim`, delivering webhooks to node 0.
    pub sim: Proc,
}

impl Fleet {
    /// Starts node 0 (which migrates), node 1, the worker and the simulator.
    pub fn start(keel: &Path, env: &KeelEnv, logs: &Path) -> Result<Self, String> {
        let sim_port = env
            .common
            .iter()
            .find(|(k, _)| k == "KEEL_REVIO_URL")
            .and_then(|(_, v)| v.rsplit(':').next()?.parse::<u16>().ok())
            .ok_or("no simulator port")?;
        let mut nodes = Vec::new();
        for i in 0..2 {
            let port = free_port()?;
            let node_env = env.with(&[
                ("KEEL_BIND", format!("127.0.0.1:{port}")),
                ("KEEL_WORKERS", "0".to_owned()),
                ("KEEL_MIGRATE", (i == 0).to_string()),
            ]);
            nodes.push(Proc::start(
                keel,
                &["serve"],
                &node_env,
                Some(port),
                logs.join(format!("node{i}.log")),
            )?);
        }
        let worker = Proc::start(
            keel,
            &["worker"],
            &env.with(&[("KEEL_WORKERS", "4".to_owned())]),
            None,
            logs.join("worker.log"),
        )?;
        let webhook = format!("{}/api/v1/webhooks/revio", nodes[0].base());
        let bind = format!("127.0.0.1:{sim_port}");
        let sim = Proc::start(
            keel,
            &["revio-sim", "--bind", &bind, "--webhook-url", &webhook],
            &env.with(&[]),
            Some(sim_port),
            logs.join("revio-sim.log"),
        )?;
        Ok(Self { nodes, worker, sim })
    }

    /// The base URLs of the HTTP nodes.
    pub fn bases(&self) -> Vec<String> {
        self.nodes.iter().map(Proc::base).collect()
    }
}
