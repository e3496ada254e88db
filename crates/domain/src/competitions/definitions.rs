//! The definitions of competitions a node has read, kept for the registrations that follow.
//!
//! Before its transaction a registration reads its competition only for what never changes
//! once the competition is created: its title, start and registration deadline (for the mails
//! and the early `Closed` answer). The store checks the deadline and the seats again under the
//! competition's row lock, so a kept definition can never let a late or extra registration
//! through; keeping it saves one read per registration on a hot competition. The seat count of
//! a kept definition is stale and must not be used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::values::{Competition, CompetitionId};

/// Most definitions kept; when full the cache is emptied and fills again with the competitions
/// in use (each refill costs one read per competition).
pub const DEFINITIONS_KEPT: usize = 4096;

/// Competition definitions by id, shared by the services of one node.
#[derive(Debug, Default)]
pub struct DefinitionCache {
    kept: Mutex<HashMap<CompetitionId, Arc<Competition>>>,
}

impl DefinitionCache {
    /// The kept definition of `id`, if any.
    pub fn get(&self, id: CompetitionId) -> Option<Arc<Competition>> {
        self.lock().get(&id).cloned()
    }

    /// Keeps `competition`'s definition and returns it.
    pub fn keep(&self, competition: Competition) -> Arc<Competition> {
        let competition = Arc::new(competition);
        let mut kept = self.lock();
        if kept.len() >= DEFINITIONS_KEPT {
            kept.clear();
        }
        kept.insert(competition.id, Arc::clone(&competition));
        competition
    }

    /// How many definitions are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<CompetitionId, Arc<Competition>>> {
        // Every critical section leaves the map whole, so a poisoned lock is still usable.
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::identity::user::UserId;

    fn competition() -> Competition {
        let now = Utc::now();
        Competition {
            id: CompetitionId(Uuid::new_v4()),
            title: "Kept".into(),
            capacity: 1,
            seats_taken: 0,
            registration_deadline: now,
            starts_at: now,
            created_by: UserId(Uuid::nil()),
            created_at: now,
        }
    }

    #[test]
    fn keeps_definitions_up_to_the_bound_then_starts_over() {
        let cache = DefinitionCache::default();
        let first = cache.keep(competition());
        assert_eq!(
            cache.get(first.id).map(|c| c.title.clone()),
            Some("Kept".into())
        );
        for _ in 1..DEFINITIONS_KEPT {
            cache.keep(competition());
        }
        assert_eq!(cache.len(), DEFINITIONS_KEPT);
        let next = cache.keep(competition());
        assert_eq!(
            cache.len(),
            1,
            "a full cache is emptied before the next definition"
        );
        assert!(cache.get(first.id).is_none());
        assert!(cache.get(next.id).is_some());
    }
}
