//! `Idempotency-Key` replay for creating routes, as a middleware any route opts into.
//!
//! `.wrap(from_fn(idempotency_required))` (or `idempotency_optional`) on a resource:
//! 1. the key is parsed (400 when malformed, or missing where required) and the request
//!    fingerprinted (method, path, caller, body hash);
//! 2. the key is claimed: a true retry of a finished request gets the stored response with
//!    `Idempotent-Replayed: true`, a different request with the same key 422
//!    `idempotency-key-mismatch`, a retry while the first still runs 409
//!    `idempotency-key-in-flight` with `Retry-After`;
//! 3. the handler runs; a final (< 500) response is stored, a 5xx gives the claim up so the
//!    client may retry.
//!
//! A handler that must commit its response with its business rows takes the
//! [`IdempotencyClaim`] extractor, completes the claim inside its own transaction
//! (e.g. `keel_adapters_postgres::idempotency::complete_in`) and calls
//! [`IdempotencyClaim::completed_in_transaction`]; the middleware then stores nothing itself.

use std::sync::{Arc, Mutex};

use actix_web::body::{BodySize, BoxBody, MessageBody, to_bytes_limited};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use keel_domain::idempotency::{
    Claim, ClaimOutcome, IdempotencyKey, IdempotencyStore, RequestFingerprint, Scope,
    StoredResponse, should_store,
};

use super::principal::Caller;
use super::{ApiError, ProblemType};
use crate::state::AppState;

/// The request header carrying the key.
pub const KEY_HEADER: &str = "idempotency-key";
/// The response header marking a replay.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Counter of claim outcomes, labelled `outcome`.
pub const OUTCOMES_TOTAL: &str = "keel_idempotency_outcomes_total";
/// Response headers stored with the body and replayed (besides the status).
const REPLAYED_HEADERS: &[&str] = &["content-type", "location", "etag", "last-modified", "link"];
/// Largest response body stored for replay; a larger one is recorded without its body.
const MAX_STORED_BODY: usize = 1024 * 1024;
const MAX_STORED_BODY_U64: u64 = MAX_STORED_BODY as u64;

/// The middleware for routes where the key is mandatory (400 without it).
pub async fn idempotency_required(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    handle(req, next, true).await
}

/// The middleware for routes where the key is optional (no key: the request just runs).
pub async fn idempotency_optional(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    handle(req, next, false).await
}

/// The claim a handler may complete inside its own transaction.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    claim: Claim,
    completed: Arc<Mutex<Option<StoredResponse>>>,
}

impl IdempotencyClaim {
    /// The claim, for the adapter's transactional completion.
    pub fn claim(&self) -> &Claim {
        &self.claim
    }

    /// Records that the handler stored `response` with its business rows; the handler must then
    /// return exactly this response (see [`stored_json`]).
    pub fn completed_in_transaction(&self, response: StoredResponse) {
        *self.completed.lock().unwrap_or_else(|p| p.into_inner()) = Some(response);
    }

    fn take_completed(&self) -> Option<StoredResponse> {
        self.completed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// Handlers read the claim with `claim: Option<IdempotencyClaim>` (None without a key).
impl FromRequest for IdempotencyClaim {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            req.extensions()
                .get::<IdempotencyClaim>()
                .cloned()
                .ok_or_else(|| {
                    ApiError::problem(
                        ProblemType::INVALID_HEADER,
                        "this request carries no Idempotency-Key",
                    )
                }),
        )
    }
}

/// A JSON response and its stored form, byte for byte the same.
pub fn stored_json(
    status: StatusCode,
    body: &impl serde::Serialize,
) -> Result<(StoredResponse, HttpResponse), ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let stored = StoredResponse {
        status: status.as_u16(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: bytes,
    };
    let response = replay_response(&stored, false);
    Ok((stored, response))
}

