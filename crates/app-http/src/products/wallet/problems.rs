//! How wallet errors become problems, and request values become domain values.

use keel_domain::wallet::{Money, MoneyError, ProviderError, WalletError};

use crate::http::{ApiError, FieldError, ProblemType};

/// The problem a wallet error is answered with.
pub(super) fn problem(error: WalletError) -> ApiError {
    match error {
        WalletError::Invalid { field, message } => {
            ApiError::Validation(vec![FieldError::new(field, message)])
        }
        WalletError::InsufficientFunds => ApiError::problem(
            ProblemType::INSUFFICIENT_FUNDS,
            "the available balance (after holds) is lower than the amount",
        ),
        WalletError::NotFound => ApiError::problem(ProblemType::NOT_FOUND, "no such item"),
        WalletError::NotReversible => ApiError::problem(
            ProblemType::NOT_REVERSIBLE,
            "only deposits and adjustments can be reversed",
        ),
        WalletError::AlreadyReversed => ApiError::problem(
            ProblemType::ALREADY_REVERSED,
            "this transaction was already reversed",
        ),
        WalletError::AlreadyApplied => ApiError::problem(
            ProblemType::ADJUSTMENT_ALREADY_APPLIED,
            "this adjustment was already applied",
        ),
        WalletError::SelfAdjustment => ApiError::problem(
            ProblemType::FORBIDDEN,
            "admins cannot adjust their own wallet",
        ),
        WalletError::SameApprover => ApiError::problem(
            ProblemType::SECOND_APPROVER_REQUIRED,
            "another admin must approve an adjustment you proposed",
        ),
        WalletError::Provider(ProviderError::Unavailable(reason)) => ApiError::Unavailable {
            dependency: "payment provider",
            reason,
        },
        WalletError::Provider(ProviderError::Rejected(reason)) => {
            tracing::warn!(%reason, "the payment provider refused a request");
            ApiError::problem(
                ProblemType::PROVIDER_REJECTED,
                "the payment provider refused the request",
            )
        }
        WalletError::Store(e) => e.into(),
    }
}

/// Reads `amount_minor` and `currency` of a request body, naming each bad field.
pub(super) fn money(amount_minor: i64, currency: &str) -> Result<Money, ApiError> {
    let amount = keel_domain::wallet::Amount::new(amount_minor);
    let currency = keel_domain::wallet::Currency::parse(currency);
    match (amount, currency) {
        (Ok(amount), Ok(currency)) => Ok(Money { amount, currency }),
        (amount, currency) => {
            let field = |name, e: MoneyError| FieldError::new(name, e.to_string());
            let errors = [
                amount.err().map(|e| field("amount_minor", e)),
                currency.err().map(|e| field("currency", e)),
            ];
            Err(ApiError::Validation(errors.into_iter().flatten().collect()))
        }
    }
}

/// Reads an optional `currency` query parameter.
pub(super) fn currency(
    raw: Option<&str>,
) -> Result<Option<keel_domain::wallet::Currency>, ApiError> {
    raw.map(|c| {
        keel_domain::wallet::Currency::parse(c)
            .map_err(|e| ApiError::Validation(vec![FieldError::new("currency", e.to_string())]))
    })
    .transpose()
}
