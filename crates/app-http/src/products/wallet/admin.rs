//! `/admin/ledger` and `/admin/webhooks`: reversals, maker-checker adjustments, the ledger
//! check, reconciliation findings and the webhook log (admins only; changes audited).

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use keel_adapters_memory::revio::{SimBehaviour, SimulatedRevio};
use keel_domain::StoreError;
use keel_domain::idempotency::{Claim, StoredResponse};
use keel_domain::identity::user::UserId;
use keel_domain::wallet::{Adjustment, AdjustmentId, AdjustmentReceipt, Direction, TransactionId};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};
use uuid::Uuid;

use super::problems::{money, problem};
use super::routes::Receipt;
use super::service;
use super::views::{
    AdjustmentView, DeliveryView, Items, MismatchView, NewAdjustment, NewReversal, OperationView,
    PostingView, TransactionView, VerifyView,
};
use crate::http::audit::{self, Change};
use crate::http::auth::AdminCaller;
use crate::http::idempotency::{IdempotencyClaim, idempotency_required, stored_json};
use crate::http::page;
use crate::http::{ApiError, FieldError, ProblemType, RequestId};
use crate::routes::admin::AuditVerification;
use crate::state::AppState;

/// Mounts the admin routes.
pub(super) fn configure(api: &mut web::ServiceConfig) {
    api.service(
        web::resource("/admin/ledger/reversals")
            .wrap(from_fn(idempotency_required))
            .post(reverse),
    )
    .service(
        web::resource("/admin/ledger/adjustments")
            .wrap(from_fn(idempotency_required))
            .post(adjust),
    )
    .service(web::resource("/admin/ledger/adjustments/{id}/approve").post(approve))
    .service(web::resource("/admin/ledger/transactions/{id}").get(transaction))
    .service(web::resource("/admin/ledger/verify").get(verify))
    .service(web::resource("/admin/ledger/mismatches").get(mismatches))
    .service(web::resource("/admin/webhooks/revio").get(deliveries))
    .service(
        web::resource("/admin/revio/simulator")
            .get(simulator_behaviour)
            .put(set_simulator_behaviour),
    );
}

/// The admin routes' OpenAPI.
pub(super) fn openapi() -> utoipa::openapi::OpenApi {
    LedgerAdminDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    paths(reverse, adjust, approve, transaction, verify, mismatches, deliveries,
        simulator_behaviour, set_simulator_behaviour),
    components(schemas(NewReversal, NewAdjustment, AdjustmentView, TransactionView, PostingView,
        VerifyView, MismatchView, DeliveryView, Items<MismatchView>, Items<DeliveryView>)),
    tags((name = "ledger", description = "Ledger administration (admins)"))
)]
struct LedgerAdminDoc;

/// `limit` of the admin lists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Reverses a deposit or adjustment with a reason (admin, audited, once per transaction).
#[utoipa::path(post, path = "/api/v1/admin/ledger/reversals", tag = "ledger", request_body = NewReversal,
    params(("Idempotency-Key" = String, Header, description = "required; replays the first response")),
    responses((status = 201, body = OperationView), (status = 403, description = "forbidden"),
        (status = 404, description = "not-found"), (status = 409, description = "already-reversed"),
        (status = 422, description = "not-reversible, insufficient-funds or validation-failed")))]
pub async fn reverse(
    state: web::Data<AppState>,
    caller: AdminCaller,
    request_id: RequestId,
    claim: IdempotencyClaim,
    body: web::Json<NewReversal>,
) -> Result<HttpResponse, ApiError> {
    let receipt = Receipt(claim);
    let reversed = service(&state)
        .reverse(
            TransactionId(body.transaction_id),
            &body.reason,
            Some(&receipt),
        )
        .await
        .map_err(problem)?;
    let change = Change {
        action: "ledger.reversed",
        subject: format!("transaction:{}", body.transaction_id),
        before: None,
        after: Some(serde_json::json!({
            "reversal_operation": reversed.operation.id.0,
            "reversal_transaction": reversed.operation.transaction_id.map(|t| t.0),
            "amount_minor": reversed.operation.money.amount.minor(),
            "currency": reversed.operation.money.currency.as_str(),
        })),
        reason: Some(&body.reason),
    };
    audit::record(&state, caller.0.id(), &request_id, change).await?;
    receipt.respond(&reversed.operation, reversed.receipt_stored)
}

fn direction(raw: &str) -> Result<Direction, ApiError> {
    Direction::parse(raw).ok_or_else(|| {
        ApiError::Validation(vec![FieldError::new(
            "direction",
            "must be credit or debit",
        )])
    })
}

