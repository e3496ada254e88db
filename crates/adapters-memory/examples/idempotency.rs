//! Embedding keel's idempotency rules without HTTP: a retried "charge" runs once.
//!
//! `cargo run -p keel-adapters-memory --example idempotency`

use chrono::Utc;
use keel_adapters_memory::MemoryIdempotencyStore;
use keel_domain::idempotency::{
    ClaimOutcome, IdempotencyKey, IdempotencyPolicy, IdempotencyStore, RequestFingerprint, Scope,
    StoredResponse,
};

/// One attempt of the client's request; returns what the client receives.
async fn charge(store: &dyn IdempotencyStore, key: &str, body: &[u8], charges: &mut u32) -> String {
    let scope = Scope::user("alice");
    let key = IdempotencyKey::parse(key).expect("a valid key");
    let fingerprint = RequestFingerprint::compute("POST", "/charges", scope.as_str(), body);
    match store
        .claim(
            &scope,
            &key,
            &fingerprint,
            IdempotencyPolicy::default(),
            Utc::now(),
        )
        .await
        .expect("the memory store never fails")
    {
        ClaimOutcome::Claimed(claim) => {
            *charges += 1; // the side effect, exactly once
            let response = StoredResponse {
                status: 201,
                headers: vec![("content-type".into(), "application/json".into())],
                body: format!("{{\"charge\":{charges}}}").into_bytes(),
            };
            store.complete(&claim, &response).await.expect("claim held");
            format!("201 {}", String::from_utf8_lossy(&response.body))
        }
        ClaimOutcome::Replay(response) => {
            format!(
                "{} {} (replayed)",
                response.status,
                String::from_utf8_lossy(&response.body)
            )
        }
        ClaimOutcome::Mismatch => "422 idempotency-key-mismatch".into(),
        ClaimOutcome::InFlight { retry_after } => format!("409 in flight, retry in {retry_after}"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let store = MemoryIdempotencyStore::new();
    let mut charges = 0;
    for attempt in 1..=3 {
        let answer = charge(&store, "charge-42", b"{\"amount_minor\":500}", &mut charges).await;
        println!("attempt {attempt}: {answer}");
    }
    let reused = charge(&store, "charge-42", b"{\"amount_minor\":900}", &mut charges).await;
    println!("same key, other body: {reused}");
    println!("charges made: {charges}");
    assert_eq!(charges, 1);
}
