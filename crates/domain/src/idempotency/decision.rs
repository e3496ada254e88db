//! The pure rule every idempotency store applies to the record it finds under a key.

use chrono::{DateTime, Duration, Utc};

use super::{IdempotencyRecord, RecordState, RequestFingerprint, StoredResponse};

/// What to do with a claim attempt, given the record already stored under its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No live record: write a new in-flight claim (over an expired record, if any).
    Claim,
    /// Same request, finished: replay the stored response.
    Replay(StoredResponse),
    /// Another request used this key.
    Mismatch,
    /// Same request, still running under a live lease.
    InFlight {
        /// Time left on the lease, rounded up to whole seconds and at least one second.
        retry_after: Duration,
    },
}

/// Decides a claim attempt.
///
/// An expired record counts as absent. An in-flight record whose lease has run out belongs to a
/// request that died, so the same request may take it over; a different request still gets a
/// mismatch, because the key stays bound to the first fingerprint for its whole life.
pub fn decide(
    existing: Option<&IdempotencyRecord>,
    fingerprint: &RequestFingerprint,
    now: DateTime<Utc>,
) -> Decision {
    let Some(record) = existing.filter(|r| r.expires_at > now) else {
        return Decision::Claim;
    };
    if record.fingerprint != *fingerprint {
        return Decision::Mismatch;
    }
    match &record.state {
        RecordState::Completed(response) => Decision::Replay(response.clone()),
        RecordState::InFlight { lease_until, .. } if *lease_until <= now => Decision::Claim,
        RecordState::InFlight { lease_until, .. } => Decision::InFlight {
            retry_after: round_up_to_seconds(*lease_until - now),
        },
    }
}

/// Whether a response is final and must be stored for replay.
///
/// Server errors are not final: the client is meant to retry them, so the claim is abandoned
/// instead. Successes and client errors (rule violations included) are final.
pub fn should_store(status: u16) -> bool {
    status < 500
}

fn round_up_to_seconds(d: Duration) -> Duration {
    let millis = d.num_milliseconds().max(1);
    Duration::seconds((millis + 999) / 1000)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn fp(n: u8) -> RequestFingerprint {
        RequestFingerprint::compute("POST", "/x", "u", &[n])
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn in_flight(lease_secs: i64) -> IdempotencyRecord {
        IdempotencyRecord {
            fingerprint: fp(1),
            state: RecordState::InFlight {
                claim_id: Uuid::nil(),
                lease_until: now() + Duration::milliseconds(lease_secs * 1000 - 300),
            },
            expires_at: now() + Duration::hours(1),
        }
    }

    fn completed() -> (IdempotencyRecord, StoredResponse) {
        let response = StoredResponse {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{\"id\":1}".to_vec(),
        };
        let record = IdempotencyRecord {
            fingerprint: fp(1),
            state: RecordState::Completed(response.clone()),
            expires_at: now() + Duration::hours(1),
        };
        (record, response)
    }

    #[test]
    fn absent_or_expired_record_is_claimed() {
        assert_eq!(decide(None, &fp(1), now()), Decision::Claim);
        let (mut record, _) = completed();
        record.expires_at = now();
        assert_eq!(decide(Some(&record), &fp(2), now()), Decision::Claim);
    }

    #[test]
    fn completed_record_replays_for_the_same_request_only() {
        let (record, response) = completed();
        assert_eq!(
            decide(Some(&record), &fp(1), now()),
            Decision::Replay(response)
        );
        assert_eq!(decide(Some(&record), &fp(2), now()), Decision::Mismatch);
    }

    #[test]
    fn live_claim_reports_time_left_in_whole_seconds() {
        let record = in_flight(5);
        assert_eq!(
            decide(Some(&record), &fp(1), now()),
            Decision::InFlight {
                retry_after: Duration::seconds(5)
            }
        );
        assert_eq!(decide(Some(&record), &fp(2), now()), Decision::Mismatch);
    }

    #[test]
    fn dead_claim_is_taken_over_by_the_same_request() {
        let record = in_flight(0);
        assert_eq!(decide(Some(&record), &fp(1), now()), Decision::Claim);
        assert_eq!(decide(Some(&record), &fp(2), now()), Decision::Mismatch);
    }

    #[test]
    fn only_non_server_errors_are_final() {
        assert!(should_store(201));
        assert!(should_store(422));
        assert!(!should_store(500));
        assert!(!should_store(503));
    }
}