fn adjustment_audit(view: &AdjustmentView) -> serde_json::Value {
    serde_json::json!({
        "user_id": view.user_id, "amount_minor": view.amount_minor, "currency": view.currency,
        "direction": view.direction, "status": view.status, "operation_id": view.operation_id,
        "approved_by": view.approved_by,
    })
}

/// An adjustment's response, committed with it where the store can (Postgres), so a retry
/// replays it instead of booking again.
struct AdjustmentReply(IdempotencyClaim);

impl AdjustmentReply {
    fn status(adjustment: &Adjustment) -> StatusCode {
        if adjustment.needs_approval {
            StatusCode::ACCEPTED
        } else {
            StatusCode::CREATED
        }
    }
}

impl AdjustmentReceipt for AdjustmentReply {
    fn claim(&self) -> &Claim {
        self.0.claim()
    }

    fn response(&self, adjustment: &Adjustment) -> Result<StoredResponse, StoreError> {
        stored_json(Self::status(adjustment), &AdjustmentView::from(adjustment))
            .map(|(stored, _)| stored)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

/// Proposes an adjustment: applied at once up to the approval threshold, else `202` waiting
/// for a second admin (admin, audited; `Idempotency-Key` required: a retry never books twice).
#[utoipa::path(post, path = "/api/v1/admin/ledger/adjustments", tag = "ledger", request_body = NewAdjustment,
    params(("Idempotency-Key" = String, Header, description = "required; replays the first response")),
    responses((status = 201, body = AdjustmentView, description = "applied"),
        (status = 202, body = AdjustmentView, description = "waiting for a second admin"),
        (status = 403, description = "forbidden"),
        (status = 422, description = "insufficient-funds or validation-failed")))]
pub async fn adjust(
    state: web::Data<AppState>,
    caller: AdminCaller,
    request_id: RequestId,
    claim: IdempotencyClaim,
    body: web::Json<NewAdjustment>,
) -> Result<HttpResponse, ApiError> {
    let money = money(body.amount_minor, &body.currency)?;
    let direction = direction(&body.direction)?;
    let reply = AdjustmentReply(claim);
    let (adjustment, receipt_stored) = service(&state)
        .adjust(
            caller.0.id(),
            UserId(body.user_id),
            money,
            direction,
            &body.reason,
            Some(&reply),
        )
        .await
        .map_err(problem)?;
    let view = AdjustmentView::from(&adjustment);
    let change = Change {
        action: if adjustment.needs_approval {
            "ledger.adjustment_proposed"
        } else {
            "ledger.adjustment_applied"
        },
        subject: format!("adjustment:{}", adjustment.id.0),
        before: None,
        after: Some(adjustment_audit(&view)),
        reason: Some(&body.reason),
    };
    audit::record(&state, caller.0.id(), &request_id, change).await?;
    let (stored, response) = stored_json(AdjustmentReply::status(&adjustment), &view)?;
    if receipt_stored {
        reply.0.completed_in_transaction(stored);
    }
    Ok(response)
}

/// Approves and books an adjustment proposed by another admin (admin, audited, once).
#[utoipa::path(post, path = "/api/v1/admin/ledger/adjustments/{id}/approve", tag = "ledger",
    params(("id" = Uuid, Path, description = "adjustment id")),
    responses((status = 200, body = AdjustmentView), (status = 403, description = "forbidden or second-approver-required"),
        (status = 404, description = "not-found"), (status = 409, description = "adjustment-already-applied"),
        (status = 422, description = "insufficient-funds")))]
pub async fn approve(
    state: web::Data<AppState>,
    caller: AdminCaller,
    request_id: RequestId,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let adjustment = service(&state)
        .approve(caller.0.id(), AdjustmentId(path.into_inner()))
        .await
        .map_err(problem)?;
    let view = AdjustmentView::from(&adjustment);
    let change = Change {
        action: "ledger.adjustment_approved",
        subject: format!("adjustment:{}", adjustment.id.0),
        before: Some(serde_json::json!({"status": "pending_approval"})),
        after: Some(adjustment_audit(&view)),
        reason: Some(&adjustment.reason),
    };
    audit::record(&state, caller.0.id(), &request_id, change).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// One ledger transaction with its postings (admin).
#[utoipa::path(get, path = "/api/v1/admin/ledger/transactions/{id}", tag = "ledger",
    params(("id" = Uuid, Path, description = "transaction id")),
    responses((status = 200, body = TransactionView), (status = 403, description = "forbidden"),
        (status = 404, description = "not-found")))]
