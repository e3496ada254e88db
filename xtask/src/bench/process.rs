//! Servers under test, run as child processes and killed when dropped.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child server listening on a loopback port.
pub struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// The hello-world baseline (this xtask binary, re-executed).
    pub fn hello_world(workers: usize) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let port = free_port()?;
        let mut cmd = Command::new(exe);
        cmd.args([
            "hello-server",
            "--port",
            &port.to_string(),
            "--workers",
            &workers.to_string(),
        ]);
        Self::spawn(cmd, port)
    }

    /// A keel binary (the server or an example) with quiet logs and extra env settings.
    pub fn start(binary: &Path, env: &[(&str, &str)]) -> Result<Self, String> {
        let port = free_port()?;
        let cmd = keel_command(binary, port, env);
        let server = Self::spawn(cmd, port)?;
        wait_listening(port, Instant::now() + Duration::from_secs(30))?;
        Ok(server)
    }

    /// `keel worker` (job workers only, no HTTP listener) with the same settings as [`Self::start`].
    pub fn start_worker(binary: &Path, env: &[(&str, &str)]) -> Result<Self, String> {
        let port = free_port()?;
        let mut cmd = keel_command(binary, port, env);
        cmd.arg("worker");
        Self::spawn(cmd, port)
    }

    fn spawn(mut cmd: Command, port: u16) -> Result<Self, String> {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        Ok(Self { child, port })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `binary` with quiet logs, bound to loopback `port`, and `env` as the only service settings.
fn keel_command(binary: &Path, port: u16, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(binary);
    // Only what a bench passes selects stores: never inherit the caller's service URLs.
    cmd.env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("KEEL_MIGRATE")
        .env_remove("KEEL_WORKERS")
        .env("KEEL_BIND", format!("127.0.0.1:{port}"))
        .env("KEEL_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Waits until something accepts connections on loopback `port`, until `deadline`.
pub(crate) fn wait_listening(port: u16, deadline: Instant) -> Result<(), String> {
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("nothing listens on port {port}"))
}

/// A loopback port free right now.
pub(crate) fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
