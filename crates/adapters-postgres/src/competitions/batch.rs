//! Group commit of registrations, per competition.
//!
//! Why: a registration must hold the competition row lock until its transaction commits, and the
//! commit waits for the WAL flush. With one transaction per registration, one hot competition
//! serialises to one registration per lock hold (a few statements plus an fsync), whatever the
//! number of connections. Coalescing the registrations that arrive meanwhile into one transaction
//! pays the lock, the `UPDATE` of the count and the fsync once per batch instead of once per seat.
//!
//! How: the first caller for a competition with no batch running spawns a driver task; callers
//! arriving while it commits queue behind it and form the next batch (at most [`MAX_BATCH`],
//! no artificial wait: a lone request runs at once, as a batch of one). The driver is a task of
//! its own, so a caller whose future is dropped cannot cut a batch short. One batch is one
//! transaction:
//!
//! 1. `SELECT … FROM competitions WHERE id = $1 FOR UPDATE` (NotFound / per-caller Closed);
//! 2. free = capacity − seats_taken; the next `free` candidates, in arrival order and one per
//!    user, are inserted with `INSERT … ON CONFLICT (competition_id, user_id) DO NOTHING
//!    RETURNING id`; a row not returned is `AlreadyRegistered`; repeated while seats are free
//!    and candidates are left, so no row beyond capacity is ever inserted;
//! 3. the candidates left over are `AlreadyRegistered` if they hold a row, else `Full`;
//! 4. each receipt is computed by its caller (it borrows the caller's data, so the driver asks
//!    over a channel) and stored with `complete_in` inside a SAVEPOINT; a receipt that fails
//!    (claim lost, caller gone) deletes that caller's row again and answers that caller with the
//!    error, without touching the others; the callers after it in the batch are asked again
//!    with the seat it freed counted, so every kept caller's response names the seats really
//!    left after its own registration;
//! 5. the jobs of the rows kept are inserted, `seats_taken` is raised once by their number, and
//!    the transaction commits; only then does every caller get its own outcome. A failed batch
//!    answers every caller with the error: nothing of it committed.
//!
//! Correctness does not rest on this module: the row lock serialises batches (of this node and
//! of any other), the count is raised by the number of rows inserted in the same transaction,
//! and the schema's `CHECK (seats_taken BETWEEN 0 AND capacity)` and
//! `UNIQUE (competition_id, user_id)` still refuse an oversold competition or a second seat.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::competitions::{NewRegistration, RegisterOutcome, RegistrationReceipt};
use keel_domain::idempotency::{Claim, StoredResponse};
use keel_domain::jobs::{JobState, NewJob};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{competitions, registrations};
use crate::PgPool;
use crate::error::query_error;
use crate::idempotency::complete_in;
use crate::jobs::enqueue_in;
use crate::schema::jobs as jobs_table;

/// Most registrations committed in one transaction.
pub const MAX_BATCH: usize = 256;

/// Counters of the batches committed (for tests and diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batches run (each one transaction).
    pub batches: u64,
    /// Registration calls handled in them.
    pub calls: u64,
    /// Batches of more than one call.
    pub shared: u64,
    /// Calls in the largest batch.
    pub largest: u64,
}

/// What the driver tells a waiting caller.
enum ToCaller {
    /// Compute your receipt's response for `seats_left` and send it back.
    Respond {
        seats_left: u32,
        reply: oneshot::Sender<ReceiptAnswer>,
    },
    /// The batch is over: your outcome.
    Done(Result<RegisterOutcome, StoreError>),
}

/// One queued `register` call (owned copies: the driver outlives the caller's borrows).
struct Call {
    registration: NewRegistration,
    jobs: Vec<NewJob>,
    wants_receipt: bool,
    now: DateTime<Utc>,
    to_caller: mpsc::UnboundedSender<ToCaller>,
}

/// Queues of pending calls per competition; a competition present here has a driver running.
#[derive(Debug)]
pub(super) struct Batcher {
    pool: PgPool,
    queues: Mutex<HashMap<Uuid, VecDeque<Call>>>,
    batches: AtomicU64,
    calls: AtomicU64,
    shared: AtomicU64,
    largest: AtomicU64,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("registration", &self.registration.id)
            .finish_non_exhaustive()
    }
}

/// Removes a driver's queue if the driver ends abnormally (panic, runtime shutdown), so the next
/// caller starts a new driver; the queued callers see their channel close and get an error.
struct DriverGuard<'a> {
    batcher: &'a Batcher,
    competition: Uuid,
    armed: bool,
}

impl Drop for DriverGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.batcher.queues().remove(&self.competition);
        }
    }
}

