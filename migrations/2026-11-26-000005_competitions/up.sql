-- Competitions and their registrations (DESIGN.md §3 "Competitions", docs/COMPETITIONS.md).
-- A registration takes its seat with one conditional UPDATE (seats_taken < capacity) and inserts
-- its row in the same transaction; the CHECK and the UNIQUE constraint restate both rules, so
-- no code path can oversell a competition or register a user twice.
CREATE TABLE competitions (
    id                    uuid        PRIMARY KEY,
    title                 text        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    capacity              integer     NOT NULL CHECK (capacity BETWEEN 1 AND 1000000),
    seats_taken           integer     NOT NULL DEFAULT 0,
    registration_deadline timestamptz NOT NULL,
    starts_at             timestamptz NOT NULL,
    -- The author's account id, kept as a plain value (no FK): deleting the organizer's account
    -- does not remove the competitions other users registered for.
    created_by            uuid        NOT NULL,
    created_at            timestamptz NOT NULL,
    CONSTRAINT competitions_seats_within_capacity CHECK (seats_taken BETWEEN 0 AND capacity),
    CONSTRAINT competitions_deadline_before_start CHECK (registration_deadline < starts_at)
);

-- Listing, newest first, keyset-paged by (created_at, id).
CREATE INDEX competitions_listing ON competitions (created_at DESC, id DESC);

-- One row per seat taken: seats_taken = count(*) per competition at every commit.
-- user_id is SET NULL when the account is deleted, so deleting a user can never fail on this
-- foreign key; the anonymised row keeps its seat (seats_taken stays equal to the rows) until the
-- UserDeleted subscriber releases it (the fast path) or, if that event was lost, the periodic
-- competitions.release_deleted job sweeps the anonymised rows of competitions not started.
CREATE TABLE registrations (
    id             uuid        PRIMARY KEY,
    competition_id uuid        NOT NULL REFERENCES competitions (id) ON DELETE CASCADE,
    user_id        uuid        REFERENCES users (id) ON DELETE SET NULL,
    registered_at  timestamptz NOT NULL,
    CONSTRAINT registrations_one_per_user UNIQUE (competition_id, user_id)
);

CREATE INDEX registrations_user ON registrations (user_id);
CREATE INDEX registrations_anonymised ON registrations (competition_id) WHERE user_id IS NULL;
