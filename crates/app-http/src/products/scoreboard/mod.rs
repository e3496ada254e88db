//! Live scoreboard: server-signed action tokens, scores applied once per action, the board and
//! ranks from the cache first (Redis when configured), Postgres being the truth, and the live
//! top 10 over Server-Sent Events on every node ([`live`]); [`upkeep`] keeps the cache honest,
//! [`admin`] rebuilds it.
//!
//! Handlers are thin: parse, call a [`ScoreService`] use case, map its errors to problems, and
//! count every token rejection by reason (`keel_score_token_rejections_total`).

mod admin;
pub mod live;
pub mod page;
pub mod upkeep;

use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use keel_adapters_memory::{MemoryBoardFeed, MemoryLeaderboard, MemoryScoreStore, MemoryUserStore};
use keel_adapters_postgres::{PgPool, PgScoreStore};
use keel_domain::events::DomainEvent;
use keel_domain::identity::user::UserId;
use keel_domain::ratelimit::LimitClass;
use keel_domain::scoreboard::{
    ActionTable, ActionTokenSigner, BoardCache, BoardFeed, LeaderboardCache, MAX_TOP,
    RankedStanding, ScoreError, ScoreService, ScoreStore, TokenError,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::config::{ConfigError, Settings};
use crate::http::auth::Authenticated;
use crate::http::rate_limit::rate_limit;
use crate::http::{ApiError, FieldError, ProblemType};
use crate::state::AppState;
use live::{LIVE_TOP, LiveBoard};
pub use upkeep::{periodic_jobs, register_jobs};

/// Counter of refused action tokens, labelled `reason`.
pub const TOKEN_REJECTIONS_TOTAL: &str = "keel_score_token_rejections_total";

/// The product's stores.
#[derive(Clone)]
pub struct Scoreboard {
    /// Scores and their history (the truth).
    pub store: Arc<dyn ScoreStore>,
    /// The board cache written after each commit and read first (shared freshness).
    pub cache: Option<BoardCache>,
    /// How nodes tell each other the board changed (in process until Postgres or Redis is set
    /// with [`Scoreboard::with_feed`]).
    pub feed: Arc<dyn BoardFeed>,
}

impl Scoreboard {
    /// In-memory stores, naming users from `users`.
    pub fn memory(users: &MemoryUserStore) -> Self {
        Self {
            store: Arc::new(MemoryScoreStore::with_users(Arc::new(users.clone()))),
            cache: Some(upkeep::board_cache(Arc::new(MemoryLeaderboard::new()))),
            feed: Arc::new(MemoryBoardFeed::new()),
        }
    }

    /// Postgres stores, without a cache until [`Self::with_cache`].
    pub fn postgres(pool: &PgPool) -> Self {
        Self {
            store: Arc::new(PgScoreStore::new(pool.clone())),
            cache: None,
            feed: Arc::new(MemoryBoardFeed::new()),
        }
    }

    /// The same stores, announcing board changes through `feed`.
    pub fn with_feed(self, feed: Arc<dyn BoardFeed>) -> Self {
        Self { feed, ..self }
    }

    /// The same store with `cache` (e.g. Redis) in front of it.
    pub fn with_cache(self, cache: Arc<dyn LeaderboardCache>) -> Self {
        Self {
            cache: Some(upkeep::board_cache(cache)),
            ..self
        }
    }
}

/// The token signer, the action table and the live board of a process.
#[derive(Clone)]
pub struct Scoring {
    /// Signs and verifies action tokens (`KEEL_ACTION_TOKEN_SECRET`).
    pub signer: Arc<ActionTokenSigner>,
    /// What each action type is worth (`KEEL_SCORE_ACTIONS`).
    pub table: Arc<ActionTable>,
    /// This node's live top 10 and its connections.
    pub live: Arc<LiveBoard>,
}

impl Scoring {
    /// From the settings (also describes the product's metrics).
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        upkeep::describe_metrics();
        Ok(Self {
            signer: Arc::new(ActionTokenSigner::new(
                settings.secrets.action_token_secret.expose().as_bytes(),
            )),
            table: Arc::new(settings.scoreboard.table()?),
            live: Arc::new(LiveBoard::new(
                Duration::from_secs(settings.scoreboard.live_heartbeat_secs.max(1)),
                settings.scoreboard.live_max_connections,
            )),
        })
    }
}

fn service(state: &AppState) -> ScoreService {
    let board = &state.stores.products.scoreboard;
    ScoreService::new(
        board.store.clone(),
        board.cache.clone(),
        state.scoring.signer.clone(),
        state.scoring.table.clone(),
        state.clock.clone(),
    )
}

