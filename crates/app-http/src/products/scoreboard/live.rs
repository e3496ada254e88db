//! `GET /scoreboard/live`: the top of the board over Server-Sent Events, on every node.
//!
//! One [`LiveBoard`] per process. Its hub task listens to the [`BoardFeed`] (changes announced
//! by any node), re-reads the top [`LIVE_TOP`] at most once per [`COALESCE`] and, when it
//! differs from the last event, makes a new event: a whole snapshot, pre-rendered once as an
//! SSE frame and shared by every connection. Event ids come from the feed's change numbers, so
//! they increase across nodes; a node's own ids always increase.
//!
//! Each connection holds a `watch` receiver of the newest event: a slow client never holds up
//! the hub or other clients, it only skips to the newest snapshot when it catches up (its
//! memory is bounded by one shared frame).
//!
//! Ids: an event's id is the highest change number the node has seen, or one more than its
//! previous event when that is higher (a change made while the feed was unreachable). One id
//! may stand for slightly different boards on two nodes that read at different moments, so a
//! client that reconnects "up to date" is sent the node's newest event again. A reconnect with `Last-Event-ID` replays the events
//! it missed from a bounded [`ReplayBuffer`], or gets a fresh snapshot. Comments every
//! `heartbeat` keep proxies from closing idle streams.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::stream;
use keel_domain::scoreboard::{
    BoardFeed, BoardSignal, BoardSubscription, LiveEvent, RankedStanding, ReplayBuffer, Resume,
    ScoreService,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::Board;
use crate::http::{ApiError, ProblemType};
use crate::state::AppState;

/// How many ranks a live event carries.
pub const LIVE_TOP: u32 = 10;
/// At most one event per this interval: bursts of changes are coalesced.
pub const COALESCE: Duration = Duration::from_millis(100);
/// The hub re-reads the board this often even without signals (signals can be lost).
pub const RESYNC_EVERY: Duration = Duration::from_secs(5);
/// Events kept for `Last-Event-ID` replays.
pub const REPLAY_EVENTS: usize = 256;
/// Gauge of open live connections on this node.
pub const SSE_CONNECTIONS: &str = "keel_sse_connections";
/// Counter of live events made on this node.
pub const LIVE_EVENTS_TOTAL: &str = "keel_scoreboard_live_events_total";

/// Signals waiting for the hub before the subscription task waits in turn.
const SIGNALS: usize = 1024;
/// Longest wait between two attempts to subscribe to the feed.
const SUBSCRIBE_RETRY_MAX: Duration = Duration::from_secs(5);
/// Sent first on every connection: reconnect after 2 s (and the response starts at once).
const PREAMBLE: &[u8] = b"retry: 2000\n\n";
const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// One event as sent: the board's JSON (to tell whether the board changed) and the whole SSE
/// frame with its id.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    json: Bytes,
    sse: Bytes,
}

impl Frame {
    fn new(id: u64, json: Bytes) -> Self {
        let mut sse = Vec::with_capacity(json.len() + 32);
        sse.extend_from_slice(format!("id: {id}\nevent: top\ndata: ").as_bytes());
        sse.extend_from_slice(&json);
        sse.extend_from_slice(b"\n\n");
        Self {
            json,
            sse: sse.into(),
        }
    }
}

type Event = Arc<LiveEvent<Frame>>;

/// A node's live board: the newest events and the connections that follow them.
pub struct LiveBoard {
    /// The replay history; events are pushed and published under this lock, so a connecting
    /// client sees each event exactly once (from the history or from `latest`).
    history: Mutex<ReplayBuffer<Frame>>,
    latest: watch::Sender<Event>,
    /// The highest change number seen: the floor of this node's next announcement.
    seen: AtomicU64,
    /// Wakes the hub when an announcement could not go through the feed.
    poke: Notify,
    /// Changes this node has announced.
    announced: AtomicU64,
    /// `announced` as it was when the newest successful read began (`u64::MAX` before the
    /// first): equal to `announced` when every change made here is in the newest event.
    reflected: AtomicU64,
    connections: AtomicUsize,
    /// Set at shutdown: every stream ends, so draining does not wait on them.
    closing: watch::Sender<bool>,
    heartbeat: Duration,
    max_connections: usize,
}

