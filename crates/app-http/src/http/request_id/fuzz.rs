//! Fuzz properties of the request id parser: no header value panics it, only safe tokens are
//! kept (so nothing a client sends can forge a log line or a header), and kept ids are verbatim.

use proptest::prelude::*;

use super::{MAX_LEN, RequestId};

/// Header values a client could send: arbitrary Unicode, any ASCII (CR/LF, NUL, quotes), ids of
/// the safe alphabet around the length limit, and very long runs.
pub(crate) fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x7f]{0,100}",
        "[A-Za-z0-9._-]{0,80}",
        (any::<char>(), 65usize..70_000).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn only_safe_tokens_are_kept_verbatim(raw in header_text()) {
        let safe = (1..=MAX_LEN).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        match RequestId::parse(&raw) {
            Some(id) => {
                prop_assert!(safe, "kept {:?}", raw);
                prop_assert_eq!(id.as_str(), raw.as_str());
            }
            None => prop_assert!(!safe, "refused {:?}", raw),
        }
    }
}
