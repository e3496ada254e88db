//! The caller's transaction history: JSON pages with a keyset cursor, the same filter as a CSV
//! stream, and one operation.

use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use futures_util::stream;
use keel_domain::identity::user::UserId;
use keel_domain::wallet::{
    HistoryCursor, HistoryFilter, Operation, OperationId, OperationKind, OperationStatus,
    WalletService,
};
use uuid::Uuid;

use super::problems::problem;
use super::service;
use super::views::{HistoryQuery, OperationList, OperationView};
use crate::http::auth::Authenticated;
use crate::http::page::{self, TimeCursor};
use crate::http::{ApiError, FieldError};
use crate::state::AppState;

/// Rows read per store call while streaming CSV.
const CSV_BATCH: u32 = 500;
/// The CSV header row.
const CSV_HEADER: &str = "id,type,status,direction,amount_minor,currency,destination,checkout_reference,transaction_id,failure_reason,memo,created_at,updated_at\r\n";

/// Reads the filter of a history query, naming each bad field.
fn filter(query: &HistoryQuery) -> Result<HistoryFilter, ApiError> {
    let mut errors = Vec::new();
    let kind = query.kind.as_deref().and_then(|k| {
        let parsed = OperationKind::parse(k);
        if parsed.is_none() {
            errors.push(FieldError::new(
                "type",
                "must be deposit, withdrawal, reversal or adjustment",
            ));
        }
        parsed
    });
    let status = query.status.as_deref().and_then(|s| {
        let parsed = OperationStatus::parse(s);
        if parsed.is_none() {
            errors.push(FieldError::new(
                "status",
                "must be pending, succeeded or failed",
            ));
        }
        parsed
    });
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from >= to
    {
        errors.push(FieldError::new("to", "must be after from"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(HistoryFilter {
        kind,
        status,
        from: query.from,
        to: query.to,
    })
}

fn cursor(raw: Option<&str>) -> Result<Option<HistoryCursor>, ApiError> {
    Ok(raw
        .map(TimeCursor::decode)
        .transpose()?
        .map(|c| (c.at, OperationId(c.id))))
}

/// The caller's operations, newest first, filtered by type, status and creation time.
#[utoipa::path(get, path = "/api/v1/wallet/transactions", tag = "wallet", params(HistoryQuery),
    responses((status = 200, body = OperationList), (status = 422, description = "validation-failed")))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = page::limit(query.limit)?;
    let filter = filter(&query)?;
    let after = cursor(query.cursor.as_deref())?;
    let mut items = service(&state)
        .history(caller.0.id(), &filter, after, limit.saturating_add(1))
        .await
        .map_err(problem)?;
    let next_cursor = page::next_cursor(&mut items, limit, |o| TimeCursor {
        at: o.created_at,
        id: o.id.0,
    });
    Ok(HttpResponse::Ok().json(OperationList {
        items: items.iter().map(OperationView::from).collect(),
        next_cursor,
    }))
}

/// One of the caller's operations.
#[utoipa::path(get, path = "/api/v1/wallet/transactions/{id}", tag = "wallet",
    params(("id" = Uuid, Path, description = "operation id")),
    responses((status = 200, body = OperationView), (status = 404, description = "not-found")))]
pub async fn one(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let operation = service(&state)
        .operation(caller.0.id(), OperationId(path.into_inner()))
        .await
        .map_err(problem)?;
    Ok(HttpResponse::Ok().json(OperationView::from(&operation)))
}

/// The caller's whole filtered history as CSV (RFC 4180), streamed newest first in batches.
#[utoipa::path(get, path = "/api/v1/wallet/transactions.csv", tag = "wallet", params(HistoryQuery),
    responses((status = 200, content_type = "text/csv", description = "one row per operation"),
        (status = 422, description = "validation-failed")))]
pub async fn csv(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = filter(&query)?;
    let after = cursor(query.cursor.as_deref())?;
    let walk = CsvWalk {
        wallet: service(&state),
        user: caller.0.id(),
        filter,
        after,
        header_sent: false,
        done: false,
    };
    let body = stream::unfold(walk, |mut walk| async move {
        let chunk = walk.next_chunk().await?;
        Some((chunk, walk))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "content-disposition",
            "attachment; filename=\"transactions.csv\"",
        ))
        .streaming(body))
}

/// The state of one CSV download: where the next batch starts.
struct CsvWalk {
    wallet: WalletService,
    user: UserId,
    filter: HistoryFilter,
    after: Option<HistoryCursor>,
    header_sent: bool,
    done: bool,
}

impl CsvWalk {
    /// The next piece of the body, `None` at the end. A store failure mid-stream ends the body
    /// early (the status is already sent), and is logged.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, actix_web::Error>> {
        if !self.header_sent {
            self.header_sent = true;
            return Some(Ok(Bytes::from_static(CSV_HEADER.as_bytes())));
        }
        if self.done {
            return None;
        }
        let batch = match self
            .wallet
            .history(self.user, &self.filter, self.after, CSV_BATCH)
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "CSV history stream cut short");
                self.done = true;
                return Some(Err(actix_web::error::ErrorServiceUnavailable(
                    "history unavailable",
                )));
            }
        };
        self.done = batch.len() < CSV_BATCH as usize;
        self.after = batch.last().map(|o| (o.created_at, o.id));
        if batch.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(batch.len() * 160);
        for operation in &batch {
            csv_row(&mut out, operation);
        }
        Some(Ok(Bytes::from(out)))
    }
}

/// Appends one CSV row for `o`.
fn csv_row(out: &mut String, o: &Operation) {
    let id = o.id.0.to_string();
    let amount = o.money.amount.minor().to_string();
    let currency = o.money.currency.to_string();
    let transaction = o
        .transaction_id
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let created = o.created_at.to_rfc3339();
    let updated = o.updated_at.to_rfc3339();
    let fields: [&str; 13] = [
        &id,
        o.kind.as_str(),
        o.status.as_str(),
        o.direction.as_str(),
        &amount,
        &currency,
        o.destination.as_deref().unwrap_or(""),
        o.provider_reference.as_deref().unwrap_or(""),
        &transaction,
        o.failure_reason.as_deref().unwrap_or(""),
        o.memo.as_deref().unwrap_or(""),
        &created,
        &updated,
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, field);
    }
    out.push_str("\r\n");
}

/// Appends one field, quoted when needed (RFC 4180), with a leading `'` before `=`, `+`, `-`,
/// `@`, tab or CR so a spreadsheet never runs user text as a formula.
fn push_field(out: &mut String, field: &str) {
    let formula = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || field.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in field.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::push_field;

    fn field(text: &str) -> String {
        let mut out = String::new();
        push_field(&mut out, text);
        out
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn formulas_are_defused() {
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-1"), "\"'-1\"");
        assert_eq!(field("@cmd"), "\"'@cmd\"");
    }
}
