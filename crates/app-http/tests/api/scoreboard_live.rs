//! The live board over HTTP: a snapshot on connect, an event per change with increasing ids,
//! `Last-Event-ID` replays, heartbeats, and changes crossing nodes through Redis pub/sub or,
//! without Redis, Postgres NOTIFY. The page at `/` and its script.

use std::sync::Arc;
use std::time::Duration;

use keel_adapters_postgres::testkit::TestDatabase;
use keel_app_http::server::Application;
use keel_app_http::state::Stores;
use serde_json::Value;

use crate::accounts::{mint_user, spawn_with_admin};
use crate::scoreboard::{start, update};
use crate::support::{TestApp, no_routes, run_app, spawn_second_node, test_settings};

/// Longest wait for one live event.
const PATIENCE: Duration = Duration::from_secs(10);

/// The hub's periodic read far beyond [`PATIENCE`]: a change can only arrive through the feed.
const NO_RESYNC: (&str, &str) = ("KEEL_SCOREBOARD_LIVE_RESYNC_SECS", "3600");

/// One received `event: top`.
#[derive(Debug)]
pub(crate) struct TopEvent {
    pub id: u64,
    pub board: Value,
}

impl TopEvent {
    /// The user ids on the board, best first.
    pub fn users(&self) -> Vec<String> {
        self.board["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["user_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A reader of `GET /api/v1/scoreboard/live`.
pub(crate) struct LiveClient {
    response: reqwest::Response,
    bytes: Vec<u8>,
    buffer: String,
    /// Heartbeat comments seen so far.
    pub heartbeats: usize,
}

impl LiveClient {
    /// Connects, with `Last-Event-ID` when given.
    pub async fn connect(app: &TestApp, last_event_id: Option<&str>) -> Self {
        let mut request = app.client.get(app.url("/api/v1/scoreboard/live"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        Self {
            response,
            bytes: Vec::new(),
            buffer: String::new(),
            heartbeats: 0,
        }
    }

    /// The next `top` event (comments and `retry:` lines are counted or skipped).
    pub async fn next(&mut self) -> TopEvent {
        tokio::time::timeout(PATIENCE, self.read_event())
            .await
            .expect("a live event in time")
    }

    /// The next event whose board satisfies `wanted`.
    pub async fn until(&mut self, wanted: impl Fn(&TopEvent) -> bool) -> TopEvent {
        loop {
            let event = self.next().await;
            if wanted(&event) {
                return event;
            }
        }
    }

    async fn read_event(&mut self) -> TopEvent {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let message: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = self.parse(&message) {
                    return event;
                }
            }
            let chunk = self.response.chunk().await.unwrap().expect("stream open");
            self.bytes.extend_from_slice(&chunk);
            // Frames end in ASCII: a complete prefix is valid UTF-8 even if a chunk split a
            // character.
            if let Some(end) = self.bytes.windows(2).rposition(|w| w == b"\n\n") {
                let complete: Vec<u8> = self.bytes.drain(..end + 2).collect();
                self.buffer
                    .push_str(std::str::from_utf8(&complete).unwrap());
            }
        }
    }

    fn parse(&mut self, message: &str) -> Option<TopEvent> {
        let (mut id, mut kind, mut data) = (None, None, None);
        for line in message.lines() {
            if line.starts_with(':') {
                self.heartbeats += 1;
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.parse().unwrap());
            } else if let Some(v) = line.strip_prefix("event: ") {
                kind = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).unwrap());
            }
        }
        assert!(
            kind.is_none() || kind.as_deref() == Some("top"),
            "{message}"
        );
        Some(TopEvent {
            id: id?,
            board: data.expect("an event carries data"),
        })
    }
}

