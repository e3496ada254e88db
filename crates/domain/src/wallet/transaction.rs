//! Ledger transactions: balanced sets of postings, never changed once written.
//!
//! Every transaction has at least two postings, each a non-zero signed amount on one account
//! (positive credits the account, negative debits it), and its postings sum to zero in every
//! currency. The builders below are the only shapes the wallet writes; [`Transaction::validate`]
//! checks the rules again for anything read back or built by hand.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::account::{AccountRef, SystemAccount};
use super::money::{Currency, Money};
use super::operation::OperationId;
use crate::identity::user::UserId;

/// Identity of a ledger transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TransactionId(pub Uuid);

/// What a transaction records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    /// Provider clearing → available: a settled deposit.
    Deposit,
    /// Available → held: a withdrawal's funds reserved at once.
    Hold,
    /// Held → provider clearing: the payout succeeded (resolves a hold).
    PostHold,
    /// Held → available: the payout failed (resolves a hold).
    VoidHold,
    /// The mirror image of an earlier transaction.
    Reversal,
    /// An admin's correction against the adjustments account.
    Adjustment,
}

impl TransactionKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deposit => "deposit",
            Self::Hold => "hold",
            Self::PostHold => "post_hold",
            Self::VoidHold => "void_hold",
            Self::Reversal => "reversal",
            Self::Adjustment => "adjustment",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Deposit,
            Self::Hold,
            Self::PostHold,
            Self::VoidHold,
            Self::Reversal,
            Self::Adjustment,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }

    /// Whether an admin may reverse a transaction of this kind. Holds are resolved by posting
    /// or voiding them, never reversed; a reversal is not reversed again (book a new one).
    pub fn reversible(self) -> bool {
        matches!(self, Self::Deposit | Self::Adjustment)
    }
}

/// One leg of a transaction: a signed, non-zero amount on one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    /// The account.
    pub account: AccountRef,
    /// Positive credits the account, negative debits it.
    pub amount: i64,
}

/// Why a transaction breaks the ledger's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerRuleError {
    /// Fewer than two postings.
    #[error("a transaction needs at least two postings")]
    TooFewPostings,
    /// A zero amount (or `i64::MIN`, which has no mirror image).
    #[error("posting amounts are non-zero and negatable")]
    BadAmount,
    /// Postings do not sum to zero in some currency.
    #[error("postings in {0} do not sum to zero")]
    Unbalanced(Currency),
    /// A link that this kind cannot have, or a missing one.
    #[error("a {0} transaction has the wrong links")]
    BadLink(&'static str),
}

/// A ledger transaction: immutable once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Identity.
    pub id: TransactionId,
    /// What it records.
    pub kind: TransactionKind,
    /// The wallet operation it belongs to, if any.
    pub operation: Option<OperationId>,
    /// The transaction this one mirrors ([`TransactionKind::Reversal`] only); unique.
    pub reverses: Option<TransactionId>,
    /// The hold this one posts or voids ([`TransactionKind::PostHold`] /
    /// [`TransactionKind::VoidHold`] only); unique, so a hold is resolved once, never both ways.
    pub resolves: Option<TransactionId>,
    /// The legs.
    pub postings: Vec<Posting>,
    /// When it was booked.
    pub created_at: DateTime<Utc>,
}

