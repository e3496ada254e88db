//! The classes of routes that share a rate policy.

use std::fmt;

/// A class of routes with its own configurable policy (`KEEL_RATE_<CLASS>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitClass {
    /// Login, registration, token refresh: per IP and per account, strict.
    Auth,
    /// Ticket scans: per user and per IP.
    Scan,
    /// Score updates: per user.
    Score,
    /// Costly operations (exports, reports): per user, strict.
    Expensive,
    /// Every other limited route.
    Default,
}

impl LimitClass {
    /// Every class, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::Auth,
        Self::Scan,
        Self::Score,
        Self::Expensive,
        Self::Default,
    ];

    /// Position in [`LimitClass::ALL`], for per-class tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name used in keys, metrics and settings: `"auth"`, `"scan"`, `"score"`,
    /// `"expensive"`, `"default"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Scan => "scan",
            Self::Score => "score",
            Self::Expensive => "expensive",
            Self::Default => "default",
        }
    }
}

impl fmt::Display for LimitClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_lower_case() {
        let names: Vec<&str> = LimitClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["auth", "scan", "score", "expensive", "default"]);
        assert_eq!(LimitClass::Expensive.to_string(), "expensive");
    }
}