impl Batcher {
    pub(super) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            queues: Mutex::new(HashMap::new()),
            batches: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            shared: AtomicU64::new(0),
            largest: AtomicU64::new(0),
        }
    }

    pub(super) fn stats(&self) -> BatchStats {
        BatchStats {
            batches: AtomicU64::load(&self.batches, Ordering::Relaxed),
            calls: AtomicU64::load(&self.calls, Ordering::Relaxed),
            shared: AtomicU64::load(&self.shared, Ordering::Relaxed),
            largest: AtomicU64::load(&self.largest, Ordering::Relaxed),
        }
    }

    fn queues(&self) -> MutexGuard<'_, HashMap<Uuid, VecDeque<Call>>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the call, starting a driver if none runs for its competition, and waits for its
    /// outcome (answering the driver's request for the receipt's response meanwhile).
    pub(super) async fn register(
        self: &std::sync::Arc<Self>,
        registration: &NewRegistration,
        jobs: &[NewJob],
        receipt: Option<&dyn RegistrationReceipt>,
        now: DateTime<Utc>,
    ) -> Result<RegisterOutcome, StoreError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| StoreError::unavailable("postgres", e))?;
        let competition = registration.competition_id.0;
        let (to_caller, mut inbox) = mpsc::unbounded_channel();
        let call = Call {
            registration: registration.clone(),
            jobs: jobs.to_vec(),
            wants_receipt: receipt.is_some(),
            now,
            to_caller,
        };
        let start = match self.queues().entry(competition) {
            Entry::Occupied(mut queue) => {
                queue.get_mut().push_back(call);
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(VecDeque::from([call]));
                true
            }
        };
        if start {
            runtime.spawn(std::sync::Arc::clone(self).drive(competition));
        }
        while let Some(message) = inbox.recv().await {
            match message {
                ToCaller::Respond { seats_left, reply } => {
                    let response = match receipt {
                        Some(receipt) => receipt
                            .response(registration, seats_left)
                            .map(|response| (receipt.claim().clone(), response)),
                        None => Err(StoreError::Corrupt("no receipt to respond with".into())),
                    };
                    // A driver that stopped waiting has failed the batch already.
                    let _ = reply.send(response);
                }
                ToCaller::Done(outcome) => return outcome,
            }
        }
        Err(StoreError::unavailable(
            "postgres",
            "the registration batch ended without an answer",
        ))
    }

    /// Runs batches for `competition` until its queue is empty.
    async fn drive(self: std::sync::Arc<Self>, competition: Uuid) {
        let mut guard = DriverGuard {
            batcher: &self,
            competition,
            armed: true,
        };
        loop {
            let batch: Vec<Call> = {
                let mut queues = self.queues();
                let Some(queue) = queues.get_mut(&competition) else {
                    guard.armed = false;
                    return;
                };
                if queue.is_empty() {
                    queues.remove(&competition);
                    guard.armed = false;
                    return;
                }
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect()
            };
            // Callers already gone are not registered at all.
            let batch: Vec<Call> = batch
                .into_iter()
                .filter(|call| !call.to_caller.is_closed())
                .collect();
            if batch.is_empty() {
                continue;
            }
            let size = batch.len() as u64;
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.calls.fetch_add(size, Ordering::Relaxed);
            if size > 1 {
                self.shared.fetch_add(1, Ordering::Relaxed);
            }
            self.largest.fetch_max(size, Ordering::Relaxed);
            match self.run(competition, &batch).await {
                Ok(outcomes) => {
                    for (call, outcome) in batch.iter().zip(outcomes) {
                        let _ = call.to_caller.send(ToCaller::Done(outcome));
                    }
                }
                Err(e) => {
                    for call in &batch {
                        let _ = call.to_caller.send(ToCaller::Done(Err(e.clone())));
                    }
                }
            }
        }
    }

    /// One batch, one transaction: an outcome per call, or an error for all (nothing committed).
    async fn run(
        &self,
        competition: Uuid,
        batch: &[Call],
    ) -> Result<Vec<Result<RegisterOutcome, StoreError>>, StoreError> {
        let mut conn = self.pool.get().await?;
        conn.transaction(async |conn| register_batch(conn, competition, batch).await)
            .await
            .map_err(query_error)
    }
}

/// Inserts the rows of `candidates` (one per user); returns the ids of the rows inserted.
async fn insert_rows(
    conn: &mut AsyncPgConnection,
    competition: Uuid,
    candidates: &[&Call],
) -> Result<HashSet<Uuid>, diesel::result::Error> {
    let rows: Vec<_> = candidates
        .iter()
        .map(|call| {
            (
                registrations::id.eq(call.registration.id.0),
                registrations::competition_id.eq(competition),
                registrations::user_id.eq(Some(call.registration.user_id.as_uuid())),
                registrations::registered_at.eq(call.registration.registered_at),
            )
        })
        .collect();
    let inserted: Vec<Uuid> = diesel::insert_into(registrations::table)
        .values(rows)
        .on_conflict((registrations::competition_id, registrations::user_id))
        .do_nothing()
        .returning(registrations::id)
        .get_results(conn)
        .await?;
    Ok(inserted.into_iter().collect())
}

