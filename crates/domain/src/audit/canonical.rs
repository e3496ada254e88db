//! The canonical byte encoding of an entry: the exact input of its hash.
//!
//! The encoding is deterministic and unambiguous:
//! - a version tag, then every field in a fixed order; strings are length-prefixed (u64,
//!   big-endian), optional fields carry a presence byte, integers are big-endian;
//! - `at` counts whole microseconds since the Unix epoch;
//! - JSON values are encoded structurally, independent of how the text was laid out: object keys
//!   sorted by their UTF-8 bytes (whatever the order of `serde_json`'s map), no whitespace, and
//!   every number in one canonical form.
//!
//! Numbers are the delicate part: Postgres `jsonb` keeps a number as the exact decimal value of
//! the text it was sent and prints it back in plain notation, so `1e19` comes back as
//! `10000000000000000000` (which `serde_json` reads as an integer), `-4.796566914205686e18` as
//! `-4796566914205686000` (an `i64` that is *not* the `f64`'s exact value) and `1.5e-7` as
//! `0.00000015`. The canonical form of a number is therefore the decimal value of its JSON text
//! as `serde_json` writes it (shortest round-trip form for floats), normalised to
//! `<sign><significant digits>e<exponent>`: `2.0`, `2` and `20e-1` are all `2e0`. A float read
//! back must be the very `f64` that was written, so that it prints the same text: keel-domain
//! enables `serde_json`'s `float_roundtrip` feature for that (the default parser may be one unit
//! in the last place off).

use serde_json::{Number, Value};

use super::AuditEntry;

/// First bytes of every encoded entry: names the format, so a future format can never collide.
const VERSION_TAG: &[u8] = b"keel.audit.v1\0";

const JSON_NULL: u8 = 0;
const JSON_FALSE: u8 = 1;
const JSON_TRUE: u8 = 2;
const JSON_NUMBER: u8 = 3;
const JSON_STRING: u8 = 4;
const JSON_ARRAY: u8 = 5;
const JSON_OBJECT: u8 = 6;

const ABSENT: u8 = 0;
const PRESENT: u8 = 1;

/// Encodes `entry` at position `seq` (the hash input, without the previous hash).
pub fn encode_entry(seq: i64, entry: &AuditEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(VERSION_TAG);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&entry.at.timestamp_micros().to_be_bytes());
    put_str(&mut out, entry.actor.as_str());
    put_str(&mut out, &entry.action);
    put_str(&mut out, &entry.subject);
    put_opt_json(&mut out, entry.before.as_ref());
    put_opt_json(&mut out, entry.after.as_ref());
    put_opt_str(&mut out, entry.reason.as_deref());
    put_opt_str(&mut out, entry.request_id.as_deref());
    out
}

/// Encodes one JSON value canonically (see the module docs).
pub fn encode_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put_json(&mut out, value);
    out
}

/// The canonical text of a JSON number: the decimal value of its JSON text, written as
/// `<sign><significant digits>e<exponent>` (zero is `0`).
pub fn canonical_number(number: &Number) -> String {
    let text = number.to_string();
    // serde_json only ever writes valid JSON numbers; the fallback keeps the function total.
    canonical_decimal(&text).unwrap_or(text)
}

/// Normalises a JSON number's text to `<sign><digits>e<exponent>`, the digits without leading or
/// trailing zeros, so that every text of one decimal value gives the same string.
fn canonical_decimal(text: &str) -> Option<String> {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = digits × 10^exponent
    let digits = format!("{int}{frac}");
    let exponent = exponent.checked_sub(i64::try_from(frac.len()).ok()?)?;
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some("0".to_owned());
    }
    let significant = digits.trim_end_matches('0');
    let exponent = exponent.checked_add(i64::try_from(digits.len() - significant.len()).ok()?)?;
    Some(format!("{sign}{significant}e{exponent}"))
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u64).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(PRESENT);
            put_str(out, s);
        }
        None => out.push(ABSENT),
    }
}

fn put_opt_json(out: &mut Vec<u8>, value: Option<&Value>) {
    match value {
        Some(v) => {
            out.push(PRESENT);
            put_json(out, v);
        }
        None => out.push(ABSENT),
    }
}

