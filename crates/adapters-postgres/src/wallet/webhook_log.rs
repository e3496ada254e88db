//! The webhook delivery log.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::wallet::WebhookDelivery;

use super::rows::{DeliveryRow, webhook_logs as w};
use crate::error::query_error;

/// Appends one delivery.
pub(crate) async fn record(
    conn: &mut AsyncPgConnection,
    delivery: &WebhookDelivery,
) -> Result<(), StoreError> {
    diesel::insert_into(w::table)
        .values((
            w::id.eq(delivery.id),
            w::received_at.eq(delivery.received_at),
            w::event_id.eq(delivery.event_id.as_deref()),
            w::event_type.eq(delivery.event_type.as_deref()),
            w::outcome.eq(delivery.outcome.as_str()),
            w::reason.eq(&delivery.reason),
            w::body.eq(&delivery.body),
        ))
        .execute(conn)
        .await
        .map_err(query_error)?;
    Ok(())
}

/// The latest deliveries, newest first.
pub(crate) async fn recent(
    conn: &mut AsyncPgConnection,
    limit: u32,
) -> Result<Vec<WebhookDelivery>, StoreError> {
    let rows: Vec<DeliveryRow> = w::table
        .select(DeliveryRow::as_select())
        .order((w::received_at.desc(), w::id.desc()))
        .limit(i64::from(limit))
        .load(conn)
        .await
        .map_err(query_error)?;
    rows.into_iter().map(DeliveryRow::into_delivery).collect()
}
