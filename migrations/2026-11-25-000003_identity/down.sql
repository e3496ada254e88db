DROP TABLE refresh_tokens;
DROP TABLE user_pii;
DROP TABLE users;