impl std::fmt::Debug for LiveBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveBoard")
            .field("seen", &self.seen)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl LiveBoard {
    /// An empty board (event 0) until the hub's first read; connections get a comment every
    /// `heartbeat`, and at most `max_connections` are open at once.
    pub fn new(heartbeat: Duration, max_connections: usize) -> Self {
        let empty = Self::render(&[]);
        let first = LiveEvent {
            id: 0,
            payload: Frame::new(0, empty),
        };
        let history = ReplayBuffer::new(REPLAY_EVENTS, first);
        let latest = watch::Sender::new(history.latest());
        Self {
            history: Mutex::new(history),
            latest,
            seen: AtomicU64::new(0),
            poke: Notify::new(),
            announced: AtomicU64::new(0),
            reflected: AtomicU64::new(u64::MAX),
            connections: AtomicUsize::new(0),
            closing: watch::Sender::new(false),
            heartbeat,
            max_connections,
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, ReplayBuffer<Frame>> {
        // Every update of the history is a single push: a poisoned lock holds a valid buffer.
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest event's id.
    pub fn latest_id(&self) -> u64 {
        self.latest.borrow().id
    }

    /// Ends every live stream and refuses new ones (at shutdown: clients reconnect elsewhere
    /// with their `Last-Event-ID`).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn note_seen(&self, number: u64) {
        self.seen.fetch_max(number, Ordering::AcqRel);
    }

    /// Tells every node (through `feed`) that the top of the board may have changed. Runs in
    /// the background: the caller's response never waits for it. If the feed fails, this
    /// node's own clients still get the change.
    pub fn announce(self: &Arc<Self>, feed: Arc<dyn BoardFeed>) {
        self.announced.fetch_add(1, Ordering::AcqRel);
        let board = self.clone();
        tokio::spawn(async move {
            // Above every id this node has seen or sent.
            let floor = board.seen.load(Ordering::Acquire).max(board.latest_id());
            match feed.publish(floor).await {
                Ok(number) => board.note_seen(number),
                Err(e) => {
                    tracing::warn!(error = %e, "board change not announced to other nodes");
                    board.poke.notify_one();
                }
            }
        });
    }

    fn render(top: &[RankedStanding]) -> Bytes {
        // Serialising plain data cannot fail.
        serde_json::to_vec(&Board::of(top))
            .expect("a board serialises")
            .into()
    }

    /// Makes an event of `top` if it differs from the newest; returns its id if it did.
    fn offer(&self, top: &[RankedStanding]) -> Option<u64> {
        let json = Self::render(top);
        let mut history = self.history();
        let latest = history.latest();
        if latest.payload.json == json {
            return None;
        }
        let id = latest
            .id
            .saturating_add(1)
            .max(self.seen.load(Ordering::Acquire));
        let event = LiveEvent {
            id,
            payload: Frame::new(id, json),
        };
        let event = history.push(event).ok()?;
        self.latest.send_replace(event);
        metrics::counter!(LIVE_EVENTS_TOTAL).increment(1);
        Some(id)
    }

    /// The newest top [`LIVE_TOP`] as JSON (a [`Board`]), when it holds every change this node
    /// has announced: what `GET /scoreboard/top?limit=10` answers without a round trip. Changes
    /// made on other nodes arrive through the feed within about [`COALESCE`].
    pub fn current_top(&self) -> Option<Bytes> {
        let announced = self.announced.load(Ordering::Acquire);
        (self.reflected.load(Ordering::Acquire) == announced)
            .then(|| self.latest.borrow().payload.json.clone())
    }

    async fn refresh(&self, scores: &ScoreService) {
        let announced = self.announced.load(Ordering::Acquire);
        match scores.top(LIVE_TOP).await {
            Ok(top) => {
                self.offer(&top);
                self.reflected.store(announced, Ordering::Release);
            }
            Err(e) => tracing::warn!(error = %e, "live board could not read the top"),
        }
    }

    /// Runs the hub until the process ends: follows `feed`, reads the board through `scores`,
    /// and reads it every `resync_every` regardless (signals can be lost).
    pub async fn run(
        self: Arc<Self>,
        feed: Arc<dyn BoardFeed>,
        scores: ScoreService,
        resync_every: Duration,
    ) {
        // Read first: clients get the real board even while the feed cannot be reached.
        self.refresh(&scores).await;
        let (signals, mut received) = mpsc::channel(SIGNALS);
        // The subscription lives in a task of its own, so its keepalive is never cut short.
        let _forwarder = AbortOnDrop(tokio::spawn(forward(feed, signals)));
        let mut resync = every(resync_every);
        let mut last_read = Instant::now();
        loop {
            tokio::select! {
                signal = received.recv() => match signal {
                    Some(signal) => self.take(signal),
                    None => return,
                },
                () = self.poke.notified() => {}
                _ = resync.tick() => {}
            }
            // Coalesce: whatever else arrives before the next read slot joins this read.
            let slot = last_read + COALESCE;
            loop {
                tokio::select! {
                    Some(signal) = received.recv() => self.take(signal),
                    () = tokio::time::sleep_until(slot) => break,
                }
            }
            self.refresh(&scores).await;
            last_read = Instant::now();
        }
    }

    fn take(&self, signal: BoardSignal) {
        if let BoardSignal::Changed(number) = signal {
            self.note_seen(number);
        }
    }

    /// Opens a connection for a client whose last event was `last_id`.
    fn connect(self: &Arc<Self>, last_id: Option<u64>) -> Result<Connection, ApiError> {
        if *self.closing.borrow() {
            return Err(ApiError::problem(
                ProblemType::TOO_MANY_LIVE_CONNECTIONS,
                "this node is shutting down",
            ));
        }
        if self.connections.fetch_add(1, Ordering::AcqRel) >= self.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::problem(
                ProblemType::TOO_MANY_LIVE_CONNECTIONS,
                "this node has no room for another live connection",
            ));
        }
        let guard = ConnectionGuard(self.clone());
        metrics::gauge!(SSE_CONNECTIONS).increment(1.0);
        let history = self.history();
        let (first, last_sent) = match history.resume(last_id) {
            // Up to date by id: its event may still hold another node's board for that id, so
            // it gets this node's again.
            Resume::Replay(events) if events.is_empty() => {
                let latest = history.latest();
                let id = latest.id;
                (vec![latest], id)
            }
            Resume::Replay(events) => {
                let last = events.last().map_or(0, |e| e.id);
                (events, last)
            }
            Resume::Snapshot(event) => {
                let id = event.id;
                (vec![event], id)
            }
        };
        // Subscribed under the history lock: later events arrive through `latest` only.
        let latest = self.latest.subscribe();
        drop(history);
        let mut pending: VecDeque<Bytes> = VecDeque::with_capacity(first.len() + 1);
        pending.push_back(Bytes::from_static(PREAMBLE));
        pending.extend(first.iter().map(|e| e.payload.sse.clone()));
        Ok(Connection {
            pending,
            latest,
            closing: self.closing.subscribe(),
            last_sent,
            heartbeat: every(self.heartbeat),
            _guard: guard,
        })
    }
}

