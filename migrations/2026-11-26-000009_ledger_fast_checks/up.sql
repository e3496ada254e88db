-- Faster ledger checks, same guarantees (issue 7's benchmark goals). Replaces the per-row
-- deferred balance checks of 000007 and trims per-row work that a condition or a constraint
-- can do.

-- Balance, checked once per statement over the postings it inserted (transition table)
-- instead of once per posting row at commit. Rule: the postings of a transaction are inserted
-- by ONE statement, as one complete group: at least two legs, positions exactly 0..n-1, summing
-- to zero in every currency. Position 0 is what closes a transaction: any later statement adding
-- legs to it must bring its own position 0 (a group without it is refused here), which the
-- UNIQUE (transaction_id, position) refuses. So every transaction's postings are the one group
-- that was checked, and no statement can unbalance it afterwards.
CREATE FUNCTION ledger_postings_complete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad uuid;
BEGIN
    SELECT g.transaction_id INTO bad
    FROM (
        -- One row per (transaction, currency) of this statement's postings.
        SELECT n.transaction_id, count(*) AS legs, min(n.position) AS first,
               max(n.position) AS last, sum(n.amount) AS total
        FROM new_postings n LEFT JOIN ledger_accounts a ON a.id = n.account_id
        GROUP BY n.transaction_id, a.currency
    ) g
    GROUP BY g.transaction_id
    HAVING sum(g.legs) < 2 OR min(g.first) <> 0 OR max(g.last) <> sum(g.legs) - 1
        OR bool_or(g.total <> 0)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction %: its postings must be inserted together (positions 0..n-1, n >= 2) and sum to zero per currency', bad
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER ledger_postings_complete AFTER INSERT ON ledger_postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_postings_complete();

-- A transaction must have postings by commit: its position-0 leg exists (and with it, by the
-- check above, its whole balanced group). One index probe per transaction at commit.
CREATE FUNCTION ledger_transactions_posted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM ledger_postings WHERE transaction_id = NEW.id AND position = 0
    ) THEN
        RAISE EXCEPTION 'ledger transaction % has no postings', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
DROP TRIGGER ledger_postings_balanced ON ledger_postings;
DROP TRIGGER ledger_transactions_balanced ON ledger_transactions;
DROP FUNCTION ledger_check_balanced();
CREATE CONSTRAINT TRIGGER ledger_transactions_posted AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_transactions_posted();

-- Link kinds: the function only runs for rows that have a link (most have none).
DROP TRIGGER ledger_transactions_link_kinds ON ledger_transactions;
CREATE TRIGGER ledger_transactions_link_kinds BEFORE INSERT ON ledger_transactions
    FOR EACH ROW WHEN (NEW.resolves IS NOT NULL OR NEW.reverses IS NOT NULL)
    EXECUTE FUNCTION ledger_transactions_link_kinds();

-- Accounts: a balance update no longer calls a function; only an update that touches another
-- column (refused) and any DELETE do.
DROP TRIGGER ledger_accounts_fixed ON ledger_accounts;
CREATE TRIGGER ledger_accounts_fixed BEFORE UPDATE ON ledger_accounts
    FOR EACH ROW WHEN ((NEW.id, NEW.user_id, NEW.purpose, NEW.currency, NEW.allow_negative)
        IS DISTINCT FROM (OLD.id, OLD.user_id, OLD.purpose, OLD.currency, OLD.allow_negative))
    EXECUTE FUNCTION ledger_accounts_fixed();
CREATE TRIGGER ledger_accounts_no_delete BEFORE DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_accounts_fixed();

-- Indexes: NULL links and operations need no index entry (partial unique indexes keep the
-- same uniqueness: NULLs never conflicted); nothing reads postings by account.
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_reverses_key;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_resolves_key;
CREATE UNIQUE INDEX ledger_transactions_reverses_key ON ledger_transactions (reverses)
    WHERE reverses IS NOT NULL;
CREATE UNIQUE INDEX ledger_transactions_resolves_key ON ledger_transactions (resolves)
    WHERE resolves IS NOT NULL;
DROP INDEX ledger_transactions_operation;
CREATE INDEX ledger_transactions_operation ON ledger_transactions (operation_id)
    WHERE operation_id IS NOT NULL;
DROP INDEX ledger_postings_account;

-- Postings are identified by (transaction, position): the surrogate bigserial key (a sequence
-- call and one more index per leg) goes; the UNIQUE becomes the primary key.
ALTER TABLE ledger_postings DROP CONSTRAINT ledger_postings_pkey;
ALTER TABLE ledger_postings DROP COLUMN id;
ALTER TABLE ledger_postings DROP CONSTRAINT ledger_postings_position;
ALTER TABLE ledger_postings ADD CONSTRAINT ledger_postings_position
    PRIMARY KEY (transaction_id, position);

-- Balance updates stay on their page (HOT) more often: room for a new row version.
ALTER TABLE ledger_accounts SET (fillfactor = 80);
