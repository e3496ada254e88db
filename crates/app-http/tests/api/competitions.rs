//! Competitions over HTTP: registrations that never oversell, on memory and on Postgres.
