//! In-memory audit log: one lock over the chain, so appends are serialised like in Postgres.

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::audit::{
    AuditEntry, AuditLog, AuditPage, AuditQuery, ChainHead, ChainReport, ChainVerifier,
    RecordedEntry, chain,
};

/// [`AuditLog`] kept in process memory, entries in `seq` order.
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    entries: Mutex<Vec<RecordedEntry>>,
}

impl MemoryAuditLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the log has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives `tamper` the raw entries, to edit, remove or reorder them behind the chain's back.
    ///
    /// Only for tests that prove [`AuditLog::verify`] notices.
    #[doc(hidden)]
    pub fn tamper_with(&self, tamper: impl FnOnce(&mut Vec<RecordedEntry>)) {
        tamper(&mut self.lock());
    }

    fn lock(&self) -> MutexGuard<'_, Vec<RecordedEntry>> {
        // Every change is a single push, so the log is consistent even after a panic elsewhere.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn append(&self, entry: AuditEntry) -> Result<RecordedEntry, StoreError> {
        let mut entries = self.lock();
        let head = entries.last().map(|last| ChainHead {
            seq: last.seq,
            hash: last.hash,
        });
        let recorded = chain::link(head, entry);
        entries.push(recorded.clone());
        Ok(recorded)
    }

    async fn list(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let entries = self.lock();
        let rows = entries
            .iter()
            .rev()
            .filter(|e| query.matches(e))
            .take(query.fetch_size() as usize)
            .cloned()
            .collect();
        Ok(AuditPage::from_newest_first(rows, query.limit))
    }

    async fn verify(&self) -> Result<ChainReport, StoreError> {
        let entries = self.lock();
        let mut verifier = ChainVerifier::new();
        for entry in entries.iter() {
            if verifier.check(entry).is_err() {
                break;
            }
        }
        Ok(verifier.report())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use keel_domain::audit::{Actor, BreakReason, ChainBreak};
    use keel_domain::testkit::audit_log;

    use super::*;

    #[tokio::test]
    async fn keeps_the_audit_log_contract() {
        audit_log::run_all(&MemoryAuditLog::new()).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn keeps_the_audit_log_contract_across_threads() {
        let log = std::sync::Arc::new(MemoryAuditLog::new());
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let log = log.clone();
                tokio::spawn(async move { audit_log::run_all(log.as_ref()).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let report = log.verify().await.unwrap();
        assert!(report.is_intact());
        assert_eq!(report.checked, log.len() as u64);
    }

    async fn log_of(n: usize) -> MemoryAuditLog {
        let log = MemoryAuditLog::new();
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        for i in 0..n {
            let entry = AuditEntry::new(Actor::system(), "test.appended", format!("t:{i}"), at);
            log.append(entry).await.unwrap();
        }
        log
    }

    #[tokio::test]
    async fn verify_names_an_edited_entry() {
        let log = log_of(5).await;
        log.tamper_with(|entries| entries[2].entry.reason = Some("rewritten".into()));
        let report = log.verify().await.unwrap();
        assert_eq!(
            report.broken,
            Some(ChainBreak {
                seq: 3,
                reason: BreakReason::Edited
            })
        );
        assert_eq!(report.checked, 2);
    }

    #[tokio::test]
    async fn verify_names_the_entry_after_a_removed_one() {
        let log = log_of(5).await;
        log.tamper_with(|entries| {
            entries.remove(1);
        });
        let report = log.verify().await.unwrap();
        assert_eq!(
            report.broken,
            Some(ChainBreak {
                seq: 3,
                reason: BreakReason::Missing { expected: 2 }
            })
        );
    }

    #[tokio::test]
    async fn verify_reports_a_clean_chain_and_its_head() {
        let log = log_of(3).await;
        let report = log.verify().await.unwrap();
        assert!(report.is_intact());
        assert_eq!(report.checked, 3);
        assert_eq!(report.head.map(|h| h.seq), Some(3));
        let empty = MemoryAuditLog::new().verify().await.unwrap();
        assert_eq!(empty, ChainReport::default());
    }
}