/// Scores one `COMPLETE_TASK` for a new user; returns the user id.
async fn score_new_user(app: &TestApp, stores: &Stores) -> String {
    let (user, token) = mint_user(stores, "participant").await;
    let (action, action_token) = start(app, &token).await;
    assert_eq!(
        update(app, &token, &action, &action_token).await.status(),
        200
    );
    user.as_uuid().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_then_an_event_per_change_with_increasing_ids() {
    let (app, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let mut live = LiveClient::connect(&app, None).await;
    let snapshot = live.next().await;
    assert_eq!(snapshot.board["items"], Value::Array(vec![]));

    let first = score_new_user(&app, &stores).await;
    let event = live.until(|e| e.users().contains(&first)).await;
    assert!(event.id > snapshot.id, "{} after {}", event.id, snapshot.id);
    assert_eq!(event.board["items"][0]["score"], 10);
    assert_eq!(event.board["items"][0]["display_name"], "Minted");

    let second = score_new_user(&app, &stores).await;
    let later = live.until(|e| e.users().contains(&second)).await;
    assert!(later.id > event.id);
    assert_eq!(later.users().len(), 2, "{:?}", later.board);
    assert!(later.users().contains(&first));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnect_replays_what_it_missed_or_gets_a_snapshot() {
    let (app, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let mut watcher = LiveClient::connect(&app, None).await;
    let seen = watcher.next().await;

    let user = score_new_user(&app, &stores).await;
    let missed = watcher.until(|e| e.users().contains(&user)).await;

    let mut resumed = LiveClient::connect(&app, Some(&seen.id.to_string())).await;
    let replayed = resumed.next().await;
    assert_eq!(replayed.id, missed.id, "the first event after the client's");
    assert_eq!(replayed.board, missed.board);

    for unknown in ["999999999", "not-a-number"] {
        let mut fresh = LiveClient::connect(&app, Some(unknown)).await;
        let snapshot = fresh.next().await;
        assert_eq!((snapshot.id, &snapshot.board), (missed.id, &missed.board));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_get_heartbeats() {
    let (app, _stores) = spawn_with_admin(&[
        ("KEEL_WORKERS", "0"),
        ("KEEL_SCOREBOARD_HEARTBEAT_SECS", "1"),
    ])
    .await;
    let mut live = LiveClient::connect(&app, None).await;
    live.next().await;
    let read = tokio::time::timeout(Duration::from_millis(2500), live.read_event()).await;
    assert!(read.is_err(), "no change, no event");
    assert!(live.heartbeats >= 1, "{} heartbeats", live.heartbeats);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_refuses_live_connections_beyond_its_limit() {
    let (app, _stores) = spawn_with_admin(&[
        ("KEEL_WORKERS", "0"),
        ("KEEL_SCOREBOARD_LIVE_MAX_CONNECTIONS", "1"),
    ])
    .await;
    let open = LiveClient::connect(&app, None).await;
    let refused = app.get("/api/v1/scoreboard/live").await;
    crate::support::assert_problem(refused, 503, "too-many-live-connections").await;
    drop(open);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_score_on_one_node_reaches_live_clients_of_another_through_redis() {
    let (first, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0"), NO_RESYNC]).await;
    if first.db.is_none() {
        return; // services skipped: one node only.
    }
    let second = spawn_second_node(&first, &[("KEEL_WORKERS", "0"), NO_RESYNC], no_routes()).await;
    let mut on_second = LiveClient::connect(&second, None).await;
    let snapshot = on_second.next().await;
    let user = score_new_user(&first, &stores).await;
    let event = on_second.until(|e| e.users().contains(&user)).await;
    assert!(event.id > snapshot.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_changes_cross_nodes_through_postgres_notify() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let db = Arc::new(db);
    let env = [
        ("DATABASE_URL", db.url()),
        ("KEEL_MIGRATE", "true"),
        ("KEEL_WORKERS", "0"),
        NO_RESYNC,
    ];
    let settings = test_settings(&env);
    let stores = Stores::connect(&settings).await.unwrap();
    assert!(!stores.has_redis());
    let node = |stores: Stores| {
        let settings = test_settings(&env);
        async move {
            run_app(
                Application::start_over(settings, stores, no_routes())
                    .await
                    .unwrap(),
            )
        }
    };
    let first = node(stores.clone()).await;
    let second = node(Stores::connect(&test_settings(&env)).await.unwrap()).await;
    let mut on_second = LiveClient::connect(&second, None).await;
    on_second.next().await;
    let user = score_new_user(&first, &stores).await;
    on_second.until(|e| e.users().contains(&user)).await;
    drop(db);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_script_are_served_from_the_binary() {
    let (app, _stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script src="/scoreboard.js" defer></script>"#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );
    let script = app.get("/scoreboard.js").await;
    assert_eq!(script.status(), 200);
    let script = script.text().await.unwrap();
    assert!(script.contains(r#"new EventSource("/api/v1/scoreboard/live")"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_top_10_answered_from_the_live_board_reads_this_nodes_writes() {
    let (app, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let mut scored = Vec::new();
    for _ in 0..8 {
        scored.push(score_new_user(&app, &stores).await);
        // At once, without waiting for the live board to catch up.
        let top: Value = app
            .get("/api/v1/scoreboard/top")
            .await
            .json()
            .await
            .unwrap();
        let shown: Vec<&str> = top["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["user_id"].as_str().unwrap())
            .collect();
        assert_eq!(shown.len(), scored.len(), "{top}");
        for user in &scored {
            assert!(shown.contains(&user.as_str()), "{user} missing from {top}");
        }
        let full: Value = app
            .get("/api/v1/scoreboard/top?limit=100")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(top, full, "the same board either way");
    }
}