impl Transaction {
    fn new(
        kind: TransactionKind,
        operation: Option<OperationId>,
        postings: Vec<Posting>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: TransactionId(Uuid::now_v7()),
            kind,
            operation,
            reverses: None,
            resolves: None,
            postings,
            created_at: at,
        }
    }

    /// A settled deposit of `money` into `user`'s available funds.
    pub fn deposit(user: UserId, money: Money, operation: OperationId, at: DateTime<Utc>) -> Self {
        let c = money.currency;
        Self::new(
            TransactionKind::Deposit,
            Some(operation),
            transfer(
                AccountRef::system(SystemAccount::ProviderClearing, c),
                AccountRef::available(user, c),
                money,
            ),
            at,
        )
    }

    /// A withdrawal's hold: `money` moves from `user`'s available to held funds.
    pub fn hold(user: UserId, money: Money, operation: OperationId, at: DateTime<Utc>) -> Self {
        let c = money.currency;
        Self::new(
            TransactionKind::Hold,
            Some(operation),
            transfer(
                AccountRef::available(user, c),
                AccountRef::held(user, c),
                money,
            ),
            at,
        )
    }

    /// Posts `hold`: the held money leaves to the provider. `None` if `hold` is not a hold.
    pub fn post_hold(hold: &Transaction, at: DateTime<Utc>) -> Option<Self> {
        let (user, money) = hold.hold_parts()?;
        let c = money.currency;
        let mut post = Self::new(
            TransactionKind::PostHold,
            hold.operation,
            transfer(
                AccountRef::held(user, c),
                AccountRef::system(SystemAccount::ProviderClearing, c),
                money,
            ),
            at,
        );
        post.resolves = Some(hold.id);
        Some(post)
    }

    /// Voids `hold`: the held money returns to available. `None` if `hold` is not a hold.
    pub fn void_hold(hold: &Transaction, at: DateTime<Utc>) -> Option<Self> {
        let (user, money) = hold.hold_parts()?;
        let c = money.currency;
        let mut void = Self::new(
            TransactionKind::VoidHold,
            hold.operation,
            transfer(
                AccountRef::held(user, c),
                AccountRef::available(user, c),
                money,
            ),
            at,
        );
        void.resolves = Some(hold.id);
        Some(void)
    }

    /// The mirror image of `original` (every posting negated), booked for `operation`. `None`
    /// if the kind is not [reversible](TransactionKind::reversible).
    pub fn reversal_of(
        original: &Transaction,
        operation: OperationId,
        at: DateTime<Utc>,
    ) -> Option<Self> {
        if !original.kind.reversible() {
            return None;
        }
        let postings = original
            .postings
            .iter()
            .map(|p| {
                p.amount.checked_neg().map(|amount| Posting {
                    account: p.account,
                    amount,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let mut reversal = Self::new(TransactionKind::Reversal, Some(operation), postings, at);
        reversal.reverses = Some(original.id);
        Some(reversal)
    }

    /// An admin adjustment: credits (`credit = true`) or debits `user`'s available funds
    /// against the adjustments account.
    pub fn adjustment(
        user: UserId,
        money: Money,
        credit: bool,
        operation: OperationId,
        at: DateTime<Utc>,
    ) -> Self {
        let c = money.currency;
        let (wallet, system) = (
            AccountRef::available(user, c),
            AccountRef::system(SystemAccount::Adjustments, c),
        );
        let postings = if credit {
            transfer(system, wallet, money)
        } else {
            transfer(wallet, system, money)
        };
        Self::new(TransactionKind::Adjustment, Some(operation), postings, at)
    }

    /// The user and money of a hold, `None` for any other kind or shape.
    pub fn hold_parts(&self) -> Option<(UserId, Money)> {
        if self.kind != TransactionKind::Hold {
            return None;
        }
        let held = self.postings.iter().find(|p| {
            matches!(
                p.account,
                AccountRef::User {
                    part: super::account::WalletPart::Held,
                    ..
                }
            )
        })?;
        let amount = super::money::Amount::new(held.amount).ok()?;
        Some((
            held.account.user()?,
            Money {
                amount,
                currency: held.account.currency(),
            },
        ))
    }

    /// The wallet owner this transaction moves money for (the first user account posted to).
    pub fn user(&self) -> Option<UserId> {
        self.postings.iter().find_map(|p| p.account.user())
    }

    /// The net amount this transaction moves on `account` (0 if it does not touch it).
    pub fn net_on(&self, account: &AccountRef) -> i64 {
        self.postings
            .iter()
            .filter(|p| &p.account == account)
            .fold(0i64, |sum, p| sum.saturating_add(p.amount))
    }

    /// Checks the ledger's rules: ≥ 2 postings, non-zero amounts, a zero sum per currency, and
    /// links only where the kind has them.
    pub fn validate(&self) -> Result<(), LedgerRuleError> {
        if self.postings.len() < 2 {
            return Err(LedgerRuleError::TooFewPostings);
        }
        let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
        for posting in &self.postings {
            if posting.amount == 0 || posting.amount == i64::MIN {
                return Err(LedgerRuleError::BadAmount);
            }
            *sums.entry(posting.account.currency()).or_default() += i128::from(posting.amount);
        }
        if let Some((currency, _)) = sums.iter().find(|(_, sum)| **sum != 0) {
            return Err(LedgerRuleError::Unbalanced(*currency));
        }
        let links_ok = match self.kind {
            TransactionKind::Reversal => self.reverses.is_some() && self.resolves.is_none(),
            TransactionKind::PostHold | TransactionKind::VoidHold => {
                self.resolves.is_some() && self.reverses.is_none()
            }
            _ => self.reverses.is_none() && self.resolves.is_none(),
        };
        if links_ok {
            Ok(())
        } else {
            Err(LedgerRuleError::BadLink(self.kind.as_str()))
        }
    }
}

/// `money` from `from` to `to`: a debit and a credit.
fn transfer(from: AccountRef, to: AccountRef, money: Money) -> Vec<Posting> {
    vec![
        Posting {
            account: from,
            amount: money.amount.negated(),
        },
        Posting {
            account: to,
            amount: money.amount.minor(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (UserId, Money, OperationId, DateTime<Utc>) {
        (
            UserId(Uuid::now_v7()),
            Money::parse(500, "ZAR").expect("valid"),
            OperationId(Uuid::now_v7()),
            Utc::now(),
        )
    }

    #[test]
    fn every_builder_makes_a_valid_transaction() {
        let (user, money, op, at) = setup();
        let hold = Transaction::hold(user, money, op, at);
        let deposit = Transaction::deposit(user, money, op, at);
        let built = [
            deposit.clone(),
            hold.clone(),
            Transaction::post_hold(&hold, at).expect("a hold"),
            Transaction::void_hold(&hold, at).expect("a hold"),
            Transaction::reversal_of(&deposit, op, at).expect("reversible"),
            Transaction::adjustment(user, money, true, op, at),
            Transaction::adjustment(user, money, false, op, at),
        ];
        for tx in &built {
            assert_eq!(tx.validate(), Ok(()), "{:?}", tx.kind);
            assert_eq!(tx.user(), Some(user));
        }
    }

    #[test]
    fn holds_move_available_to_held_and_resolve_once_either_way() {
        let (user, money, op, at) = setup();
        let c = money.currency;
        let hold = Transaction::hold(user, money, op, at);
        assert_eq!(hold.net_on(&AccountRef::available(user, c)), -500);
        assert_eq!(hold.net_on(&AccountRef::held(user, c)), 500);
        let post = Transaction::post_hold(&hold, at).expect("a hold");
        assert_eq!(post.resolves, Some(hold.id));
        assert_eq!(post.net_on(&AccountRef::held(user, c)), -500);
        let void = Transaction::void_hold(&hold, at).expect("a hold");
        assert_eq!(void.resolves, Some(hold.id));
        assert_eq!(void.net_on(&AccountRef::available(user, c)), 500);
        assert_eq!(Transaction::post_hold(&post, at), None);
    }

    #[test]
    fn only_deposits_and_adjustments_are_reversible() {
        let (user, money, op, at) = setup();
        let hold = Transaction::hold(user, money, op, at);
        assert_eq!(Transaction::reversal_of(&hold, op, at), None);
        let deposit = Transaction::deposit(user, money, op, at);
        let reversal = Transaction::reversal_of(&deposit, op, at).expect("reversible");
        assert_eq!(Transaction::reversal_of(&reversal, op, at), None);
        assert_eq!(
            reversal.net_on(&AccountRef::available(user, money.currency)),
            -500
        );
    }

    #[test]
    fn validation_refuses_broken_shapes() {
        let (user, money, op, at) = setup();
        let mut tx = Transaction::deposit(user, money, op, at);
        tx.postings[0].amount = -499;
        assert!(matches!(tx.validate(), Err(LedgerRuleError::Unbalanced(_))));
        tx.postings.truncate(1);
        assert_eq!(tx.validate(), Err(LedgerRuleError::TooFewPostings));
        let mut zero = Transaction::deposit(user, money, op, at);
        zero.postings[0].amount = 0;
        assert_eq!(zero.validate(), Err(LedgerRuleError::BadAmount));
        let mut linked = Transaction::deposit(user, money, op, at);
        linked.resolves = Some(TransactionId(Uuid::now_v7()));
        assert_eq!(linked.validate(), Err(LedgerRuleError::BadLink("deposit")));
    }

    #[test]
    fn postings_balance_per_currency_not_in_total() {
        let (user, _, op, at) = setup();
        let zar = Money::parse(100, "ZAR").expect("valid");
        let usd = Money::parse(100, "USD").expect("valid");
        let mut tx = Transaction::deposit(user, zar, op, at);
        tx.postings[1].account = AccountRef::available(user, usd.currency);
        assert!(matches!(tx.validate(), Err(LedgerRuleError::Unbalanced(_))));
    }
}
