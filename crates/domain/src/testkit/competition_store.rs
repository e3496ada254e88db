//! Contract suite of the [`CompetitionStore`] port: seats are never oversold, a registration and
//! its jobs commit together, withdrawals free the seat and cancel the reminder.
//!
//! Every case creates its own competitions and users, so the suite may share stores with others.

use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;
use uuid::Uuid;

use super::support::{ok, stored_user, whole_second_now};
use crate::competitions::service::registration_jobs;
use crate::competitions::{
    Competition, CompetitionId, CompetitionStore, NewRegistration, RegisterOutcome, RegistrationId,
    SendReminder, WithdrawOutcome,
};
use crate::identity::store::UserStore;
use crate::identity::user::UserId;
use crate::identity::values::Role;
use crate::jobs::{JobFilter, JobKind, JobQueue};

/// Registrants racing in the concurrency case.
pub const RACERS: usize = 200;
/// Seats they race for.
pub const SEATS: u32 = 50;

/// The stores a suite run needs: registrations belong to existing users, and their jobs go to
/// `jobs`.
pub struct Fixture<'a> {
    /// The store under test.
    pub store: &'a dyn CompetitionStore,
    /// Where registrants are created.
    pub users: &'a dyn UserStore,
    /// The queue the store enqueues into.
    pub jobs: &'a dyn JobQueue,
}

/// Runs every case of the contract.
pub async fn run_all(f: &Fixture<'_>) {
    create_get_and_list_round_trip(f).await;
    registrations_take_seats_until_full(f).await;
    duplicates_closed_and_unknown_are_refused(f).await;
    withdrawal_frees_the_seat_and_cancels_the_reminder(f).await;
    release_frees_seats_of_competitions_not_started(f).await;
    racing_registrations_never_oversell(f).await;
    racing_duplicates_have_one_winner(f).await;
}

/// A new participant in `users`.
pub async fn user(users: &dyn UserStore) -> UserId {
    stored_user(users, Role::Participant).await
}

/// A stored competition with `capacity` seats, deadline in an hour, start in `starts_in`.
pub async fn competition(
    store: &dyn CompetitionStore,
    capacity: u32,
    starts_in: Duration,
    created_at: DateTime<Utc>,
) -> Competition {
    let now = whole_second_now();
    let c = Competition {
        id: CompetitionId(Uuid::now_v7()),
        title: "Contract cup".into(),
        capacity,
        seats_taken: 0,
        registration_deadline: now + Duration::hours(1),
        starts_at: now + starts_in,
        created_by: UserId(Uuid::new_v4()),
        created_at,
    };
    ok(store.create(&c).await);
    c
}

async fn register_at(
    f: &Fixture<'_>,
    c: &Competition,
    user: UserId,
    now: DateTime<Utc>,
) -> (RegistrationId, RegisterOutcome) {
    let registration = NewRegistration {
        id: RegistrationId(Uuid::now_v7()),
        competition_id: c.id,
        user_id: user,
        registered_at: now,
    };
    let jobs = ok(registration_jobs(&registration, c, now));
    let outcome = ok(f.store.register(&registration, &jobs, None, now).await);
    (registration.id, outcome)
}

async fn register(
    f: &Fixture<'_>,
    c: &Competition,
    user: UserId,
) -> (RegistrationId, RegisterOutcome) {
    register_at(f, c, user, whole_second_now()).await
}

async fn seats_taken(f: &Fixture<'_>, c: &Competition) -> u32 {
    ok(f.store.get(c.id).await)
        .unwrap_or_else(|| panic!("competition {} vanished", c.id))
        .seats_taken
}

async fn assert_consistent(f: &Fixture<'_>, c: &Competition, expected: u32) {
    assert_eq!(seats_taken(f, c).await, expected, "seats_taken");
    assert_eq!(
        ok(f.store.registration_count(c.id).await),
        u64::from(expected),
        "rows"
    );
}

