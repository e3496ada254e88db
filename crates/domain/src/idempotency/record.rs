//! What is stored under a key, and what a claim attempt can come back with.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{IdempotencyKey, RequestFingerprint};

/// Whose keys these are: keys of different principals never collide.
///
/// Built from the authenticated user (`user:<id>`) or, for anonymous routes, the client
/// (`client:<ip>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope(String);

impl Scope {
    /// Keys of an authenticated user.
    pub fn user(user_id: impl std::fmt::Display) -> Self {
        Self(format!("user:{user_id}"))
    }

    /// Keys of an anonymous client, identified by its address.
    pub fn client(address: impl std::fmt::Display) -> Self {
        Self(format!("client:{address}"))
    }

    /// Rebuilds a scope read back from storage.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The scope as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How long keys live and how long a claim may stay in flight before another request takes it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyPolicy {
    /// Lifetime of a record from its claim (24 h by default).
    pub ttl: Duration,
    /// Lease of an in-flight claim; after it a claim is presumed dead.
    pub lease: Duration,
}

impl Default for IdempotencyPolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::hours(24),
            lease: Duration::seconds(30),
        }
    }
}

/// The final response of a request, stored to be replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status code.
    pub status: u16,
    /// The headers that matter for a replay (content type, location, …), in order.
    pub headers: Vec<(String, String)>,
    /// The exact body bytes.
    pub body: Vec<u8>,
}

/// Where a key stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// A request holds the key; it is presumed dead once `lease_until` has passed.
    InFlight {
        /// Identifies the holder, so only it can complete the claim.
        claim_id: Uuid,
        /// End of the holder's lease.
        lease_until: DateTime<Utc>,
    },
    /// The request finished; its response is replayed to any true retry.
    Completed(StoredResponse),
}

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Fingerprint of the request that claimed the key.
    pub fingerprint: RequestFingerprint,
    /// In flight or completed.
    pub state: RecordState,
    /// After this instant the record is as good as absent and may be purged.
    pub expires_at: DateTime<Utc>,
}

/// Proof that this request holds a key; needed to complete or abandon it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Whose key.
    pub scope: Scope,
    /// The key.
    pub key: IdempotencyKey,
    /// Fingerprint of the claiming request.
    pub fingerprint: RequestFingerprint,
    /// Unique per claim: a request whose lease was taken over can no longer complete.
    pub claim_id: Uuid,
    /// When the record of this key expires (and may be purged).
    pub expires_at: DateTime<Utc>,
}

/// The answer to a claim attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The key is ours: run the request, then complete or abandon the claim.
    Claimed(Claim),
    /// A true retry of a finished request: send this response again.
    Replay(StoredResponse),
    /// The key was used for a different request.
    Mismatch,
    /// The first request with this key is still running.
    InFlight {
        /// How long until its lease runs out (at least one second).
        retry_after: Duration,
    },
}
