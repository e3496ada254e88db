-- `scores` is small (one row per player) and hot: every scored action rewrites its user's row,
-- and since `score` is indexed (scores_board) the update is never HOT, so each one leaves a dead
-- row version and dead index entries. Scoring ranks each new standing by scanning the board, so
-- the dead versions cost every later update until a vacuum removes them. Vacuum it after a fixed
-- number of dead rows (not a fraction of a table that is mostly dead rows) and unthrottled (it is
-- small); the scan rate of autovacuum_naptime still applies.
ALTER TABLE scores SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000
);
