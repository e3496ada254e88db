//! The `keel revio-sim` stub: a [`SimulatedRevio`] behind the provider's HTTP API.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use keel_adapters_memory::revio::{SimBehaviour, SimSigning, SimulatedRevio};
use keel_domain::wallet::{
    CheckoutRequest, Money, OperationId, PaymentProvider, PayoutRequest, ProviderError,
};
use uuid::Uuid;

use super::sink::{DEFAULT_WEBHOOK_TIMEOUT, HttpWebhookSink};
use super::wire::{CheckoutBody, ErrorBody, PayoutBody, StatusBody};

/// A simulator delivering its webhooks to `webhook_url` over HTTP.
pub fn build_simulator(
    webhook_url: String,
    behaviour: SimBehaviour,
    signing: SimSigning,
) -> std::io::Result<SimulatedRevio> {
    let sink = HttpWebhookSink::new(webhook_url, DEFAULT_WEBHOOK_TIMEOUT)
        .map_err(std::io::Error::other)?;
    Ok(SimulatedRevio::new(Arc::new(sink), behaviour, signing))
}

/// Registers the stub's routes and `simulator` as their state: `POST /v1/checkouts`,
/// `POST /v1/payouts`, `GET /v1/references/{reference}`, `GET`/`PUT /v1/sim/behaviour`.
pub fn simulator_config(simulator: SimulatedRevio) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(simulator))
            .route("/v1/checkouts", web::post().to(create_checkout))
            .route("/v1/payouts", web::post().to(create_payout))
            .route("/v1/references/{reference}", web::get().to(status))
            .route("/v1/sim/behaviour", web::get().to(get_behaviour))
            .route("/v1/sim/behaviour", web::put().to(put_behaviour));
    }
}

/// The stub served on `listener` (one worker, no signal handling: the caller stops it).
pub fn simulator_server(
    listener: TcpListener,
    simulator: SimulatedRevio,
) -> std::io::Result<Server> {
    Ok(
        HttpServer::new(move || App::new().configure(simulator_config(simulator.clone())))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .listen(listener)?
            .run(),
    )
}

/// Serves the stub on `bind` until Ctrl-C or SIGTERM, sending webhooks to `webhook_url`.
pub async fn run_simulator(
    bind: SocketAddr,
    webhook_url: String,
    behaviour: SimBehaviour,
    signing: SimSigning,
) -> std::io::Result<()> {
    tracing::info!(%bind, webhook_url, ?behaviour, "revio simulator starting");
    let simulator = build_simulator(webhook_url, behaviour, signing)?;
    let server = simulator_server(TcpListener::bind(bind)?, simulator)?;
    let handle = server.handle();
    let stop = async move {
        shutdown_signal().await;
        tracing::info!("revio simulator stopping");
        handle.stop(true).await;
    };
    let (served, ()) = tokio::join!(server, stop);
    served
}

/// `keel revio-sim`: the stub with the default behaviour, `delay_ms` and the dev RSA key.
pub async fn run_dev_simulator(
    bind: SocketAddr,
    webhook_url: String,
    delay_ms: u64,
) -> std::io::Result<()> {
    let signing = SimSigning::dev_rsa().map_err(std::io::Error::other)?;
    run_simulator(
        bind,
        webhook_url,
        SimBehaviour::with_delay_ms(delay_ms),
        signing,
    )
    .await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn error(status: actix_web::http::StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: message.into(),
    })
}

/// 503 for `Unavailable`, 422 for `Rejected`.
fn provider_error(e: ProviderError) -> HttpResponse {
    use actix_web::http::StatusCode;
    match e {
        ProviderError::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, m),
        ProviderError::Rejected(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
    }
}

/// Validated request money; bad values are refused like the provider would (422).
fn money(amount_minor: i64, currency: &str) -> Result<Money, ProviderError> {
    Money::parse(amount_minor, currency).map_err(|e| ProviderError::Rejected(e.to_string()))
}

async fn create_checkout(
    simulator: web::Data<SimulatedRevio>,
    body: web::Json<CheckoutBody>,
) -> HttpResponse {
    let money = match money(body.amount_minor, &body.currency) {
        Ok(money) => money,
        Err(e) => return provider_error(e),
    };
    let request = CheckoutRequest {
        reference: body.reference,
        money,
    };
    match simulator.create_checkout(&request).await {
        Ok(checkout) => HttpResponse::Ok().json(checkout),
        Err(e) => provider_error(e),
    }
}

async fn create_payout(
    simulator: web::Data<SimulatedRevio>,
    body: web::Json<PayoutBody>,
) -> HttpResponse {
    let body = body.into_inner();
    let money = match money(body.amount_minor, &body.currency) {
        Ok(money) => money,
        Err(e) => return provider_error(e),
    };
    let request = PayoutRequest {
        reference: body.reference,
        money,
        destination: body.destination,
    };
    match simulator.create_payout(&request).await {
        Ok(()) => HttpResponse::Accepted().json(serde_json::json!({
            "reference": request.reference,
            "status": "pending",
        })),
        Err(e) => provider_error(e),
    }
}

async fn status(simulator: web::Data<SimulatedRevio>, path: web::Path<Uuid>) -> HttpResponse {
    match simulator.status(OperationId(path.into_inner())).await {
        Ok(status) => HttpResponse::Ok().json(StatusBody::from(&status)),
        Err(e) => provider_error(e),
    }
}

async fn get_behaviour(simulator: web::Data<SimulatedRevio>) -> HttpResponse {
    HttpResponse::Ok().json(simulator.behaviour())
}

async fn put_behaviour(
    simulator: web::Data<SimulatedRevio>,
    body: web::Json<SimBehaviour>,
) -> HttpResponse {
    let behaviour = body.into_inner();
    tracing::info!(?behaviour, "revio simulator behaviour changed");
    simulator.set_behaviour(behaviour.clone());
    HttpResponse::Ok().json(behaviour)
}
