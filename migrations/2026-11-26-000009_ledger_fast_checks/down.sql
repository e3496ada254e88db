-- Back to the checks and indexes of 000007_wallet (postings get their `id` back, as the last
-- column).
ALTER TABLE ledger_accounts RESET (fillfactor);

ALTER TABLE ledger_postings DROP CONSTRAINT ledger_postings_position;
ALTER TABLE ledger_postings ADD COLUMN id bigserial PRIMARY KEY;
ALTER TABLE ledger_postings ADD CONSTRAINT ledger_postings_position
    UNIQUE (transaction_id, position);
CREATE INDEX ledger_postings_account ON ledger_postings (account_id);

DROP INDEX ledger_transactions_operation;
CREATE INDEX ledger_transactions_operation ON ledger_transactions (operation_id);
DROP INDEX ledger_transactions_reverses_key;
DROP INDEX ledger_transactions_resolves_key;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_reverses_key UNIQUE (reverses);
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_resolves_key UNIQUE (resolves);

DROP TRIGGER ledger_accounts_no_delete ON ledger_accounts;
DROP TRIGGER ledger_accounts_fixed ON ledger_accounts;
CREATE TRIGGER ledger_accounts_fixed BEFORE UPDATE OR DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_accounts_fixed();

DROP TRIGGER ledger_transactions_link_kinds ON ledger_transactions;
CREATE TRIGGER ledger_transactions_link_kinds BEFORE INSERT ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_transactions_link_kinds();

DROP TRIGGER ledger_transactions_posted ON ledger_transactions;
DROP FUNCTION ledger_transactions_posted();
DROP TRIGGER ledger_postings_complete ON ledger_postings;
DROP FUNCTION ledger_postings_complete();
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
