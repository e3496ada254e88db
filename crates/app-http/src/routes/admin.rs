//! `/admin/audit`: reading and verifying the audit log (admin only).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use keel_domain::audit::{Actor, AuditCursor, AuditLimit, AuditQuery};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::auth::AdminCaller;
use crate::http::{ApiError, FieldError};
use crate::state::AppState;

/// Registers `/admin/audit` and `/admin/audit/verify`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/admin/audit").get(list_audit))
        .service(web::resource("/admin/audit/verify").get(verify_audit));
}

/// Filters of `GET /admin/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// e.g. `user:<uuid>` or `system`.
    pub actor: Option<String>,
    /// e.g. `user.role_changed`.
    pub action: Option<String>,
    /// e.g. `user:<uuid>`.
    pub subject: Option<String>,
    /// From this time (inclusive, RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Until this time (exclusive, RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// One audit entry as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditItem {
    /// Position in the chain.
    pub seq: i64,
    /// Who acted.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// To what.
    pub subject: String,
    /// State before (PII masked).
    pub before: Option<serde_json::Value>,
    /// State after (PII masked).
    pub after: Option<serde_json::Value>,
    /// Why.
    pub reason: Option<String>,
    /// The request that did it.
    pub request_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// Hex SHA-256 of this entry and the previous hash.
    pub hash: String,
}

/// A page of entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// The entries.
    pub items: Vec<AuditItem>,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// Lists audit entries, newest first, filtered, with keyset pagination (admin only).
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "audit", params(AuditFilter),
    responses((status = 200, body = AuditList), (status = 403, description = "forbidden")))]
pub async fn list_audit(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    filter: web::Query<AuditFilter>,
) -> Result<HttpResponse, ApiError> {
    let filter = filter.into_inner();
    let invalid =
        |field: &str, message: String| ApiError::Validation(vec![FieldError::new(field, message)]);
    let cursor = filter
        .cursor
        .as_deref()
        .map(AuditCursor::parse)
        .transpose()
        .map_err(|e| invalid("cursor", e.to_string()))?;
    let limit = match filter.limit {
        Some(n) => AuditLimit::new(n).map_err(|e| invalid("limit", e.to_string()))?,
        None => AuditLimit::default(),
    };
    let query = AuditQuery {
        actor: filter.actor.map(Actor::from_stored),
        action: filter.action,
        subject: filter.subject,
        from: filter.from,
        to: filter.to,
        cursor,
        limit,
    };
    let page = state.stores.audit.list(&query).await?;
    let items = page
        .items
        .into_iter()
        .map(|r| AuditItem {
            seq: r.seq,
            actor: r.entry.actor.as_str().to_owned(),
            action: r.entry.action,
            subject: r.entry.subject,
            before: r.entry.before,
            after: r.entry.after,
            reason: r.entry.reason,
            request_id: r.entry.request_id,
            at: r.entry.at,
            hash: r.hash.iter().map(|b| format!("{b:02x}")).collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(AuditList {
        items,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

/// The result of recomputing the chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditVerification {
    /// True when every entry's hash and link check out.
    pub intact: bool,
    /// Entries checked.
    pub checked: u64,
    /// The first broken entry, if any.
    pub first_broken_seq: Option<i64>,
    /// Why it is broken.
    pub reason: Option<String>,
}

/// Recomputes the whole audit chain and names the first broken entry (admin only).
#[utoipa::path(get, path = "/api/v1/admin/audit/verify", tag = "audit",
    responses((status = 200, body = AuditVerification), (status = 403, description = "forbidden")))]
pub async fn verify_audit(
    state: web::Data<AppState>,
    _admin: AdminCaller,
) -> Result<HttpResponse, ApiError> {
    let report = state.stores.audit.verify().await?;
    Ok(HttpResponse::Ok().json(AuditVerification::from(&report)))
}

impl From<&keel_domain::audit::ChainReport> for AuditVerification {
    fn from(report: &keel_domain::audit::ChainReport) -> Self {
        Self {
            intact: report.is_intact(),
            checked: report.checked,
            first_broken_seq: report.broken.as_ref().map(|b| b.seq),
            reason: report.broken.as_ref().map(|b| format!("{:?}", b.reason)),
        }
    }
}
