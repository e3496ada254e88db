//! `/auth/*`: registration, login, refresh-token rotation and logout.

use std::collections::BTreeMap;

use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use chrono::Utc;
use keel_domain::audit::{Actor, AuditEntry};
use keel_domain::identity::refresh::{RefreshRecord, RotateOutcome, refresh_token_ttl};
use keel_domain::identity::refresh_secret::RefreshSecret;
use keel_domain::identity::store::UserStoreError;
use keel_domain::identity::user::{NewUser, User, UserId};
use keel_domain::identity::values::{DisplayName, Email, Role, check_password_policy};
use keel_domain::pii::PiiField;
use keel_domain::ratelimit::LimitClass;
use ring::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::idempotency::idempotency_optional;
use crate::http::rate_limit::rate_limit;
use crate::http::{ApiError, FieldError, ProblemType, RequestId};
use crate::state::AppState;

/// Registers the `/auth` routes (rate class `auth`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let limited = || from_fn(rate_limit(LimitClass::Auth));
    cfg.service(
        web::resource("/auth/register")
            .wrap(from_fn(idempotency_optional))
            .wrap(limited())
            .post(register),
    )
    .service(web::resource("/auth/login").wrap(limited()).post(login))
    .service(web::resource("/auth/refresh").wrap(limited()).post(refresh))
    .service(web::resource("/auth/logout").wrap(limited()).post(logout));
}

/// `POST /auth/register` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Registration {
    /// Login address (normalised: trimmed, lower case).
    pub email: String,
    /// At least 12 characters.
    pub password: String,
    /// Public name, 1–100 characters.
    pub display_name: String,
    /// Stored encrypted.
    pub phone: Option<String>,
    /// Stored encrypted.
    pub address: Option<String>,
    /// Stored encrypted.
    pub date_of_birth: Option<String>,
    /// Stored encrypted.
    pub national_id: Option<String>,
}

/// A user as its owner sees it (no personal data; see `/users/{id}/pii`).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// User id.
    pub id: Uuid,
    /// Login address.
    pub email: String,
    /// Public name.
    pub display_name: String,
    /// `participant`, `organizer`, `support` or `admin`.
    pub role: String,
    /// Creation time (RFC 3339).
    pub created_at: chrono::DateTime<Utc>,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.as_uuid(),
            email: user.email.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            role: user.role.as_str().to_owned(),
            created_at: user.created_at,
        }
    }
}

/// `POST /auth/login` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Login {
    /// Login address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// `POST /auth/refresh` and `/auth/logout` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token from login or the last refresh.
    pub refresh_token: String,
}

/// Tokens for a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// HS256 JWT for `Authorization: Bearer`, valid 15 minutes.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Single-use secret for `/auth/refresh`, valid 7 days.
    pub refresh_token: String,
}

fn field_errors(errors: Vec<(&str, String)>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(
            errors
                .into_iter()
                .map(|(f, m)| FieldError::new(f, m))
                .collect(),
        ))
    }
}

/// Hashes a password off the async workers (Argon2id takes tens of milliseconds by design).
async fn hash_password(state: &AppState, password: String) -> Result<String, ApiError> {
    state
        .identity
        .hashing
        .run(move |hasher| hasher.hash(&password))
        .await
        .map_err(|reason| ApiError::Unavailable {
            dependency: "password hashing",
            reason,
        })?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Spends the per-account `auth` budget (the per-IP one is spent by the route's middleware).
/// The email is hashed so no address reaches Redis keys or logs.
async fn spend_account_budget(state: &AppState, email: &str) -> Result<(), ApiError> {
    let account = digest(&SHA256, email.trim().to_lowercase().as_bytes());
    let subject: String = account.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match state
        .limits
        .check(LimitClass::Auth, &[format!("account:{subject}")])
        .await?
    {
        Some((_, decision)) if !decision.allowed => Err(ApiError::RateLimited {
            retry_after_secs: decision.retry_after_secs().unwrap_or(1),
        }),
        _ => Ok(()),
    }
}

/// Creates an account (role `participant`); personal data is stored encrypted.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = Registration,
    responses((status = 201, body = UserView), (status = 409, description = "email-taken"), (status = 422, description = "validation-failed")))]
pub async fn register(
    state: web::Data<AppState>,
    body: web::Json<Registration>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let email = Email::parse(&body.email);
    let name = DisplayName::parse(&body.display_name);
    let mut errors = Vec::new();
    if let Err(e) = &email {
        errors.push(("email", e.to_string()));
    }
    if let Err(e) = &name {
        errors.push(("display_name", e.to_string()));
    }
    if let Err(e) = check_password_policy(&body.password) {
        errors.push(("password", e.to_string()));
    }
    field_errors(errors)?;
    let (Ok(email), Ok(display_name)) = (email, name) else {
        return Err(ApiError::Internal("validated values vanished".into()));
    };
    spend_account_budget(&state, email.as_str()).await?;

    let id = UserId::new_random();
    let mut pii = BTreeMap::new();
    for (field, value) in [
        (PiiField::Phone, body.phone),
        (PiiField::Address, body.address),
        (PiiField::DateOfBirth, body.date_of_birth),
        (PiiField::NationalId, body.national_id),
    ] {
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            let sealed = state
                .identity
                .cipher
                .seal(&id.to_string(), field, value.trim())
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            pii.insert(field, sealed);
        }
    }
    let password_hash = hash_password(&state, body.password).await?;
    let user = NewUser {
        id,
        email,
        display_name,
        role: Role::Participant,
        password_hash,
        pii,
        created_at: state.clock.now(),
    };
    match state.stores.users.create(&user).await {
        Ok(user) => Ok(HttpResponse::Created().json(UserView::from(&user))),
        Err(UserStoreError::EmailTaken) => Err(ApiError::problem(
            ProblemType::EMAIL_TAKEN,
            "an account with this email already exists",
        )),
        Err(UserStoreError::Store(e)) => Err(e.into()),
    }
}

