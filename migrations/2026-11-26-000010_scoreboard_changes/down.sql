DROP FUNCTION scoreboard_publish_change(bigint);
DROP SEQUENCE scoreboard_changes;
