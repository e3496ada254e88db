-- The live scoreboard's change feed without Redis: one sequence numbers every board change for
-- all nodes (the ids of live events), and NOTIFY keel_board tells every listening node.

CREATE SEQUENCE scoreboard_changes AS bigint MINVALUE 1;

-- Takes the next change number, lifted above `floor` when not already (the highest number the
-- caller has seen or used), notifies keel_board with it and returns it. The notification is
-- sent when the calling transaction commits (immediately in autocommit).
CREATE FUNCTION scoreboard_publish_change(floor bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  n bigint := nextval('scoreboard_changes');
BEGIN
  IF n <= floor THEN
    n := setval('scoreboard_changes', floor + 1);
  END IF;
  PERFORM pg_notify('keel_board', n::text);
  RETURN n;
END
$$;