/// Whether a pending reminder job exists for `registration`.
async fn has_reminder(f: &Fixture<'_>, registration: RegistrationId) -> bool {
    let jobs = ok(f
        .jobs
        .list(&JobFilter {
            kind: Some(SendReminder::KIND.to_owned()),
            limit: 10_000,
            ..JobFilter::default()
        })
        .await);
    let key = registration.to_string();
    jobs.iter().any(|j| j.unique_key.as_deref() == Some(&key))
}

async fn create_get_and_list_round_trip(f: &Fixture<'_>) {
    // Far-future creation times, seconds apart: no other case's competition falls between.
    let base = DateTime::from_timestamp(7_000_000_000 + i64::from(rand_u16()) * 100, 0)
        .unwrap_or_default();
    let mut made = Vec::new();
    for n in 0..3 {
        made.push(competition(f.store, 5, Duration::hours(2), base + Duration::seconds(n)).await);
    }
    assert_eq!(ok(f.store.get(made[0].id).await).as_ref(), Some(&made[0]));
    assert_eq!(ok(f.store.get(CompetitionId(Uuid::new_v4())).await), None);
    let page = ok(f
        .store
        .list(Some((made[2].created_at, made[2].id)), 2)
        .await);
    assert_eq!(page, [made[1].clone(), made[0].clone()]);
    let first = ok(f.store.list(None, 1).await);
    assert_eq!(first.len(), 1);
}

fn rand_u16() -> u16 {
    let bytes = Uuid::new_v4().into_bytes();
    u16::from_le_bytes([bytes[0], bytes[1]])
}

async fn registrations_take_seats_until_full(f: &Fixture<'_>) {
    let c = competition(f.store, 3, Duration::hours(2), whole_second_now()).await;
    let mut ids = Vec::new();
    for left in [2, 1, 0] {
        let (id, outcome) = register(f, &c, user(f.users).await).await;
        assert_eq!(
            outcome,
            RegisterOutcome::Registered {
                seats_left: left,
                receipt_stored: false
            }
        );
        let stored = ok(f.store.registration(id).await);
        assert_eq!(stored.map(|r| r.competition_id), Some(c.id));
        assert!(has_reminder(f, id).await, "reminder enqueued with the row");
        ids.push(id);
    }
    let (late, outcome) = register(f, &c, user(f.users).await).await;
    assert_eq!(outcome, RegisterOutcome::Full);
    assert_eq!(ok(f.store.registration(late).await), None);
    assert!(!has_reminder(f, late).await, "no jobs without a seat");
    assert_consistent(f, &c, 3).await;
}

async fn duplicates_closed_and_unknown_are_refused(f: &Fixture<'_>) {
    let c = competition(f.store, 1, Duration::hours(2), whole_second_now()).await;
    let u = user(f.users).await;
    assert!(matches!(
        register(f, &c, u).await.1,
        RegisterOutcome::Registered { .. }
    ));
    // Already registered wins over full: the caller learns they hold the seat.
    assert_eq!(
        register(f, &c, u).await.1,
        RegisterOutcome::AlreadyRegistered
    );
    assert_consistent(f, &c, 1).await;

    let roomy = competition(f.store, 5, Duration::hours(2), whole_second_now()).await;
    let v = user(f.users).await;
    assert!(matches!(
        register(f, &roomy, v).await.1,
        RegisterOutcome::Registered { .. }
    ));
    let (dup, outcome) = register(f, &roomy, v).await;
    assert_eq!(outcome, RegisterOutcome::AlreadyRegistered);
    assert!(
        !has_reminder(f, dup).await,
        "a refused duplicate enqueues nothing"
    );
    assert_consistent(f, &roomy, 1).await;

    let after_deadline = roomy.registration_deadline;
    let w = user(f.users).await;
    assert_eq!(
        register_at(f, &roomy, w, after_deadline).await.1,
        RegisterOutcome::Closed
    );
    let mut ghost = roomy.clone();
    ghost.id = CompetitionId(Uuid::new_v4());
    assert_eq!(register(f, &ghost, w).await.1, RegisterOutcome::NotFound);
    assert_consistent(f, &roomy, 1).await;
}

