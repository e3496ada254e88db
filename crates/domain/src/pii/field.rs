//! The personal-data fields of a user.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A field of a user that holds personal data and is stored encrypted.
///
/// The name ([`PiiField::as_str`]) is part of every ciphertext's authenticated data: renaming a
/// variant's name makes its stored values unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiField {
    /// Phone number (`phone`).
    Phone,
    /// Postal address (`address`).
    Address,
    /// Date of birth, `YYYY-MM-DD` (`date_of_birth`).
    DateOfBirth,
    /// National identity number (`national_id`).
    NationalId,
}

impl PiiField {
    /// Every field, in declaration order.
    pub const ALL: [PiiField; 4] = [
        PiiField::Phone,
        PiiField::Address,
        PiiField::DateOfBirth,
        PiiField::NationalId,
    ];

    /// The field's stable name: `phone`, `address`, `date_of_birth` or `national_id`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PiiField::Phone => "phone",
            PiiField::Address => "address",
            PiiField::DateOfBirth => "date_of_birth",
            PiiField::NationalId => "national_id",
        }
    }

    /// The field called `name` (as given by [`PiiField::as_str`]), if any.
    pub fn from_name(name: &str) -> Option<PiiField> {
        PiiField::ALL
            .into_iter()
            .find(|field| field.as_str() == name)
    }
}

impl fmt::Display for PiiField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_round_trip() {
        let names: Vec<&str> = PiiField::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(names, ["phone", "address", "date_of_birth", "national_id"]);
        for field in PiiField::ALL {
            assert_eq!(PiiField::from_name(field.as_str()), Some(field));
            assert_eq!(field.to_string(), field.as_str());
            assert_eq!(
                serde_json::to_string(&field).ok(),
                Some(format!("\"{}\"", field.as_str()))
            );
        }
        assert_eq!(PiiField::from_name("email"), None);
        assert_eq!(PiiField::from_name("Phone"), None);
    }
}
