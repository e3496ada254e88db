//! A private Redis key prefix for the soak's nodes, whose keys are deleted when it drops.

use std::process::Command;

/// Keys deleted per `DEL`.
const CHUNK: usize = 500;

/// `KEEL_REDIS_PREFIX` of the nodes; `<prefix>:*` is deleted with `redis-cli` on drop.
pub struct Prefix {
    url: String,
    /// The prefix handed to the nodes.
    pub prefix: String,
}

impl Prefix {
    /// `keel-soak-<pid>` on the Redis at `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: format!("keel-soak-{}", std::process::id()),
        }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let pattern = format!("{}:*", self.prefix);
        let scan = Command::new("redis-cli")
            .args(["-u", &self.url, "--scan", "--pattern", &pattern])
            .output();
        let Ok(scan) = scan else {
            eprintln!("warning: cannot run redis-cli: keys under {pattern} are left");
            return;
        };
        let text = String::from_utf8_lossy(&scan.stdout);
        let keys: Vec<&str> = text.lines().filter(|k| !k.is_empty()).collect();
        for chunk in keys.chunks(CHUNK) {
            let _ = Command::new("redis-cli")
                .args(["-u", &self.url, "DEL"])
                .args(chunk)
                .output();
        }
    }
}
