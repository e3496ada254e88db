-- Wallet: an append-only double-entry ledger (keel_domain::wallet; adapter: keel-adapters-postgres wallet/).
--
-- The schema restates every rule the adapter keeps, so no code path (nor a hand-written
-- statement) can break the books:
-- * a wallet account never goes below zero (CHECK), system accounts may;
-- * transactions and postings are never changed or removed (triggers refuse UPDATE, DELETE and
--   TRUNCATE);
-- * every transaction has at least two postings summing to zero per currency, checked at commit
--   by deferred constraint triggers (so the postings can be inserted one by one);
-- * a hold is resolved (posted or voided) at most once and a transaction reversed at most once
--   (UNIQUE links);
-- * an operation leaves `pending` at most once (trigger); while pending only its status, its
--   times, its failure reason, its provider reference and (once, from NULL) its transaction may
--   change; what it is (user, kind, direction, amount, currency, destination, memo, creation
--   time) never changes;
-- * a provider event is applied once (primary key) and its record is never changed or removed;
-- * an adjustment only ever moves from `pending_approval` to `applied` (with its approver,
--   operation and decision time) and is never removed;
-- * a `resolves` link points at a hold, a `reverses` link at a deposit or an adjustment
--   (trigger: a CHECK cannot read another row);
-- * an account's owner, purpose, currency and overdraft rule never change and accounts are
--   never removed; its stored balance changes only through `UPDATE … SET balance` — a row
--   trigger cannot tell whether postings came with it, so the equality of every stored balance
--   with the sum of its postings is proven by `GET /admin/ledger/verify` (LedgerStore::verify).
--
-- No table references users: money records outlive the accounts they belonged to (deleting a
-- user must neither fail on nor erase the ledger, which auditors and reconciliation still need).

-- What the user sees in their history; written before the ledger rows that book it.
CREATE TABLE wallet_operations (
    id                 uuid        PRIMARY KEY,
    -- No FK to users: see above.
    user_id            uuid        NOT NULL,
    kind               text        NOT NULL
        CHECK (kind IN ('deposit', 'withdrawal', 'reversal', 'adjustment')),
    direction          text        NOT NULL CHECK (direction IN ('credit', 'debit')),
    amount_minor       bigint      NOT NULL CHECK (amount_minor > 0),
    currency           char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status             text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    destination        text,
    provider_reference text,
    -- The hold (withdrawals) or the booking transaction; FK added below (deferred).
    transaction_id     uuid,
    failure_reason     text,
    memo               text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
-- The history: newest first, keyset-paged by (created_at, id).
CREATE INDEX wallet_operations_history ON wallet_operations (user_id, created_at DESC, id DESC);
-- The reconciliation's work list.
CREATE INDEX wallet_operations_pending ON wallet_operations (created_at, id)
    WHERE status = 'pending';

-- A final status never changes again, and operations are never deleted.
CREATE FUNCTION wallet_operations_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
        RAISE EXCEPTION 'wallet operations are never deleted'
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status <> 'pending' THEN
        RAISE EXCEPTION 'wallet operation % is final (%)', OLD.id, OLD.status
            USING ERRCODE = 'check_violation';
    END IF;
    -- Pending: what the operation is never changes.
    IF (NEW.id, NEW.user_id, NEW.kind, NEW.direction, NEW.amount_minor, NEW.currency,
        NEW.destination, NEW.memo, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.user_id, OLD.kind, OLD.direction, OLD.amount_minor, OLD.currency,
        OLD.destination, OLD.memo, OLD.created_at) THEN
        RAISE EXCEPTION 'wallet operation %: only status, times, reason, reference, transaction may change', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    -- The transaction is named once (a withdrawal's hold, a deposit's booking at settlement).
    IF OLD.transaction_id IS NOT NULL AND NEW.transaction_id IS DISTINCT FROM OLD.transaction_id
    THEN
        RAISE EXCEPTION 'wallet operation % already names transaction %', OLD.id,
            OLD.transaction_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER wallet_operations_final BEFORE UPDATE OR DELETE ON wallet_operations
    FOR EACH ROW EXECUTE FUNCTION wallet_operations_final();
CREATE TRIGGER wallet_operations_no_truncate BEFORE TRUNCATE ON wallet_operations
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_operations_final();

-- One account per (owner, purpose, currency), created on first use. System accounts have no
-- owner (the NULL owner is one value for the uniqueness: NULLS NOT DISTINCT).
CREATE TABLE ledger_accounts (
    id             uuid    PRIMARY KEY,
    -- No FK to users: see above.
    user_id        uuid,
    purpose        text    NOT NULL CHECK (purpose IN
        ('available', 'held', 'provider_clearing', 'fees', 'suspense', 'adjustments')),
    currency       char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance        bigint  NOT NULL DEFAULT 0,
    allow_negative boolean NOT NULL,
    CONSTRAINT ledger_accounts_no_overdraft CHECK (allow_negative OR balance >= 0),
    -- Wallet accounts have an owner and never go negative; system accounts have neither.
    CONSTRAINT ledger_accounts_owner CHECK (
        CASE WHEN purpose IN ('available', 'held')
             THEN user_id IS NOT NULL AND NOT allow_negative
             ELSE user_id IS NULL END),
    CONSTRAINT ledger_accounts_one UNIQUE NULLS NOT DISTINCT (user_id, purpose, currency)
);

-- An account is what it is forever and is never removed; only its balance changes. A row
-- trigger cannot see whether postings come with a balance change, so the stored balance is
-- proven equal to the sum of its postings by `GET /admin/ledger/verify` (LedgerStore::verify).
-- A deferred constraint trigger comparing each updated balance with the sum of its postings at
-- commit was measured and left out: it sums every posting of the account, and the system
-- accounts (provider clearing) take one posting per deposit and payout, so each commit grows
-- slower with the ledger (+39% per transfer at only 6,000 postings on the clearing account).
CREATE FUNCTION ledger_accounts_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
        RAISE EXCEPTION 'ledger accounts are never removed: % refused', TG_OP
            USING ERRCODE = 'check_violation';
    END IF;
    IF (NEW.id, NEW.user_id, NEW.purpose, NEW.currency, NEW.allow_negative)
       IS DISTINCT FROM (OLD.id, OLD.user_id, OLD.purpose, OLD.currency, OLD.allow_negative) THEN
        RAISE EXCEPTION 'ledger account %: only its balance may change', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER ledger_accounts_fixed BEFORE UPDATE OR DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_accounts_fixed();
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_accounts_fixed();

CREATE TABLE ledger_transactions (
    id           uuid        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN
        ('deposit', 'hold', 'post_hold', 'void_hold', 'reversal', 'adjustment')),
    operation_id uuid        REFERENCES wallet_operations (id),
    -- Reversed at most once.
    reverses     uuid        UNIQUE REFERENCES ledger_transactions (id),
    -- A hold is resolved at most once: one UNIQUE for posts and voids, never both.
    resolves     uuid        UNIQUE REFERENCES ledger_transactions (id),
    created_at   timestamptz NOT NULL,
    CONSTRAINT ledger_transactions_links CHECK (
        CASE kind
            WHEN 'reversal' THEN reverses IS NOT NULL AND resolves IS NULL AND reverses <> id
            WHEN 'post_hold' THEN resolves IS NOT NULL AND reverses IS NULL AND resolves <> id
            WHEN 'void_hold' THEN resolves IS NOT NULL AND reverses IS NULL AND resolves <> id
            ELSE reverses IS NULL AND resolves IS NULL
        END)
);
CREATE INDEX ledger_transactions_operation ON ledger_transactions (operation_id);

