# keel's common tasks. `just --list` shows them.

# Start the server on in-memory stores (127.0.0.1:8080).
run:
    cargo run --release

# Start the server on local Postgres + Redis, migrating first.
run-services:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379 KEEL_MIGRATE=true cargo run --release

# The whole suite (services tests SKIP without DATABASE_URL / REDIS_URL).
test:
    cargo test --workspace

# The whole suite against local services, failing if one is missing.
test-services:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379 KEEL_REQUIRE_SERVICES=1 cargo test --workspace

# Exactly what CI runs.
ci:
    bash .ci/run

# Format and lint.
lint:
    cargo fmt --all
    cargo clippy --workspace --all-targets -- -D warnings

# Start Postgres and Redis if needed.
services:
    cargo xtask services

# Apply migrations to DATABASE_URL.
migrate:
    cargo xtask migrate

# Architecture checks (domain purity, docs).
tidy:
    cargo xtask tidy

# Load benchmark with its same-run baseline, e.g. `just bench healthz`.
bench name="healthz":
    cargo xtask bench {{name}}