/// Inserts the jobs of the kept registrations in one statement, as `enqueue_in` would one by
/// one; a job whose uniqueness key is already taken goes through `enqueue_in` itself (which
/// resolves the duplicate).
async fn insert_jobs(
    conn: &mut AsyncPgConnection,
    calls: &[&Call],
) -> Result<(), diesel::result::Error> {
    let jobs: Vec<(Uuid, &NewJob, DateTime<Utc>)> = calls
        .iter()
        .flat_map(|call| call.jobs.iter().map(|job| (Uuid::now_v7(), job, call.now)))
        .collect();
    if jobs.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = jobs
        .iter()
        .map(|(id, job, now)| {
            (
                jobs_table::id.eq(*id),
                jobs_table::kind.eq(&job.kind),
                jobs_table::payload.eq(&job.payload),
                jobs_table::priority.eq(job.priority),
                jobs_table::state.eq(JobState::Available.as_str()),
                jobs_table::attempt.eq(0),
                jobs_table::max_attempts.eq(i32::try_from(job.max_attempts).unwrap_or(i32::MAX)),
                jobs_table::run_at.eq(job.run_at),
                jobs_table::unique_key.eq(job.unique_key.as_deref()),
                jobs_table::created_at.eq(*now),
            )
        })
        .collect();
    let inserted: HashSet<Uuid> = diesel::insert_into(jobs_table::table)
        .values(rows)
        .on_conflict((jobs_table::kind, jobs_table::unique_key))
        .filter_target(jobs_table::unique_key.is_not_null())
        .do_nothing()
        .returning(jobs_table::id)
        .get_results::<Uuid>(conn)
        .await?
        .into_iter()
        .collect();
    for (id, job, now) in &jobs {
        if !inserted.contains(id) {
            enqueue_in(conn, job, *now).await?;
        }
    }
    Ok(())
}

/// A caller's answer to [`ToCaller::Respond`]: its claim and the response to store.
type ReceiptAnswer = Result<(Claim, StoredResponse), StoreError>;

/// Asks `call`'s caller for its receipt's response given `seats_left`; `None` if it is gone.
fn ask_receipt(call: &Call, seats_left: u32) -> Option<oneshot::Receiver<ReceiptAnswer>> {
    let (reply, answer) = oneshot::channel();
    call.to_caller
        .send(ToCaller::Respond { seats_left, reply })
        .ok()
        .map(|()| answer)
}

/// Waits for an answer asked with [`ask_receipt`]; a caller that went away is an error.
async fn receive_receipt(answer: Option<oneshot::Receiver<ReceiptAnswer>>) -> ReceiptAnswer {
    let gone = || StoreError::unavailable("postgres", "the caller is gone");
    match answer {
        Some(answer) => answer.await.unwrap_or_else(|_| Err(gone())),
        None => Err(gone()),
    }
}

/// Stores `claim`'s response inside a savepoint, so a failure leaves the batch usable.
async fn store_receipt(
    conn: &mut AsyncPgConnection,
    claim: &Claim,
    response: &StoredResponse,
) -> Result<Result<(), StoreError>, diesel::result::Error> {
    diesel::sql_query("SAVEPOINT registration_receipt")
        .execute(conn)
        .await?;
    let stored = complete_in(conn, claim, response).await;
    let end = if stored.is_ok() {
        "RELEASE SAVEPOINT registration_receipt"
    } else {
        "ROLLBACK TO SAVEPOINT registration_receipt"
    };
    diesel::sql_query(end).execute(conn).await?;
    Ok(stored)
}

