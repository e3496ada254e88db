//! Fuzz properties of the audit cursor: any text parses or is refused without panic, and what
//! parses is exactly a cursor this log issues (a positive `seq`, one spelling per cursor).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

use super::{AuditCursor, AuditQueryError};
use crate::fuzz::{hostile_text, mutation};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn hostile_text_parses_only_to_an_issued_cursor(
        text in hostile_text(),
        bytes in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        for raw in [text, URL_SAFE_NO_PAD.encode(&bytes)] {
            match AuditCursor::parse(&raw) {
                Ok(cursor) => {
                    prop_assert!(cursor.seq() >= 1);
                    prop_assert_eq!(cursor.to_string(), raw);
                }
                Err(error) => prop_assert_eq!(error, AuditQueryError::InvalidCursor),
            }
        }
    }

    #[test]
    fn issued_cursors_round_trip(seq in 1i64..=i64::MAX) {
        let cursor = AuditCursor::before_seq(seq);
        prop_assert_eq!(AuditCursor::parse(&cursor.to_string()), Ok(cursor));
    }

    /// A changed cursor is refused or is another issued cursor in its one spelling: trailing
    /// bits, padding or a version change never slip through.
    #[test]
    fn a_mutated_cursor_is_refused_or_canonical(seq in 1i64..=i64::MAX, change in mutation()) {
        let text = AuditCursor::before_seq(seq).to_string();
        if let Some(changed) = change.apply(&text, '.')
            && let Ok(cursor) = AuditCursor::parse(&changed)
        {
            prop_assert_eq!(cursor.to_string(), changed);
        }
    }
}
