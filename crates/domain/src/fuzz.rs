//! Test-only fuzzing support shared by the parsers' property tests (each parser has a `fuzz`
//! submodule next to it): hostile text and the mutations of a valid signed value.
//!
//! Properties built on these run in plain `cargo test` with a bounded number of cases, so they
//! double as the CI fuzz targets: arbitrary input never panics, and no mutation of a signed value
//! is accepted.

use proptest::prelude::*;

/// Text a client could send: arbitrary Unicode, control characters, lossy-decoded random bytes
/// (U+FFFD where they were not UTF-8), separator soup and very long runs (up to 70 000 bytes).
pub(crate) fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\\x7f]{0,40}",
        "[A-Za-z0-9_.:=+/ -]{0,120}",
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        (any::<char>(), 1_000usize..70_000).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

/// One change to a valid signed value. Applied with [`Mutation::apply`]; the result differs from
/// the valid value, so a verifier must refuse it.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    /// Flip one of the low seven bits of one byte (the value stays ASCII when it was).
    FlipBit {
        /// Which byte (modulo the length).
        at: prop::sample::Index,
        /// Which bit, 0–6.
        bit: u8,
    },
    /// Keep only a prefix (possibly empty).
    Truncate(prop::sample::Index),
    /// Append text.
    Extend(String),
    /// Insert one character.
    Insert(prop::sample::Index, char),
    /// Remove one character.
    Remove(prop::sample::Index),
    /// Exchange two of the `separator`-delimited parts.
    SwapParts(prop::sample::Index, prop::sample::Index),
}

/// Any [`Mutation`].
pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..7).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        prop_oneof!["[A-Za-z0-9_=.-]{1,8}", "\\PC{1,4}", Just("=".to_owned())]
            .prop_map(Mutation::Extend),
        (any::<prop::sample::Index>(), any::<char>()).prop_map(|(at, c)| Mutation::Insert(at, c)),
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(a, b)| Mutation::SwapParts(a, b)),
    ]
}

impl Mutation {
    /// `valid` changed by this mutation, or `None` when the change leaves it as it was (e.g.
    /// swapping two equal parts).
    pub(crate) fn apply(&self, valid: &str, separator: char) -> Option<String> {
        let chars: Vec<char> = valid.chars().collect();
        let changed = match self {
            Self::FlipBit { at, bit } => {
                let mut bytes = valid.as_bytes().to_vec();
                if bytes.is_empty() {
                    return None;
                }
                let at = at.index(bytes.len());
                bytes[at] ^= 1 << bit;
                String::from_utf8(bytes).ok()?
            }
            Self::Truncate(keep) => chars[..keep.index(chars.len().max(1))].iter().collect(),
            Self::Extend(tail) => format!("{valid}{tail}"),
            Self::Insert(at, c) => {
                let mut chars = chars;
                chars.insert(at.index(chars.len() + 1), *c);
                chars.into_iter().collect()
            }
            Self::Remove(at) => {
                let mut chars = chars;
                if chars.is_empty() {
                    return None;
                }
                chars.remove(at.index(chars.len()));
                chars.into_iter().collect()
            }
            Self::SwapParts(a, b) => {
                let mut parts: Vec<&str> = valid.split(separator).collect();
                let (a, b) = (a.index(parts.len()), b.index(parts.len()));
                parts.swap(a, b);
                parts.join(&separator.to_string())
            }
        };
        (changed != valid).then_some(changed)
    }
}
