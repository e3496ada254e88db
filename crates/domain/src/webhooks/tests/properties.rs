//! Properties: arbitrary input never panics nor verifies; any bit flip of a signed body fails.

use proptest::prelude::*;

use super::*;

/// Any header value, including empty, non-ASCII and control characters.
fn header_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        any::<String>().prop_map(Some),
        "[ -~]{0,80}".prop_map(Some),
        "v1,[A-Za-z0-9+/]{43}=".prop_map(Some),
        "[0-9]{1,13}".prop_map(Some),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..256)
}

fn both_schemes() -> WebhookVerifier {
    WebhookVerifier {
        rsa: Some(RevioPublicKey::from_pem(DEV_REVIO_PUBLIC_KEY_PEM).expect("key")),
        hmac: Some(StandardWebhookSecret::from_whsec(SPEC_SECRET).expect("secret")),
        tolerance: DEFAULT_TOLERANCE,
    }
}

/// Headers from optional values; absent values are left out.
fn headers(pairs: [(&str, Option<String>); 3]) -> Headers {
    Headers(
        pairs
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name.to_owned(), value)))
            .collect(),
    )
}

proptest! {
    #[test]
    fn arbitrary_revio_headers_never_panic_nor_verify(
        id in header_value(),
        timestamp in prop_oneof![header_value(), Just(Some(now().timestamp().to_string()))],
        signature in header_value(),
        body in body(),
    ) {
        let headers = headers([
            (REVIO_EVENT_ID_HEADER, id),
            (REVIO_TIMESTAMP_HEADER, timestamp),
            (REVIO_SIGNATURE_HEADER, signature),
        ]);
        prop_assert!(headers.verify(&both_schemes(), &body).is_err());
    }

    #[test]
    fn arbitrary_standard_headers_never_panic_nor_verify(
        id in header_value(),
        timestamp in prop_oneof![header_value(), Just(Some(now().timestamp().to_string()))],
        signature in header_value(),
        body in body(),
    ) {
        let headers = headers([
            (WEBHOOK_ID_HEADER, id),
            (WEBHOOK_TIMESTAMP_HEADER, timestamp),
            (WEBHOOK_SIGNATURE_HEADER, signature),
        ]);
        prop_assert!(headers.verify(&both_schemes(), &body).is_err());
    }

    #[test]
    fn arbitrary_pem_text_never_panics(text in any::<String>(), der in body()) {
        let _ = RevioPublicKey::from_pem(&text);
        let _ = StandardWebhookSecret::from_whsec(&text);
        let wrapped = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
        );
        let _ = RevioPublicKey::from_pem(&wrapped);
        let wrapped = wrapped.replace("PUBLIC KEY", "RSA PUBLIC KEY");
        let _ = RevioPublicKey::from_pem(&wrapped);
    }

    #[test]
    fn any_bit_flip_of_a_standard_signed_body_fails(body in proptest::collection::vec(any::<u8>(), 1..256), bit in any::<proptest::sample::Index>()) {
        let headers = standard_headers(SPEC_SECRET, "msg_1", now().timestamp(), &body);
        prop_assert!(headers.verify(&both_schemes(), &body).is_ok());
        let mut flipped = body.clone();
        let bit = bit.index(body.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert_eq!(headers.verify(&both_schemes(), &flipped), Err(SignatureError::BadSignature));
    }
}

proptest! {
    // RSA signing is slower; fewer cases still cover every byte position over the runs.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_bit_flip_of_a_revio_signed_body_fails(body in proptest::collection::vec(any::<u8>(), 1..256), bit in any::<proptest::sample::Index>()) {
        let headers = revio_headers(&dev_signer(), "evt_1", now().timestamp(), &body);
        prop_assert!(headers.verify(&both_schemes(), &body).is_ok());
        let mut flipped = body.clone();
        let bit = bit.index(body.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert_eq!(headers.verify(&both_schemes(), &flipped), Err(SignatureError::BadSignature));
    }
}