/// Forwards every signal of `feed` to the hub, subscribing again whenever a subscription ends;
/// after each (re)subscription the counter is read, as changes may have been missed. Ends when
/// the hub is gone.
async fn forward(feed: Arc<dyn BoardFeed>, signals: mpsc::Sender<BoardSignal>) {
    loop {
        let mut subscription = subscribe(feed.as_ref()).await;
        let caught_up = match feed.current().await {
            Ok(number) => BoardSignal::Changed(number),
            Err(_) => BoardSignal::Resync,
        };
        if signals.send(caught_up).await.is_err() {
            return;
        }
        while let Some(signal) = subscription.next().await {
            if signals.send(signal).await.is_err() {
                return;
            }
        }
    }
}

/// Ticks every `period`, first one period from now, never in a burst after a stall.
fn every(period: Duration) -> Interval {
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// Aborts a task when dropped (with the hub that owns it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Subscribes to `feed`, retrying with backoff until it works.
async fn subscribe(feed: &dyn BoardFeed) -> Box<dyn BoardSubscription> {
    let mut wait = Duration::from_millis(100);
    loop {
        match feed.subscribe().await {
            Ok(subscription) => return subscription,
            Err(e) => {
                tracing::warn!(error = %e, "live board cannot subscribe to board changes; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(SUBSCRIBE_RETRY_MAX);
            }
        }
    }
}

/// Counts an accepted connection while it is open.
struct ConnectionGuard(Arc<LiveBoard>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(SSE_CONNECTIONS).decrement(1.0);
    }
}

/// One client's stream: frames not yet sent, then every newer event and the heartbeats.
struct Connection {
    pending: VecDeque<Bytes>,
    latest: watch::Receiver<Event>,
    closing: watch::Receiver<bool>,
    last_sent: u64,
    heartbeat: Interval,
    _guard: ConnectionGuard,
}

impl Connection {
    /// The next chunk to write; `None` when the node closes its live board.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(frame) = self.pending.pop_front() {
            return Some(frame);
        }
        loop {
            tokio::select! {
                changed = self.latest.changed() => {
                    changed.ok()?;
                    let event = self.latest.borrow_and_update().clone();
                    if event.id > self.last_sent {
                        self.last_sent = event.id;
                        return Some(event.payload.sse.clone());
                    }
                }
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(HEARTBEAT)),
                _ = self.closing.wait_for(|closing| *closing) => return None,
            }
        }
    }
}

