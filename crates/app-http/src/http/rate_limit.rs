//! Rate limits per class: the `RateLimits` service and the middleware routes opt into.
//!
//! A route opts in with one line, `.wrap(rate_limit(LimitClass::Scan))`. Allowed responses carry
//! the IETF `RateLimit-Policy` / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers); a
//! limited request gets 429 `rate-limited` with `Retry-After` and the same fields.

use std::fmt;
use std::sync::Arc;

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};
use futures_util::future::LocalBoxFuture;
use keel_adapters_memory::ratelimit::MemoryRateLimiter;
use keel_domain::ratelimit::{LimitClass, PolicySetting, RateDecision, RateLimiter, RatePolicy};
use keel_domain::{Clock, StoreError};

use super::ApiError;
use super::principal::Caller;
use crate::config::{RedisDownMode, Settings};
use crate::state::AppState;

/// Counter of rate-limit decisions, labelled `class` and `outcome`.
pub const DECISIONS_TOTAL: &str = "keel_rate_limit_decisions_total";

/// Decision counters of one class, registered once (a lookup per request would cost more than
/// the decision itself).
#[derive(Clone)]
struct Outcomes {
    allowed: metrics::Counter,
    limited: metrics::Counter,
    fallback_local: metrics::Counter,
    fallback_open: metrics::Counter,
    unavailable: metrics::Counter,
}

impl Outcomes {
    fn of(class: LimitClass) -> Self {
        let counter = |outcome: &'static str| metrics::counter!(DECISIONS_TOTAL, "class" => class.as_str(), "outcome" => outcome);
        Self {
            allowed: counter("allowed"),
            limited: counter("limited"),
            fallback_local: counter("fallback_local"),
            fallback_open: counter("fallback_open"),
            unavailable: counter("unavailable"),
        }
    }
}

/// Everything about one class that does not change per request.
#[derive(Clone)]
struct ClassLimit {
    setting: PolicySetting,
    mode: RedisDownMode,
    /// The `RateLimit-Policy` field, when the class is limited.
    policy_field: Option<HeaderValue>,
    outcomes: Outcomes,
}

/// The budgets of every class, shared across nodes when Redis holds them.
#[derive(Clone)]
pub struct RateLimits {
    shared: Arc<dyn RateLimiter>,
    /// This node's own budgets, used when the shared limiter is unreachable.
    local: Arc<MemoryRateLimiter>,
    /// Indexed by [`LimitClass::index`].
    classes: Arc<[ClassLimit; LimitClass::ALL.len()]>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let policies: Vec<_> = LimitClass::ALL
            .iter()
            .map(|c| (c, self.class(*c).setting, self.class(*c).mode))
            .collect();
        f.debug_struct("RateLimits")
            .field("policies", &policies)
            .finish_non_exhaustive()
    }
}

fn policy_field(class: LimitClass, policy: &RatePolicy) -> Option<HeaderValue> {
    let field = format!(
        "\"{class}\";q={};w={}",
        policy.count,
        policy.period.as_secs()
    );
    HeaderValue::from_str(&field).ok()
}

impl RateLimits {
    /// Budgets in `shared` for the policies of `settings`.
    pub fn new(shared: Arc<dyn RateLimiter>, settings: &Settings, clock: Arc<dyn Clock>) -> Self {
        let classes = LimitClass::ALL.map(|class| {
            let setting = settings.rate_policy(class);
            ClassLimit {
                setting,
                mode: settings.redis_down_mode(class),
                policy_field: setting.policy().and_then(|p| policy_field(class, &p)),
                outcomes: Outcomes::of(class),
            }
        });
        Self {
            shared,
            local: Arc::new(MemoryRateLimiter::new()),
            classes: Arc::new(classes),
            clock,
        }
    }

    fn class(&self, class: LimitClass) -> &ClassLimit {
        &self.classes[class.index()]
    }

    /// Spends one request of `class` from every subject's budget (each subject's key is
    /// `<class>:<subject>`, e.g. `scan:user:<id>`). `Ok(None)` when the class is off (or Redis is
    /// down and the class fails open); otherwise the tightest decision: a refusal if any subject
    /// is out of budget.
    pub async fn check<S: fmt::Display>(
        &self,
        class: LimitClass,
        subjects: &[S],
    ) -> Result<Option<(RatePolicy, RateDecision)>, ApiError> {
        let limit = self.class(class);
        let (mode, outcomes) = (limit.mode, &limit.outcomes);
        let Some(policy) = limit.setting.policy() else {
            return Ok(None);
        };
        let now = self.clock.now();
        let mut tightest: Option<RateDecision> = None;
        for subject in subjects {
            let key = format!("{class}:{subject}");
            let decision = match self.shared.check(&key, &policy, now).await {
                Ok(decision) => decision,
                Err(StoreError::Unavailable { dependency, reason }) => {
                    tracing::warn!(%class, dependency, %reason, ?mode, "shared rate limiter unavailable");
                    match mode {
                        RedisDownMode::Local => {
                            outcomes.fallback_local.increment(1);
                            self.local.decide(&key, &policy, now)
                        }
                        RedisDownMode::Open => {
                            // This subject goes unlimited; others checked already still count.
                            outcomes.fallback_open.increment(1);
                            continue;
                        }
                        RedisDownMode::Closed => {
                            outcomes.unavailable.increment(1);
                            return Err(ApiError::Unavailable { dependency, reason });
                        }
                    }
                }
                Err(other) => return Err(other.into()),
            };
            tightest = Some(match tightest {
                None => decision,
                Some(t) => tighter(t, decision),
            });
        }
        let decision = tightest.map(|d| {
            let outcome = if d.allowed {
                &outcomes.allowed
            } else {
                &outcomes.limited
            };
            outcome.increment(1);
            (policy, d)
        });
        Ok(decision)
    }

