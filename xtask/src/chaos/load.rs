//! The mixed load: competition waves (more demand than seats), wallet deposits and
//! withdrawals, repeated and concurrent attendance scans with certificates, and score updates.
//! Every task runs until the deadline; every call retries with its own idempotency key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::client::{Call, Client};

/// Seats of each competition (each wave sends more requests than this).
const CAPACITY: i64 = 8;
/// Registrants racing for one competition.
const WAVE: usize = 20;
/// Participants added to each event.
const PARTICIPANTS: usize = 24;

/// A user of the run: id and `Bearer …` token.
pub type User = (String, String);

/// What the load tasks share.
pub struct Load {
    /// The HTTP client and its counters.
    pub client: Arc<Client>,
    /// The admin's `Bearer …` token.
    pub admin: String,
    /// Participants (inserted with SQL, tokens signed with the run's secret).
    pub users: Vec<User>,
    /// When the load stops.
    pub deadline: Instant,
}

static KEYS: AtomicU64 = AtomicU64::new(0);

/// A fresh idempotency key.
fn key(kind: &str) -> String {
    let n = KEYS.fetch_add(1, Ordering::Relaxed);
    format!("chaos-{kind}-{}-{n}", std::process::id())
}

fn post<'a>(kind: &'static str, path: String, token: &'a str, body: Option<Value>) -> Call<'a> {
    Call {
        kind,
        method: Method::POST,
        path,
        token: Some(token),
        body,
        key: Some(key(kind)),
    }
}

impl Load {
    /// Runs every task until the deadline.
    pub async fn run(self: Arc<Self>) {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.clone().competitions());
        tasks.spawn(self.clone().attendance());
        for i in 0..10 {
            tasks.spawn(self.clone().wallet(i));
        }
        for i in 10..30 {
            tasks.spawn(self.clone().scores(i));
        }
        while tasks.join_next().await.is_some() {}
    }

    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// Waves: a competition with [`CAPACITY`] seats, then [`WAVE`] users register at once.
    async fn competitions(self: Arc<Self>) {
        let mut wave = 0usize;
        while self.running() {
            let now = Utc::now();
            let body = json!({
                "title": format!("chaos {wave}"),
                "capacity": CAPACITY,
                "registration_deadline": now + chrono::Duration::hours(1),
                "starts_at": now + chrono::Duration::days(2),
            });
            let call = post(
                "competition",
                "/api/v1/competitions".into(),
                &self.admin,
                Some(body),
            );
            let Some(id) = self
                .client
                .create(&call, "competitions")
                .await
                .and_then(|a| a.str("id"))
            else {
                pause().await;
                continue;
            };
            let mut racers = tokio::task::JoinSet::new();
            for i in 0..WAVE {
                let load = self.clone();
                let path = format!("/api/v1/competitions/{id}/registrations");
                let user = (wave * 7 + i) % self.users.len();
                racers.spawn(async move {
                    let call = post("registration", path, &load.users[user].1, None);
                    load.client.create(&call, "registrations").await;
                });
            }
            while racers.join_next().await.is_some() {}
            wave += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Deposits, then withdrawals of part of them (422 when the deposit has not settled yet).
    async fn wallet(self: Arc<Self>, user: usize) {
        let token = self.users[user].1.clone();
        while self.running() {
            let deposit = json!({"amount_minor": 5_000, "currency": "ZAR"});
            let call = post(
                "deposit",
                "/api/v1/wallet/deposits".into(),
                &token,
                Some(deposit),
            );
            self.client.create(&call, "wallet_operations").await;
            tokio::time::sleep(Duration::from_millis(400)).await;
            let withdrawal = json!({
                "amount_minor": 1_500,
                "currency": "ZAR",
                "destination": format!("chaos-bank-{user}"),
            });
            let path = "/api/v1/wallet/withdrawals".to_owned();
            let call = post("withdrawal", path, &token, Some(withdrawal));
            self.client.create(&call, "wallet_operations").await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }

    /// Events with participants; each participant scanned three times at once (and again
    /// later), then two certificate requests at once.
    async fn attendance(self: Arc<Self>) {
        while self.running() {
            let Some(event) = self.event().await else {
                pause().await;
                continue;
            };
            for round in 0..2 {
                for p in 0..PARTICIPANTS {
                    if !self.running() {
                        return;
                    }
                    let participant = self.users[p].0.clone();
                    self.burst("scan", &event, &participant, "scans", "attendances", 3)
                        .await;
                    if round == 1 {
                        let table = "certificates";
                        self.burst("certificate", &event, &participant, table, table, 2)
                            .await;
                    }
                }
            }
        }
    }

    /// Creates an event open now and adds the participants; its id.
    async fn event(&self) -> Option<String> {
        let now = Utc::now();
        let body = json!({
            "title": "chaos event",
            "starts_at": now - chrono::Duration::hours(1),
            "ends_at": now + chrono::Duration::hours(2),
        });
        let call = post("event", "/api/v1/events".into(), &self.admin, Some(body));
        let id = self.client.create(&call, "events").await?.str("id")?;
        for (user, _) in &self.users[..PARTICIPANTS] {
            let path = format!("/api/v1/events/{id}/participants");
            let call = post(
                "participant",
                path,
                &self.admin,
                Some(json!({"user_id": user})),
            );
            self.client.send(&call).await;
        }
        Some(id)
    }

    /// `n` concurrent identical POSTs of `{participant_id}` to `/events/{event}/{route}`.
    async fn burst(
        &self,
        kind: &'static str,
        event: &str,
        participant: &str,
        route: &str,
        table: &'static str,
        n: usize,
    ) {
        let path = format!("/api/v1/events/{event}/{route}");
        let body = json!({"participant_id": participant});
        let calls: Vec<Call<'_>> = (0..n)
            .map(|_| post(kind, path.clone(), &self.admin, Some(body.clone())))
            .collect();
        join_all(calls.iter().map(|c| self.client.create(c, table))).await;
    }

    /// Starts an action and applies it, again and again.
    async fn scores(self: Arc<Self>, user: usize) {
        let token = self.users[user].1.clone();
        while self.running() {
            let body = json!({"action_type": "COMPLETE_TASK"});
            let call = post(
                "action-start",
                "/api/v1/actions/start".into(),
                &token,
                Some(body),
            );
            let started = self.client.send(&call).await;
            let (Some(action_id), Some(action_token)) = (
                started.as_ref().and_then(|a| a.str("action_id")),
                started.as_ref().and_then(|a| a.str("action_token")),
            ) else {
                pause().await;
                continue;
            };
            let body = json!({"action_id": action_id, "action_token": action_token});
            let call = post(
                "score-update",
                "/api/v1/score/update".into(),
                &token,
                Some(body),
            );
            self.client.send(&call).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// A short wait after a call that did not give what the next step needs.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}
