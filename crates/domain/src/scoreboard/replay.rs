//! The bounded history of live board events a node keeps, so a client that reconnects with
//! `Last-Event-ID` gets what it missed, or a fresh snapshot when it is too old.
//!
//! Every event is a whole snapshot of the top of the board, so replaying the missed events
//! and sending the newest one both leave the client showing the right board; replaying keeps
//! the order of changes for clients that animate them.

use std::collections::VecDeque;
use std::sync::Arc;

/// One live event: its id (increasing) and its payload (the snapshot, as sent).
#[derive(Debug, PartialEq, Eq)]
pub struct LiveEvent<T> {
    /// The event id (`id:` of the SSE message).
    pub id: u64,
    /// What the event carries.
    pub payload: T,
}

/// What a (re)connecting client is sent first.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume<T> {
    /// The events after the client's last one, oldest first (possibly none: it is up to date).
    Replay(Vec<Arc<LiveEvent<T>>>),
    /// The newest event as a snapshot: the client is new, too far behind, or names an id this
    /// node never sent (another node's, or from before a restart).
    Snapshot(Arc<LiveEvent<T>>),
}

/// The newest events, at most `capacity`, ids strictly increasing.
#[derive(Debug)]
pub struct ReplayBuffer<T> {
    capacity: usize,
    events: VecDeque<Arc<LiveEvent<T>>>,
}

impl<T> ReplayBuffer<T> {
    /// A buffer holding `first` (the snapshot at start) and at most `capacity` (≥ 1) events.
    pub fn new(capacity: usize, first: LiveEvent<T>) -> Self {
        let capacity = capacity.max(1);
        let mut events = VecDeque::with_capacity(capacity);
        events.push_back(Arc::new(first));
        Self { capacity, events }
    }

    /// The newest event.
    pub fn latest(&self) -> Arc<LiveEvent<T>> {
        // Never empty: built with one event, and pushing only evicts when over capacity.
        self.events
            .back()
            .cloned()
            .expect("the buffer always holds an event")
    }

    /// The id the next event must exceed.
    pub fn latest_id(&self) -> u64 {
        self.latest().id
    }

    /// Appends `event`, evicting the oldest beyond capacity; an id not above the newest is
    /// refused (returned) so ids stay strictly increasing.
    pub fn push(&mut self, event: LiveEvent<T>) -> Result<Arc<LiveEvent<T>>, LiveEvent<T>> {
        if event.id <= self.latest_id() {
            return Err(event);
        }
        let event = Arc::new(event);
        self.events.push_back(event.clone());
        while self.events.len() > self.capacity {
            self.events.pop_front();
        }
        Ok(event)
    }

    /// What a client whose last event was `last_id` (`None`: a new client) is sent first.
    ///
    /// The client gets a replay only when this buffer proves it holds every event after
    /// `last_id`: `last_id` is one of its ids (the oldest included). Anything else — unknown,
    /// evicted, or from the future — gets the newest event as a snapshot.
    pub fn resume(&self, last_id: Option<u64>) -> Resume<T> {
        let Some(last_id) = last_id else {
            return Resume::Snapshot(self.latest());
        };
        match self.events.iter().position(|e| e.id == last_id) {
            Some(at) => Resume::Replay(self.events.iter().skip(at + 1).cloned().collect()),
            None => Resume::Snapshot(self.latest()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event(id: u64) -> LiveEvent<u64> {
        LiveEvent { id, payload: id }
    }

    fn ids(resume: &Resume<u64>) -> Vec<u64> {
        match resume {
            Resume::Replay(events) => events.iter().map(|e| e.id).collect(),
            Resume::Snapshot(e) => vec![e.id],
        }
    }

    #[test]
    fn a_new_client_gets_the_newest_snapshot() {
        let mut buffer = ReplayBuffer::new(4, event(1));
        buffer.push(event(5)).unwrap();
        assert_eq!(buffer.resume(None), Resume::Snapshot(Arc::new(event(5))));
    }

    #[test]
    fn a_known_id_replays_what_followed_it() {
        let mut buffer = ReplayBuffer::new(4, event(1));
        for id in [2, 4, 9] {
            buffer.push(event(id)).unwrap();
        }
        assert_eq!(ids(&buffer.resume(Some(2))), vec![4, 9]);
        assert_eq!(buffer.resume(Some(9)), Resume::Replay(vec![]));
    }

    #[test]
    fn evicted_unknown_and_future_ids_get_a_snapshot() {
        let mut buffer = ReplayBuffer::new(2, event(1));
        for id in [2, 3, 4] {
            buffer.push(event(id)).unwrap();
        }
        for last in [1, 2, 7, 100] {
            assert!(
                matches!(buffer.resume(Some(last)), Resume::Snapshot(e) if e.id == 4),
                "{last}"
            );
        }
    }

    #[test]
    fn ids_must_increase() {
        let mut buffer = ReplayBuffer::new(4, event(3));
        assert_eq!(buffer.push(event(3)), Err(event(3)));
        assert_eq!(buffer.push(event(2)), Err(event(2)));
        assert_eq!(buffer.latest_id(), 3);
    }

    proptest! {
        /// Whatever was pushed, a resume never skips an event the client did not have: a replay
        /// is exactly the buffered events after the client's, and ends at the newest.
        #[test]
        fn resume_never_skips(steps in proptest::collection::vec(1u64..5, 1..40),
                              capacity in 1usize..8, pick in any::<prop::sample::Index>()) {
            let mut buffer = ReplayBuffer::new(capacity, event(0));
            let mut all = vec![0];
            let mut id = 0;
            for step in steps {
                id += step;
                buffer.push(event(id)).unwrap();
                all.push(id);
            }
            let last = all[pick.index(all.len())];
            match buffer.resume(Some(last)) {
                Resume::Replay(events) => {
                    let expected: Vec<u64> = all.iter().copied().filter(|i| *i > last).collect();
                    prop_assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), expected);
                }
                Resume::Snapshot(e) => {
                    prop_assert_eq!(e.id, id);
                    // Only when the client's event was evicted.
                    prop_assert!(all.len() > capacity);
                }
            }
        }
    }
}
