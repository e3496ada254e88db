//! `certificates.issue`: the job closing an event enqueues for each attendee.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::error::AttendanceError;
use super::service::{Actor, AttendanceService};
use super::values::EventId;
use uuid::Uuid;

use crate::identity::user::UserId;
use crate::jobs::{Backoff, JobContext, JobFailure, JobHandler, JobKind, KindSettings};

/// Issue one participant's certificate for a closed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueCertificate {
    /// The event.
    pub event_id: EventId,
    /// The attendee's user id.
    pub participant_id: Uuid,
}

impl IssueCertificate {
    /// The job for `participant` at `event`.
    pub fn new(event: EventId, participant: UserId) -> Self {
        Self {
            event_id: event,
            participant_id: participant.as_uuid(),
        }
    }
}

impl JobKind for IssueCertificate {
    const KIND: &'static str = "certificates.issue";

    fn settings() -> KindSettings {
        KindSettings {
            max_attempts: 5,
            backoff: Backoff::seconds(&[2, 10, 60, 300]),
            ..KindSettings::default()
        }
    }

    /// One job per (event, participant): `event:participant`.
    fn unique_key(&self) -> Option<String> {
        Some(format!("{}:{}", self.event_id, self.participant_id))
    }
}

/// Runs [`IssueCertificate`] through [`AttendanceService::issue_certificate`]: idempotent, as
/// a certificate already issued (manually or by an earlier attempt) is simply found.
#[derive(Debug, Clone)]
pub struct IssueCertificateHandler {
    service: AttendanceService,
}

impl IssueCertificateHandler {
    /// A handler issuing through `service`.
    pub fn new(service: AttendanceService) -> Self {
        Self { service }
    }
}

#[async_trait]
impl JobHandler<IssueCertificate> for IssueCertificateHandler {
    async fn run(&self, _ctx: &JobContext, job: IssueCertificate) -> Result<(), JobFailure> {
        match self
            .service
            .issue_certificate(Actor::System, job.event_id, UserId(job.participant_id))
            .await
        {
            Ok(_) => Ok(()),
            Err(AttendanceError::Store(e)) => Err(e.into()),
            // The event, the user or the attendance is gone (an account was deleted): no retry
            // can bring them back.
            Err(e) => Err(JobFailure::permanent(e)),
        }
    }
}
