//! What both schemes share: the verified result, header lookup, event ids and signed content.

use chrono::{DateTime, Utc};

use super::SignatureError;

/// Longest event id accepted, in bytes.
pub const MAX_EVENT_ID_LEN: usize = 255;

/// How a delivery was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Revio's RSA PKCS#1 v1.5 SHA-256 signature (`revio-*` headers).
    RevioRsa,
    /// Standard Webhooks HMAC-SHA256 signature (`webhook-*` headers).
    StandardWebhooks,
}

/// A delivery whose signature and timestamp checked out; its body may now be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDelivery {
    /// The provider's event id, as signed (use it to deduplicate retries).
    pub event_id: String,
    /// The signed timestamp.
    pub timestamp: DateTime<Utc>,
    /// The scheme that verified the delivery.
    pub scheme: Scheme,
}

/// Looks a header up by its lowercase name; the HTTP layer supplies it (no HTTP types here).
pub type HeaderLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The value of a required header.
pub(super) fn required(
    headers: HeaderLookup<'_>,
    name: &'static str,
) -> Result<String, SignatureError> {
    headers(name).ok_or(SignatureError::MissingHeader(name))
}

/// Checks an event id: 1 to 255 printable ASCII characters, no spaces.
pub(super) fn check_event_id(header: &'static str, id: &str) -> Result<(), SignatureError> {
    let printable = id.bytes().all(|b| b.is_ascii_graphic());
    if id.is_empty() || id.len() > MAX_EVENT_ID_LEN || !printable {
        return Err(SignatureError::MalformedHeader(header));
    }
    Ok(())
}

/// The signed bytes of both schemes: `{id}.{timestamp}.{body}`.
pub(super) fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_short_printable_ascii() {
        for ok in [
            "evt_1",
            "a",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            &"x".repeat(255),
        ] {
            assert_eq!(check_event_id("id", ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            " ",
            "evt 1",
            "evt\t1",
            "evt\n",
            "évt",
            "\u{7f}",
            &"x".repeat(256),
        ] {
            assert_eq!(
                check_event_id("id", bad),
                Err(SignatureError::MalformedHeader("id")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn signed_content_joins_with_dots() {
        assert_eq!(signed_content("id", "12", b"{}"), b"id.12.{}");
    }
}
