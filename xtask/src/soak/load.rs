//! The soak's steady mixed load: an open loop at a fixed rate of operations, alternating the
//! two nodes, each operation one or two HTTP requests on a small pool of keep-alive
//! connections per node. Latency counts from the operation's scheduled time, so a slow answer
//! delays nothing else and is not hidden (no coordinated omission).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::bench::loadgen::{Connection, new_histogram};

/// One step of the mix.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `POST /competitions/{id}/registrations` with an `Idempotency-Key`, a new (user,
    /// competition) pair each time.
    Register,
    /// An earlier registration sent again with its key: the stored answer is replayed.
    Replay,
    /// `POST /actions/start`, then `POST /score/update` with the action's token.
    Score,
    /// `GET /wallet/balance`.
    Balance,
    /// `GET /wallet/transactions?limit=20`.
    History,
    /// `GET /scoreboard/top?limit=10`.
    Top,
}

/// The operations, in turn. An odd count: the nodes alternate, so each step runs on both.
const MIX: [Op; 7] = [
    Op::Register,
    Op::Score,
    Op::Top,
    Op::Balance,
    Op::Replay,
    Op::History,
    Op::Top,
];

/// Registrations kept for replays.
const REPLAYS_KEPT: usize = 1_000;
/// Longest wait for the operations in flight when the load stops.
const DRAIN: Duration = Duration::from_secs(10);

/// Registrations an `ops_per_second` load makes in `seconds` (sizes the users and competitions).
pub fn registrations_needed(ops_per_second: u32, seconds: u64) -> usize {
    let registers = MIX.iter().filter(|op| matches!(op, Op::Register)).count();
    (f64::from(ops_per_second) * seconds as f64 * registers as f64 / MIX.len() as f64).ceil()
        as usize
}

/// A short description of the mix for the report.
pub const MIX_TEXT: &str = "per 7 operations: one registration with an `Idempotency-Key` (a new \
    user × competition pair each time), one replay of an earlier registration with its key, one \
    score update (`POST /actions/start`, then `POST /score/update` with its token), one wallet \
    balance, one wallet history page (`?limit=20`) and two top-10 reads";

/// What one node answered during a window.
pub struct NodeWindow {
    /// Latency of every request, from its operation's scheduled time (µs).
    pub latency: Histogram<u64>,
    /// Requests answered or failed.
    pub requests: u64,
    /// The same latencies per route (see [`ROUTES`]), to tell which one slows down.
    pub by_route: BTreeMap<&'static str, Histogram<u64>>,
    /// Non-2xx answers and transport errors, by status (0 = transport).
    pub errors: BTreeMap<u16, u64>,
}

/// The routes the mix calls, as the report names them.
pub const ROUTES: [&str; 7] = [REGISTER, REPLAY, START, UPDATE, BALANCE, HISTORY, TOP];
const REGISTER: &str = "registration";
const REPLAY: &str = "registration replay";
const START: &str = "action start";
const UPDATE: &str = "score update";
const BALANCE: &str = "wallet balance";
const HISTORY: &str = "wallet history";
const TOP: &str = "top 10";

impl NodeWindow {
    fn new() -> Result<Self, String> {
        let by_route = ROUTES
            .iter()
            .map(|route| Ok((*route, new_histogram()?)))
            .collect::<Result<_, String>>()?;
        Ok(Self {
            latency: new_histogram()?,
            by_route,
            requests: 0,
            errors: BTreeMap::new(),
        })
    }

    /// All errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Keep-alive connections to one node, at most `permits` requests in flight.
struct Pool {
    uri: hyper::Uri,
    authority: String,
    /// Idle connections, oldest first (taken in turn, so none idles into the keep-alive timeout).
    idle: Mutex<VecDeque<Connection>>,
    permits: Semaphore,
}

impl Pool {
    fn new(base_url: &str, connections: usize) -> Result<Self, String> {
        let uri: hyper::Uri = base_url
            .parse()
            .map_err(|e| format!("bad url {base_url}: {e}"))?;
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        Ok(Self {
            uri,
            authority,
            idle: Mutex::new(VecDeque::new()),
            permits: Semaphore::new(connections.max(1)),
        })
    }