/// The claim outcomes counted, each with its counter handle registered once (a registry lookup
/// per request would cost more than the replay itself).
const OUTCOMES: [&str; 5] = ["replayed", "mismatch", "in_flight", "error", "claimed"];

fn count(outcome: &'static str) {
    static COUNTERS: std::sync::LazyLock<[metrics::Counter; OUTCOMES.len()]> =
        std::sync::LazyLock::new(|| {
            OUTCOMES.map(|outcome| metrics::counter!(OUTCOMES_TOTAL, "outcome" => outcome))
        });
    match OUTCOMES.iter().position(|known| *known == outcome) {
        Some(index) => COUNTERS[index].increment(1),
        None => metrics::counter!(OUTCOMES_TOTAL, "outcome" => outcome).increment(1),
    }
}

async fn handle(
    mut req: ServiceRequest,
    next: Next<BoxBody>,
    required: bool,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        // Mounted outside keel's app: refuse rather than silently serve without replay safety.
        let error =
            ApiError::Internal("idempotency middleware used without keel's AppState".into());
        return Ok(req.error_response(error));
    };
    let key = match parse_key(&req, required) {
        Ok(Some(key)) => key,
        Ok(None) => return next.call(req).await,
        Err(error) => return Ok(req.error_response(error)),
    };
    // The body is read here to fingerprint it, then handed back to the handler untouched.
    let body = req.extract::<web::Bytes>().await?;
    req.set_payload(Payload::from(body.clone()));

    let caller = Caller::of(req.request(), &state);
    let scope = match &caller {
        Caller::User(id) => Scope::user(id),
        other => Scope::client(other.subject()),
    };
    let target = match req.query_string() {
        "" => req.path().to_owned(),
        query => format!("{}?{query}", req.path()),
    };
    let fingerprint =
        RequestFingerprint::compute(req.method().as_str(), &target, scope.as_str(), &body);
    let store = state.stores.idempotency.clone();
    let now = state.clock.now();
    let claim = match store
        .claim(
            &scope,
            &key,
            &fingerprint,
            state.settings.idempotency_policy(),
            now,
        )
        .await
    {
        Ok(ClaimOutcome::Claimed(claim)) => claim,
        Ok(ClaimOutcome::Replay(stored)) => {
            count("replayed");
            return Ok(req.into_response(replay_response(&stored, true)));
        }
        Ok(ClaimOutcome::Mismatch) => {
            count("mismatch");
            let error = ApiError::problem(
                ProblemType::IDEMPOTENCY_KEY_MISMATCH,
                "this Idempotency-Key was already used for a different request",
            );
            return Ok(req.error_response(error));
        }
        Ok(ClaimOutcome::InFlight { retry_after }) => {
            count("in_flight");
            let error = ApiError::InFlight {
                retry_after_secs: u64::try_from(retry_after.num_seconds()).unwrap_or(1).max(1),
            };
            return Ok(req.error_response(error));
        }
        Err(error) => {
            count("error");
            return Ok(req.error_response(ApiError::from(error)));
        }
    };
    count("claimed");
    let handle = IdempotencyClaim {
        claim: claim.clone(),
        completed: Arc::new(Mutex::new(None)),
    };
    req.extensions_mut().insert(handle.clone());

    // The handler and the recording of its outcome run as a task of their own: if the client
    // disconnects, actix drops this future, but the task still finishes and stores the response,
    // so the client's retry replays it instead of running the request a second time.
    let (answer, answered) = tokio::sync::oneshot::channel();
    actix_web::rt::spawn(async move {
        let outcome = next.call(req).await;
        let _ = answer.send(record_outcome(outcome, store.as_ref(), &claim, &handle).await);
    });
    answered.await.unwrap_or_else(|_| {
        // The handler panicked: its claim stays in flight until the lease ends, then frees.
        Err(actix_web::error::ErrorInternalServerError(
            "the request task ended without an answer",
        ))
    })
}

