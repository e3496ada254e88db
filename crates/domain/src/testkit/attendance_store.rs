//! Contract suite of [`AttendanceStore`]: natural keys hold under races, closing enqueues one
//! job per attendee atomically.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;

use super::support::{ok, stored_user, whole_second_now};
use crate::attendance::{
    Attendance, AttendanceStore, Certificate, CertificateId, Event, EventId, IssueCertificate,
    Recorded, ScanOutcome, VerificationCode,
};
use crate::identity::store::UserStore;
use crate::identity::user::UserId;
use crate::identity::values::Role;
use crate::jobs::{JobFilter, JobKind, JobQueue};

/// Runs every check of the suite.
pub async fn run_all(
    store: Arc<dyn AttendanceStore>,
    users: Arc<dyn UserStore>,
    jobs: Arc<dyn JobQueue>,
) {
    let s = store.as_ref();
    let u = users.as_ref();
    events_round_trip(s, u).await;
    participants_are_idempotent(s, u).await;
    concurrent_scans_record_one_attendance(s, u).await;
    only_participants_attend(s, u).await;
    racing_certificates_store_one(s, u).await;
    a_certificate_needs_an_attendance(s, u).await;
    closing_enqueues_one_job_per_attendee(s, u, jobs.as_ref()).await;
    a_closed_event_refuses_new_attendances(s, u).await;
    scans_racing_the_close_all_get_a_certificate_job(s, u, jobs.as_ref()).await;
}

/// The record of a scan the store accepted (panics when it refused it as closed).
fn recorded(outcome: Result<ScanOutcome, crate::StoreError>) -> Recorded<Attendance> {
    match ok(outcome) {
        ScanOutcome::Recorded(recorded) => recorded,
        ScanOutcome::EventClosed => panic!("the scan was refused: the event is closed"),
    }
}

/// A stored user with `role`.
pub async fn user(users: &dyn UserStore, role: Role) -> UserId {
    stored_user(users, role).await
}

async fn event(store: &dyn AttendanceStore, users: &dyn UserStore) -> Event {
    let now = whole_second_now();
    let event = Event {
        id: EventId::new(),
        title: "Contract <event>".into(),
        starts_at: now - Duration::hours(1),
        ends_at: now + Duration::hours(1),
        organizer_id: Some(user(users, Role::Organizer).await),
        created_at: now,
        closed_at: None,
    };
    ok(store.create_event(&event).await);
    event
}

/// An event with `n` participants who attended.
async fn attended(
    store: &dyn AttendanceStore,
    users: &dyn UserStore,
    n: usize,
) -> (Event, Vec<UserId>) {
    let event = event(store, users).await;
    let mut attendees = Vec::new();
    for _ in 0..n {
        let participant = user(users, Role::Participant).await;
        ok(store
            .add_participant(event.id, participant, whole_second_now())
            .await);
        recorded(store.record_attendance(&scan(&event, participant, 0)).await);
        attendees.push(participant);
    }
    (event, attendees)
}

fn scan(event: &Event, participant: UserId, offset_secs: i64) -> Attendance {
    Attendance {
        event_id: event.id,
        participant_id: participant,
        scanned_by: event.organizer_id,
        scanned_at: whole_second_now() + Duration::seconds(offset_secs),
    }
}

fn certificate(event: &Event, participant: UserId, at: DateTime<Utc>) -> Certificate {
    let id = CertificateId::new();
    Certificate {
        id,
        event_id: event.id,
        participant_id: participant,
        participant_name: "Attendee".into(),
        event_title: event.title.clone(),
        verification_code: VerificationCode::generate().unwrap_or_else(|e| panic!("{e}")),
        issued_at: at,
        document: format!("<html>document of {id}</html>"),
    }
}

async fn events_round_trip(store: &dyn AttendanceStore, users: &dyn UserStore) {
    let event = event(store, users).await;
    assert_eq!(ok(store.find_event(event.id).await), Some(event));
    assert_eq!(ok(store.find_event(EventId::new()).await), None);
}

