//! `Idempotency-Key` replay: the rules of Stripe's keys and the IETF Idempotency-Key draft.
//!
//! A client sends a key with a creating request. The first request *claims* the key (it is then
//! in flight under a lease), runs, and stores its final response. A repeat with the same request
//! fingerprint replays that response; a repeat with another fingerprint is a mismatch; a repeat
//! while the first is still running is told to retry. A claim whose process died is taken over
//! once its lease has run out, so no key is stuck forever.

mod cache;
mod decision;
mod fingerprint;
mod key;
mod layered;
mod purge_job;
mod record;
mod store;
mod tiered;

pub use cache::{CachedState, IdempotencyCache};
pub use decision::{Decision, decide, should_store};
pub use fingerprint::RequestFingerprint;
pub use key::{IdempotencyKey, KeyError, MAX_KEY_LEN};
pub use layered::{CacheObserver, CacheUse, LayeredIdempotencyStore};
pub use purge_job::{PurgeExpiredKeys, PurgeExpiredKeysHandler};
pub use record::{
    Claim, ClaimOutcome, IdempotencyPolicy, IdempotencyRecord, RecordState, Scope, StoredResponse,
};
pub use store::IdempotencyStore;
pub use tiered::TieredIdempotencyCache;
