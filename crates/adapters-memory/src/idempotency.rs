//! In-memory idempotency keys: one lock over a map, the same rule as every store.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::idempotency::{
    Claim, ClaimOutcome, Decision, IdempotencyKey, IdempotencyPolicy, IdempotencyRecord,
    IdempotencyStore, RecordState, RequestFingerprint, Scope, StoredResponse, decide,
};
use uuid::Uuid;

type RecordKey = (Scope, IdempotencyKey);

/// [`IdempotencyStore`] kept in process memory. Expired records stay until
/// [`IdempotencyStore::purge_expired`] runs, exactly like the durable stores.
#[derive(Debug, Default)]
pub struct MemoryIdempotencyStore {
    records: Mutex<HashMap<RecordKey, IdempotencyRecord>>,
}

impl MemoryIdempotencyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records held, expired ones included.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RecordKey, IdempotencyRecord>> {
        // A panic while holding the lock cannot leave a record half-written: every update is a
        // single insert or remove, so the map is usable after poisoning.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn holds(record: &IdempotencyRecord, claim: &Claim) -> bool {
    matches!(record.state, RecordState::InFlight { claim_id, .. } if claim_id == claim.claim_id)
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    async fn claim(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        policy: IdempotencyPolicy,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        let mut records = self.lock();
        let record_key = (scope.clone(), key.clone());
        Ok(match decide(records.get(&record_key), fingerprint, now) {
            Decision::Replay(response) => ClaimOutcome::Replay(response),
            Decision::Mismatch => ClaimOutcome::Mismatch,
            Decision::InFlight { retry_after } => ClaimOutcome::InFlight { retry_after },
            Decision::Claim => {
                let claim_id = Uuid::new_v4();
                let record = IdempotencyRecord {
                    fingerprint: *fingerprint,
                    state: RecordState::InFlight {
                        claim_id,
                        lease_until: now + policy.lease,
                    },
                    expires_at: now + policy.ttl,
                };
                records.insert(record_key, record);
                ClaimOutcome::Claimed(Claim {
                    scope: scope.clone(),
                    key: key.clone(),
                    fingerprint: *fingerprint,
                    claim_id,
                    expires_at: now + policy.ttl,
                })
            }
        })
    }

    async fn complete(&self, claim: &Claim, response: &StoredResponse) -> Result<(), StoreError> {
        let mut records = self.lock();
        match records.get_mut(&(claim.scope.clone(), claim.key.clone())) {
            Some(record) if holds(record, claim) => {
                record.state = RecordState::Completed(response.clone());
                Ok(())
            }
            _ => Err(StoreError::Conflict(format!(
                "claim on key {:?} was lost",
                claim.key.as_str()
            ))),
        }
    }

    async fn abandon(&self, claim: &Claim) -> Result<(), StoreError> {
        let mut records = self.lock();
        let record_key = (claim.scope.clone(), claim.key.clone());
        if records.get(&record_key).is_some_and(|r| holds(r, claim)) {
            records.remove(&record_key);
        }
        Ok(())
    }

    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut records = self.lock();
        let before = records.len();
        records.retain(|_, r| r.expires_at > now);
        Ok((before - records.len()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use keel_domain::testkit::idempotency_store;

    use super::*;

    #[tokio::test]
    async fn keeps_the_idempotency_store_contract() {
        idempotency_store::run_all(&MemoryIdempotencyStore::new()).await;
    }
}