-- A post or void resolves a hold; a reversal undoes a deposit or an adjustment. (Rows are
-- never updated, so checking inserts is enough.)
CREATE FUNCTION ledger_transactions_link_kinds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.resolves IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM ledger_transactions WHERE id = NEW.resolves AND kind = 'hold'
    ) THEN
        RAISE EXCEPTION 'ledger transaction % resolves %, which is not a hold', NEW.id,
            NEW.resolves
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.reverses IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM ledger_transactions
        WHERE id = NEW.reverses AND kind IN ('deposit', 'adjustment')
    ) THEN
        RAISE EXCEPTION 'ledger transaction % reverses %, which is not a deposit or adjustment',
            NEW.id, NEW.reverses
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER ledger_transactions_link_kinds BEFORE INSERT ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_transactions_link_kinds();

ALTER TABLE wallet_operations ADD CONSTRAINT wallet_operations_transaction
    FOREIGN KEY (transaction_id) REFERENCES ledger_transactions (id)
    DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE ledger_postings (
    id             bigserial PRIMARY KEY,
    transaction_id uuid      NOT NULL REFERENCES ledger_transactions (id),
    -- The leg's place in its transaction (postings read back in order).
    position       integer   NOT NULL CHECK (position >= 0),
    account_id     uuid      NOT NULL REFERENCES ledger_accounts (id),
    amount         bigint    NOT NULL CHECK (amount <> 0),
    CONSTRAINT ledger_postings_position UNIQUE (transaction_id, position)
);
CREATE INDEX ledger_postings_account ON ledger_postings (account_id);

-- Append-only: no UPDATE, DELETE or TRUNCATE of transactions or postings, ever.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'check_violation';
END;
$$;
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_postings_no_truncate BEFORE TRUNCATE ON ledger_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- At commit, every transaction written (or posted to) has ≥ 2 postings summing to zero in
-- every currency.
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tx uuid;
BEGIN
    IF TG_TABLE_NAME = 'ledger_postings' THEN
        tx := NEW.transaction_id;
    ELSE
        tx := NEW.id;
    END IF;
    IF (SELECT count(*) FROM ledger_postings WHERE transaction_id = tx) < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has fewer than two postings', tx
            USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (
        SELECT 1
        FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id
        WHERE p.transaction_id = tx
        GROUP BY a.currency
        HAVING sum(p.amount) <> 0
    ) THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced', tx
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();
CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

