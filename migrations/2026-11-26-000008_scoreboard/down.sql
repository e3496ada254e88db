DROP TABLE score_actions;
DROP FUNCTION score_actions_append_only();
DROP TABLE scores;
