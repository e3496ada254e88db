//! The competition use cases embedded with memory adapters, no web server: create a
//! competition, register users until it is full, withdraw one and let another take the seat.
//!
//! `cargo run -p keel-adapters-memory --example competitions`
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use keel_adapters_memory::competitions::MemoryCompetitionStore;
use keel_adapters_memory::{MemoryJobQueue, MemoryUserStore};
use keel_domain::SystemClock;
use keel_domain::competitions::{CompetitionDraft, CompetitionError, CompetitionService};
use keel_domain::identity::store::UserStore;
use keel_domain::identity::user::{NewUser, UserId};
use keel_domain::identity::values::{DisplayName, Email, Role};
use keel_domain::jobs::{JobFilter, JobQueue};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jobs = MemoryJobQueue::new();
    let users = MemoryUserStore::new();
    let store = Arc::new(MemoryCompetitionStore::new(jobs.clone()));
    let competitions = CompetitionService::new(store, Arc::new(SystemClock));

    let now = chrono::Utc::now();
    let organizer = UserId::new_random();
    let cup = competitions
        .create(
            &CompetitionDraft {
                title: "Harbour sprint".into(),
                capacity: 3,
                registration_deadline: now + Duration::days(1),
                starts_at: now + Duration::days(2),
            },
            organizer,
        )
        .await?;
    println!("created {:?} with {} seats", cup.title, cup.capacity);

    let mut registrants = Vec::new();
    for n in 1..=5 {
        let id = UserId::new_random();
        let email = Email::parse(&format!("runner{n}@example.com"))?;
        users
            .create(&NewUser {
                id,
                email: email.clone(),
                display_name: DisplayName::parse(&format!("Runner {n}"))?,
                role: Role::Participant,
                password_hash: "example".into(),
                pii: BTreeMap::new(),
                created_at: now,
            })
            .await?;
        match competitions.register(cup.id, id, None).await {
            Ok(r) => println!("runner {n}: registered, {} seat(s) left", r.seats_left),
            Err(CompetitionError::Full) => println!("runner {n}: competition full"),
            Err(e) => println!("runner {n}: {e}"),
        }
        registrants.push((id, email));
    }

    let (first, _) = &registrants[0];
    competitions.withdraw(cup.id, *first).await?;
    println!("runner 1 withdrew");
    let (fourth, _) = &registrants[3];
    let taken = competitions.register(cup.id, *fourth, None).await?;
    println!("runner 4 took the freed seat, {} left", taken.seats_left);

    let seats = competitions.get(cup.id).await?;
    let queued = jobs
        .list(&JobFilter {
            limit: 100,
            ..JobFilter::default()
        })
        .await?;
    println!(
        "{} of {} seats taken; {} mail jobs queued (confirmations and reminders)",
        seats.seats_taken,
        seats.capacity,
        queued.len()
    );
    Ok(())
}
