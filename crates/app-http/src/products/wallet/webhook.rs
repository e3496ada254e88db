//! `POST /webhooks/revio`: the provider's signed events.
//!
//! The raw body is verified before it is parsed (RSA PKCS#1 v1.5 SHA-256 over
//! `{event_id}.{timestamp}.{raw_body}`, or Standard Webhooks HMAC-SHA256), the timestamp must be
//! within 5 minutes, and the event is applied at most once. Every delivery, good or bad, is
//! logged in `webhook_logs` with its outcome; a bad signature is a 401 and changes nothing.

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use keel_domain::wallet::{DeliveryOutcome, EventOutcome, ProviderEvent, WebhookDelivery};
use keel_domain::webhooks::{MAX_EVENT_ID_LEN, REVIO_EVENT_ID_HEADER, WEBHOOK_ID_HEADER};
use serde::Serialize;
use utoipa::ToSchema;

use super::problems::problem;
use super::{WEBHOOKS_TOTAL, service};
use crate::http::{ApiError, ProblemType};
use crate::state::AppState;

/// The answer to an accepted delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    /// `processed`, `duplicate` or `ignored`.
    pub outcome: &'static str,
    /// Why (`settled`, `duplicate-event`, `out-of-order`, …).
    pub reason: &'static str,
}

/// Receives one provider event.
#[utoipa::path(post, path = "/api/v1/webhooks/revio", tag = "wallet",
    params(("Revio-Event-Id" = Option<String>, Header, description = "RSA scheme: event id"),
        ("Revio-Timestamp" = Option<String>, Header, description = "RSA scheme: unix seconds"),
        ("Revio-Signature" = Option<String>, Header, description = "RSA scheme: base64 signature"),
        ("webhook-id" = Option<String>, Header, description = "Standard Webhooks: message id"),
        ("webhook-timestamp" = Option<String>, Header, description = "Standard Webhooks: unix seconds"),
        ("webhook-signature" = Option<String>, Header, description = "Standard Webhooks: v1,<base64>")),
    request_body(content = String, content_type = "application/json", description = "the event"),
    responses((status = 200, body = WebhookAck), (status = 400, description = "bad-request"),
        (status = 401, description = "invalid-webhook-signature")))]
pub async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let verified = match state.payments.verifier.verify(&header, &body, now) {
        Ok(verified) => verified,
        Err(e) => {
            let claimed = header(REVIO_EVENT_ID_HEADER).or_else(|| header(WEBHOOK_ID_HEADER));
            let reason = e.to_string();
            log(
                &state,
                claimed.as_deref(),
                None,
                DeliveryOutcome::Rejected,
                &reason,
                &body,
            )
            .await;
            return Err(ApiError::problem(
                ProblemType::INVALID_WEBHOOK_SIGNATURE,
                format!("the delivery was refused: {reason}"),
            ));
        }
    };
    let event_id = Some(verified.event_id.as_str());
    let event: ProviderEvent = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(_) => {
            log(
                &state,
                event_id,
                None,
                DeliveryOutcome::Rejected,
                "malformed-body",
                &body,
            )
            .await;
            return Err(ApiError::problem(
                ProblemType::BAD_REQUEST,
                "the event body is not a provider event",
            ));
        }
    };
    let event_type = Some(event.event_type.as_str());
    if event.id != verified.event_id {
        log(
            &state,
            event_id,
            event_type,
            DeliveryOutcome::Rejected,
            "event-id-mismatch",
            &body,
        )
        .await;
        return Err(ApiError::problem(
            ProblemType::BAD_REQUEST,
            "the body's event id differs from the signed one",
        ));
    }
    match service(&state).handle_event(&event).await {
        Ok(outcome) => {
            let delivery = delivery_outcome(&outcome);
            if matches!(
                outcome,
                EventOutcome::AlreadyFinal {
                    contradicts: true,
                    ..
                }
            ) {
                tracing::warn!(event = %event.id, reference = %event.data.reference.0,
                    "an event contradicting a final operation was ignored");
            }
            log(
                &state,
                event_id,
                event_type,
                delivery,
                outcome.reason(),
                &body,
            )
            .await;
            Ok(HttpResponse::Ok().json(WebhookAck {
                outcome: delivery.as_str(),
                reason: outcome.reason(),
            }))
        }
        Err(e) => {
            log(
                &state,
                event_id,
                event_type,
                DeliveryOutcome::Failed,
                &e.to_string(),
                &body,
            )
            .await;
            // Whatever went wrong, nothing was applied and the provider must deliver again: a
            // 4xx would make it give up on the event.
            Err(match problem(e) {
                unavailable @ ApiError::Unavailable { .. } => unavailable,
                other => ApiError::Unavailable {
                    dependency: "the ledger",
                    reason: other.to_string(),
                },
            })
        }
    }
}

fn delivery_outcome(outcome: &EventOutcome) -> DeliveryOutcome {
    match outcome {
        EventOutcome::Settled => DeliveryOutcome::Processed,
        EventOutcome::Duplicate => DeliveryOutcome::Duplicate,
        EventOutcome::AlreadyFinal { .. } | EventOutcome::Mismatch(_) => DeliveryOutcome::Ignored,
    }
}

/// Logs one delivery (a failure to log is itself logged, never hidden from operators) and
/// counts it.
async fn log(
    state: &AppState,
    event_id: Option<&str>,
    event_type: Option<&str>,
    outcome: DeliveryOutcome,
    reason: &str,
    body: &[u8],
) {
    metrics::counter!(WEBHOOKS_TOTAL, "outcome" => outcome.as_str()).increment(1);
    // An unverified id is kept only if it looks like one.
    let event_id = event_id
        .filter(|id| id.len() <= MAX_EVENT_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let mut delivery = WebhookDelivery::new(state.clock.now(), event_id, outcome, reason, body);
    delivery.event_type = event_type.map(str::to_owned);
    if let Err(e) = state
        .stores
        .products
        .wallet
        .webhook_log
        .record(&delivery)
        .await
    {
        tracing::error!(error = %e, outcome = outcome.as_str(), "a webhook delivery could not be logged");
    }
}