async fn withdrawal_frees_the_seat_and_cancels_the_reminder(f: &Fixture<'_>) {
    let c = competition(f.store, 1, Duration::hours(2), whole_second_now()).await;
    let (u, v) = (user(f.users).await, user(f.users).await);
    let (id, _) = register(f, &c, u).await;
    assert_eq!(register(f, &c, v).await.1, RegisterOutcome::Full);
    let now = whole_second_now();
    assert_eq!(
        ok(f.store.withdraw(c.id, u, now).await),
        WithdrawOutcome::Withdrawn { registration: id }
    );
    assert_eq!(ok(f.store.registration(id).await), None);
    assert!(!has_reminder(f, id).await, "the reminder is cancelled");
    assert_consistent(f, &c, 0).await;
    assert_eq!(
        ok(f.store.withdraw(c.id, u, now).await),
        WithdrawOutcome::NotRegistered
    );
    assert_eq!(
        ok(f.store
            .withdraw(CompetitionId(Uuid::new_v4()), u, now)
            .await),
        WithdrawOutcome::NotFound
    );
    // The freed seat is taken by someone else; that seat cannot be withdrawn after the deadline.
    assert!(matches!(
        register(f, &c, v).await.1,
        RegisterOutcome::Registered { seats_left: 0, .. }
    ));
    assert_eq!(
        ok(f.store.withdraw(c.id, v, c.registration_deadline).await),
        WithdrawOutcome::Closed
    );
    assert_consistent(f, &c, 1).await;
}

async fn release_frees_seats_of_competitions_not_started(f: &Fixture<'_>) {
    let soon = competition(f.store, 2, Duration::hours(2), whole_second_now()).await;
    let later = competition(f.store, 2, Duration::hours(10), whole_second_now()).await;
    let (u, other) = (user(f.users).await, user(f.users).await);
    register(f, &soon, u).await;
    let (later_id, _) = register(f, &later, u).await;
    register(f, &later, other).await;
    // Three hours on, `soon` has started: its seat stays; `later`'s seat is freed.
    let at = whole_second_now() + Duration::hours(3);
    assert_eq!(ok(f.store.release_user(u, at).await), 1);
    assert_consistent(f, &soon, 1).await;
    assert_consistent(f, &later, 1).await;
    assert!(!has_reminder(f, later_id).await);
    assert_eq!(ok(f.store.release_user(u, at).await), 0, "idempotent");
}

async fn racing_registrations_never_oversell(f: &Fixture<'_>) {
    let c = competition(f.store, SEATS, Duration::hours(2), whole_second_now()).await;
    let users = join_all((0..RACERS).map(|_| user(f.users))).await;
    let outcomes = join_all(users.iter().map(|u| register(f, &c, *u))).await;
    let won = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, RegisterOutcome::Registered { .. }))
        .count();
    let full = outcomes
        .iter()
        .filter(|(_, o)| *o == RegisterOutcome::Full)
        .count();
    assert_eq!((won, full), (SEATS as usize, RACERS - SEATS as usize));
    assert_consistent(f, &c, SEATS).await;

    // Withdrawals and registrations racing keep the count equal to the rows.
    let winners: Vec<UserId> = users
        .iter()
        .zip(&outcomes)
        .filter(|(_, (_, o))| matches!(o, RegisterOutcome::Registered { .. }))
        .map(|(u, _)| *u)
        .take(10)
        .collect();
    let now = whole_second_now();
    let withdrawals = join_all(winners.iter().map(|u| f.store.withdraw(c.id, *u, now)));
    let newcomers = join_all((0..20).map(|_| async {
        let u = user(f.users).await;
        register(f, &c, u).await.1
    }));
    let (withdrawn, registered) = futures_util::join!(withdrawals, newcomers);
    let withdrawn = withdrawn.into_iter().map(ok).count();
    let registered = registered
        .iter()
        .filter(|o| matches!(o, RegisterOutcome::Registered { .. }))
        .count();
    assert_eq!(withdrawn, 10);
    assert!(registered <= 10);
    assert_consistent(f, &c, SEATS - 10 + registered as u32).await;
}

