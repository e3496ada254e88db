//! Decoding one PEM block (RFC 7468 textual encoding) into its DER bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::KeyError;

/// Decodes a single PEM block whose label is one of `accepted`; returns the label and the DER.
///
/// Surrounding whitespace and line breaks (LF or CRLF) are ignored; text outside the block,
/// encapsulated headers and several blocks are refused. `expected` describes the accepted labels
/// in the error. The DER is zeroized on drop, as it may be a private key.
pub(super) fn decode_pem(
    pem: &str,
    accepted: &[&'static str],
    expected: &'static str,
) -> Result<(&'static str, Zeroizing<Vec<u8>>), KeyError> {
    let text = pem.trim();
    let after_begin = text
        .strip_prefix("-----BEGIN ")
        .ok_or(KeyError::MalformedPem("missing BEGIN line"))?;
    let label_end = after_begin
        .find("-----")
        .ok_or(KeyError::MalformedPem("unterminated BEGIN line"))?;
    let (label, after_label) = after_begin.split_at(label_end);
    let label = *accepted
        .iter()
        .find(|accepted| **accepted == label)
        .ok_or(KeyError::UnsupportedPemLabel(expected))?;
    let body = after_label
        .strip_prefix("-----")
        .and_then(|rest| rest.strip_suffix("-----"))
        .and_then(|rest| rest.strip_suffix(label))
        .and_then(|rest| rest.strip_suffix("-----END "))
        .ok_or(KeyError::MalformedPem("missing or mismatched END line"))?;
    let base64: Zeroizing<String> =
        Zeroizing::new(body.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    let der = Zeroizing::new(
        STANDARD
            .decode(base64.as_bytes())
            .map_err(|_| KeyError::MalformedPem("invalid base64"))?,
    );
    if der.is_empty() {
        return Err(KeyError::MalformedPem("empty block"));
    }
    Ok((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCEPTED: &[&str] = &["PUBLIC KEY"];

    #[test]
    fn a_block_is_decoded_with_lf_or_crlf() {
        for pem in [
            "-----BEGIN PUBLIC KEY-----\nAQID\nBA==\n-----END PUBLIC KEY-----\n",
            "\r\n-----BEGIN PUBLIC KEY-----\r\nAQIDBA==\r\n-----END PUBLIC KEY-----\r\n",
        ] {
            let (label, der) = decode_pem(pem, ACCEPTED, "PUBLIC KEY").expect("valid PEM");
            assert_eq!(label, "PUBLIC KEY");
            assert_eq!(der.as_slice(), &[1, 2, 3, 4]);
        }
    }

    #[test]
    fn malformed_blocks_are_refused() {
        let cases = [
            ("", KeyError::MalformedPem("missing BEGIN line")),
            ("AQID", KeyError::MalformedPem("missing BEGIN line")),
            (
                "-----BEGIN PUBLIC KEY",
                KeyError::MalformedPem("unterminated BEGIN line"),
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----",
                KeyError::UnsupportedPemLabel("PUBLIC KEY"),
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nAQID\n-----END PRIVATE KEY-----",
                KeyError::MalformedPem("missing or mismatched END line"),
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nAQID\n",
                KeyError::MalformedPem("missing or mismatched END line"),
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nA*ID\n-----END PUBLIC KEY-----",
                KeyError::MalformedPem("invalid base64"),
            ),
            (
                "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----",
                KeyError::MalformedPem("empty block"),
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nAQID\n-----END PUBLIC KEY-----\n-----BEGIN PUBLIC KEY-----\nAQID\n-----END PUBLIC KEY-----",
                KeyError::MalformedPem("invalid base64"),
            ),
        ];
        for (pem, expected) in cases {
            assert_eq!(
                decode_pem(pem, ACCEPTED, "PUBLIC KEY").map(|(label, _)| label),
                Err(expected),
                "{pem:?}"
            );
        }
    }
}
