//! Ledger accounts: each user's available and held funds per currency, and the system accounts
//! money comes from and goes to.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::money::{Currency, MoneyError};
use crate::identity::user::UserId;

/// The system accounts of each currency (their balances may go negative: they mirror money
/// outside the wallets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemAccount {
    /// Money in transit with the payment provider: debited by deposits, credited by payouts.
    ProviderClearing,
    /// Fees earned.
    Fees,
    /// Money whose owner is not yet known (e.g. a settlement for an unknown reference).
    Suspense,
    /// The counterpart of admin adjustments.
    Adjustments,
}

impl SystemAccount {
    /// Every system account.
    pub const ALL: [SystemAccount; 4] = [
        Self::ProviderClearing,
        Self::Fees,
        Self::Suspense,
        Self::Adjustments,
    ];
}

/// Which part of a user's wallet an account holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletPart {
    /// Spendable funds.
    Available,
    /// Funds reserved by pending withdrawals (holds).
    Held,
}

/// A ledger account, named by what it is rather than by a stored id: adapters map it to their
/// own row (created on first use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AccountRef {
    /// A user's wallet, one part of it, in one currency.
    User {
        /// The owner.
        user: UserId,
        /// Available or held.
        part: WalletPart,
        /// The currency.
        currency: Currency,
    },
    /// A system account in one currency.
    System {
        /// Which one.
        account: SystemAccount,
        /// The currency.
        currency: Currency,
    },
}

impl AccountRef {
    /// `user`'s available funds in `currency`.
    pub fn available(user: UserId, currency: Currency) -> Self {
        Self::User {
            user,
            part: WalletPart::Available,
            currency,
        }
    }

    /// `user`'s held funds in `currency`.
    pub fn held(user: UserId, currency: Currency) -> Self {
        Self::User {
            user,
            part: WalletPart::Held,
            currency,
        }
    }

    /// The system account `account` in `currency`.
    pub fn system(account: SystemAccount, currency: Currency) -> Self {
        Self::System { account, currency }
    }

    /// The account's currency.
    pub fn currency(&self) -> Currency {
        match self {
            Self::User { currency, .. } | Self::System { currency, .. } => *currency,
        }
    }

    /// The owning user, for wallet accounts.
    pub fn user(&self) -> Option<UserId> {
        match self {
            Self::User { user, .. } => Some(*user),
            Self::System { .. } => None,
        }
    }

    /// Whether the balance may go below zero: wallets never do (every debit is checked against
    /// the available funds, holds included); system accounts may.
    pub fn allows_negative(&self) -> bool {
        matches!(self, Self::System { .. })
    }

    /// Stable name of the account's purpose, as stored: `available`, `held`,
    /// `provider_clearing`, `fees`, `suspense`, `adjustments`.
    pub fn purpose(&self) -> &'static str {
        match self {
            Self::User {
                part: WalletPart::Available,
                ..
            } => "available",
            Self::User {
                part: WalletPart::Held,
                ..
            } => "held",
            Self::System { account, .. } => match account {
                SystemAccount::ProviderClearing => "provider_clearing",
                SystemAccount::Fees => "fees",
                SystemAccount::Suspense => "suspense",
                SystemAccount::Adjustments => "adjustments",
            },
        }
    }

    /// Rebuilds an account from its stored owner, purpose and currency.
    pub fn from_parts(
        user: Option<UserId>,
        purpose: &str,
        currency: &str,
    ) -> Result<Self, AccountParseError> {
        let currency = Currency::parse(currency)?;
        let part = match purpose {
            "available" => Some(WalletPart::Available),
            "held" => Some(WalletPart::Held),
            _ => None,
        };
        let system = match purpose {
            "provider_clearing" => Some(SystemAccount::ProviderClearing),
            "fees" => Some(SystemAccount::Fees),
            "suspense" => Some(SystemAccount::Suspense),
            "adjustments" => Some(SystemAccount::Adjustments),
            _ => None,
        };
        match (user, part, system) {
            (Some(user), Some(part), None) => Ok(Self::User {
                user,
                part,
                currency,
            }),
            (None, None, Some(account)) => Ok(Self::System { account, currency }),
            _ => Err(AccountParseError::Purpose(purpose.to_owned())),
        }
    }
}

impl fmt::Display for AccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User { user, currency, .. } => {
                write!(f, "user:{}:{}:{currency}", user.0, self.purpose())
            }
            Self::System { currency, .. } => write!(f, "system:{}:{currency}", self.purpose()),
        }
    }
}

/// A stored account that does not name a known account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountParseError {
    /// Bad currency.
    #[error(transparent)]
    Currency(#[from] MoneyError),
    /// Unknown purpose or owner combination.
    #[error("unknown account purpose {0:?} for its owner")]
    Purpose(String),
}

/// A user's funds in one currency: `total = available + held`, so `available = total − held`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Spendable now (never below 0).
    pub available: i64,
    /// Reserved by pending withdrawals.
    pub held: i64,
    /// Everything the user owns in this currency.
    pub total: i64,
    /// The currency.
    pub currency: Currency,
}

impl Balance {
    /// A balance from the two wallet accounts, `None` if the total overflows (it cannot, since
    /// both parts come from one i64 of deposits, but the ledger never assumes).
    pub fn from_parts(available: i64, held: i64, currency: Currency) -> Option<Self> {
        Some(Self {
            available,
            held,
            total: available.checked_add(held)?,
            currency,
        })
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn zar() -> Currency {
        Currency::parse("ZAR").expect("valid")
    }

    #[test]
    fn every_account_round_trips_through_its_stored_parts() {
        let user = UserId(Uuid::now_v7());
        let mut accounts = vec![
            AccountRef::available(user, zar()),
            AccountRef::held(user, zar()),
        ];
        accounts.extend(SystemAccount::ALL.map(|s| AccountRef::system(s, zar())));
        for account in accounts {
            let back = AccountRef::from_parts(
                account.user(),
                account.purpose(),
                account.currency().as_str(),
            );
            assert_eq!(back, Ok(account));
        }
    }

    #[test]
    fn owners_and_purposes_must_match() {
        let user = UserId(Uuid::now_v7());
        assert!(AccountRef::from_parts(Some(user), "fees", "ZAR").is_err());
        assert!(AccountRef::from_parts(None, "available", "ZAR").is_err());
        assert!(AccountRef::from_parts(None, "fees", "zar").is_err());
    }

    #[test]
    fn only_system_accounts_go_negative() {
        let user = UserId(Uuid::now_v7());
        assert!(!AccountRef::available(user, zar()).allows_negative());
        assert!(!AccountRef::held(user, zar()).allows_negative());
        assert!(AccountRef::system(SystemAccount::ProviderClearing, zar()).allows_negative());
    }
}
