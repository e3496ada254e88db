//! The simulator end to end with a recording sink.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keel_domain::wallet::{
    CheckoutRequest, Money, OperationId, PaymentProvider, PayoutRequest, ProviderError,
    ProviderEvent, ProviderEventType, ProviderStatus,
};
use keel_domain::webhooks::{
    DEFAULT_TOLERANCE, DEV_REVIO_PUBLIC_KEY_PEM, RevioPublicKey, Scheme, StandardWebhookSecret,
    WebhookVerifier,
};
use uuid::Uuid;

use super::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn fast(behaviour: SimBehaviour) -> SimBehaviour {
    SimBehaviour {
        delay_ms: 5,
        timeout_ms: 20,
        ..behaviour
    }
}

fn simulator(sink: &MemoryWebhookSink, behaviour: SimBehaviour) -> SimulatedRevio {
    SimulatedRevio::new(
        Arc::new(sink.clone()),
        fast(behaviour),
        SimSigning::dev_rsa().expect("dev key"),
    )
    .with_retry(RetryPolicy {
        attempts: 5,
        first_backoff: Duration::from_millis(5),
    })
}

fn money() -> Money {
    Money::parse(1250, "ZAR").expect("money")
}

fn checkout_request() -> CheckoutRequest {
    CheckoutRequest {
        reference: OperationId(Uuid::now_v7()),
        money: money(),
    }
}

fn payout_request() -> PayoutRequest {
    PayoutRequest {
        reference: OperationId(Uuid::now_v7()),
        money: money(),
        destination: "acct_123".to_owned(),
    }
}

fn verifier() -> WebhookVerifier {
    WebhookVerifier {
        rsa: Some(RevioPublicKey::from_pem(DEV_REVIO_PUBLIC_KEY_PEM).expect("public key")),
        hmac: Some(StandardWebhookSecret::from_whsec(SECRET).expect("secret")),
        tolerance: DEFAULT_TOLERANCE,
    }
}

/// Verifies a delivery's signature and parses its body.
fn verified(webhook: &SignedWebhook) -> (Scheme, ProviderEvent) {
    let lookup = |name: &str| webhook.header(name).map(str::to_owned);
    let delivery = verifier()
        .verify(&lookup, &webhook.body, Utc::now())
        .expect("valid signature");
    let event: ProviderEvent = serde_json::from_slice(&webhook.body).expect("an event");
    assert_eq!(delivery.event_id, event.id);
    (delivery.scheme, event)
}