async fn participants_are_idempotent(store: &dyn AttendanceStore, users: &dyn UserStore) {
    let event = event(store, users).await;
    let participant = user(users, Role::Participant).await;
    assert!(!ok(store.is_participant(event.id, participant).await));
    let first = ok(store
        .add_participant(event.id, participant, whole_second_now())
        .await);
    assert!(first.is_inserted());
    let again = ok(store
        .add_participant(
            event.id,
            participant,
            whole_second_now() + Duration::seconds(5),
        )
        .await);
    assert_eq!(again, Recorded::Existing(first.into_inner()));
    assert!(ok(store.is_participant(event.id, participant).await));
}

async fn concurrent_scans_record_one_attendance(
    store: &dyn AttendanceStore,
    users: &dyn UserStore,
) {
    let event = event(store, users).await;
    let participant = user(users, Role::Participant).await;
    ok(store
        .add_participant(event.id, participant, whole_second_now())
        .await);
    let scans: Vec<Attendance> = (0..20).map(|i| scan(&event, participant, i)).collect();
    let results: Vec<Recorded<Attendance>> =
        join_all(scans.iter().map(|a| store.record_attendance(a)))
            .await
            .into_iter()
            .map(recorded)
            .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_inserted()).count(),
        1,
        "exactly one scan inserts"
    );
    let stored = ok(store.find_attendance(event.id, participant).await)
        .unwrap_or_else(|| panic!("the attendance is stored"));
    assert!(
        results.iter().all(|r| r.get() == &stored),
        "every scan answers the stored attendance"
    );
    let later = recorded(
        store
            .record_attendance(&scan(&event, participant, 60))
            .await,
    );
    assert_eq!(later, Recorded::Existing(stored));
}

async fn only_participants_attend(store: &dyn AttendanceStore, users: &dyn UserStore) {
    let event = event(store, users).await;
    let stranger = user(users, Role::Participant).await;
    assert!(
        store
            .record_attendance(&scan(&event, stranger, 0))
            .await
            .is_err()
    );
    assert_eq!(ok(store.find_attendance(event.id, stranger).await), None);
}

async fn racing_certificates_store_one(store: &dyn AttendanceStore, users: &dyn UserStore) {
    let (event, attendees) = attended(store, users, 1).await;
    let participant = attendees[0];
    let now = whole_second_now();
    let candidates: Vec<Certificate> = (0..20)
        .map(|i| certificate(&event, participant, now + Duration::seconds(i)))
        .collect();
    let results: Vec<Recorded<Certificate>> =
        join_all(candidates.iter().map(|c| store.insert_certificate(c)))
            .await
            .into_iter()
            .map(ok)
            .collect();
    assert_eq!(results.iter().filter(|r| r.is_inserted()).count(), 1);
    let stored = ok(store.find_certificate_for(event.id, participant).await)
        .unwrap_or_else(|| panic!("the certificate is stored"));
    assert!(results.iter().all(|r| r.get() == &stored), "one document");
    assert!(candidates.contains(&stored));
    assert_eq!(
        ok(store.find_certificate(stored.id).await).as_ref(),
        Some(&stored)
    );
    assert_eq!(
        ok(store
            .find_certificate_by_code(stored.verification_code.as_str())
            .await)
        .as_ref(),
        Some(&stored)
    );
    for loser in candidates.iter().filter(|c| c.id != stored.id) {
        assert_eq!(ok(store.find_certificate(loser.id).await), None);
        assert_eq!(
            ok(store
                .find_certificate_by_code(loser.verification_code.as_str())
                .await),
            None
        );
    }
    assert_eq!(ok(store.find_certificate(CertificateId::new()).await), None);
}

async fn a_certificate_needs_an_attendance(store: &dyn AttendanceStore, users: &dyn UserStore) {
    let event = event(store, users).await;
    let participant = user(users, Role::Participant).await;
    ok(store
        .add_participant(event.id, participant, whole_second_now())
        .await);
    let refused = store
        .insert_certificate(&certificate(&event, participant, whole_second_now()))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        ok(store.find_certificate_for(event.id, participant).await),
        None
    );
}

