//! Identity values parsed once at the edge: email, display name, role, password policy.
//!
//! Every constructor validates and normalises; a value of these types is always valid, so the
//! rest of the domain and the stores never check again. Errors ([`ValueError`]) read as a
//! client-facing field message (a 422 `errors[].message`).

use std::fmt;
use std::str::FromStr;

/// Shortest accepted email address, in characters.
pub const EMAIL_MIN_CHARS: usize = 3;
/// Longest accepted email address, in characters (RFC 5321 path limit).
pub const EMAIL_MAX_CHARS: usize = 254;
/// Longest accepted display name, in characters.
pub const DISPLAY_NAME_MAX_CHARS: usize = 100;
/// Shortest accepted password, in characters (Unicode scalar values).
pub const PASSWORD_MIN_CHARS: usize = 12;
/// Longest accepted password, in characters (bounds the hashing work per request).
pub const PASSWORD_MAX_CHARS: usize = 128;

/// Why a value given by a client is not acceptable. The message fits a 422 field error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The email address is not of an acceptable shape.
    #[error("must be an email address like name@example.com")]
    InvalidEmail,
    /// The email address is too short or too long.
    #[error("must be between {EMAIL_MIN_CHARS} and {EMAIL_MAX_CHARS} characters")]
    EmailLength,
    /// The display name is empty after trimming.
    #[error("must not be blank")]
    DisplayNameBlank,
    /// The display name is longer than [`DISPLAY_NAME_MAX_CHARS`].
    #[error("must be at most {DISPLAY_NAME_MAX_CHARS} characters")]
    DisplayNameTooLong,
    /// The display name contains a control character.
    #[error("must not contain control characters")]
    DisplayNameControlChar,
    /// The role is not one of the known roles.
    #[error("must be one of participant, organizer, support, admin")]
    UnknownRole,
    /// The password is shorter than [`PASSWORD_MIN_CHARS`].
    #[error("must be at least {PASSWORD_MIN_CHARS} characters")]
    PasswordTooShort,
    /// The password is longer than [`PASSWORD_MAX_CHARS`].
    #[error("must be at most {PASSWORD_MAX_CHARS} characters")]
    PasswordTooLong,
}

/// A normalised email address: trimmed, lowercased, `local@domain.tld`.
///
/// The whole address is lowercased, so one mailbox is one account whatever its spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

impl Email {
    /// Parses and normalises an address given by a client (or read back from storage).
    ///
    /// Accepts 3–254 characters after trimming, exactly one `@` with a non-empty local part
    /// before it and a domain containing a dot (not at either end) after it, and no whitespace
    /// or control characters.
    pub fn parse(raw: &str) -> Result<Email, ValueError> {
        let email = raw.trim().to_lowercase();
        let chars = email.chars().count();
        if !(EMAIL_MIN_CHARS..=EMAIL_MAX_CHARS).contains(&chars) {
            return Err(ValueError::EmailLength);
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValueError::InvalidEmail);
        }
        let mut parts = email.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ValueError::InvalidEmail);
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || !domain_ok {
            return Err(ValueError::InvalidEmail);
        }
        Ok(Email(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Email {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Email::parse(s)
    }
}

/// A user's public name: trimmed, 1–100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    /// Parses and trims a name given by a client (or read back from storage).
    pub fn parse(raw: &str) -> Result<DisplayName, ValueError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(ValueError::DisplayNameBlank);
        }
        if name.chars().count() > DISPLAY_NAME_MAX_CHARS {
            return Err(ValueError::DisplayNameTooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(ValueError::DisplayNameControlChar);
        }
        Ok(DisplayName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DisplayName {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DisplayName::parse(s)
    }
}

/// What a user may do (DESIGN.md §2). Every account has exactly one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Takes part in events and competitions (`participant`); the role of a new account.
    Participant,
    /// Runs events and competitions; sees masked PII (`organizer`).
    Organizer,
    /// Helps users; reads PII with a stated reason (`support`).
    Support,
    /// Administers everything (`admin`).
    Admin,
}

impl Role {
    /// Every role, least privileged first.
    pub const ALL: [Role; 4] = [
        Role::Participant,
        Role::Organizer,
        Role::Support,
        Role::Admin,
    ];

    /// The role's stable name, as stored and as sent over HTTP.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Participant => "participant",
            Role::Organizer => "organizer",
            Role::Support => "support",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ValueError;

    /// Exact, lowercase names only (as given by [`Role::as_str`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or(ValueError::UnknownRole)
    }
}