pub async fn transaction(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = state
        .stores
        .products
        .wallet
        .ledger
        .transaction(TransactionId(path.into_inner()))
        .await?
        .ok_or_else(|| ApiError::problem(ProblemType::NOT_FOUND, "no such transaction"))?;
    Ok(HttpResponse::Ok().json(TransactionView::from(&found)))
}

/// Rebuilds every balance from the postings and compares it with the stored one; also checks
/// the audit chain (admin).
#[utoipa::path(get, path = "/api/v1/admin/ledger/verify", tag = "ledger",
    responses((status = 200, body = VerifyView), (status = 403, description = "forbidden")))]
pub async fn verify(
    state: web::Data<AppState>,
    _admin: AdminCaller,
) -> Result<HttpResponse, ApiError> {
    let report = service(&state).verify().await.map_err(problem)?;
    let chain = state.stores.audit.verify().await?;
    Ok(HttpResponse::Ok().json(VerifyView::new(&report, AuditVerification::from(&chain))))
}

/// Reconciliation findings, newest first (admin).
#[utoipa::path(get, path = "/api/v1/admin/ledger/mismatches", tag = "ledger", params(LimitQuery),
    responses((status = 200, body = Items<MismatchView>), (status = 403, description = "forbidden")))]
pub async fn mismatches(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    query: web::Query<LimitQuery>,
) -> Result<HttpResponse, ApiError> {
    let found = service(&state)
        .mismatches(page::limit(query.limit)?)
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(Items {
        items: found.iter().map(MismatchView::from).collect(),
    }))
}

/// The latest webhook deliveries with their outcomes, newest first (admin).
#[utoipa::path(get, path = "/api/v1/admin/webhooks/revio", tag = "ledger", params(LimitQuery),
    responses((status = 200, body = Items<DeliveryView>), (status = 403, description = "forbidden")))]
pub async fn deliveries(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    query: web::Query<LimitQuery>,
) -> Result<HttpResponse, ApiError> {
    let found = state
        .stores
        .products
        .wallet
        .webhook_log
        .recent(page::limit(query.limit)?)
        .await?;
    Ok(HttpResponse::Ok().json(Items {
        items: found.iter().map(DeliveryView::from).collect(),
    }))
}

fn simulator(state: &AppState) -> Result<&SimulatedRevio, ApiError> {
    state.payments.simulator.as_ref().ok_or_else(|| {
        ApiError::problem(
            ProblemType::NOT_FOUND,
            "keel talks to a real provider (KEEL_REVIO_URL): there is no simulator",
        )
    })
}

/// How the built-in payment simulator behaves (admin; 404 with a real provider).
#[utoipa::path(get, path = "/api/v1/admin/revio/simulator", tag = "ledger",
    responses((status = 200, description = "the behaviour: outcome, calls, timeout_ms, duplicate_webhooks, out_of_order, send_webhooks, delay_ms"),
        (status = 403, description = "forbidden"), (status = 404, description = "not-found")))]
pub async fn simulator_behaviour(
    state: web::Data<AppState>,
    _admin: AdminCaller,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(simulator(&state)?.behaviour()))
}

/// Tells the built-in payment simulator to fail, time out, answer 5xx, or send duplicate,
/// out-of-order or no webhooks (admin, audited; 404 with a real provider).
#[utoipa::path(put, path = "/api/v1/admin/revio/simulator", tag = "ledger",
    request_body(content = String, content_type = "application/json",
        description = "fields of the behaviour to set; omitted ones take their defaults"),
    responses((status = 200, description = "the new behaviour"), (status = 403, description = "forbidden"),
        (status = 404, description = "not-found"), (status = 400, description = "malformed-json")))]
pub async fn set_simulator_behaviour(
    state: web::Data<AppState>,
    caller: AdminCaller,
    request_id: RequestId,
    body: web::Json<SimBehaviour>,
) -> Result<HttpResponse, ApiError> {
    let simulator = simulator(&state)?;
    let before = simulator.behaviour();
    let behaviour = body.into_inner();
    let change = Change {
        action: "revio.simulator_changed",
        subject: "revio:simulator".into(),
        before: serde_json::to_value(&before).ok(),
        after: serde_json::to_value(&behaviour).ok(),
        reason: None,
    };
    audit::record(&state, caller.0.id(), &request_id, change).await?;
    simulator.set_behaviour(behaviour.clone());
    Ok(HttpResponse::Ok().json(behaviour))
}
