//! The `keel revio-sim` stub over real sockets, driven through `RevioHttpClient`, delivering
//! signed webhooks to a recording receiver.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::Utc;
use keel_adapters_memory::revio::{
    RetryPolicy, SimBehaviour, SimCalls, SimSigning, SimulatedRevio,
};
use keel_app_http::revio::{
    DEFAULT_WEBHOOK_TIMEOUT, HttpWebhookSink, RevioHttpClient, simulator_server,
};
use keel_domain::wallet::{
    CheckoutRequest, Money, OperationId, PaymentProvider, PayoutRequest, ProviderError,
    ProviderEvent, ProviderEventType, ProviderStatus,
};
use keel_domain::webhooks::{
    DEFAULT_TOLERANCE, DEV_REVIO_PUBLIC_KEY_PEM, RevioPublicKey, Scheme, WebhookVerifier,
};
use uuid::Uuid;

/// A received webhook: lowercase headers and the raw body.
type Received = (Vec<(String, String)>, Vec<u8>);

/// A tiny webhook receiver on port 0 recording what it gets.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    handle: ServerHandle,
}

async fn record(
    request: HttpRequest,
    body: web::Bytes,
    received: web::Data<Mutex<Vec<Received>>>,
) -> HttpResponse {
    let headers = request
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    received.lock().unwrap().push((headers, body.to_vec()));
    HttpResponse::NoContent().finish()
}

fn start_receiver() -> Receiver {
    let received = web::Data::new(Mutex::new(Vec::new()));
    let shared = received.clone().into_inner();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(received.clone())
            .route("/api/v1/webhooks/revio", web::post().to(record))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Receiver {
        url: format!("http://127.0.0.1:{port}/api/v1/webhooks/revio"),
        received: shared,
        handle,
    }
}

/// The stub on port 0 sending to `webhook_url`; its base URL and server handle.
fn start_stub(webhook_url: &str) -> (String, ServerHandle) {
    let sink = HttpWebhookSink::new(webhook_url, DEFAULT_WEBHOOK_TIMEOUT).unwrap();
    let behaviour = SimBehaviour {
        timeout_ms: 3_000,
        ..SimBehaviour::with_delay_ms(10)
    };
    let simulator = SimulatedRevio::new(Arc::new(sink), behaviour, SimSigning::dev_rsa().unwrap())
        .with_retry(RetryPolicy {
            attempts: 3,
            first_backoff: Duration::from_millis(20),
        });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = simulator_server(listener, simulator).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}

fn client(base: &str, timeout: Duration) -> RevioHttpClient {
    RevioHttpClient::new(base, timeout).unwrap()
}

fn money() -> Money {
    Money::parse(4_200, "ZAR").unwrap()
}

async fn wait_for(receiver: &Receiver, count: usize) -> Vec<Received> {
    for _ in 0..300 {
        if receiver.received.lock().unwrap().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    receiver.received.lock().unwrap().clone()
}

fn verify(received: &Received) -> ProviderEvent {
    let (headers, body) = received;
    let lookup = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let verifier = WebhookVerifier {
        rsa: Some(RevioPublicKey::from_pem(DEV_REVIO_PUBLIC_KEY_PEM).unwrap()),
        hmac: None,
        tolerance: DEFAULT_TOLERANCE,
    };
    let delivery = verifier.verify(&lookup, body, Utc::now()).unwrap();
    assert_eq!(delivery.scheme, Scheme::RevioRsa);
    let event: ProviderEvent = serde_json::from_slice(body).unwrap();
    assert_eq!(event.id, delivery.event_id);
    event
}

async fn set_calls(stub: &str, calls: SimCalls) {
    let behaviour = SimBehaviour {
        calls,
        timeout_ms: 3_000,
        ..SimBehaviour::with_delay_ms(10)
    };
    let answer = reqwest::Client::new()
        .put(format!("{stub}/v1/sim/behaviour"))
        .json(&behaviour)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let echoed: SimBehaviour = answer.json().await.unwrap();
    assert_eq!(echoed, behaviour);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stub_serves_checkouts_payouts_and_status_with_signed_webhooks() {
    let receiver = start_receiver();
    let (stub, stub_handle) = start_stub(&receiver.url);
    let revio = client(&stub, Duration::from_secs(5));

    let deposit = CheckoutRequest {
        reference: OperationId(Uuid::now_v7()),
        money: money(),
    };
    let checkout = revio.create_checkout(&deposit).await.unwrap();
    assert!(checkout.checkout_reference.starts_with("chk_"));
    assert_eq!(
        revio.create_checkout(&deposit).await.unwrap(),
        checkout,
        "idempotent per reference"
    );
    let received = wait_for(&receiver, 1).await;
    let event = verify(&received[0]);
    assert_eq!(event.event_type, ProviderEventType::DepositSucceeded);
    assert_eq!(event.data.reference, deposit.reference);
    assert_eq!(event.data.amount_minor, 4_200);
    assert_eq!(
        revio.status(deposit.reference).await.unwrap(),
        ProviderStatus::Succeeded { money: money() }
    );

    let payout = PayoutRequest {
        reference: OperationId(Uuid::now_v7()),
        money: money(),
        destination: "acct_42".to_owned(),
    };
    revio.create_payout(&payout).await.unwrap();
    let received = wait_for(&receiver, 2).await;
    assert_eq!(received.len(), 2, "one webhook per reference");
    let event = verify(&received[1]);
    assert_eq!(event.event_type, ProviderEventType::PayoutSucceeded);
    assert_eq!(event.data.reference, payout.reference);
    assert_eq!(
        revio.status(payout.reference).await.unwrap(),
        ProviderStatus::Succeeded { money: money() }
    );
    assert_eq!(
        revio.status(OperationId(Uuid::now_v7())).await.unwrap(),
        ProviderStatus::Unknown
    );

    let current: SimBehaviour = reqwest::get(format!("{stub}/v1/sim/behaviour"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current.calls, SimCalls::Ok);

    stub_handle.stop(false).await;
    receiver.handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn behaviour_changes_turn_into_provider_errors() {
    let receiver = start_receiver();
    let (stub, stub_handle) = start_stub(&receiver.url);
    let revio = client(&stub, Duration::from_secs(5));
    let payout = PayoutRequest {
        reference: OperationId(Uuid::now_v7()),
        money: money(),
        destination: "acct_42".to_owned(),
    };

    set_calls(&stub, SimCalls::Unavailable).await;
    assert!(matches!(
        revio.create_payout(&payout).await,
        Err(ProviderError::Unavailable(_))
    ));
    set_calls(&stub, SimCalls::Reject).await;
    assert!(matches!(
        revio.status(payout.reference).await,
        Err(ProviderError::Rejected(_))
    ));
    set_calls(&stub, SimCalls::Timeout).await;
    let impatient = client(&stub, Duration::from_millis(200));
    assert!(matches!(
        impatient.status(payout.reference).await,
        Err(ProviderError::Unavailable(_))
    ));
    assert!(receiver.received.lock().unwrap().is_empty());

    stub_handle.stop(false).await;
    receiver.handle.stop(false).await;
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let revio = client(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2));
    assert!(matches!(
        revio.status(OperationId(Uuid::now_v7())).await,
        Err(ProviderError::Unavailable(_))
    ));
}
