//! Fuzz properties of the list cursor: any `cursor` parameter decodes or is a 422 without
//! panicking, and every cursor a page hands out decodes to the same position.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use proptest::prelude::*;
use uuid::Uuid;

use super::TimeCursor;
use crate::http::request_id::fuzz::header_text;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_cursor_text_decodes_to_a_stable_position_or_is_refused(
        raw in header_text(),
        inner in "[+-]?[0-9]{0,20}:[0-9A-Za-z{}:-]{0,45}",
    ) {
        for raw in [raw, URL_SAFE_NO_PAD.encode(inner)] {
            if let Ok(cursor) = TimeCursor::decode(&raw) {
                prop_assert_eq!(TimeCursor::decode(&cursor.encode()).ok(), Some(cursor));
            }
        }
    }

    #[test]
    fn issued_cursors_round_trip(nanos in any::<i64>(), id in any::<u128>()) {
        let cursor = TimeCursor { at: DateTime::from_timestamp_nanos(nanos), id: Uuid::from_u128(id) };
        prop_assert_eq!(TimeCursor::decode(&cursor.encode()).ok(), Some(cursor));
    }
}