    /// Sends one request; its status and body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(u16, Bytes), String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop_front());
        let mut conn = match idle {
            Some(conn) => conn,
            None => Connection::open(&self.uri).await?,
        };
        if conn.sender.ready().await.is_err() {
            conn.driver.abort();
            conn = Connection::open(&self.uri).await?;
        }
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.authority.as_str());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
        let answer = match conn.sender.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                response
                    .into_body()
                    .collect()
                    .await
                    .map(|b| (status, b.to_bytes()))
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match &answer {
            Ok(_) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push_back(conn);
                }
            }
            Err(_) => conn.driver.abort(),
        }
        answer
    }
}

/// `POST /actions/start`'s answer.
#[derive(Deserialize)]
struct Started {
    action_id: String,
    action_token: String,
}

/// The load: nodes, users, competitions, and the current window's figures per node.
pub struct Load {
    pools: [Pool; 2],
    /// `(user id, "Bearer …")`.
    users: Arc<[(String, String)]>,
    competitions: Vec<String>,
    rate: u32,
    /// Registrations sent so far (picks the next user × competition pair).
    registered: AtomicUsize,
    /// Recent registrations: path, user index, key.
    replays: Mutex<VecDeque<(String, usize, String)>>,
    /// Round-robin over the users for the other operations.
    turn: AtomicUsize,
    window: Mutex<[NodeWindow; 2]>,
}

impl Load {
    /// A load of `rate` operations per second over the two nodes at `base_urls`.
    pub fn new(
        base_urls: [&str; 2],
        connections: usize,
        users: Arc<[(String, String)]>,
        competitions: Vec<String>,
        rate: u32,
    ) -> Result<Self, String> {
        Ok(Self {
            pools: [
                Pool::new(base_urls[0], connections)?,
                Pool::new(base_urls[1], connections)?,
            ],
            users,
            competitions,
            rate: rate.max(1),
            registered: AtomicUsize::new(0),
            replays: Mutex::new(VecDeque::new()),
            turn: AtomicUsize::new(0),
            window: Mutex::new([NodeWindow::new()?, NodeWindow::new()?]),
        })
    }

    /// The figures since the last call, per node; starts the next window.
    pub fn take_window(&self) -> Result<[NodeWindow; 2], String> {
        let fresh = [NodeWindow::new()?, NodeWindow::new()?];
        let mut window = self.window.lock().map_err(|e| e.to_string())?;
        Ok(std::mem::replace(&mut *window, fresh))
    }

    /// Runs the open loop until `stop` is set, then waits (boundedly) for what is in flight.
    pub async fn drive(self: Arc<Self>, stop: Arc<AtomicBool>) {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(self.rate)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut in_flight = JoinSet::new();
        let mut step = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let due = ticker.tick().await.into_std();
            let op = MIX[step % MIX.len()];
            in_flight.spawn(self.clone().operation(op, step % 2, due));
            while in_flight.try_join_next().is_some() {}
            step += 1;
        }
        let _ = tokio::time::timeout(DRAIN, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
    }

