//! `GET /mailbox`: the mail delivered to the caller.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::ApiError;
use crate::http::auth::Authenticated;
use crate::http::page::{self, TimeCursor};
use crate::state::AppState;

/// Registers `/mailbox`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/mailbox").get(list_mailbox));
}

/// Paging of `GET /mailbox`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MailboxQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// One delivered message (the mailbox is the caller's own, so no recipient address is listed:
/// keel keeps none with the messages).
#[derive(Debug, Serialize, ToSchema)]
pub struct MailItem {
    /// Message id.
    pub id: Uuid,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// When it was delivered.
    pub sent_at: DateTime<Utc>,
}

/// A page of mail, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailList {
    /// The messages.
    pub items: Vec<MailItem>,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// The caller's delivered mail, newest first, with keyset pagination.
#[utoipa::path(get, path = "/api/v1/mailbox", tag = "mail", params(MailboxQuery),
    responses((status = 200, body = MailList), (status = 401, description = "unauthenticated")))]
pub async fn list_mailbox(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<MailboxQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = page::limit(query.limit)?;
    let cursor = query
        .cursor
        .as_deref()
        .map(TimeCursor::decode)
        .transpose()?;
    let mut mails = state
        .stores
        .mailbox
        .list(caller.0.id(), cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    let next_cursor = page::next_cursor(&mut mails, limit, |m| TimeCursor {
        at: m.sent_at,
        id: m.mail.id,
    });
    let items = mails
        .into_iter()
        .map(|m| MailItem {
            id: m.mail.id,
            subject: m.mail.subject,
            body: m.mail.body,
            sent_at: m.sent_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(MailList { items, next_cursor }))
}
