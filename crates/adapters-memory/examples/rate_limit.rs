//! Embedding keel's GCRA rate limiter: a burst, a refusal with `Retry-After`, a refill.
//!
//! `cargo run -p keel-adapters-memory --example rate_limit`

use chrono::{Duration, Utc};
use keel_adapters_memory::ratelimit::MemoryRateLimiter;
use keel_domain::ratelimit::{RateLimiter, RatePolicy};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let limiter = MemoryRateLimiter::new();
    let policy: RatePolicy = "5/minute".parse().expect("a valid policy");
    let start = Utc::now();
    for i in 0..7 {
        let decision = limiter
            .check("score:user:alice", &policy, start)
            .await
            .expect("memory never fails");
        match decision.retry_after_secs() {
            None => println!("request {i}: allowed, {} left", decision.remaining),
            Some(secs) => println!("request {i}: 429, Retry-After: {secs}"),
        }
    }
    // One request refills every 60 s / 5 = 12 s.
    let later = start + Duration::seconds(12);
    let decision = limiter
        .check("score:user:alice", &policy, later)
        .await
        .expect("memory never fails");
    println!("12 s later: allowed = {}", decision.allowed);
    assert!(decision.allowed);
}
