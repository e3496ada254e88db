//! Money: ISO 4217 currencies and positive amounts in minor units, with overflow checked.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Active ISO 4217 alphabetic codes (2026), the currencies the ledger accepts.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN",
    "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP",
    "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY",
    "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD",
    "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK",
    "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK",
    "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG",
    "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS",
    "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// The largest amount of one operation, in minor units (10^12: ten billion units of a
/// two-decimal currency). The cap keeps every balance far from `i64` overflow.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// Why a currency or amount was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not an active ISO 4217 code (three upper-case letters).
    #[error("not an ISO 4217 currency code")]
    UnknownCurrency,
    /// Amounts are whole minor units from 1 to [`MAX_AMOUNT_MINOR`].
    #[error("the amount must be 1 to 1000000000000 minor units")]
    OutOfRange,
    /// A sum left the i64 range.
    #[error("the amount overflows")]
    Overflow,
}

/// An ISO 4217 currency code, e.g. `ZAR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses an active ISO 4217 code (upper case only: `zar` is refused, not guessed).
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let bytes: [u8; 3] = code
            .as_bytes()
            .try_into()
            .map_err(|_| MoneyError::UnknownCurrency)?;
        if ISO_4217.binary_search(&code).is_ok() {
            Ok(Self(bytes))
        } else {
            Err(MoneyError::UnknownCurrency)
        }
    }

    /// The three-letter code.
    pub fn as_str(&self) -> &str {
        // Only ever built from an entry of the ASCII table above.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(code: String) -> Result<Self, Self::Error> {
        Self::parse(&code)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.as_str().to_owned()
    }
}

/// A positive amount in minor units (cents): never zero, never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Amount(i64);

impl Amount {
    /// `minor` units, if 1 to [`MAX_AMOUNT_MINOR`].
    pub fn new(minor: i64) -> Result<Self, MoneyError> {
        if (1..=MAX_AMOUNT_MINOR).contains(&minor) {
            Ok(Self(minor))
        } else {
            Err(MoneyError::OutOfRange)
        }
    }

    /// The minor units.
    pub fn minor(self) -> i64 {
        self.0
    }

    /// The amount as a debit (negative posting).
    pub fn negated(self) -> i64 {
        -self.0
    }
}

impl TryFrom<i64> for Amount {
    type Error = MoneyError;
    fn try_from(minor: i64) -> Result<Self, Self::Error> {
        Self::new(minor)
    }
}

impl From<Amount> for i64 {
    fn from(amount: Amount) -> Self {
        amount.0
    }
}

/// An amount in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units, positive.
    pub amount: Amount,
    /// Its currency.
    pub currency: Currency,
}

impl Money {
    /// Validates raw request values into money.
    pub fn parse(amount_minor: i64, currency: &str) -> Result<Self, MoneyError> {
        Ok(Self {
            amount: Amount::new(amount_minor)?,
            currency: Currency::parse(currency)?,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount.minor(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_table_is_sorted_so_binary_search_finds_every_entry() {
        assert!(ISO_4217.windows(2).all(|w| w[0] < w[1]));
        for code in ISO_4217 {
            assert_eq!(
                Currency::parse(code).map(|c| c.to_string()),
                Ok((*code).to_owned())
            );
        }
    }

    #[test]
    fn unknown_lower_case_and_odd_lengths_are_refused() {
        for bad in ["", "ZA", "zar", "ZARR", "XXX", "ABC", "ZÄR", "Z R"] {
            assert_eq!(
                Currency::parse(bad),
                Err(MoneyError::UnknownCurrency),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn amounts_are_positive() {
        assert_eq!(Amount::new(0), Err(MoneyError::OutOfRange));
        assert_eq!(Amount::new(-5), Err(MoneyError::OutOfRange));
        assert_eq!(
            Amount::new(MAX_AMOUNT_MINOR).map(Amount::minor),
            Ok(MAX_AMOUNT_MINOR)
        );
        assert_eq!(
            Amount::new(MAX_AMOUNT_MINOR + 1),
            Err(MoneyError::OutOfRange)
        );
        assert_eq!(Amount::new(i64::MAX), Err(MoneyError::OutOfRange));
        assert_eq!(Amount::new(7).map(Amount::negated), Ok(-7));
    }

    #[test]
    fn money_round_trips_through_json_and_refuses_bad_values() {
        let money = Money::parse(1250, "ZAR").expect("valid");
        let json = serde_json::to_string(&money).expect("serializes");
        assert_eq!(json, r#"{"amount":1250,"currency":"ZAR"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).expect("parses"), money);
        assert!(serde_json::from_str::<Money>(r#"{"amount":0,"currency":"ZAR"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":1,"currency":"QQQ"}"#).is_err());
    }
}
