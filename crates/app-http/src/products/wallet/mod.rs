//! Wallet: deposits and withdrawals through the payment provider, signed webhooks, the
//! transaction history, and the admin ledger tools (reversals, maker-checker adjustments,
//! verification, reconciliation findings).
//!
//! Handlers are thin: parse, authorize, call a [`WalletService`] use case, map its errors to
//! problems. Deposits, withdrawals and reversals require an `Idempotency-Key`; on Postgres the
//! stored response commits in the same transaction as the money.

mod admin;
mod history;
mod problems;
mod routes;
mod views;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::web;
use keel_adapters_memory::revio::{SimBehaviour, SimSigning, SimulatedRevio};
use keel_adapters_memory::{MemoryJobQueue, MemoryLedgerStore};
use keel_adapters_postgres::{PgLedgerStore, PgPool};
use keel_domain::jobs::{Every, JobRegistry, PeriodicJob, ScheduleError};
use keel_domain::ratelimit::LimitClass;
use keel_domain::wallet::{
    LedgerStore, PaymentProvider, ReconcileReport, ReconcileWallet, ReconcileWalletHandler,
    SendPayout, SendPayoutHandler, WalletPolicy, WalletService, WebhookLogStore,
};
use keel_domain::webhooks::{StandardWebhookSecret, WebhookVerifier};
use utoipa::OpenApi;

use crate::config::{ConfigError, Settings};
use crate::http::idempotency::idempotency_required;
use crate::http::rate_limit::rate_limit;
use crate::revio::{DEFAULT_PROVIDER_TIMEOUT, RevioHttpClient, build_simulator};
use crate::state::AppState;

pub use views::*;

/// Counter of reconciliation findings.
pub const MISMATCHES_TOTAL: &str = "keel_wallet_reconciliation_mismatches_total";
/// Counter of webhook deliveries, labelled `outcome` and `reason`.
pub const WEBHOOKS_TOTAL: &str = "keel_wallet_webhooks_total";

/// The product's stores.
#[derive(Clone)]
pub struct Wallet {
    /// The ledger, operations and findings.
    pub ledger: Arc<dyn LedgerStore>,
    /// Every webhook delivery.
    pub webhook_log: Arc<dyn WebhookLogStore>,
}

impl Wallet {
    /// In-memory stores; payout jobs go to `jobs`.
    pub fn memory(jobs: &MemoryJobQueue) -> Self {
        let store = MemoryLedgerStore::new(jobs.clone());
        Self {
            ledger: Arc::new(store.clone()),
            webhook_log: Arc::new(store),
        }
    }

    /// Postgres stores.
    pub fn postgres(pool: &PgPool) -> Self {
        let store = PgLedgerStore::new(pool.clone());
        Self {
            ledger: Arc::new(store.clone()),
            webhook_log: Arc::new(store),
        }
    }
}

/// The payment provider, the webhook verifier and the ledger policy of a process.
#[derive(Clone)]
pub struct Payments {
    /// Revio, or the built-in simulator.
    pub provider: Arc<dyn PaymentProvider>,
    /// Checks webhook signatures.
    pub verifier: Arc<WebhookVerifier>,
    /// The ledger's settings.
    pub policy: WalletPolicy,
    /// How often reconciliation runs.
    pub reconcile_every: Duration,
    /// The in-process simulator, when it is the provider (admins can change its behaviour).
    pub simulator: Option<SimulatedRevio>,
}

impl Payments {
    /// The provider named by the settings (the built-in simulator unless `KEEL_REVIO_URL` is
    /// set), the webhook verifier and the ledger policy.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let revio = &settings.revio;
        let simulator = revio.simulated().then(|| simulator(settings)).transpose()?;
        let provider: Arc<dyn PaymentProvider> = match &simulator {
            Some(simulator) => Arc::new(simulator.clone()),
            None => Arc::new(
                RevioHttpClient::new(revio.url.trim(), DEFAULT_PROVIDER_TIMEOUT)
                    .map_err(|e| ConfigError::new("KEEL_REVIO_URL", e))?,
            ),
        };
        Ok(Self {
            provider,
            verifier: Arc::new(revio.verifier()?),
            policy: settings.wallet.policy()?,
            reconcile_every: Duration::from_secs(settings.wallet.reconcile_interval_secs),
            simulator,
        })
    }
}

