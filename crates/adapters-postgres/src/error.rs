//! Translation of diesel and pool errors into the domain's [`StoreError`].

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::deadpool::PoolError;
use keel_domain::StoreError;

/// Name of this dependency in errors and readiness answers.
pub const POSTGRES: &str = "postgres";

/// Maps a query error. Constraint violations are conflicts (a concurrent writer won); anything
/// else (lost connection, serialization failure, timeout) means Postgres cannot serve right now.
pub fn query_error(error: DieselError) -> StoreError {
    match &error {
        DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation
            | DatabaseErrorKind::ForeignKeyViolation
            | DatabaseErrorKind::CheckViolation,
            info,
        ) => StoreError::Conflict(info.message().to_owned()),
        DieselError::DeserializationError(e) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::unavailable(POSTGRES, error),
    }
}

/// Maps a failure to get a pooled connection.
pub fn pool_error(error: PoolError) -> StoreError {
    StoreError::unavailable(POSTGRES, error)
}
