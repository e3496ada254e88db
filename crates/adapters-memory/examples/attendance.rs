//! Embedding keel's events product without HTTP: an organizer creates an event, adds a
//! participant, scans them twice (one attendance), closes the event, and the close's
//! `certificates.issue` job issues the one certificate a manual request then finds.
//!
//! `cargo run -p keel-adapters-memory --example attendance`

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use keel_adapters_memory::attendance::MemoryAttendanceStore;
use keel_adapters_memory::{ManualClock, MemoryJobQueue, MemoryUserStore};
use keel_domain::attendance::{
    Actor, AttendanceService, IssueCertificate, IssueCertificateHandler, NewEvent,
};
use keel_domain::identity::store::UserStore;
use keel_domain::identity::user::{NewUser, UserId};
use keel_domain::identity::values::{DisplayName, Email, Role};
use keel_domain::jobs::{JobContext, JobFilter, JobHandler, JobKind, JobQueue};

async fn user(
    users: &MemoryUserStore,
    name: &str,
    role: Role,
) -> Result<UserId, Box<dyn std::error::Error>> {
    let id = UserId::new_random();
    users
        .create(&NewUser {
            id,
            email: Email::parse(&format!("{}@example.test", id.as_uuid().simple()))?,
            display_name: DisplayName::parse(name)?,
            role,
            password_hash: "example".into(),
            pii: BTreeMap::new(),
            created_at: Utc::now(),
        })
        .await?;
    Ok(id)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let jobs = MemoryJobQueue::new();
    let users = MemoryUserStore::new();
    let store = MemoryAttendanceStore::new(&jobs);
    let service = AttendanceService::new(Arc::new(store), Arc::new(users.clone()), clock.clone());

    let organizer = Actor::user(
        user(&users, "Olga Organizer", Role::Organizer).await?,
        Role::Organizer,
    );
    let ada = user(&users, "Ada <the> Attendee", Role::Participant).await?;
    let event = service
        .create_event(
            organizer,
            NewEvent {
                title: "Rust & Friends".into(),
                starts_at: keel_domain::Clock::now(clock.as_ref()) - Duration::minutes(5),
                ends_at: keel_domain::Clock::now(clock.as_ref()) + Duration::hours(2),
            },
        )
        .await?;
    println!("event {} \"{}\"", event.id, event.title);
    service.add_participant(organizer, event.id, ada).await?;

    let first = service.scan(organizer, event.id, ada).await?;
    let again = service.scan(organizer, event.id, ada).await?;
    println!(
        "scan: inserted={} then inserted={} (same record: {})",
        first.is_inserted(),
        again.is_inserted(),
        first.get() == again.get()
    );

    let closed = service.close(organizer, event.id).await?;
    println!(
        "closed; {} certificate job(s) enqueued",
        closed.jobs_enqueued
    );

    // What a worker would do: run each enqueued job through the handler.
    let handler = IssueCertificateHandler::new(service.clone());
    let enqueued = jobs
        .list(&JobFilter {
            kind: Some(IssueCertificate::KIND.to_owned()),
            limit: 100,
            ..JobFilter::default()
        })
        .await?;
    for job in enqueued {
        let payload: IssueCertificate = serde_json::from_value(job.payload)?;
        let ctx = JobContext {
            id: job.id,
            attempt: 1,
            max_attempts: job.max_attempts,
            created_at: job.created_at,
        };
        handler.run(&ctx, payload).await?;
    }

    let manual = service.issue_certificate(organizer, event.id, ada).await?;
    let certificate = manual.get();
    println!(
        "manual request after the job: inserted={} certificate {} code {}",
        manual.is_inserted(),
        certificate.id,
        certificate.verification_code.as_str()
    );
    let verified = service
        .verify(certificate.verification_code.as_str())
        .await?;
    println!(
        "verified: {} attended \"{}\"",
        verified.participant_name, verified.event_title
    );
    println!(
        "document: {} bytes of self-contained HTML",
        certificate.document.len()
    );
    Ok(())
}