/// The body of a batch's transaction (see the module documentation).
async fn register_batch(
    conn: &mut AsyncPgConnection,
    competition: Uuid,
    batch: &[Call],
) -> Result<Vec<Result<RegisterOutcome, StoreError>>, diesel::result::Error> {
    let locked: Option<(i32, i32, DateTime<Utc>)> = competitions::table
        .filter(competitions::id.eq(competition))
        .select((
            competitions::capacity,
            competitions::seats_taken,
            competitions::registration_deadline,
        ))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let Some((capacity, seats_taken, deadline)) = locked else {
        return Ok(batch
            .iter()
            .map(|_| Ok(RegisterOutcome::NotFound))
            .collect());
    };
    let mut outcomes: Vec<Option<Result<RegisterOutcome, StoreError>>> =
        batch.iter().map(|_| None).collect();
    let mut pending: VecDeque<usize> = VecDeque::new();
    for (i, call) in batch.iter().enumerate() {
        if deadline <= call.now {
            outcomes[i] = Some(Ok(RegisterOutcome::Closed));
        } else {
            pending.push_back(i);
        }
    }

    // Seats in arrival order, never more rows than free seats.
    let mut free = usize::try_from(capacity - seats_taken).unwrap_or(0);
    let mut registered: Vec<usize> = Vec::new();
    while free > 0 && !pending.is_empty() {
        let mut chunk: Vec<usize> = Vec::new();
        let mut users = HashSet::new();
        let mut twins = Vec::new();
        while chunk.len() < free {
            let Some(i) = pending.pop_front() else { break };
            if users.insert(batch[i].registration.user_id.as_uuid()) {
                chunk.push(i);
            } else {
                // The same user twice in one batch: the later call goes in a later statement,
                // where it conflicts with the earlier one's row.
                twins.push(i);
            }
        }
        for i in twins.into_iter().rev() {
            pending.push_front(i);
        }
        let candidates: Vec<&Call> = chunk.iter().map(|&i| &batch[i]).collect();
        let inserted = insert_rows(conn, competition, &candidates).await?;
        for i in chunk {
            if inserted.contains(&batch[i].registration.id.0) {
                registered.push(i);
                free -= 1;
            } else {
                outcomes[i] = Some(Ok(RegisterOutcome::AlreadyRegistered));
            }
        }
    }
    if !pending.is_empty() {
        // No seat left for them: say whether they hold one already, as a lone call would.
        let users: Vec<Uuid> = pending
            .iter()
            .map(|&i| batch[i].registration.user_id.as_uuid())
            .collect();
        let holding: HashSet<Option<Uuid>> = registrations::table
            .filter(registrations::competition_id.eq(competition))
            .filter(registrations::user_id.eq_any(users))
            .select(registrations::user_id)
            .load::<Option<Uuid>>(conn)
            .await?
            .into_iter()
            .collect();
        for &i in &pending {
            let user = Some(batch[i].registration.user_id.as_uuid());
            outcomes[i] = Some(Ok(if holding.contains(&user) {
                RegisterOutcome::AlreadyRegistered
            } else {
                RegisterOutcome::Full
            }));
        }
    }

    // Seats left after each registration, in arrival order.
    registered.sort_unstable();
    // (Never negative: at most `capacity − seats_taken` rows were inserted.)
    let seats_left: Vec<(usize, u32)> = registered
        .iter()
        .enumerate()
        .map(|(rank, &i)| {
            let after = i64::from(seats_taken) + rank as i64 + 1;
            (i, u32::try_from(i64::from(capacity) - after).unwrap_or(0))
        })
        .collect();

    // Receipts: ask every caller first, then store the answers one by one, in arrival order.
    let mut asked: HashMap<usize, Option<oneshot::Receiver<ReceiptAnswer>>> = HashMap::new();
    for &(i, left) in &seats_left {
        if batch[i].wants_receipt {
            asked.insert(i, ask_receipt(&batch[i], left));
        }
    }
    let mut dropped: Vec<Uuid> = Vec::new();
    let mut kept: Vec<(usize, u32)> = Vec::new();
    for (i, left) in seats_left {
        // Every seat dropped before this one is free again: one more left after this caller.
        let shift = u32::try_from(dropped.len()).unwrap_or(u32::MAX);
        let left = left.saturating_add(shift);
        if let Some(answer) = asked.remove(&i) {
            let answer = if shift == 0 {
                answer
            } else {
                // The response already computed names the wrong count: ask again.
                ask_receipt(&batch[i], left)
            };
            let stored = match receive_receipt(answer).await {
                Ok((claim, response)) => store_receipt(conn, &claim, &response).await?,
                Err(e) => Err(e),
            };
            if let Err(e) = stored {
                // This caller's seat is not kept: its response could not commit with it.
                dropped.push(batch[i].registration.id.0);
                outcomes[i] = Some(Err(e));
                continue;
            }
        }
        kept.push((i, left));
    }
    if !dropped.is_empty() {
        diesel::delete(registrations::table.filter(registrations::id.eq_any(&dropped)))
            .execute(conn)
            .await?;
    }

    let calls: Vec<&Call> = kept.iter().map(|(i, _)| &batch[*i]).collect();
    insert_jobs(conn, &calls).await?;
    if !kept.is_empty() {
        let n = i32::try_from(kept.len()).unwrap_or(i32::MAX);
        diesel::update(competitions::table.filter(competitions::id.eq(competition)))
            .set(competitions::seats_taken.eq(competitions::seats_taken + n))
            .execute(conn)
            .await?;
    }
    for &(i, left) in &kept {
        outcomes[i] = Some(Ok(RegisterOutcome::Registered {
            seats_left: left,
            receipt_stored: batch[i].wants_receipt,
        }));
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| Err(StoreError::Corrupt("a call got no outcome".into())))
        })
        .collect())
}
