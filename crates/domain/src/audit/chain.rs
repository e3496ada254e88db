//! The hash chain: each entry's hash covers its content and the previous entry's hash, so any
//! edited, removed, inserted or reordered entry breaks the chain from that point on.
//!
//! `hash = SHA-256(canonical(seq, entry) ‖ prev_hash)`, with [`GENESIS`] (32 zero bytes) as the
//! previous hash of the first entry, whose `seq` is 1.
//!
//! What the chain cannot show on its own: entries cut off the *end* of the log leave a shorter
//! but valid chain. Publishing the [`ChainReport::head`] from time to time (in a ticket, a mail,
//! another system) anchors it: a later head that does not extend it proves a truncation.

use ring::digest::{Context, SHA256};

use super::{AuditEntry, RecordedEntry, canonical};

/// The previous hash of the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// The hash of `entry` at position `seq` after an entry whose hash is `prev_hash`.
pub fn hash(prev_hash: &[u8; 32], seq: i64, entry: &AuditEntry) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&canonical::encode_entry(seq, entry));
    ctx.update(prev_hash);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Where a chain ends: its last entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number of the last entry.
    pub seq: i64,
    /// Hash of the last entry.
    pub hash: [u8; 32],
}

/// Chains a new entry after `head` (`None` for an empty log): the next seq and the link to it.
pub fn link(head: Option<ChainHead>, entry: AuditEntry) -> RecordedEntry {
    match head {
        Some(head) => RecordedEntry::seal(head.seq + 1, head.hash, entry),
        None => RecordedEntry::seal(1, GENESIS, entry),
    }
}

/// What is wrong at the first broken entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BreakReason {
    /// The entry's hash is not the hash of its content: the entry (or its hash) was edited.
    #[error("the entry was edited: its hash does not match its content")]
    Edited,
    /// The entry does not point at the previous entry's hash: the previous entry was replaced
    /// (rewritten with a recomputed hash) or this one was moved.
    #[error("the entry does not link to the previous entry's hash")]
    Unlinked,
    /// Entries are missing right before this one (removed rows).
    #[error("entries {expected} up to this one are missing")]
    Missing {
        /// The sequence number the chain expected here.
        expected: i64,
    },
    /// The entry comes where a later one was expected (entries reordered or duplicated).
    #[error("the entry is out of order: expected seq {expected}")]
    OutOfOrder {
        /// The sequence number the chain expected here.
        expected: i64,
    },
}

/// The first entry at which the chain no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at seq {seq}: {reason}")]
pub struct ChainBreak {
    /// Sequence number of the first broken entry (as stored).
    pub seq: i64,
    /// What is wrong there.
    pub reason: BreakReason,
}

/// The result of checking a whole log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainReport {
    /// Entries found intact, from the first one up to the break (or the end).
    pub checked: u64,
    /// The last intact entry (`None` for an empty log or a break at the first entry).
    pub head: Option<ChainHead>,
    /// The first break, if any.
    pub broken: Option<ChainBreak>,
}

impl ChainReport {
    /// Whether the whole chain holds.
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Checks a chain entry by entry, so a log can be verified in batches without loading it whole.
///
/// Feed it every entry in `seq` order from the first; it stops at the first break and keeps it.
#[derive(Debug, Clone, Default)]
pub struct ChainVerifier {
    checked: u64,
    head: Option<ChainHead>,
    broken: Option<ChainBreak>,
}

impl ChainVerifier {
    /// A verifier at the start of the chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next entry. After a break every call returns that first break again.
    pub fn check(&mut self, entry: &RecordedEntry) -> Result<(), ChainBreak> {
        if let Some(broken) = self.broken {
            return Err(broken);
        }
        let (expected, prev_hash) = match self.head {
            Some(head) => (head.seq + 1, head.hash),
            None => (1, GENESIS),
        };
        let reason = if entry.seq < expected {
            Some(BreakReason::OutOfOrder { expected })
        } else if entry.seq > expected {
            Some(BreakReason::Missing { expected })
        } else if !entry.is_intact() {
            Some(BreakReason::Edited)
        } else if entry.prev_hash != prev_hash {
            Some(BreakReason::Unlinked)
        } else {
            None
        };
        match reason {
            Some(reason) => {
                let broken = ChainBreak {
                    seq: entry.seq,
                    reason,
                };
                self.broken = Some(broken);
                Err(broken)
            }
            None => {
                self.checked += 1;
                self.head = Some(ChainHead {
                    seq: entry.seq,
                    hash: entry.hash,
                });
                Ok(())
            }
        }
    }

