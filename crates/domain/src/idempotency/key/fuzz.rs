//! Fuzz properties of the `Idempotency-Key` parser: any header value is accepted exactly when it
//! is 1–255 printable ASCII characters, never panics, and an accepted key is kept as sent.

use proptest::prelude::*;

use super::{IdempotencyKey, KeyError, MAX_KEY_LEN};
use crate::fuzz::hostile_text;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn keys_are_accepted_exactly_when_short_printable_ascii(
        raw in prop_oneof![hostile_text(), "[ -~]{0,300}"],
    ) {
        let expected_ok = (1..=MAX_KEY_LEN).contains(&raw.len())
            && raw.bytes().all(|b| (b' '..=b'~').contains(&b));
        match IdempotencyKey::parse(&raw) {
            Ok(key) => {
                prop_assert!(expected_ok, "accepted {:?}", raw);
                prop_assert_eq!(key.as_str(), raw.as_str());
                prop_assert_eq!(key.to_string(), raw);
            }
            Err(KeyError::TooLong { len }) => {
                prop_assert!(!expected_ok);
                prop_assert_eq!(len, raw.len());
            }
            Err(_) => prop_assert!(!expected_ok, "refused {:?}", raw),
        }
    }
}
