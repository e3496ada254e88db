//! Periodic jobs: a schedule of slots, each run once across every node.
//!
//! Slot policy: a scheduler enqueues the *latest* slot at or before now with the uniqueness key
//! `slot:<time>`, so however many nodes tick, each slot is one job. Slots missed while every node
//! was down are not replayed one by one: the most recent of them runs once, earlier ones are
//! skipped (a purge or a reconciliation covers all that came before it anyway).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::{JobKind, NewJob};

/// When a periodic job is due.
#[derive(Debug, Clone, PartialEq)]
pub enum Every {
    /// Every `period`, in slots aligned to the Unix epoch (so all nodes agree on them).
    Interval(Duration),
    /// A cron expression with seconds (`sec min hour day month weekday [year]`), in UTC.
    Cron(Box<cron::Schedule>),
}

/// An invalid schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The interval is shorter than one second.
    #[error("a periodic interval must be at least one second")]
    TooShort,
    /// The cron expression does not parse.
    #[error("invalid cron expression {expression:?}: {reason}")]
    Cron {
        /// The expression given.
        expression: String,
        /// Why it was refused.
        reason: String,
    },
}

impl Every {
    /// An interval schedule of at least one second.
    pub fn interval(period: Duration) -> Result<Self, ScheduleError> {
        if period < Duration::from_secs(1) {
            return Err(ScheduleError::TooShort);
        }
        Ok(Self::Interval(period))
    }

    /// A cron schedule, e.g. `0 */15 * * * *` (every 15 minutes).
    pub fn cron(expression: &str) -> Result<Self, ScheduleError> {
        cron::Schedule::from_str(expression)
            .map(|s| Self::Cron(Box::new(s)))
            .map_err(|e| ScheduleError::Cron {
                expression: expression.to_owned(),
                reason: e.to_string(),
            })
    }

    /// The latest slot at or before `now`, if the schedule has one.
    pub fn latest_slot(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Interval(period) => {
                let period_ms = i64::try_from(period.as_millis()).ok()?.max(1);
                let slot_ms = now.timestamp_millis().div_euclid(period_ms) * period_ms;
                Utc.timestamp_millis_opt(slot_ms).single()
            }
            Self::Cron(schedule) => {
                // Slots are whole seconds; the earliest instant after `now`'s second bounds the search.
                let bound = now + chrono::Duration::milliseconds(1);
                schedule.after(&bound).next_back()
            }
        }
    }
}

/// A job that runs on a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodicJob {
    every: Every,
    template: NewJob,
}

impl PeriodicJob {
    /// Runs `job` on `every`.
    pub fn new<J: JobKind>(every: Every, job: &J) -> Result<Self, serde_json::Error> {
        Ok(Self {
            every,
            template: job.to_new_job(DateTime::<Utc>::UNIX_EPOCH)?,
        })
    }

    /// The kind this schedule enqueues.
    pub fn kind(&self) -> &str {
        &self.template.kind
    }

    /// The schedule.
    pub fn every(&self) -> &Every {
        &self.every
    }

    /// The job of the latest slot at or before `now` (due now), with its slot as uniqueness key.
    pub fn due(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, NewJob)> {
        let slot = self.every.latest_slot(now)?;
        let job = self
            .template
            .clone()
            .at(now)
            .unique(format!("slot:{}", slot.to_rfc3339()));
        Some((slot, job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    #[test]
    fn interval_slots_align_to_the_epoch() {
        let every = Every::interval(Duration::from_secs(900)).expect("valid");
        assert_eq!(
            every.latest_slot(at("2026-11-26T10:14:59.900Z")),
            Some(at("2026-11-26T10:00:00Z"))
        );
        assert_eq!(
            every.latest_slot(at("2026-11-26T10:15:00Z")),
            Some(at("2026-11-26T10:15:00Z"))
        );
        assert_eq!(
            Every::interval(Duration::from_millis(10)),
            Err(ScheduleError::TooShort)
        );
    }

    #[test]
    fn cron_slot_is_the_latest_match_at_or_before_now() {
        let every = Every::cron("0 */15 * * * *").expect("valid");
        assert_eq!(
            every.latest_slot(at("2026-11-26T10:14:59.999Z")),
            Some(at("2026-11-26T10:00:00Z"))
        );
        assert_eq!(
            every.latest_slot(at("2026-11-26T10:15:00Z")),
            Some(at("2026-11-26T10:15:00Z"))
        );
        assert_eq!(
            every.latest_slot(at("2026-11-26T10:15:00.400Z")),
            Some(at("2026-11-26T10:15:00Z"))
        );
        assert!(matches!(
            Every::cron("not cron"),
            Err(ScheduleError::Cron { .. })
        ));
    }

    #[test]
    fn missed_slots_collapse_into_the_latest_one() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Purge;
        impl JobKind for Purge {
            const KIND: &'static str = "test.purge";
        }
        let periodic = PeriodicJob::new(
            Every::interval(Duration::from_secs(3600)).expect("valid"),
            &Purge,
        )
        .expect("serializable");
        // Down from 01:00 to 05:30: one job, for the 05:00 slot, due now.
        let now = at("2026-11-26T05:30:00Z");
        let (slot, job) = periodic.due(now).expect("has slots");
        assert_eq!(slot, at("2026-11-26T05:00:00Z"));
        assert_eq!(job.run_at, now);
        assert_eq!(
            job.unique_key.as_deref(),
            Some("slot:2026-11-26T05:00:00+00:00")
        );
        assert_eq!(job.kind, "test.purge");
    }
}
