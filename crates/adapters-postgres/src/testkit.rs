//! Test support: a fresh, migrated database per test, dropped afterwards.
//!
//! Tests read `DATABASE_URL`. Without it they print one `SKIP` line and pass, unless
//! `KEEL_REQUIRE_SERVICES=1`, in which case a missing database is a failure.

use std::io::Write;

use diesel::connection::SimpleConnection;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use uuid::Uuid;

use crate::PgPool;
use crate::migrate::run_pending_migrations;

/// Whether tests must fail rather than skip when a service is missing.
pub fn require_services() -> bool {
    std::env::var("KEEL_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A database created for one test and dropped (with its connections) when this value drops.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
    pool: PgPool,
}

impl TestDatabase {
    /// Creates and migrates a fresh database, or returns `None` (after printing `SKIP`) when
    /// `DATABASE_URL` is unset and services are not required.
    pub async fn create() -> Option<Self> {
        Self::create_with(true).await
    }

    /// Creates a fresh database without applying migrations (for migration tests).
    pub async fn create_empty() -> Option<Self> {
        Self::create_with(false).await
    }

    async fn create_with(migrate: bool) -> Option<Self> {
        let Ok(admin_url) = std::env::var("DATABASE_URL") else {
            assert!(
                !require_services(),
                "KEEL_REQUIRE_SERVICES=1 but DATABASE_URL is not set: Postgres tests cannot run"
            );
            // Written past libtest's capture so the skip shows in every test run.
            let _ = writeln!(
                std::io::stderr(),
                "SKIP: DATABASE_URL is not set; Postgres tests skipped"
            );
            return None;
        };
        let name = format!("keel_test_{}", Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database: {e}"));
        let url = with_database(&admin_url, &name);
        let pool = PgPool::connect(&url, 8)
            .await
            .unwrap_or_else(|e| panic!("cannot open test pool: {e}"));
        // Built before migrating, so a failed migration still drops the database.
        let db = Self {
            admin_url,
            name,
            url,
            pool,
        };
        if migrate {
            run_pending_migrations(&db.url)
                .await
                .unwrap_or_else(|e| panic!("cannot migrate test database: {e}"));
        }
        Some(db)
    }

    /// A pool on the test database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Simulates an outage of this database: refuses new connections and terminates open ones.
    pub async fn cut_connections(&self) {
        self.admin_sql(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
            name = self.name
        ))
        .await;
        self.admin_sql(&until_gone(&self.name)).await;
    }

    /// Ends an outage begun by [`TestDatabase::cut_connections`].
    pub async fn restore_connections(&self) {
        self.admin_sql(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            self.name
        ))
        .await;
    }

    async fn admin_sql(&self, sql: &str) {
        let mut admin = AsyncPgConnection::establish(&self.admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL: {e}"));
        admin
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("admin statement failed: {e}"));
    }

    /// The URL of the test database (for a server under test).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.pool.close();
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop is synchronous and may run inside a runtime: use a plain blocking connection on
        // a thread of its own.
        let dropper = std::thread::spawn(move || {
            use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
            let mut conn =
                <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(
                    &admin_url,
                )?;
            SimpleConnection::batch_execute(&mut conn, &sql)
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
        });
        if let Ok(Err(e)) = dropper.join() {
            let _ = writeln!(
                std::io::stderr(),
                "warning: could not drop test database {}: {e}",
                self.name
            );
        }
    }
}

/// Replaces the database name in a `postgres://…/name?params` URL.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// SQL that waits (at most 2 s) until no backend of `database` is left: termination is only
/// a signal, and a backend that has not exited yet would still answer its client.
fn until_gone(database: &str) -> String {
    format!(
        "DO $$ BEGIN FOR i IN 1..100 LOOP \
           PERFORM pg_stat_clear_snapshot(); \
           EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = '{database}'); \
           PERFORM pg_sleep(0.02); \
         END LOOP; END $$"
    )
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_or_adds_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "t"),
            "postgres://u@h:5432/t"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "t"),
            "postgres://u@h:5432/t"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t"),
            "postgres://u:p@h/t?sslmode=disable"
        );
    }
}