    /// Whether a break was found (checking more entries is then pointless).
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// The last intact entry so far.
    pub fn head(&self) -> Option<ChainHead> {
        self.head
    }

    /// What was found so far.
    pub fn report(&self) -> ChainReport {
        ChainReport {
            checked: self.checked,
            head: self.head,
            broken: self.broken,
        }
    }
}

/// Checks a whole chain given in `seq` order, from its first entry.
pub fn verify<'a>(entries: impl IntoIterator<Item = &'a RecordedEntry>) -> Result<(), ChainBreak> {
    let mut verifier = ChainVerifier::new();
    entries
        .into_iter()
        .try_for_each(|entry| verifier.check(entry))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::*;
    use crate::audit::Actor;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn full_entry() -> AuditEntry {
        AuditEntry::new(
            Actor::user("0b8c6f9e"),
            "user.role_changed",
            "user:42",
            at(1_700_000_000),
        )
        .with_before(json!({"role": "player", "tags": [1, 2.5, null]}))
        .with_after(json!({"role": "admin", "tags": [1, 2.5, null]}))
        .with_reason("promotion")
        .with_request_id("req-1")
    }

    fn chain_of(n: usize) -> Vec<RecordedEntry> {
        let mut entries: Vec<RecordedEntry> = Vec::new();
        for i in 0..n {
            let head = entries.last().map(|e| ChainHead {
                seq: e.seq,
                hash: e.hash,
            });
            let entry = AuditEntry::new(
                Actor::system(),
                "test.appended",
                format!("thing:{i}"),
                at(1_700_000_000 + i as i64),
            )
            .with_after(json!({"i": i}));
            entries.push(link(head, entry));
        }
        entries
    }

    #[test]
    fn hashing_is_deterministic() {
        assert_eq!(
            hash(&GENESIS, 1, &full_entry()),
            hash(&GENESIS, 1, &full_entry())
        );
        // Same content built from text with another key order and layout.
        let mut reordered = full_entry();
        reordered.before =
            Some(serde_json::from_str(r#"{ "tags": [1, 2.5, null], "role": "player" }"#).unwrap());
        assert_eq!(
            hash(&GENESIS, 1, &reordered),
            hash(&GENESIS, 1, &full_entry())
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = full_entry();
        let original = hash(&GENESIS, 1, &base);
        type Change = fn(&mut AuditEntry);
        let variants: Vec<(&str, Change)> = vec![
            ("actor", |e| e.actor = Actor::system()),
            ("action", |e| e.action.push('x')),
            ("subject", |e| e.subject.push('x')),
            ("before", |e| e.before = None),
            ("before null", |e| e.before = Some(json!(null))),
            ("before value", |e| {
                e.before = Some(json!({"role": "player", "tags": [1, 2.5]}))
            }),
            ("after", |e| e.after = None),
            ("after value", |e| {
                e.after = Some(json!({"role": "admin", "tags": [1, 2.6, null]}))
            }),
            ("reason", |e| e.reason = None),
            ("reason text", |e| e.reason = Some("demotion".into())),
            ("request id", |e| e.request_id = None),
            ("request id text", |e| e.request_id = Some("req-2".into())),
            ("at", |e| e.at += chrono::Duration::microseconds(1)),
        ];
        for (field, change) in &variants {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(hash(&GENESIS, 1, &changed), original, "{field}");
        }
        assert_ne!(hash(&GENESIS, 2, &base), original, "seq");
        assert_ne!(hash(&[1; 32], 1, &base), original, "prev hash");
    }

    #[test]
    fn moving_text_between_fields_changes_the_hash() {
        let a = AuditEntry::new(Actor::from_stored("ab"), "c", "d", at(0));
        let b = AuditEntry::new(Actor::from_stored("a"), "bc", "d", at(0));
        assert_ne!(hash(&GENESIS, 1, &a), hash(&GENESIS, 1, &b));
        let c = AuditEntry::new(Actor::system(), "a", "s", at(0)).with_reason("x");
        let d = AuditEntry::new(Actor::system(), "a", "s", at(0)).with_request_id("x");
        assert_ne!(hash(&GENESIS, 1, &c), hash(&GENESIS, 1, &d));
    }

    #[test]
    fn link_starts_at_genesis_and_follows_the_head() {
        let chain = chain_of(3);
        assert_eq!(chain[0].seq, 1);
        assert_eq!(chain[0].prev_hash, GENESIS);
        assert_eq!(chain[1].seq, 2);
        assert_eq!(chain[1].prev_hash, chain[0].hash);
        assert_eq!(chain[2].prev_hash, chain[1].hash);
        assert_eq!(verify(&chain), Ok(()));
        assert_eq!(verify(&[]), Ok(()));
    }

    #[test]
    fn an_edited_entry_is_named() {
        let mut chain = chain_of(5);
        chain[2].entry.after = Some(json!({"i": 99}));
        assert_eq!(
            verify(&chain),
            Err(ChainBreak {
                seq: 3,
                reason: BreakReason::Edited
            })
        );
        let mut chain = chain_of(5);
        chain[1].hash[0] ^= 1;
        assert_eq!(
            verify(&chain),
            Err(ChainBreak {
                seq: 2,
                reason: BreakReason::Edited
            })
        );
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
        let mut chain = chain_of(5);
        chain[2].entry.after = Some(json!({"i": 99}));
        chain[2].hash = hash(&chain[2].prev_hash, chain[2].seq, &chain[2].entry);
        assert_eq!(
            verify(&chain),
            Err(ChainBreak {
                seq: 4,
                reason: BreakReason::Unlinked
            })
        );
    }

    #[test]
    fn removed_entries_are_named() {
        let mut middle = chain_of(5);
        middle.remove(2);
        assert_eq!(
            verify(&middle),
            Err(ChainBreak {
                seq: 4,
                reason: BreakReason::Missing { expected: 3 }
            })
        );
        let mut first = chain_of(3);
        first.remove(0);
        assert_eq!(
            verify(&first),
            Err(ChainBreak {
                seq: 2,
                reason: BreakReason::Missing { expected: 1 }
            })
        );
    }

    #[test]
    fn a_removed_entry_with_renumbered_successors_is_caught() {
        let mut chain = chain_of(5);
        chain.remove(2);
        for e in &mut chain[2..] {
            e.seq -= 1;
        }
        assert_eq!(
            verify(&chain),
            Err(ChainBreak {
                seq: 3,
                reason: BreakReason::Edited
            })
        );
    }

    #[test]
    fn reordered_entries_are_caught() {
        let mut chain = chain_of(5);
        chain.swap(1, 3);
        assert_eq!(
            verify(&chain),
            Err(ChainBreak {
                seq: 4,
                reason: BreakReason::Missing { expected: 2 }
            })
        );
        let mut duplicated = chain_of(3);
        duplicated.insert(2, duplicated[1].clone());
        assert_eq!(
            verify(&duplicated),
            Err(ChainBreak {
                seq: 2,
                reason: BreakReason::OutOfOrder { expected: 3 }
            })
        );
        // Contents swapped but seq numbers kept: both hashes cover the seq.
        let mut swapped = chain_of(5);
        let (a, b) = (swapped[1].seq, swapped[3].seq);
        swapped.swap(1, 3);
        swapped[1].seq = a;
        swapped[3].seq = b;
        assert_eq!(
            verify(&swapped),
            Err(ChainBreak {
                seq: 2,
                reason: BreakReason::Edited
            })
        );
    }

    #[test]
    fn the_verifier_reports_progress_and_keeps_the_first_break() {
        let mut chain = chain_of(4);
        chain[2].entry.reason = Some("edited".into());
        let mut verifier = ChainVerifier::new();
        assert_eq!(verifier.check(&chain[0]), Ok(()));
        assert_eq!(verifier.check(&chain[1]), Ok(()));
        let first = verifier.check(&chain[2]);
        assert!(first.is_err());
        assert!(verifier.is_broken());
        assert_eq!(verifier.check(&chain[3]), first);
        let report = verifier.report();
        assert_eq!(report.checked, 2);
        assert_eq!(
            report.head,
            Some(ChainHead {
                seq: 2,
                hash: chain[1].hash
            })
        );
        assert_eq!(report.broken.map(|b| b.seq), Some(3));
        assert!(!report.is_intact());
        assert!(ChainVerifier::new().report().is_intact());
    }
}