/// Mounts the product's routes inside `/api/v1`.
pub fn configure(api: &mut web::ServiceConfig) {
    api.service(
        web::resource("/actions/start")
            .wrap(from_fn(rate_limit(LimitClass::Default)))
            .post(start_action),
    )
    .service(
        web::resource("/score/update")
            .wrap(from_fn(rate_limit(LimitClass::Score)))
            .post(update_score),
    )
    // Not rate-limited: one long-lived connection per viewer, capped per node instead.
    .service(web::resource("/scoreboard/live").get(live::live))
    .service(
        web::resource("/scoreboard/top")
            .wrap(from_fn(rate_limit(LimitClass::Default)))
            .get(top),
    )
    .service(
        web::resource("/users/{id}/rank")
            .wrap(from_fn(rate_limit(LimitClass::Default)))
            .get(rank),
    );
    admin::configure(api);
}

/// Starts the product's tasks: the live board's hub, and the subscriber by which a deleted
/// account leaves the board (a live update goes out if it was on it) and its history is
/// anonymised.
pub fn subscribe(state: &AppState) -> Vec<JoinHandle<()>> {
    let mut events = state.stores.events.subscribe();
    let scores = service(state);
    let live = state.scoring.live.clone();
    let feed = state.stores.products.scoreboard.feed.clone();
    let resync = Duration::from_secs(state.settings.scoreboard.live_resync_secs.max(1));
    let hub = tokio::spawn(live.clone().run(feed.clone(), scores.clone(), resync));
    let deletions = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            #[allow(unreachable_patterns, irrefutable_let_patterns)]
            if let DomainEvent::UserDeleted { user_id } = event {
                match scores.remove_user(user_id).await {
                    Ok(true) => live.announce(feed.clone()),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, %user_id, "a deleted account stayed on the board");
                    }
                }
            }
        }
    });
    vec![hub, deletions]
}

/// The product's OpenAPI paths and schemas.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ScoreboardDoc::openapi();
    doc.merge(admin::openapi());
    doc
}

#[derive(OpenApi)]
#[openapi(
    paths(start_action, update_score, top, rank, live::live),
    components(schemas(StartAction, StartedView, ScoreUpdate, ScoreView, BoardItem, Board)),
    tags((name = "scoreboard", description = "Signed actions, scores and the board"))
)]
struct ScoreboardDoc;

/// `POST /actions/start` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StartAction {
    /// A type of the server's action table, e.g. `COMPLETE_TASK`.
    pub action_type: String,
}

/// A started action.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartedView {
    /// The action id.
    pub action_id: Uuid,
    /// The signed token to send back with `POST /score/update`.
    pub action_token: String,
    /// When the token stops being usable (5 minutes).
    pub expires_at: DateTime<Utc>,
}

/// `POST /score/update` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ScoreUpdate {
    /// The action id from `POST /actions/start`.
    pub action_id: Uuid,
    /// Its token.
    pub action_token: String,
}

/// The result of a scored action.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreView {
    /// The caller's score after the action.
    pub new_score: i64,
    /// Their rank right after it.
    pub rank: u64,
    /// What the action added.
    pub score_delta: i64,
}

/// One row of the board.
#[derive(Debug, Serialize, ToSchema)]
pub struct BoardItem {
    /// 1-based rank.
    pub rank: u64,
    /// The user.
    pub user_id: Uuid,
    /// Their display name.
    pub display_name: Option<String>,
    /// Their score.
    pub score: i64,
    /// When they reached it (ties go to the earlier).
    pub reached_at: DateTime<Utc>,
}

impl From<&RankedStanding> for BoardItem {
    fn from(r: &RankedStanding) -> Self {
        Self {
            rank: r.rank,
            user_id: r.standing.user_id.0,
            display_name: r.display_name.clone(),
            score: r.standing.score,
            reached_at: r.standing.reached_at,
        }
    }
}

/// The board.
#[derive(Debug, Serialize, ToSchema)]
pub struct Board {
    /// Best first.
    pub items: Vec<BoardItem>,
    /// The latest `reached_at` on the board.
    pub last_updated: Option<DateTime<Utc>>,
}

impl Board {
    /// The board of `items`, best first.
    pub fn of(items: &[RankedStanding]) -> Self {
        Self {
            last_updated: items.iter().map(|i| i.standing.reached_at).max(),
            items: items.iter().map(BoardItem::from).collect(),
        }
    }
}

/// `GET /scoreboard/top` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopQuery {
    /// 1–100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