async fn racing_duplicates_have_one_winner(f: &Fixture<'_>) {
    let c = competition(f.store, 5, Duration::hours(2), whole_second_now()).await;
    let u = user(f.users).await;
    let outcomes = join_all((0..20).map(|_| register(f, &c, u))).await;
    let won = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, RegisterOutcome::Registered { .. }))
        .count();
    assert_eq!(won, 1);
    assert!(outcomes.iter().all(|(_, o)| matches!(
        o,
        RegisterOutcome::Registered { .. } | RegisterOutcome::AlreadyRegistered
    )));
    assert_consistent(f, &c, 1).await;
}

/// One step of a random registration sequence, by one of a few users (an index into them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatOp {
    /// The user registers.
    Register(usize),
    /// The user withdraws.
    Withdraw(usize),
    /// The user's account is deleted: [`CompetitionStore::release_user`].
    Release(usize),
}

/// Drives `ops` through the port on a new competition of `capacity` seats, for `users.len()`
/// users, against a model (the set of registered users), asserting after every step:
/// `0 ≤ seats_taken ≤ capacity`, `seats_taken` equals the registration rows and the model, and a
/// registration succeeds iff a seat was free and the user was not registered (else it says
/// which rule refused it). A user index is taken modulo `users.len()`. The users must hold no
/// other registration (a release frees seats in every competition and counts them all).
pub async fn random_ops_keep_seats_equal_to_rows(
    f: &Fixture<'_>,
    users: &[UserId],
    capacity: u32,
    ops: &[SeatOp],
) {
    assert!(!users.is_empty(), "at least one user");
    let c = competition(f.store, capacity, Duration::hours(2), whole_second_now()).await;
    let mut registered = std::collections::BTreeSet::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            SeatOp::Register(i) => {
                let u = users[i % users.len()];
                let was_free = (registered.len() as u32) < capacity;
                let was_registered = registered.contains(&u);
                let (_, outcome) = register(f, &c, u).await;
                let expected = if was_registered {
                    RegisterOutcome::AlreadyRegistered
                } else if was_free {
                    registered.insert(u);
                    RegisterOutcome::Registered {
                        seats_left: capacity - registered.len() as u32,
                        receipt_stored: false,
                    }
                } else {
                    RegisterOutcome::Full
                };
                assert_eq!(outcome, expected, "step {step}: {op:?}");
            }
            SeatOp::Withdraw(i) => {
                let u = users[i % users.len()];
                let outcome = ok(f.store.withdraw(c.id, u, whole_second_now()).await);
                if registered.remove(&u) {
                    assert!(
                        matches!(outcome, WithdrawOutcome::Withdrawn { .. }),
                        "step {step}: {op:?} gave {outcome:?}"
                    );
                } else {
                    assert_eq!(outcome, WithdrawOutcome::NotRegistered, "step {step}");
                }
            }
            SeatOp::Release(i) => {
                let u = users[i % users.len()];
                let freed = ok(f.store.release_user(u, whole_second_now()).await);
                assert_eq!(
                    freed,
                    u64::from(registered.remove(&u)),
                    "step {step}: {op:?}"
                );
            }
        }
        let taken = seats_taken(f, &c).await;
        assert!(taken <= capacity, "step {step}: {taken} > {capacity}");
        assert_eq!(
            ok(f.store.registration_count(c.id).await),
            u64::from(taken),
            "step {step}: seats_taken = rows"
        );
        assert_eq!(taken as usize, registered.len(), "step {step}: model");
    }
}