-- Each provider event is applied once, recorded in the transaction that applies it.
CREATE TABLE provider_events (
    event_id     text        PRIMARY KEY,
    operation_id uuid        NOT NULL REFERENCES wallet_operations (id),
    processed_at timestamptz NOT NULL
);
-- Append-only: the record of what the provider told us.
CREATE TRIGGER provider_events_append_only BEFORE UPDATE OR DELETE ON provider_events
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER provider_events_no_truncate BEFORE TRUNCATE ON provider_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Admin corrections with maker-checker.
CREATE TABLE wallet_adjustments (
    id             uuid        PRIMARY KEY,
    -- No FK to users: see above.
    user_id        uuid        NOT NULL,
    amount_minor   bigint      NOT NULL CHECK (amount_minor > 0),
    currency       char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    direction      text        NOT NULL CHECK (direction IN ('credit', 'debit')),
    reason         text        NOT NULL CHECK (char_length(reason) > 0),
    proposed_by    uuid        NOT NULL,
    needs_approval boolean     NOT NULL,
    approved_by    uuid,
    status         text        NOT NULL CHECK (status IN ('pending_approval', 'applied')),
    operation_id   uuid        REFERENCES wallet_operations (id),
    created_at     timestamptz NOT NULL,
    decided_at     timestamptz,
    -- Above the threshold, the approver is a second admin.
    CONSTRAINT wallet_adjustments_four_eyes
        CHECK (NOT needs_approval OR approved_by IS DISTINCT FROM proposed_by),
    CONSTRAINT wallet_adjustments_applied CHECK (
        (status = 'applied') =
        (approved_by IS NOT NULL AND operation_id IS NOT NULL AND decided_at IS NOT NULL))
);
CREATE INDEX wallet_adjustments_user ON wallet_adjustments (user_id, created_at DESC);

-- The only change is the approval: `pending_approval` → `applied`, setting the approver, the
-- booking operation and the decision time at that moment; nothing else changes and nothing is
-- removed.
CREATE FUNCTION wallet_adjustments_approve_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
        RAISE EXCEPTION 'wallet adjustments are never removed: % refused', TG_OP
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status <> 'pending_approval' OR NEW.status <> 'applied' THEN
        RAISE EXCEPTION 'wallet adjustment % (%) may only be approved', OLD.id, OLD.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.approved_by IS NOT NULL OR OLD.operation_id IS NOT NULL OR OLD.decided_at IS NOT NULL
       OR NEW.approved_by IS NULL OR NEW.operation_id IS NULL OR NEW.decided_at IS NULL THEN
        RAISE EXCEPTION 'wallet adjustment %: the approval sets approver, operation and time',
            OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF (NEW.id, NEW.user_id, NEW.amount_minor, NEW.currency, NEW.direction, NEW.reason,
        NEW.proposed_by, NEW.needs_approval, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.user_id, OLD.amount_minor, OLD.currency, OLD.direction, OLD.reason,
        OLD.proposed_by, OLD.needs_approval, OLD.created_at) THEN
        RAISE EXCEPTION 'wallet adjustment %: only its approval may change', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER wallet_adjustments_approve_only BEFORE UPDATE OR DELETE ON wallet_adjustments
    FOR EACH ROW EXECUTE FUNCTION wallet_adjustments_approve_only();
CREATE TRIGGER wallet_adjustments_no_truncate BEFORE TRUNCATE ON wallet_adjustments
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_adjustments_approve_only();

-- Reconciliation findings, each kept once per (operation, kind); findings without an operation
-- (unknown references) are all kept.
CREATE TABLE reconciliation_mismatches (
    id           uuid        PRIMARY KEY,
    operation_id uuid,
    kind         text        NOT NULL CHECK (kind IN ('amount-differs', 'succeeded-after-failure',
        'unknown-reference', 'missing-at-provider', 'wrong-event-type')),
    detail       text        NOT NULL,
    found_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX reconciliation_mismatches_once
    ON reconciliation_mismatches (operation_id, kind) WHERE operation_id IS NOT NULL;
CREATE INDEX reconciliation_mismatches_found ON reconciliation_mismatches (found_at DESC, id DESC);

-- Every webhook delivery, good or bad.
CREATE TABLE webhook_logs (
    id          uuid        PRIMARY KEY,
    received_at timestamptz NOT NULL,
    event_id    text,
    event_type  text,
    outcome     text        NOT NULL
        CHECK (outcome IN ('processed', 'duplicate', 'ignored', 'rejected', 'failed')),
    reason      text        NOT NULL,
    body        text        NOT NULL
);
CREATE INDEX webhook_logs_received ON webhook_logs (received_at DESC, id DESC);
