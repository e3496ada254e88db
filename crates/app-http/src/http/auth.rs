//! Authentication: `Authorization: Bearer <JWT>` becomes a [`Principal`], and role guards.
//!
//! The `authenticate` middleware runs on every request (inside the request context): a request
//! without the header is anonymous; one with a bad token is refused with 401 `invalid-token`
//! before any handler or per-user rule runs; so is a state-changing request (any method but
//! GET, HEAD, OPTIONS, TRACE) whose account no longer exists, and such a request acts with the
//! account's stored role rather than the token's (its stored email is kept for the handler:
//! [`CallerEmail`]). Handlers then take [`Authenticated`] and call
//! [`Principal::require`] for role checks (403 `forbidden`).

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use keel_domain::identity::user::UserId;
use keel_domain::identity::values::Role;

use super::principal::Principal;
use super::{ApiError, ProblemType};
use crate::state::AppState;

/// The middleware: `.wrap(from_fn(authenticate))` on the app.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(raw) = req.headers().get(header::AUTHORIZATION) else {
        return next.call(req).await;
    };
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.error_response(ApiError::Internal(
            "authenticate used without AppState".into(),
        )));
    };
    let mut principal = match principal_from_header(raw, &state) {
        Ok(principal) => principal,
        Err(detail) => return Ok(refuse(req, detail)),
    };
    // A token outlives its account and role by up to its lifetime: a deleted account must not
    // create rows (a wallet, a deposit, an event) with it, and a demoted admin must not keep
    // changing things as admin. State changes use the stored account; reads stay a token check.
    if !req.method().is_safe() {
        match state.stores.users.role_and_email(principal.id()).await {
            Ok(Some((role, _))) => principal.role = role,
            Ok(None) => return Ok(refuse(req, "the access token's account no longer exists")),
            Err(e) => return Ok(req.error_response(ApiError::from(e))),
        }
    }
    req.extensions_mut().insert(principal);
    next.call(req).await
}

/// The 401 `invalid-token` answer (with `WWW-Authenticate`), counted as a token rejection.
fn refuse(req: ServiceRequest, detail: &'static str) -> ServiceResponse<BoxBody> {
    let mut response = ApiError::problem(ProblemType::INVALID_TOKEN, detail).error_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    metrics::counter!("keel_auth_token_rejections_total").increment(1);
    req.into_response(response)
}

fn principal_from_header(raw: &HeaderValue, state: &AppState) -> Result<Principal, &'static str> {
    let value = raw
        .to_str()
        .map_err(|_| "the Authorization header is not readable")?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or("the Authorization header must be `Bearer <access token>`")?;
    let claims = state
        .identity
        .tokens
        .verify(token.trim(), state.clock.now())
        .map_err(|_| "the access token is invalid or expired")?;
    let user_id = claims
        .sub
        .parse::<UserId>()
        .map_err(|_| "the access token names no user")?;
    let role = claims
        .role
        .parse::<Role>()
        .map_err(|_| "the access token names no role")?;
    Ok(Principal {
        user_id: user_id.as_uuid(),
        role,
    })
}

impl Principal {
    /// The caller's user id.
    pub fn id(&self) -> UserId {
        UserId(self.user_id)
    }

    /// Succeeds when the caller has one of `roles`; 403 `forbidden` otherwise.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::problem(
                ProblemType::FORBIDDEN,
                format!(
                    "this needs the role {}",
                    roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ))
        }
    }
}

/// An authenticated caller; 401 `unauthenticated` when the request carries no access token.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            req.extensions()
                .get::<Principal>()
                .copied()
                .map(Authenticated)
                .ok_or_else(|| {
                    ApiError::problem(
                        ProblemType::UNAUTHENTICATED,
                        "send `Authorization: Bearer <access token>` from POST /api/v1/auth/login",
                    )
                }),
        )
    }
}

/// An authenticated admin: 401 without an access token, 403 `forbidden` for any other role.
///
/// Checked while extracting, so a handler that takes it first reads nothing of the request (its
/// body, path or `Idempotency-Key`) before it knows the caller may use the route.
#[derive(Debug, Clone, Copy)]
pub struct AdminCaller(pub Principal);

impl FromRequest for AdminCaller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        std::future::ready(
            Authenticated::from_request(req, payload)
                .into_inner()
                .and_then(|Authenticated(principal)| {
                    principal.require(&[Role::Admin])?;
                    Ok(Self(principal))
                }),
        )
    }
}
