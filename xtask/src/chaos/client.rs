//! The load's HTTP client: alternates nodes, counts every attempt, and retries connection
//! errors, 5xx and "in flight" answers with the same idempotency key and body, like a real
//! client.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

/// Attempts per call before giving up.
const ATTEMPTS: u32 = 20;
/// One attempt's time limit.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the run counted: requests by kind, answers by status, faults, created ids.
#[derive(Default)]
pub struct Stats {
    /// Attempts by request kind.
    pub requests: Mutex<BTreeMap<String, u64>>,
    /// Answers by status (`conn-error` when none came).
    pub statuses: Mutex<BTreeMap<String, u64>>,
    /// Faults injected by kind.
    pub faults: Mutex<BTreeMap<String, u64>>,
    /// Calls that never got a final answer, by kind.
    pub gave_up: Mutex<BTreeMap<String, u64>>,
    /// `(table, id)` of every 2xx answer that created something.
    pub created: Mutex<Vec<(&'static str, String)>>,
}

/// Adds one to `key` of a counter map.
pub fn bump(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    if let Ok(mut map) = map.lock() {
        *map.entry(key.to_owned()).or_default() += 1;
    }
}

/// One logical request: sent until a final answer arrives.
pub struct Call<'a> {
    /// Kind for the table (`registration`, `deposit`, …).
    pub kind: &'static str,
    /// HTTP method.
    pub method: Method,
    /// Path under the node (`/api/v1/…`).
    pub path: String,
    /// `Bearer …`, if any.
    pub token: Option<&'a str>,
    /// JSON body, if any.
    pub body: Option<Value>,
    /// `Idempotency-Key`, the same on every retry.
    pub key: Option<String>,
}

/// A final answer.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body (`Null` when not JSON).
    pub body: Value,
}

impl Answer {
    /// `body[field]` as a string.
    pub fn str(&self, field: &str) -> Option<String> {
        self.body.get(field)?.as_str().map(str::to_owned)
    }
}

/// The client shared by every load task.
pub struct Client {
    http: reqwest::Client,
    bases: Vec<String>,
    next: AtomicUsize,
    /// The run's counters.
    pub stats: Stats,
}

impl Client {
    /// A client over `bases` (the nodes' `http://127.0.0.1:<port>`).
    pub fn new(bases: Vec<String>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            bases,
            next: AtomicUsize::new(0),
            stats: Stats::default(),
        })
    }

    /// The underlying client (for the simulator and admin calls that are not load).
    pub fn raw(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `call` to the next node, retrying retriable failures on alternating nodes; `None`
    /// when every attempt failed.
    pub async fn send(&self, call: &Call<'_>) -> Option<Answer> {
        for attempt in 0..ATTEMPTS {
            let base = &self.bases[self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len()];
            bump(&self.stats.requests, call.kind);
            match self.attempt(base, call).await {
                Ok(answer) => {
                    bump(&self.stats.statuses, &answer.status.to_string());
                    if !retriable(&answer) {
                        return Some(answer);
                    }
                }
                Err(()) => bump(&self.stats.statuses, "conn-error"),
            }
            let pause = 100 * u64::from(attempt + 1);
            tokio::time::sleep(Duration::from_millis(pause.min(2_000))).await;
        }
        bump(&self.stats.gave_up, call.kind);
        None
    }

    /// Sends `call` and records the created id (`body.id`) under `table` on a 201.
    pub async fn create(&self, call: &Call<'_>, table: &'static str) -> Option<Answer> {
        let answer = self.send(call).await?;
        if let (201, Some(id), Ok(mut created)) =
            (answer.status, answer.str("id"), self.stats.created.lock())
        {
            created.push((table, id));
        }
        Some(answer)
    }

    async fn attempt(&self, base: &str, call: &Call<'_>) -> Result<Answer, ()> {
        let mut request = self
            .http
            .request(call.method.clone(), format!("{base}{}", call.path));
        if let Some(token) = call.token {
            request = request.header("authorization", token);
        }
        if let Some(key) = &call.key {
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|_| ())?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|_| ())?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }
}

/// 5xx, and 409 "the same key is still in flight", are worth sending again.
fn retriable(answer: &Answer) -> bool {
    let in_flight = answer.status == 409
        && answer
            .str("type")
            .is_some_and(|t| t.ends_with("idempotency-key-in-flight"));
    answer.status >= 500 || in_flight
}