    /// Writes the IETF rate-limit fields of `class` for `decision`.
    pub fn set_headers(&self, headers: &mut HeaderMap, class: LimitClass, decision: &RateDecision) {
        if let Some(policy) = &self.class(class).policy_field {
            headers.insert(HeaderName::from_static("ratelimit-policy"), policy.clone());
        }
        set_limit_field(headers, class, decision);
    }
}

fn tighter(a: RateDecision, b: RateDecision) -> RateDecision {
    match (a.allowed, b.allowed) {
        (true, false) => b,
        (false, true) => a,
        (false, false) => {
            if a.retry_after >= b.retry_after {
                a
            } else {
                b
            }
        }
        (true, true) => {
            if a.remaining <= b.remaining {
                a
            } else {
                b
            }
        }
    }
}

/// The subjects whose budgets a request of `class` spends (DESIGN.md §2).
fn subjects<'a>(class: LimitClass, caller: &'a Caller, client: &'a Caller) -> Vec<&'a Caller> {
    match class {
        // Per IP here; the auth handlers add the per-account budget once they know the email.
        LimitClass::Auth => vec![client],
        // Per user and per IP: both must pass.
        LimitClass::Scan if caller != client => vec![caller, client],
        _ => vec![caller],
    }
}

/// Writes the IETF rate-limit fields for `decision` under `policy`.
pub fn set_headers(
    headers: &mut HeaderMap,
    class: LimitClass,
    policy: &RatePolicy,
    decision: &RateDecision,
) {
    if let Some(value) = policy_field(class, policy) {
        headers.insert(HeaderName::from_static("ratelimit-policy"), value);
    }
    set_limit_field(headers, class, decision);
}

fn set_limit_field(headers: &mut HeaderMap, class: LimitClass, decision: &RateDecision) {
    let field = format!(
        "\"{class}\";r={};t={}",
        decision.remaining,
        decision.reset_after_secs()
    );
    if let Ok(value) = HeaderValue::from_str(&field) {
        headers.insert(HeaderName::from_static("ratelimit"), value);
    }
}

/// The middleware of `class`: `.wrap(from_fn(rate_limit(LimitClass::Score)))`.
pub fn rate_limit(
    class: LimitClass,
) -> impl Fn(
    ServiceRequest,
    Next<BoxBody>,
) -> LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, Error>>
+ Clone {
    move |req, next| Box::pin(limit(class, req, next))
}

async fn limit(
    class: LimitClass,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        // Mounted outside keel's app: refuse rather than silently serve unlimited.
        let error = ApiError::Internal("rate_limit middleware used without keel's AppState".into());
        return Ok(req.error_response(error));
    };
    let caller = Caller::of(req.request(), &state);
    let client = Caller::client_of(req.request(), &state);
    let decision = match state
        .limits
        .check(class, &subjects(class, &caller, &client))
        .await
    {
        Ok(decision) => decision,
        Err(error) => return Ok(req.error_response(error)),
    };
    let Some((_, decision)) = decision else {
        return next.call(req).await;
    };
    if !decision.allowed {
        let error = ApiError::RateLimited {
            retry_after_secs: decision.retry_after_secs().unwrap_or(1),
        };
        let mut response = error.error_response();
        state
            .limits
            .set_headers(response.headers_mut(), class, &decision);
        return Ok(req.into_response(response));
    }
    let mut response = next.call(req).await?;
    state
        .limits
        .set_headers(response.headers_mut(), class, &decision);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn decision(allowed: bool, remaining: u32, retry: u64) -> RateDecision {
        RateDecision {
            allowed,
            limit: 10,
            remaining,
            reset_after: Duration::from_secs(5),
            retry_after: (!allowed).then(|| Duration::from_secs(retry)),
        }
    }

    #[test]
    fn the_tightest_decision_wins() {
        assert!(!tighter(decision(true, 5, 0), decision(false, 0, 3)).allowed);
        assert_eq!(
            tighter(decision(true, 5, 0), decision(true, 2, 0)).remaining,
            2
        );
        assert_eq!(
            tighter(decision(false, 0, 3), decision(false, 0, 9)).retry_after,
            Some(Duration::from_secs(9))
        );
    }

    #[test]
    fn headers_follow_the_ietf_draft_syntax() {
        let mut headers = HeaderMap::new();
        let policy: RatePolicy = "100/hour".parse().unwrap();
        set_headers(
            &mut headers,
            LimitClass::Score,
            &policy,
            &decision(true, 42, 0),
        );
        assert_eq!(
            headers.get("ratelimit-policy").unwrap(),
            "\"score\";q=100;w=3600"
        );
        assert_eq!(headers.get("ratelimit").unwrap(), "\"score\";r=42;t=5");
    }

    #[test]
    fn scans_spend_both_the_user_and_the_ip_budget() {
        let user = Caller::User(uuid::Uuid::nil());
        let ip = Caller::Client("127.0.0.1".parse().unwrap());
        assert_eq!(subjects(LimitClass::Scan, &user, &ip).len(), 2);
        assert_eq!(subjects(LimitClass::Score, &user, &ip), vec![&user]);
        assert_eq!(subjects(LimitClass::Auth, &user, &ip), vec![&ip]);
    }
}
