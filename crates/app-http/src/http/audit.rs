//! Audit entries of admin changes made through the API.

use keel_domain::audit::{Actor, AuditEntry};
use keel_domain::identity::user::UserId;

use super::{ApiError, RequestId};
use crate::state::AppState;

/// What an admin change did, for the audit log.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// Action name, e.g. `ledger.reversed`.
    pub action: &'a str,
    /// What it changed, e.g. `transaction:<id>`.
    pub subject: String,
    /// State before, if there was one.
    pub before: Option<serde_json::Value>,
    /// State after, if there is one.
    pub after: Option<serde_json::Value>,
    /// The admin's reason, if given.
    pub reason: Option<&'a str>,
}

/// Appends `change` by `actor` to the audit log, tagged with the request id. A failure is
/// logged and returned: the caller answers 503 so the admin knows the change is unaudited.
pub async fn record(
    state: &AppState,
    actor: UserId,
    request_id: &RequestId,
    change: Change<'_>,
) -> Result<(), ApiError> {
    let mut entry = AuditEntry::new(
        Actor::user(actor),
        change.action,
        change.subject.clone(),
        state.clock.now(),
    )
    .with_request_id(request_id.as_str());
    if let Some(before) = change.before {
        entry = entry.with_before(before);
    }
    if let Some(after) = change.after {
        entry = entry.with_after(after);
    }
    if let Some(reason) = change.reason {
        entry = entry.with_reason(reason);
    }
    if let Err(e) = state.stores.audit.append(entry).await {
        tracing::error!(error = %e, action = change.action, subject = %change.subject,
            "an admin change could not be audited");
        return Err(e.into());
    }
    Ok(())
}