/// The `Last-Event-ID` of a reconnecting client; anything unreadable counts as none (the
/// client then gets a fresh snapshot).
fn last_event_id(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get("last-event-id")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The top 10 of the board, live (public): a snapshot on connect, then an event whenever the
/// top 10 changes (at most one per 100 ms), each with an increasing `id`; `Last-Event-ID`
/// replays missed events or sends a fresh snapshot; a heartbeat comment every 15 s.
#[utoipa::path(get, path = "/api/v1/scoreboard/live", tag = "scoreboard",
    params(("Last-Event-ID" = Option<u64>, Header, description = "id of the last event received")),
    responses((status = 200, content_type = "text/event-stream",
        description = "`event: top` messages whose data is a Board"),
        (status = 503, description = "too-many-live-connections")))]
pub async fn live(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let board = state.scoring.live.clone();
    let connection = board.connect(last_event_id(&req))?;
    let body = stream::unfold(connection, |mut connection| async move {
        let chunk = connection.next_chunk().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), connection))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use keel_domain::identity::user::UserId;
    use keel_domain::scoreboard::Standing;
    use uuid::Uuid;

    use super::*;

    fn standing(rank: u64, score: i64) -> RankedStanding {
        RankedStanding {
            rank,
            standing: Standing {
                user_id: UserId(Uuid::from_u128(u128::from(rank))),
                score,
                reached_at: Utc::now(),
            },
            display_name: Some(format!("player {rank}")),
        }
    }

    fn memory_scores() -> ScoreService {
        ScoreService::new(
            Arc::new(keel_adapters_memory::MemoryScoreStore::new()),
            None,
            Arc::new(keel_domain::scoreboard::ActionTokenSigner::new(&[7; 32])),
            Arc::new(keel_domain::scoreboard::ActionTable::parse("TASK=1").unwrap()),
            Arc::new(keel_domain::SystemClock),
        )
    }

    #[tokio::test]
    async fn the_current_top_waits_for_the_changes_of_this_node() {
        let board = Arc::new(LiveBoard::new(Duration::from_secs(15), 10));
        let scores = memory_scores();
        assert_eq!(board.current_top(), None, "before the first read");
        board.refresh(&scores).await;
        let shown = board.current_top().expect("read");
        assert_eq!(shown, LiveBoard::render(&[]));
        board.announce(Arc::new(keel_adapters_memory::MemoryBoardFeed::new()));
        assert_eq!(
            board.current_top(),
            None,
            "a change of this node not read yet"
        );
        board.refresh(&scores).await;
        assert!(board.current_top().is_some());
    }

    #[test]
    fn an_unchanged_board_makes_no_event() {
        let board = LiveBoard::new(Duration::from_secs(15), 10);
        let top = vec![standing(1, 50)];
        assert_eq!(board.offer(&top), Some(1));
        assert_eq!(board.offer(&top), None);
        assert_eq!(board.offer(&[standing(1, 60)]), Some(2));
    }

    #[test]
    fn ids_follow_the_feed_and_never_go_back() {
        let board = LiveBoard::new(Duration::from_secs(15), 10);
        board.note_seen(40);
        assert_eq!(board.offer(&[standing(1, 1)]), Some(40));
        // A lower change number (a restarted counter) cannot lower the ids.
        board.note_seen(3);
        assert_eq!(board.offer(&[standing(1, 2)]), Some(41));
    }

    #[tokio::test]
    async fn a_reconnect_replays_what_it_missed_then_follows() {
        let board = Arc::new(LiveBoard::new(Duration::from_secs(15), 10));
        let first = board.offer(&[standing(1, 1)]).unwrap();
        let second = board.offer(&[standing(1, 2)]).unwrap();
        let mut connection = board.connect(Some(first)).unwrap();
        assert_eq!(connection.next_chunk().await.unwrap(), PREAMBLE);
        let replayed = connection.next_chunk().await.unwrap();
        assert!(replayed.starts_with(format!("id: {second}\n").as_bytes()));
        // Up to date: the newest event again, in case another node's differed.
        let mut current = board.connect(Some(second)).unwrap();
        current.next_chunk().await.unwrap();
        let again = current.next_chunk().await.unwrap();
        assert!(again.starts_with(format!("id: {second}\n").as_bytes()));
        let third = board.offer(&[standing(1, 3)]).unwrap();
        let followed = connection.next_chunk().await.unwrap();
        assert!(followed.starts_with(format!("id: {third}\n").as_bytes()));
    }

    #[tokio::test]
    async fn closing_ends_every_stream_and_refuses_new_ones() {
        let board = Arc::new(LiveBoard::new(Duration::from_secs(15), 10));
        let mut connection = board.connect(None).unwrap();
        connection.next_chunk().await.unwrap();
        connection.next_chunk().await.unwrap();
        board.close();
        assert_eq!(connection.next_chunk().await, None);
        assert!(board.connect(None).is_err());
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_refused_and_counted_back() {
        let board = Arc::new(LiveBoard::new(Duration::from_secs(15), 1));
        let open = board.connect(None).unwrap();
        assert!(board.connect(None).is_err());
        drop(open);
        assert!(board.connect(None).is_ok());
    }

    #[tokio::test]
    async fn a_quiet_connection_gets_heartbeats() {
        let board = Arc::new(LiveBoard::new(Duration::from_millis(20), 10));
        let mut connection = board.connect(None).unwrap();
        connection.next_chunk().await.unwrap();
        connection.next_chunk().await.unwrap();
        assert_eq!(connection.next_chunk().await.unwrap(), HEARTBEAT);
    }
}