async fn closing_enqueues_one_job_per_attendee(
    store: &dyn AttendanceStore,
    users: &dyn UserStore,
    jobs: &dyn JobQueue,
) {
    let (event, attendees) = attended(store, users, 3).await;
    let absent = user(users, Role::Participant).await;
    ok(store
        .add_participant(event.id, absent, whole_second_now())
        .await);
    let now = whole_second_now();
    let first =
        ok(store.close_event(event.id, now).await).unwrap_or_else(|| panic!("the event exists"));
    assert!(first.newly_closed);
    assert_eq!(first.event.closed_at, Some(now));
    assert_eq!(first.jobs_enqueued, 3);
    let again = ok(store
        .close_event(event.id, now + Duration::seconds(10))
        .await)
    .unwrap_or_else(|| panic!("the event exists"));
    assert!(!again.newly_closed);
    assert_eq!(again.event.closed_at, Some(now), "the first close is kept");
    assert_eq!(again.jobs_enqueued, 0, "no duplicate jobs");
    assert_eq!(
        ok(store.find_event(event.id).await).and_then(|e| e.closed_at),
        Some(now)
    );

    let listed = ok(jobs
        .list(&JobFilter {
            kind: Some(IssueCertificate::KIND.to_owned()),
            limit: 1000,
            ..JobFilter::default()
        })
        .await);
    let mut keys: Vec<String> = listed
        .into_iter()
        .filter_map(|j| j.unique_key)
        .filter(|k| k.starts_with(&event.id.to_string()))
        .collect();
    keys.sort();
    let mut expected: Vec<String> = attendees
        .iter()
        .filter_map(|p| IssueCertificate::new(event.id, *p).unique_key())
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(ok(store.close_event(EventId::new(), now).await), None);
}

/// Once closed, an event takes no new attendance at the store level (the service's window check
/// runs before the insert, so only the store can refuse a scan that raced the close); a repeat
/// of a recorded scan still answers the stored record.
async fn a_closed_event_refuses_new_attendances(
    store: &dyn AttendanceStore,
    users: &dyn UserStore,
) {
    let (event, attendees) = attended(store, users, 1).await;
    let late = user(users, Role::Participant).await;
    ok(store
        .add_participant(event.id, late, whole_second_now())
        .await);
    ok(store.close_event(event.id, whole_second_now()).await);
    assert_eq!(
        ok(store.record_attendance(&scan(&event, late, 5)).await),
        ScanOutcome::EventClosed
    );
    assert_eq!(ok(store.find_attendance(event.id, late).await), None);
    let stored = ok(store.find_attendance(event.id, attendees[0]).await)
        .unwrap_or_else(|| panic!("the attendance is stored"));
    assert_eq!(
        ok(store
            .record_attendance(&scan(&event, attendees[0], 10))
            .await),
        ScanOutcome::Recorded(Recorded::Existing(stored))
    );
}

/// Scans racing a close: every attendance that is stored has its certificate job; every other
/// scan was refused as closed.
async fn scans_racing_the_close_all_get_a_certificate_job(
    store: &dyn AttendanceStore,
    users: &dyn UserStore,
    jobs: &dyn JobQueue,
) {
    let event = event(store, users).await;
    let mut participants = Vec::new();
    for _ in 0..12 {
        let participant = user(users, Role::Participant).await;
        ok(store
            .add_participant(event.id, participant, whole_second_now())
            .await);
        participants.push(participant);
    }
    let scans: Vec<Attendance> = participants.iter().map(|p| scan(&event, *p, 0)).collect();
    let (middle, rest) = scans.split_at(scans.len() / 2);
    let (first, closed, second) = futures_util::join!(
        join_all(middle.iter().map(|a| store.record_attendance(a))),
        store.close_event(event.id, whole_second_now()),
        join_all(rest.iter().map(|a| store.record_attendance(a))),
    );
    ok(closed);
    for outcome in first.into_iter().chain(second) {
        match ok(outcome) {
            ScanOutcome::Recorded(r) => assert!(r.is_inserted()),
            ScanOutcome::EventClosed => {}
        }
    }
    let mut attended = Vec::new();
    for p in &participants {
        if ok(store.find_attendance(event.id, *p).await).is_some() {
            attended.push(IssueCertificate::new(event.id, *p).unique_key());
        }
    }
    let listed = ok(jobs
        .list(&JobFilter {
            kind: Some(IssueCertificate::KIND.to_owned()),
            limit: 10_000,
            ..JobFilter::default()
        })
        .await);
    for key in attended.into_iter().flatten() {
        assert!(
            listed
                .iter()
                .any(|j| j.unique_key.as_deref() == Some(key.as_str())),
            "attendance {key} stored without a certificate job"
        );
    }
}