fn problem(error: ScoreError) -> ApiError {
    let rejected = |reason: &'static str, kind: ProblemType, detail: &str| {
        metrics::counter!(TOKEN_REJECTIONS_TOTAL, "reason" => reason).increment(1);
        ApiError::problem(kind, detail.to_owned())
    };
    match error {
        ScoreError::UnknownAction => ApiError::problem(
            ProblemType::UNKNOWN_ACTION_TYPE,
            "the server has no such action type",
        ),
        ScoreError::Token(TokenError::Malformed) => rejected(
            "malformed",
            ProblemType::MALFORMED_ACTION_TOKEN,
            "the action token is malformed",
        ),
        ScoreError::ActionMismatch => rejected(
            "mismatch",
            ProblemType::MALFORMED_ACTION_TOKEN,
            "the action id is not the token's",
        ),
        ScoreError::Token(TokenError::BadSignature) => rejected(
            "bad_signature",
            ProblemType::INVALID_ACTION_TOKEN,
            "the action token's signature is invalid",
        ),
        ScoreError::Token(TokenError::Expired) => rejected(
            "expired",
            ProblemType::ACTION_TOKEN_EXPIRED,
            "the action token has expired",
        ),
        ScoreError::Foreign => rejected(
            "foreign",
            ProblemType::FOREIGN_ACTION_TOKEN,
            "the action token belongs to another user",
        ),
        ScoreError::AlreadyUsed => rejected(
            "reused",
            ProblemType::ACTION_ALREADY_USED,
            "the action was already used with another request",
        ),
        ScoreError::Overflow => ApiError::problem(
            ProblemType::SCORE_OVERFLOW,
            "the score would pass the board's maximum",
        ),
        ScoreError::NoAccount => {
            ApiError::problem(ProblemType::NOT_FOUND, "your account no longer exists")
        }
        ScoreError::Store(e) => e.into(),
    }
}

/// Starts an action: a token worth the server's delta for its type, usable once for 5 minutes.
#[utoipa::path(post, path = "/api/v1/actions/start", tag = "scoreboard", request_body = StartAction,
    responses((status = 201, body = StartedView), (status = 401, description = "unauthenticated"),
        (status = 422, description = "unknown-action-type")))]
pub async fn start_action(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: web::Json<StartAction>,
) -> Result<HttpResponse, ApiError> {
    let started = service(&state)
        .start(caller.0.id(), &body.action_type)
        .map_err(problem)?;
    Ok(HttpResponse::Created().json(StartedView {
        action_id: started.action_id,
        action_token: started.token,
        expires_at: started.expires_at,
    }))
}

/// Scores a started action once (rate class `score`); the same request again returns the first
/// response.
#[utoipa::path(post, path = "/api/v1/score/update", tag = "scoreboard", request_body = ScoreUpdate,
    responses((status = 200, body = ScoreView), (status = 400, description = "malformed-action-token"),
        (status = 401, description = "invalid-action-token or action-token-expired"),
        (status = 403, description = "foreign-action-token"),
        (status = 404, description = "not-found: the account no longer exists"), (status = 409, description = "action-already-used"),
        (status = 422, description = "score-overflow"), (status = 429, description = "rate-limited")))]
pub async fn update_score(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: web::Json<ScoreUpdate>,
) -> Result<HttpResponse, ApiError> {
    // A deleted account's tokens stay valid until they expire: the store checks the account in
    // the same step as the write (`ScoreError::NoAccount`), so it cannot score again.
    let scored = service(&state)
        .score(caller.0.id(), body.action_id, &body.action_token)
        .await
        .map_err(problem)?;
    // Scores only rise: the top changed only if this user is now in it.
    if !scored.replayed && scored.receipt.rank <= u64::from(LIVE_TOP) {
        state
            .scoring
            .live
            .announce(state.stores.products.scoreboard.feed.clone());
    }
    let mut response = HttpResponse::Ok();
    if scored.replayed {
        response.insert_header(("idempotent-replayed", "true"));
    }
    Ok(response.json(ScoreView {
        new_score: scored.receipt.new_score,
        rank: scored.receipt.rank,
        score_delta: scored.receipt.delta,
    }))
}

/// The board's best (public).
#[utoipa::path(get, path = "/api/v1/scoreboard/top", tag = "scoreboard", params(TopQuery),
    responses((status = 200, body = Board), (status = 422, description = "validation-failed")))]
pub async fn top(
    state: web::Data<AppState>,
    query: web::Query<TopQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(10);
    if !(1..=MAX_TOP).contains(&limit) {
        return Err(ApiError::Validation(vec![FieldError::new(
            "limit",
            format!("must be 1–{MAX_TOP}"),
        )]));
    }
    // The live board's newest event is this very answer when it holds this node's changes.
    if limit == LIVE_TOP
        && let Some(json) = state.scoring.live.current_top()
    {
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(json));
    }
    let items = service(&state).top(limit).await.map_err(problem)?;
    Ok(HttpResponse::Ok().json(Board::of(&items)))
}

/// One user's rank and score (public); 404 if they have not scored.
#[utoipa::path(get, path = "/api/v1/users/{id}/rank", tag = "scoreboard",
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = BoardItem), (status = 404, description = "not-found")))]
pub async fn rank(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = service(&state)
        .rank(UserId(path.into_inner()))
        .await
        .map_err(problem)?
        .ok_or_else(|| ApiError::problem(ProblemType::NOT_FOUND, "this user has no score"))?;
    Ok(HttpResponse::Ok().json(BoardItem::from(&found)))
}
