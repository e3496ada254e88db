DROP FUNCTION IF EXISTS keel_complete_many_and_claim(
    uuid[], uuid[], timestamptz[], text[], timestamptz[], timestamptz, text[]);
