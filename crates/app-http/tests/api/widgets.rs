//! A test-only creating route, `POST /api/v1/widgets`, built the way product routes are:
//! opted into idempotency and the `default` rate class with one line each, and (on Postgres)
//! storing its idempotent response in the same transaction as its business row.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use keel_adapters_postgres::PgPool;
use keel_adapters_postgres::idempotency::complete_in;
use keel_app_http::http::idempotency::{
    IdempotencyClaim, idempotency_optional, idempotency_required, stored_json,
};
use keel_app_http::http::rate_limit::rate_limit;
use keel_app_http::http::{ApiError, FieldError};
use keel_domain::StoreError;
use keel_domain::ratelimit::LimitClass;
use serde::Deserialize;
use uuid::Uuid;

use crate::support::{Routes, TestApp, routes};

#[derive(Debug, Deserialize)]
struct NewWidget {
    name: String,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    fail: bool,
}

/// The fixture: counts handler executions on every node and, once attached, writes rows.
#[derive(Clone, Default)]
pub struct Widgets {
    executions: Arc<AtomicUsize>,
    pool: Arc<OnceLock<PgPool>>,
}

impl Widgets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates the widgets table in `app`'s database and writes rows there from now on.
    pub async fn attach(&self, app: &TestApp) {
        let db = app.db.as_ref().expect("a Postgres-backed app");
        let mut conn = db.pool().get().await.unwrap();
        conn.batch_execute(
            "CREATE TABLE IF NOT EXISTS test_widgets (id uuid PRIMARY KEY, name text NOT NULL)",
        )
        .await
        .unwrap();
        let _ = self.pool.set(db.pool().clone());
    }

    pub fn executions(&self) -> usize {
        AtomicUsize::load(&self.executions, Ordering::SeqCst)
    }

    pub async fn rows(&self) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let pool = self.pool.get().expect("attached");
        let mut conn = pool.get().await.unwrap();
        diesel::sql_query("SELECT count(*) AS n FROM test_widgets")
            .get_result::<Count>(&mut conn)
            .await
            .unwrap()
            .n
    }

    pub fn routes(&self) -> Routes {
        let fixture = self.clone();
        routes(move |cfg| {
            cfg.app_data(web::Data::new(fixture.clone()))
                .service(
                    web::resource("/widgets")
                        .wrap(from_fn(idempotency_required))
                        .wrap(from_fn(rate_limit(LimitClass::Default)))
                        .post(create),
                )
                .service(
                    web::resource("/widgets/optional")
                        .wrap(from_fn(idempotency_optional))
                        .post(create),
                );
        })
    }
}

enum TxError {
    Db(diesel::result::Error),
    Store(StoreError),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e)
    }
}

async fn create(
    fixture: web::Data<Widgets>,
    claim: Option<IdempotencyClaim>,
    body: web::Json<NewWidget>,
) -> Result<HttpResponse, ApiError> {
    fixture.executions.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(body.delay_ms)).await;
    if body.fail {
        return Err(ApiError::Internal("widget press jammed".into()));
    }
    if body.name.is_empty() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "name",
            "must not be empty",
        )]));
    }
    let id = Uuid::new_v4();
    let (stored, response) = stored_json(
        StatusCode::CREATED,
        &serde_json::json!({"id": id, "name": body.name}),
    )?;
    let Some(pool) = fixture.pool.get() else {
        return Ok(response);
    };
    let mut conn = pool.get().await?;
    let name = body.name.clone();
    let (claim_ref, stored_ref) = (claim.as_ref().map(IdempotencyClaim::claim), &stored);
    let result = conn
        .transaction(async |conn| {
            diesel::sql_query("INSERT INTO test_widgets (id, name) VALUES ($1, $2)")
                .bind::<SqlUuid, _>(id)
                .bind::<Text, _>(&name)
                .execute(conn)
                .await?;
            if let Some(claim) = claim_ref {
                complete_in(conn, claim, stored_ref)
                    .await
                    .map_err(TxError::Store)?;
            }
            Ok::<_, TxError>(())
        })
        .await;
    match result {
        Ok(()) => {
            if let Some(claim) = claim {
                claim.completed_in_transaction(stored);
            }
            Ok(response)
        }
        Err(TxError::Store(e)) => Err(e.into()),
        Err(TxError::Db(e)) => Err(ApiError::Internal(e.to_string())),
    }
}
