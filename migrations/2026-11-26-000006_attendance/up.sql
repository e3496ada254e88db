-- Events: attendance scans and certificates (DESIGN.md §3 "Events").
--
-- Natural keys are the idempotency keys of this product: one participation, one attendance and
-- one certificate per (event, user), enforced by primary/unique keys, so any number of racing
-- scans or certificate requests (manual, automatic, repeated, on any node) store one row.
--
-- Deleting a user (DELETE FROM users, the account-deletion use case) still works:
-- * their participations, attendances and certificates go with them (ON DELETE CASCADE through
--   event_participants → attendances → certificates): these rows are their personal records;
-- * events they organized stay, with organizer_id set to NULL (admins still manage them);
-- * attendances they scanned as an organizer keep the record with scanned_by set to NULL.
-- Attendances and certificates are otherwise append-only: a trigger refuses every UPDATE and
-- DELETE issued directly; only the changes made by these foreign-key actions (which run inside
-- the referential-integrity triggers, so at trigger depth > 1) pass.

CREATE TABLE events (
    id           uuid        PRIMARY KEY,
    title        text        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    organizer_id uuid        REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL,
    closed_at    timestamptz,
    CHECK (ends_at > starts_at)
);
CREATE INDEX events_organizer ON events (organizer_id);

CREATE TABLE event_participants (
    event_id uuid        NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id  uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at timestamptz NOT NULL,
    PRIMARY KEY (event_id, user_id)
);
CREATE INDEX event_participants_user ON event_participants (user_id);

CREATE TABLE attendances (
    event_id       uuid        NOT NULL,
    participant_id uuid        NOT NULL,
    scanned_by     uuid        REFERENCES users (id) ON DELETE SET NULL,
    scanned_at     timestamptz NOT NULL,
    CONSTRAINT attendances_one_per_participant UNIQUE (event_id, participant_id),
    FOREIGN KEY (event_id, participant_id)
        REFERENCES event_participants (event_id, user_id) ON DELETE CASCADE
);
CREATE INDEX attendances_scanned_by ON attendances (scanned_by);

CREATE TABLE certificates (
    id                uuid        PRIMARY KEY,
    event_id          uuid        NOT NULL,
    participant_id    uuid        NOT NULL,
    participant_name  text        NOT NULL,
    event_title       text        NOT NULL,
    verification_code text        NOT NULL CHECK (char_length(verification_code) = 22),
    issued_at         timestamptz NOT NULL,
    -- The document is generated before the insert and stored in the same row: a certificate
    -- never exists without its document, and a losing racer's document is never stored.
    document          text        NOT NULL,
    CONSTRAINT certificates_one_per_participant UNIQUE (event_id, participant_id),
    CONSTRAINT certificates_verification_code UNIQUE (verification_code),
    FOREIGN KEY (event_id, participant_id)
        REFERENCES attendances (event_id, participant_id) ON DELETE CASCADE
);

CREATE FUNCTION attendance_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    -- Depth 1: a statement on the table itself. Deeper: a foreign-key action (user deletion).
    IF pg_trigger_depth() > 1 THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'check_violation';
END;
$$;

CREATE TRIGGER attendances_append_only
    BEFORE UPDATE OR DELETE ON attendances
    FOR EACH ROW EXECUTE FUNCTION attendance_refuse_change();
CREATE TRIGGER certificates_append_only
    BEFORE UPDATE OR DELETE ON certificates
    FOR EACH ROW EXECUTE FUNCTION attendance_refuse_change();