fn put_json(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(JSON_NULL),
        Value::Bool(false) => out.push(JSON_FALSE),
        Value::Bool(true) => out.push(JSON_TRUE),
        Value::Number(n) => {
            out.push(JSON_NUMBER);
            put_str(out, &canonical_number(n));
        }
        Value::String(s) => {
            out.push(JSON_STRING);
            put_str(out, s);
        }
        Value::Array(items) => {
            out.push(JSON_ARRAY);
            put_len(out, items.len());
            for item in items {
                put_json(out, item);
            }
        }
        Value::Object(map) => {
            out.push(JSON_OBJECT);
            put_len(out, map.len());
            // Sorted here, whatever order the map iterates in (`preserve_order` keeps insertion order).
            let mut fields: Vec<(&String, &Value)> = map.iter().collect();
            fields.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            for (key, item) in fields {
                put_str(out, key);
                put_json(out, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn number(text: &str) -> Number {
        match serde_json::from_str::<Value>(text).unwrap() {
            Value::Number(n) => n,
            other => panic!("not a number: {other}"),
        }
    }

    #[test]
    fn key_order_and_layout_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": {"y": 1, "x": [1, 2]}, "a": null}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":null,"b":{"x":[1,2],"y":1}}"#).unwrap();
        assert_eq!(encode_json(&a), encode_json(&b));
    }

    #[test]
    fn structure_matters() {
        let distinct = [
            json!(null),
            json!(false),
            json!(true),
            json!(0),
            json!("0"),
            json!([]),
            json!({}),
            json!([null]),
            json!({"": null}),
            json!(["a", "b"]),
            json!(["ab"]),
            json!({"a": "b"}),
            json!({"ab": ""}),
            json!([[1], 2]),
            json!([1, [2]]),
        ];
        for (i, x) in distinct.iter().enumerate() {
            for y in &distinct[i + 1..] {
                assert_ne!(encode_json(x), encode_json(y), "{x} vs {y}");
            }
        }
    }

    #[test]
    fn numbers_have_one_form_per_value() {
        // How serde_json writes a value, and how Postgres jsonb prints it back.
        for (written, read_back) in [
            ("2.0", "2.0"),
            ("1e19", "10000000000000000000"),
            ("-1e19", "-10000000000000000000"),
            ("1e20", "100000000000000000000"),
            ("1.5e-7", "0.00000015"),
            ("-0.0", "0.0"),
            ("1e300", &format!("1{}", "0".repeat(300))),
            ("18446744073709551615", "18446744073709551615"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("0.30000000000000004", "0.30000000000000004"),
            ("-4.796566914205686e18", "-4796566914205686000"),
            ("1.5", "1.50"),
        ] {
            assert_eq!(
                canonical_number(&number(written)),
                canonical_number(&number(read_back)),
                "{written} vs {read_back}"
            );
        }
        assert_eq!(canonical_number(&number("2.0")), "2e0");
        assert_eq!(canonical_number(&number("2")), "2e0");
        assert_eq!(canonical_number(&number("0")), "0");
        assert_eq!(canonical_number(&number("-120")), "-12e1");
        assert_eq!(canonical_number(&number("1e19")), "1e19");
        assert_eq!(canonical_number(&number("0.1")), "1e-1");
        assert_eq!(canonical_number(&number("-0.00125")), "-125e-5");
        assert_ne!(
            canonical_number(&number("0.1")),
            canonical_number(&number("0.10000000000000002"))
        );
    }

    #[test]
    fn floats_survive_a_decimal_round_trip_exactly() {
        // serde_json writes the shortest form; Postgres prints the same value in plain notation.
        // With `float_roundtrip` the value read back is bit for bit the one written.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Any bit pattern, large integral values, and everyday decimals.
            let candidates = [
                f64::from_bits(x),
                (x as i64 >> 3) as f64,
                (x % 10_000_000_000) as f64 / 1000.0,
            ];
            for f in candidates.into_iter().filter(|f| f.is_finite()) {
                let written = serde_json::to_string(&f).unwrap();
                let plain = plain_decimal(&written);
                let back = number(&plain);
                assert_eq!(
                    canonical_number(&number(&written)),
                    canonical_number(&back),
                    "{written} vs {plain}"
                );
            }
        }
    }

    /// Rewrites a JSON number without exponent, as Postgres prints a `numeric`.
    fn plain_decimal(text: &str) -> String {
        let (mantissa, exp) = match text.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.parse::<i64>().unwrap()),
            None => (text, 0),
        };
        let (sign, mantissa) = match mantissa.strip_prefix('-') {
            Some(m) => ("-", m),
            None => ("", mantissa),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = format!("{int}{frac}");
        let point = int.len() as i64 + exp;
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}", "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    }
}
