//! The run's own Postgres cluster and Redis server on spare loopback ports: started in a temp
//! directory, killed and removed when dropped (also when a step fails).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::processes::Proc;
use crate::bench::pg;
use crate::bench::process::free_port;
use crate::run_command;

/// Where Debian's Postgres 15 programs live.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The database keel uses in the run's cluster.
pub const DATABASE: &str = "keel";

/// A directory removed with everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `/tmp/keel-chaos-<pid>`, readable by the `postgres` user.
    pub fn create() -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!("keel-chaos-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("cannot create {path:?}: {e}"))?;
        run_command(Command::new("chmod").arg("755").arg(&path))?;
        Ok(Self(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a Postgres program; as the `postgres` user when this process is root (initdb refuses
/// root).
fn pg_command(program: &str) -> Command {
    let path = Path::new(PG_BIN).join(program);
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(path);
        cmd
    } else {
        Command::new(path)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A Postgres cluster of its own (trust auth, loopback, socket in the temp dir).
pub struct Postgres {
    data: PathBuf,
    port: u16,
}

impl Postgres {
    /// `initdb` into `root/pgdata`, `pg_ctl start` on a spare port, `CREATE DATABASE keel`.
    pub fn start(root: &Path) -> Result<Self, String> {
        let dir = root.join("pg");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if is_root() {
            run_command(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        }
        let data = dir.join("data");
        run_command(
            pg_command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
                .stdout(Stdio::null()),
        )?;
        let port = free_port()?;
        let cluster = Self { data, port };
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            dir.display()
        );
        run_command(
            pg_command("pg_ctl")
                .arg("-D")
                .arg(&cluster.data)
                .arg("-l")
                .arg(dir.join("postgres.log"))
                .args(["-w", "-t", "30", "-o", &options, "start"])
                .stdout(Stdio::null()),
        )?;
        pg::psql(
            &cluster.url("postgres"),
            &format!("CREATE DATABASE {DATABASE}"),
        )?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "20", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A `redis-server` of its own without persistence; killed (SIGKILL) and restarted on demand.
pub struct Redis {
    proc: Proc,
    port: u16,
}

impl Redis {
    /// Starts `redis-server --port <spare> --save "" --appendonly no`, logging into `root`.
    pub fn start(root: &Path) -> Result<Self, String> {
        let port = free_port()?;
        let port_arg = port.to_string();
        let args = [
            "--port",
            &port_arg,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        let proc = Proc::start(
            Path::new("redis-server"),
            &args,
            &[],
            Some(port),
            root.join("redis.log"),
        )?;
        Ok(Self { proc, port })
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: every key is lost (no persistence).
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        self.proc.restart()
    }
}
