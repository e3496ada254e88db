//! Cost of one rate limit decision: the pure GCRA rule and the in-memory limiter's `check`.
#![allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use chrono::{TimeDelta, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use keel_adapters_memory::ratelimit::MemoryRateLimiter;
use keel_domain::ratelimit::{Period, RateLimiter, RatePolicy, gcra};

/// Polls a future that never waits (the memory limiter's) to completion, once.
fn now_or_never<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the memory rate limiter never waits"),
    }
}

fn decide(c: &mut Criterion) {
    let policy = RatePolicy {
        count: 100,
        period: Period::Minute,
    };
    let now = gcra::micros(Utc::now());
    c.bench_function("gcra::decide", |b| {
        b.iter(|| {
            gcra::decide(
                black_box(Some(now + 1_000_000)),
                black_box(now),
                black_box(&policy),
            )
        })
    });
}

fn memory_check(c: &mut Criterion) {
    let limiter = MemoryRateLimiter::new();
    let policy = RatePolicy {
        count: 1_000,
        period: Period::Second,
    };
    for i in 0..10_000 {
        limiter.decide(
            &format!("auth:ip:10.0.{}.{}", i / 256, i % 256),
            &policy,
            Utc::now(),
        );
    }
    let mut now = Utc::now();
    c.bench_function("MemoryRateLimiter::check", |b| {
        b.iter(|| {
            // One emission interval later each time: every request is allowed and stored.
            now += TimeDelta::milliseconds(1);
            now_or_never(limiter.check(black_box("auth:ip:10.0.7.42"), &policy, now))
        })
    });
}

criterion_group!(benches, decide, memory_check);
criterion_main!(benches);