/// Stores a final response for replay, or gives the claim up after a server error.
async fn record_outcome(
    outcome: Result<ServiceResponse<BoxBody>, Error>,
    store: &dyn IdempotencyStore,
    claim: &Claim,
    handle: &IdempotencyClaim,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let response = match outcome {
        Ok(response) => response,
        Err(error) => {
            abandon(store, claim).await;
            return Err(error);
        }
    };
    if let Some(stored) = handle.take_completed() {
        if stored.status != response.status().as_u16() {
            tracing::error!(
                stored = stored.status,
                sent = response.status().as_u16(),
                "handler stored a different response than it sent"
            );
        }
        if let Err(e) = store.completed_in_transaction(claim, &stored).await {
            tracing::warn!(error = %e, "could not publish an idempotent response completed in its transaction");
        }
        return Ok(response);
    }
    let status = response.status();
    if !should_store(status.as_u16()) {
        abandon(store, claim).await;
        return Ok(response);
    }
    let (request, response) = response.into_parts();
    let (head, body) = response.into_parts();
    let headers: Vec<(String, String)> = REPLAYED_HEADERS
        .iter()
        .filter_map(|name| {
            let value = head.headers().get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();
    let small_enough = matches!(
        body.size(),
        BodySize::None | BodySize::Sized(0..=MAX_STORED_BODY_U64)
    );
    if !small_enough {
        // Too large (or streamed) to keep: record the outcome without its body, so a retry is
        // told what happened instead of running the request again.
        tracing::warn!(
            status = status.as_u16(),
            "idempotent response too large to store; replays get no body"
        );
        let stored = StoredResponse {
            status: status.as_u16(),
            headers,
            body: Vec::new(),
        };
        if let Err(e) = store.complete(claim, &stored).await {
            tracing::warn!(error = %e, "could not store an idempotent response");
        }
        return Ok(ServiceResponse::new(request, head.set_body(body)));
    }
    let Ok(Ok(bytes)) = to_bytes_limited(body, MAX_STORED_BODY).await else {
        abandon(store, claim).await;
        let error = ApiError::Internal("the response body could not be read".into());
        return Ok(ServiceResponse::new(request, error.error_response()));
    };
    let stored = StoredResponse {
        status: status.as_u16(),
        headers,
        body: bytes.to_vec(),
    };
    if let Err(e) = store.complete(claim, &stored).await {
        // The effect happened; only its replay record is missing (the claim was taken over, or
        // the store is down). The client still gets the real answer.
        tracing::warn!(error = %e, "could not store an idempotent response");
    }
    Ok(ServiceResponse::new(
        request,
        head.set_body(BoxBody::new(bytes)),
    ))
}

fn parse_key(req: &ServiceRequest, required: bool) -> Result<Option<IdempotencyKey>, ApiError> {
    let invalid = |detail: String| ApiError::problem(ProblemType::INVALID_HEADER, detail);
    match req.headers().get(KEY_HEADER) {
        None if required => Err(invalid(
            "this request requires an Idempotency-Key header".into(),
        )),
        None => Ok(None),
        Some(value) => {
            let raw = value.to_str().map_err(|_| {
                invalid("Idempotency-Key may contain only printable ASCII characters".into())
            })?;
            IdempotencyKey::parse(raw)
                .map(Some)
                .map_err(|e| invalid(e.to_string()))
        }
    }
}

async fn abandon(store: &dyn IdempotencyStore, claim: &Claim) {
    if let Err(e) = store.abandon(claim).await {
        tracing::warn!(error = %e, "could not give up an idempotency claim; it frees itself when its lease ends");
    }
}

/// The HTTP response of a stored one, marked as a replay when `replayed`.
fn replay_response(stored: &StoredResponse, replayed: bool) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            response.insert_header((name, value));
        }
    }
    if replayed {
        response.insert_header((
            HeaderName::from_static(REPLAYED_HEADER),
            HeaderValue::from_static("true"),
        ));
    }
    response.body(stored.body.clone())
}
