//! The caller's wallet: deposits, withdrawals and balance.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use keel_domain::StoreError;
use keel_domain::idempotency::{Claim, StoredResponse};
use keel_domain::wallet::{Operation, OperationReceipt};

use super::problems::{currency, money, problem};
use super::service;
use super::views::{BalanceQuery, BalanceView, NewDeposit, NewWithdrawal, OperationView};
use crate::http::ApiError;
use crate::http::auth::Authenticated;
use crate::http::idempotency::{IdempotencyClaim, stored_json};
use crate::state::AppState;

/// The `201` of an operation, committed with its money where the store can (Postgres).
pub(super) struct Receipt(pub(super) IdempotencyClaim);

impl Receipt {
    /// Answers `201` with `operation`, byte for byte what the store committed (if it did).
    pub(super) fn respond(
        self,
        operation: &Operation,
        receipt_stored: bool,
    ) -> Result<HttpResponse, ApiError> {
        let (stored, response) = stored_json(StatusCode::CREATED, &OperationView::from(operation))?;
        if receipt_stored {
            self.0.completed_in_transaction(stored);
        }
        Ok(response)
    }
}

impl OperationReceipt for Receipt {
    fn claim(&self) -> &Claim {
        self.0.claim()
    }

    fn response(&self, operation: &Operation) -> Result<StoredResponse, StoreError> {
        stored_json(StatusCode::CREATED, &OperationView::from(operation))
            .map(|(stored, _)| stored)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

/// Opens a deposit: a checkout at the provider and a pending operation its webhook settles.
#[utoipa::path(post, path = "/api/v1/wallet/deposits", tag = "wallet", request_body = NewDeposit,
    params(("Idempotency-Key" = String, Header, description = "required; replays the first response")),
    responses((status = 201, body = OperationView), (status = 400, description = "invalid-header"),
        (status = 422, description = "validation-failed"), (status = 502, description = "provider-rejected"),
        (status = 503, description = "dependency-unavailable")))]
pub async fn deposit(
    state: web::Data<AppState>,
    caller: Authenticated,
    claim: IdempotencyClaim,
    body: web::Json<NewDeposit>,
) -> Result<HttpResponse, ApiError> {
    let money = money(body.amount_minor, &body.currency)?;
    let receipt = Receipt(claim);
    let opened = service(&state)
        .deposit(caller.0.id(), money, Some(&receipt))
        .await
        .map_err(problem)?;
    receipt.respond(&opened.operation, opened.receipt_stored)
}

/// Places a withdrawal: the funds are held at once and the payout is sent by a job.
#[utoipa::path(post, path = "/api/v1/wallet/withdrawals", tag = "wallet", request_body = NewWithdrawal,
    params(("Idempotency-Key" = String, Header, description = "required; replays the first response")),
    responses((status = 201, body = OperationView), (status = 400, description = "invalid-header"),
        (status = 422, description = "insufficient-funds or validation-failed")))]
pub async fn withdraw(
    state: web::Data<AppState>,
    caller: Authenticated,
    claim: IdempotencyClaim,
    body: web::Json<NewWithdrawal>,
) -> Result<HttpResponse, ApiError> {
    let money = money(body.amount_minor, &body.currency)?;
    let receipt = Receipt(claim);
    let placed = service(&state)
        .withdraw(caller.0.id(), money, &body.destination, Some(&receipt))
        .await
        .map_err(problem)?;
    receipt.respond(&placed.operation, placed.receipt_stored)
}

/// The caller's funds in one currency: available, held and total.
#[utoipa::path(get, path = "/api/v1/wallet/balance", tag = "wallet", params(BalanceQuery),
    responses((status = 200, body = BalanceView), (status = 422, description = "validation-failed")))]
pub async fn balance(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<BalanceQuery>,
) -> Result<HttpResponse, ApiError> {
    let currency = currency(query.currency.as_deref())?;
    let balance = service(&state)
        .balance(caller.0.id(), currency)
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(BalanceView::from(balance)))
}