/// Checks a new password against the policy: [`PASSWORD_MIN_CHARS`]–[`PASSWORD_MAX_CHARS`]
/// characters (Unicode scalar values, not bytes). The password is never trimmed or changed.
pub fn check_password_policy(password: &str) -> Result<(), ValueError> {
    let chars = password.chars().count();
    if chars < PASSWORD_MIN_CHARS {
        Err(ValueError::PasswordTooShort)
    } else if chars > PASSWORD_MAX_CHARS {
        Err(ValueError::PasswordTooLong)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_lowercased() {
        let email = Email::parse("  Ada.Lovelace@Example.COM \n").unwrap();
        assert_eq!(email.as_str(), "ada.lovelace@example.com");
        assert_eq!(email.to_string(), "ada.lovelace@example.com");
        assert_eq!(Email::parse("A@B.CO"), Email::parse("a@b.co"));
        assert_eq!(
            "x+tag@sub.example.org".parse::<Email>(),
            Email::parse("X+TAG@sub.example.org")
        );
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in [
            "plainaddress",
            "@example.com",
            "a@b@example.com",
            "a@localhost",
            "a@.com",
            "a@example.",
            "a@exa..mple.com",
            "a b@example.com",
            "a@exa mple.com",
            "a\u{7}@example.com",
            "a@example.com\u{0}x",
            "ab@",
        ] {
            assert_eq!(Email::parse(bad), Err(ValueError::InvalidEmail), "{bad:?}");
        }
    }

    #[test]
    fn email_length_is_bounded_in_characters() {
        assert_eq!(Email::parse(""), Err(ValueError::EmailLength));
        assert_eq!(Email::parse("   "), Err(ValueError::EmailLength));
        assert_eq!(Email::parse("@b"), Err(ValueError::EmailLength));
        let domain = "@example.com";
        let longest = format!("{}{domain}", "a".repeat(EMAIL_MAX_CHARS - domain.len()));
        assert_eq!(Email::parse(&longest).map(|e| e.as_str().len()), Ok(254));
        let too_long = format!("a{longest}");
        assert_eq!(Email::parse(&too_long), Err(ValueError::EmailLength));
        // Multi-byte characters count once.
        let accented = format!("{}{domain}", "é".repeat(EMAIL_MAX_CHARS - domain.len()));
        assert!(Email::parse(&accented).is_ok());
    }

    #[test]
    fn display_name_rules() {
        assert_eq!(DisplayName::parse("  Ada  ").unwrap().as_str(), "Ada");
        assert_eq!(
            DisplayName::parse(" \t "),
            Err(ValueError::DisplayNameBlank)
        );
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
        assert_eq!(
            DisplayName::parse(&"a".repeat(101)),
            Err(ValueError::DisplayNameTooLong)
        );
        assert_eq!(
            DisplayName::parse("Ada\u{1b}[31m"),
            Err(ValueError::DisplayNameControlChar)
        );
        assert_eq!(
            DisplayName::parse("Ada\nLovelace"),
            Err(ValueError::DisplayNameControlChar)
        );
        assert_eq!(
            DisplayName::parse("Ada Lovelace").unwrap().to_string(),
            "Ada Lovelace"
        );
    }

    #[test]
    fn role_names_round_trip() {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["participant", "organizer", "support", "admin"]);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string(), role.as_str());
        }
        assert_eq!("Admin".parse::<Role>(), Err(ValueError::UnknownRole));
        assert_eq!("root".parse::<Role>(), Err(ValueError::UnknownRole));
        assert_eq!("".parse::<Role>(), Err(ValueError::UnknownRole));
    }

    #[test]
    fn password_policy_counts_characters() {
        assert_eq!(check_password_policy(""), Err(ValueError::PasswordTooShort));
        assert_eq!(
            check_password_policy(&"a".repeat(11)),
            Err(ValueError::PasswordTooShort)
        );
        assert_eq!(check_password_policy(&"a".repeat(12)), Ok(()));
        assert_eq!(check_password_policy(&"a".repeat(128)), Ok(()));
        assert_eq!(
            check_password_policy(&"a".repeat(129)),
            Err(ValueError::PasswordTooLong)
        );
        // 12 two-byte characters are 12 characters, and 128 of them are still allowed.
        assert_eq!(check_password_policy(&"é".repeat(12)), Ok(()));
        assert_eq!(check_password_policy(&"é".repeat(128)), Ok(()));
        // Whitespace counts and is kept.
        assert_eq!(check_password_policy("            "), Ok(()));
    }

    #[test]
    fn messages_fit_a_field_error() {
        assert_eq!(
            ValueError::PasswordTooShort.to_string(),
            "must be at least 12 characters"
        );
        assert_eq!(
            ValueError::EmailLength.to_string(),
            "must be between 3 and 254 characters"
        );
        assert_eq!(
            ValueError::DisplayNameTooLong.to_string(),
            "must be at most 100 characters"
        );
    }
}