/// A new session: an access token and the first refresh token of a new family.
async fn start_session(
    state: &AppState,
    user_id: UserId,
    role: Role,
) -> Result<TokenPair, ApiError> {
    let now = state.clock.now();
    let (access_token, _) = state
        .identity
        .tokens
        .issue(&user_id.to_string(), role.as_str(), now)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let secret = RefreshSecret::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
    let record = RefreshRecord {
        token_hash: secret.hash(),
        family_id: Uuid::new_v4(),
        user_id,
        expires_at: now + refresh_token_ttl(),
    };
    state.stores.refresh_tokens.issue(&record).await?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: state.identity.tokens.ttl().num_seconds(),
        refresh_token: secret.as_str().to_owned(),
    })
}

/// Exchanges email and password for tokens. Unknown email and wrong password get the same
/// 401 after the same work (a dummy Argon2id verification).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = TokenPair), (status = 401, description = "invalid-credentials")))]
pub async fn login(
    state: web::Data<AppState>,
    body: web::Json<Login>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    spend_account_budget(&state, &body.email).await?;
    let user = match Email::parse(&body.email) {
        Ok(email) => state.stores.users.find_by_email(&email).await?,
        Err(_) => None,
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let password = body.password;
    let verified = state
        .identity
        .hashing
        .run(move |hasher| match stored {
            Some(phc) => hasher.verify(&password, &phc),
            None => {
                hasher.verify_dummy(&password);
                false
            }
        })
        .await
        .map_err(|reason| ApiError::Unavailable {
            dependency: "password hashing",
            reason,
        })?;
    let Some(user) = user.filter(|_| verified) else {
        return Err(ApiError::problem(
            ProblemType::INVALID_CREDENTIALS,
            "email or password is wrong",
        ));
    };
    let tokens = start_session(&state, user.id, user.role).await?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// Rotates a refresh token: the presented one is spent and a new pair is returned. Presenting
/// an already-spent token revokes its whole session family (a stolen token is useless).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, description = "invalid-refresh-token or refresh-token-reused")))]
pub async fn refresh(
    state: web::Data<AppState>,
    request_id: RequestId,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let presented = presented_secret(&body)?;
    let next = RefreshSecret::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = state.clock.now();
    let outcome = state
        .stores
        .refresh_tokens
        .rotate(
            &presented.hash(),
            &next.hash(),
            now + refresh_token_ttl(),
            now,
        )
        .await?;
    match outcome {
        RotateOutcome::Rotated { user_id, .. } => {
            let user = state
                .stores
                .users
                .find_by_id(user_id)
                .await?
                .ok_or_else(invalid_refresh)?;
            let (access_token, _) = state
                .identity
                .tokens
                .issue(&user_id.to_string(), user.role.as_str(), now)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok(HttpResponse::Ok().json(TokenPair {
                access_token,
                token_type: "Bearer",
                expires_in: state.identity.tokens.ttl().num_seconds(),
                refresh_token: next.as_str().to_owned(),
            }))
        }
        RotateOutcome::Reused { user_id, family_id } => {
            let entry = AuditEntry::new(
                Actor::user(user_id),
                "auth.refresh_token_reused",
                format!("user:{user_id}"),
                now,
            )
            .with_after(serde_json::json!({"revoked_family": family_id}))
            .with_request_id(request_id.as_str());
            if let Err(e) = state.stores.audit.append(entry).await {
                tracing::error!(error = %e, "could not audit a refresh-token reuse");
            }
            Err(ApiError::problem(
                ProblemType::REFRESH_TOKEN_REUSED,
                "this refresh token was already used; the session is revoked, log in again",
            ))
        }
        RotateOutcome::Expired | RotateOutcome::Unknown | RotateOutcome::Revoked => {
            Err(invalid_refresh())
        }
    }
}

/// The answer to any refresh token that cannot be used (malformed, unknown, expired, revoked).
fn invalid_refresh() -> ApiError {
    ApiError::problem(
        ProblemType::INVALID_REFRESH_TOKEN,
        "the refresh token is not valid",
    )
}

/// The refresh token in a request body, if it is well formed.
fn presented_secret(body: &RefreshRequest) -> Result<RefreshSecret, ApiError> {
    RefreshSecret::parse(body.refresh_token.trim()).map_err(|_| invalid_refresh())
}

/// Ends the session of the presented refresh token (its whole family is revoked).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204), (status = 401, description = "invalid-refresh-token")))]
pub async fn logout(
    state: web::Data<AppState>,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let presented = presented_secret(&body)?;
    // Rotating finds the family atomically; the token it would hand out is revoked at once.
    let placeholder = RefreshSecret::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = state.clock.now();
    match state
        .stores
        .refresh_tokens
        .rotate(&presented.hash(), &placeholder.hash(), now, now)
        .await?
    {
        RotateOutcome::Rotated { family_id, .. } => {
            state
                .stores
                .refresh_tokens
                .revoke_family(family_id, now)
                .await?;
            Ok(HttpResponse::NoContent().finish())
        }
        RotateOutcome::Reused { .. } => Err(ApiError::problem(
            ProblemType::REFRESH_TOKEN_REUSED,
            "this refresh token was already used; the session is revoked",
        )),
        RotateOutcome::Expired | RotateOutcome::Unknown | RotateOutcome::Revoked => {
            Err(invalid_refresh())
        }
    }
}