    async fn operation(self: Arc<Self>, op: Op, node: usize, due: Instant) {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) % self.users.len();
        let token = self.users[turn].1.as_str();
        match op {
            Op::Register => self.register(node, due).await,
            Op::Replay => {
                let picked = self.replays.lock().ok().and_then(|replays| {
                    let len = replays.len();
                    (len > 0).then(|| replays[turn % len].clone())
                });
                match picked {
                    Some((path, user, key)) => {
                        let token = self.users[user].1.as_str();
                        let headers = [("authorization", token), ("idempotency-key", key.as_str())];
                        let request = (Method::POST, path.as_str(), REPLAY);
                        self.call(node, due, request, &headers, Bytes::new()).await;
                    }
                    None => self.top(node, due).await,
                }
            }
            Op::Score => self.score(node, due, token).await,
            Op::Balance => {
                let headers = [("authorization", token)];
                let request = (Method::GET, "/api/v1/wallet/balance", BALANCE);
                self.call(node, due, request, &headers, Bytes::new()).await;
            }
            Op::History => {
                let path = "/api/v1/wallet/transactions?limit=20";
                let headers = [("authorization", token)];
                self.call(
                    node,
                    due,
                    (Method::GET, path, HISTORY),
                    &headers,
                    Bytes::new(),
                )
                .await;
            }
            Op::Top => self.top(node, due).await,
        }
    }

    async fn register(&self, node: usize, due: Instant) {
        let k = self.registered.fetch_add(1, Ordering::Relaxed);
        let user = k % self.users.len();
        let competition = &self.competitions[(k / self.users.len()) % self.competitions.len()];
        let path = format!("/api/v1/competitions/{competition}/registrations");
        let key = format!("soak-{}-{k}", std::process::id());
        let headers = [
            ("authorization", self.users[user].1.as_str()),
            ("idempotency-key", key.as_str()),
        ];
        if self
            .call(
                node,
                due,
                (Method::POST, &path, REGISTER),
                &headers,
                Bytes::new(),
            )
            .await
            .is_some()
            && let Ok(mut replays) = self.replays.lock()
        {
            if replays.len() >= REPLAYS_KEPT {
                replays.pop_front();
            }
            replays.push_back((path, user, key));
        }
    }

    async fn score(&self, node: usize, due: Instant, token: &str) {
        let headers = [
            ("authorization", token),
            ("content-type", "application/json"),
        ];
        let body = Bytes::from_static(br#"{"action_type":"COMPLETE_TASK"}"#);
        let path = "/api/v1/actions/start";
        let Some(started) = self
            .call(node, due, (Method::POST, path, START), &headers, body)
            .await
        else {
            return;
        };
        let Ok(started) = serde_json::from_slice::<Started>(&started) else {
            eprintln!("soak: unexpected answer of {path}");
            return;
        };
        let update = serde_json::json!({
            "action_id": started.action_id,
            "action_token": started.action_token,
        });
        let body = Bytes::from(update.to_string());
        let request = (Method::POST, "/api/v1/score/update", UPDATE);
        self.call(node, Instant::now(), request, &headers, body)
            .await;
    }

    async fn top(&self, node: usize, due: Instant) {
        let path = "/api/v1/scoreboard/top?limit=10";
        self.call(node, due, (Method::GET, path, TOP), &[], Bytes::new())
            .await;
    }

    /// Sends one request (method, path, route name) to `node` and records it; the body of a
    /// 2xx answer.
    async fn call(
        &self,
        node: usize,
        due: Instant,
        (method, path, route): (Method, &str, &'static str),
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Option<Bytes> {
        let answer = self.pools[node].send(method, path, headers, body).await;
        let record = |error| self.record(node, due, route, error);
        match answer {
            Ok((status, body)) if (200..300).contains(&status) => {
                record(None);
                Some(body)
            }
            Ok((status, body)) => {
                if status >= 500 {
                    eprintln!(
                        "soak: {path} answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                record(Some(status));
                None
            }
            Err(_) => {
                record(Some(0));
                None
            }
        }
    }

    /// Counts one request of `node` to `route`, with its latency since `due` and its error
    /// status if any.
    fn record(&self, node: usize, due: Instant, route: &'static str, error: Option<u16>) {
        let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut window) = self.window.lock() {
            let w = &mut window[node];
            w.requests += 1;
            w.latency.saturating_record(micros.max(1));
            if let Some(latency) = w.by_route.get_mut(route) {
                latency.saturating_record(micros.max(1));
            }
            if let Some(status) = error {
                *w.errors.entry(status).or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::registrations_needed;

    #[test]
    fn sizes_registrations_from_the_mix() {
        // One registration per 7 operations.
        assert_eq!(registrations_needed(700, 60), 6_000);
    }
}