/// The in-process simulator: it completes each deposit or payout after
/// `KEEL_REVIO_SIM_DELAY_MS` and sends the signed webhook to this node's own
/// `/api/v1/webhooks/revio`, signed the way the verifier expects (Standard Webhooks when only
/// `KEEL_REVIO_WEBHOOK_SECRET` is set, else the simulator's RSA dev key).
fn simulator(settings: &Settings) -> Result<SimulatedRevio, ConfigError> {
    let revio = &settings.revio;
    let secret = revio.webhook_secret.expose();
    let signing = if revio.public_key.trim().is_empty() && !secret.is_empty() {
        StandardWebhookSecret::from_whsec(secret)
            .map(SimSigning::Standard)
            .map_err(|e| ConfigError::new("KEEL_REVIO_WEBHOOK_SECRET", e))?
    } else {
        SimSigning::dev_rsa().map_err(|e| ConfigError::new("KEEL_REVIO_PUBLIC_KEY", e))?
    };
    let mut bind = settings.server.bind;
    if bind.ip().is_unspecified() {
        bind.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{bind}/api/v1/webhooks/revio");
    build_simulator(
        url,
        SimBehaviour::with_delay_ms(revio.sim_delay_ms),
        signing,
    )
    .map_err(|e| ConfigError::new("KEEL_REVIO_SIM_DELAY_MS", e))
}

/// The use cases over `state`'s stores and provider.
pub(crate) fn service(state: &AppState) -> WalletService {
    WalletService::new(
        state.stores.products.wallet.ledger.clone(),
        state.payments.provider.clone(),
        state.clock.clone(),
        state.payments.policy,
    )
}

/// Mounts the product's routes inside `/api/v1`.
pub fn configure(api: &mut web::ServiceConfig) {
    let limited = || from_fn(rate_limit(LimitClass::Default));
    let expensive = || from_fn(rate_limit(LimitClass::Expensive));
    // One scope: other routes never try these patterns.
    api.service(
        web::scope("/wallet")
            .service(
                web::resource("/deposits")
                    .wrap(from_fn(idempotency_required))
                    .wrap(limited())
                    .post(routes::deposit),
            )
            .service(
                web::resource("/withdrawals")
                    .wrap(from_fn(idempotency_required))
                    .wrap(limited())
                    .post(routes::withdraw),
            )
            .service(
                web::resource("/balance")
                    .wrap(limited())
                    .get(routes::balance),
            )
            .service(
                web::resource("/transactions")
                    .wrap(limited())
                    .get(history::list),
            )
            .service(
                web::resource("/transactions.csv")
                    .wrap(expensive())
                    .get(history::csv),
            )
            .service(
                web::resource("/transactions/{id}")
                    .wrap(limited())
                    .get(history::one),
            ),
    )
    .service(
        web::resource("/webhooks/revio")
            .wrap(limited())
            .post(webhook::receive),
    );
    admin::configure(api);
}

/// Registers the product's job kinds: payouts and reconciliation.
pub fn register_jobs(registry: &mut JobRegistry, state: &AppState) {
    let wallet = service(state);
    registry.register::<SendPayout>(SendPayoutHandler::new(wallet.clone()));
    let observer = Arc::new(|report: &ReconcileReport| {
        if report.mismatches > 0 {
            metrics::counter!(MISMATCHES_TOTAL).increment(u64::from(report.mismatches));
            tracing::warn!(
                mismatches = report.mismatches,
                "reconciliation found mismatches"
            );
        }
        tracing::info!(
            checked = report.checked,
            settled = report.settled,
            still_pending = report.still_pending,
            errors = report.errors,
            "wallet reconciled"
        );
    });
    registry.register::<ReconcileWallet>(ReconcileWalletHandler::new(wallet, Some(observer)));
}

/// The product's periodic jobs: reconciliation every `KEEL_WALLET_RECONCILE_INTERVAL_SECS`.
pub fn periodic_jobs(state: &AppState) -> Result<Vec<PeriodicJob>, ScheduleError> {
    let reconcile = PeriodicJob::new(
        Every::interval(state.payments.reconcile_every)?,
        &ReconcileWallet,
    )
    .map_err(|e| ScheduleError::Cron {
        expression: "payload".into(),
        reason: e.to_string(),
    })?;
    Ok(vec![reconcile])
}

/// The product's OpenAPI paths and schemas.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = WalletDoc::openapi();
    doc.merge(admin::openapi());
    doc
}

#[derive(OpenApi)]
#[openapi(
    paths(routes::deposit, routes::withdraw, routes::balance, history::list, history::csv,
        history::one, webhook::receive),
    components(schemas(NewDeposit, NewWithdrawal, OperationView, OperationList, BalanceView)),
    tags((name = "wallet", description = "Wallet: deposits, withdrawals, balance and history"))
)]
struct WalletDoc;