/// Waits until `sink` has `count` attempts, then a little more to catch extra ones.
async fn received(sink: &MemoryWebhookSink, count: usize) -> Vec<SignedWebhook> {
    for _ in 0..200 {
        if sink.received().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    sink.received()
}

async fn settled_status(sim: &SimulatedRevio, reference: OperationId) -> ProviderStatus {
    for _ in 0..200 {
        let status = sim.status(reference).await.expect("status");
        if status != ProviderStatus::Pending {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ProviderStatus::Pending
}

#[tokio::test]
async fn a_checkout_sends_one_signed_deposit_succeeded() {
    let sink = MemoryWebhookSink::new();
    let sim = simulator(&sink, SimBehaviour::default());
    let request = checkout_request();
    let checkout = sim.create_checkout(&request).await.expect("checkout");
    assert!(checkout.checkout_reference.starts_with("chk_"));
    assert_eq!(
        sim.status(request.reference).await.expect("status"),
        ProviderStatus::Pending
    );

    let deliveries = received(&sink, 1).await;
    assert_eq!(deliveries.len(), 1);
    let (scheme, event) = verified(&deliveries[0]);
    assert_eq!(scheme, Scheme::RevioRsa);
    assert!(event.id.starts_with("evt_"));
    assert_eq!(event.event_type, ProviderEventType::DepositSucceeded);
    assert_eq!(event.data.reference, request.reference);
    assert_eq!(event.data.amount_minor, 1250);
    assert_eq!(event.data.currency, money().currency);
    assert_eq!(event.data.reason, None);
    assert_eq!(
        sim.status(request.reference).await.expect("status"),
        ProviderStatus::Succeeded { money: money() }
    );
}

#[tokio::test]
async fn creation_is_idempotent_per_reference() {
    let sink = MemoryWebhookSink::new();
    let sim = simulator(&sink, SimBehaviour::default());
    let payout = payout_request();
    sim.create_payout(&payout).await.expect("payout");
    sim.create_payout(&payout).await.expect("same payout again");
    let checkout = checkout_request();
    let first = sim.create_checkout(&checkout).await.expect("checkout");
    let second = sim
        .create_checkout(&checkout)
        .await
        .expect("checkout again");
    assert_eq!(first, second);

    let deliveries = received(&sink, 2).await;
    assert_eq!(deliveries.len(), 2, "one event per reference");
    let mut types: Vec<_> = deliveries
        .iter()
        .map(|w| verified(w).1.event_type)
        .collect();
    types.sort_by_key(|t| t.as_str());
    assert_eq!(
        types,
        [
            ProviderEventType::DepositSucceeded,
            ProviderEventType::PayoutSucceeded
        ]
    );

    let other_destination = PayoutRequest {
        destination: "acct_999".to_owned(),
        ..payout
    };
    assert!(matches!(
        sim.create_payout(&other_destination).await,
        Err(ProviderError::Rejected(_))
    ));
}

#[tokio::test]
async fn the_fail_outcome_sends_failed_events() {
    let sink = MemoryWebhookSink::new();
    let sim = simulator(
        &sink,
        SimBehaviour {
            outcome: SimOutcome::Fail,
            ..SimBehaviour::default()
        },
    );
    let payout = payout_request();
    sim.create_payout(&payout).await.expect("payout");
    sim.create_checkout(&checkout_request())
        .await
        .expect("checkout");

    let deliveries = received(&sink, 2).await;
    assert_eq!(deliveries.len(), 2);
    for webhook in &deliveries {
        let (_, event) = verified(webhook);
        assert!(!event.event_type.succeeded());
        assert!(event.data.reason.is_some());
    }
    assert!(matches!(
        sim.status(payout.reference).await.expect("status"),
        ProviderStatus::Failed { .. }
    ));
}

#[tokio::test]
async fn duplicates_repeat_one_event_id() {
    let sink = MemoryWebhookSink::new();
    let sim = simulator(
        &sink,
        SimBehaviour {
            duplicate_webhooks: true,
            ..SimBehaviour::default()
        },
    );
    sim.create_payout(&payout_request()).await.expect("payout");

    let deliveries = received(&sink, 2).await;
    assert_eq!(deliveries.len(), 2);
    let (_, first) = verified(&deliveries[0]);
    let (_, second) = verified(&deliveries[1]);
    assert_eq!(first.id, second.id);
    assert_eq!(first, second);
}

#[tokio::test]
async fn out_of_order_sends_the_opposite_outcome_afterwards() {
    let sink = MemoryWebhookSink::new();
    let sim = simulator(
        &sink,
        SimBehaviour {
            out_of_order: true,
            ..SimBehaviour::default()
        },
    );
    let payout = payout_request();
    sim.create_payout(&payout).await.expect("payout");

    let deliveries = received(&sink, 2).await;
    assert_eq!(deliveries.len(), 2);
    let (_, real) = verified(&deliveries[0]);
    let (_, late) = verified(&deliveries[1]);
    assert_eq!(real.event_type, ProviderEventType::PayoutSucceeded);
    assert_eq!(late.event_type, ProviderEventType::PayoutFailed);
    assert_ne!(real.id, late.id);
    assert_eq!(late.data.reference, payout.reference);
    assert_eq!(
        sim.status(payout.reference).await.expect("status"),
        ProviderStatus::Succeeded { money: money() }
    );
}

#[tokio::test]
async fn silent_completion_sends_nothing_but_reports_the_status() {
    let sink = MemoryWebhookSink::new();
    let sim = simulator(
        &sink,
        SimBehaviour {
            send_webhooks: false,
            ..SimBehaviour::default()
        },
    );
    let request = checkout_request();
    sim.create_checkout(&request).await.expect("checkout");
    assert_eq!(
        settled_status(&sim, request.reference).await,
        ProviderStatus::Succeeded { money: money() }
    );
    assert!(received(&sink, 0).await.is_empty());
    assert_eq!(
        sim.status(OperationId(Uuid::now_v7()))
            .await
            .expect("status"),
        ProviderStatus::Unknown
    );
}

#[tokio::test]
async fn failing_calls_answer_the_right_errors() {
    let sink = MemoryWebhookSink::new();
    let sim = simulator(&sink, SimBehaviour::default());
    let cases = [
        (SimCalls::Unavailable, true),
        (SimCalls::Reject, false),
        (SimCalls::Timeout, true),
    ];
    for (calls, unavailable) in cases {
        sim.set_behaviour(fast(SimBehaviour {
            calls,
            ..SimBehaviour::default()
        }));
        let results = [
            sim.create_checkout(&checkout_request()).await.map(drop),
            sim.create_payout(&payout_request()).await,
            sim.status(OperationId(Uuid::now_v7())).await.map(drop),
        ];
        for result in results {
            match result {
                Err(ProviderError::Unavailable(_)) => assert!(unavailable, "{calls:?}"),
                Err(ProviderError::Rejected(_)) => assert!(!unavailable, "{calls:?}"),
                Ok(()) => panic!("{calls:?} let a call through"),
            }
        }
    }
    assert!(received(&sink, 0).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered() {
    let sink = MemoryWebhookSink::answering([500, 503]);
    let sim = simulator(&sink, SimBehaviour::default());
    sim.create_payout(&payout_request()).await.expect("payout");

    let deliveries = received(&sink, 3).await;
    assert_eq!(deliveries.len(), 3, "two failures, then accepted");
    let ids: Vec<String> = deliveries.iter().map(|w| verified(w).1.id).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "retries keep the event id"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let sink = MemoryWebhookSink::answering([400]);
    let sim = simulator(&sink, SimBehaviour::default());
    sim.create_payout(&payout_request()).await.expect("payout");
    assert_eq!(received(&sink, 1).await.len(), 1);
}

#[tokio::test]
async fn retries_are_bounded() {
    let sink = MemoryWebhookSink::answering([500; 10]);
    let sim = simulator(&sink, SimBehaviour::default());
    sim.create_payout(&payout_request()).await.expect("payout");
    assert_eq!(received(&sink, 5).await.len(), 5);
}

#[tokio::test]
async fn standard_webhooks_signing_verifies_with_the_secret() {
    let sink = MemoryWebhookSink::new();
    let sim = SimulatedRevio::new(
        Arc::new(sink.clone()),
        fast(SimBehaviour::default()),
        SimSigning::Standard(StandardWebhookSecret::from_whsec(SECRET).expect("secret")),
    );
    let request = checkout_request();
    sim.create_checkout(&request).await.expect("checkout");

    let deliveries = received(&sink, 1).await;
    assert_eq!(deliveries.len(), 1);
    assert!(deliveries[0].header("revio-signature").is_none());
    let (scheme, event) = verified(&deliveries[0]);
    assert_eq!(scheme, Scheme::StandardWebhooks);
    assert_eq!(event.data.reference, request.reference);
}

#[test]
fn behaviour_reads_its_json_form_with_defaults() {
    let behaviour: SimBehaviour =
        serde_json::from_str(r#"{"outcome":"fail","calls":"timeout","delay_ms":0}"#)
            .expect("parses");
    assert_eq!(behaviour.outcome, SimOutcome::Fail);
    assert_eq!(behaviour.calls, SimCalls::Timeout);
    assert_eq!(behaviour.delay_ms, 0);
    assert!(behaviour.send_webhooks);
    assert!(serde_json::from_str::<SimBehaviour>(r#"{"colour":"red"}"#).is_err());
}

#[test]
fn signed_webhooks_do_not_show_their_signature() {
    let webhook = SimSigning::dev_rsa()
        .expect("dev key")
        .sign("evt_1", 1_700_000_000, b"{}".to_vec())
        .expect("signs");
    let signature = webhook.header("revio-signature").expect("signed");
    assert!(!format!("{webhook:?}").contains(signature));
}
