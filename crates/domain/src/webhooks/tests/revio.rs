//! Revio's RSA scheme.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::super::dev_keys::{
    DEV_REVIO_PUBLIC_KEY_PKCS1_PEM, TEST_EC_PUBLIC_KEY_PEM, TEST_OTHER_PRIVATE_KEY_PEM,
    TEST_OTHER_PUBLIC_KEY_PEM,
};
use super::*;

const BODY: &[u8] = br#"{"type":"payment.succeeded","amount":1250}"#;

fn signed() -> Headers {
    revio_headers(&dev_signer(), "evt_123", now().timestamp(), BODY)
}

#[test]
fn a_signed_delivery_verifies_with_the_spki_and_pkcs1_public_keys() {
    for pem in [DEV_REVIO_PUBLIC_KEY_PEM, DEV_REVIO_PUBLIC_KEY_PKCS1_PEM] {
        let delivery = signed().verify(&rsa_verifier(pem), BODY).expect("verifies");
        assert_eq!(
            delivery,
            VerifiedDelivery {
                event_id: "evt_123".to_owned(),
                timestamp: now(),
                scheme: Scheme::RevioRsa,
            }
        );
    }
}

#[test]
fn both_public_key_forms_and_the_signer_agree() {
    let spki = RevioPublicKey::from_pem(DEV_REVIO_PUBLIC_KEY_PEM).expect("spki");
    let pkcs1 = RevioPublicKey::from_pem(DEV_REVIO_PUBLIC_KEY_PKCS1_PEM).expect("pkcs1");
    assert_eq!(spki, pkcs1);
    assert_eq!(dev_signer().public_key(), Ok(spki.clone()));
    assert_eq!(spki.bits(), 2048);
    assert_eq!(format!("{spki:?}"), "RevioPublicKey { bits: 2048, .. }");
}

#[test]
fn a_signature_from_another_key_is_a_forgery() {
    let other = RevioSigner::from_pkcs8_pem(TEST_OTHER_PRIVATE_KEY_PEM).expect("other key");
    let forged = revio_headers(&other, "evt_123", now().timestamp(), BODY);
    assert_eq!(
        forged.verify(&rsa_verifier(DEV_REVIO_PUBLIC_KEY_PEM), BODY),
        Err(SignatureError::BadSignature)
    );
    // ... and it verifies under its own key, so the refusal is about the key.
    assert!(
        forged
            .verify(&rsa_verifier(TEST_OTHER_PUBLIC_KEY_PEM), BODY)
            .is_ok()
    );
}

#[test]
fn a_truncated_signature_is_refused() {
    let headers = signed();
    let signature = STANDARD
        .decode(&headers.0[REVIO_SIGNATURE_HEADER])
        .expect("base64");
    for keep in [1, 128, 255] {
        let truncated = STANDARD.encode(&signature[..keep]);
        let headers = signed().with(REVIO_SIGNATURE_HEADER, &truncated);
        assert_eq!(
            headers.verify(&rsa_verifier(DEV_REVIO_PUBLIC_KEY_PEM), BODY),
            Err(SignatureError::BadSignature),
            "{keep} bytes"
        );
    }
}

#[test]
fn tampering_with_the_body_id_or_timestamp_breaks_the_signature() {
    let verifier = rsa_verifier(DEV_REVIO_PUBLIC_KEY_PEM);
    let tampered_body = br#"{"type":"payment.succeeded","amount":9250}"#;
    assert_eq!(
        signed().verify(&verifier, tampered_body),
        Err(SignatureError::BadSignature)
    );
    let other_id = signed().with(REVIO_EVENT_ID_HEADER, "evt_124");
    assert_eq!(
        other_id.verify(&verifier, BODY),
        Err(SignatureError::BadSignature)
    );
    let later = (now().timestamp() + 1).to_string();
    let other_time = signed().with(REVIO_TIMESTAMP_HEADER, &later);
    assert_eq!(
        other_time.verify(&verifier, BODY),
        Err(SignatureError::BadSignature)
    );
    let padded = format!("0{}", now().timestamp());
    let same_time_other_text = signed().with(REVIO_TIMESTAMP_HEADER, &padded);
    assert_eq!(
        same_time_other_text.verify(&verifier, BODY),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn a_non_base64_signature_is_malformed() {
    let verifier = rsa_verifier(DEV_REVIO_PUBLIC_KEY_PEM);
    for value in ["not base64!", "", "abc", "YWJj\n", "sha256=abcdef"] {
        assert_eq!(
            signed()
                .with(REVIO_SIGNATURE_HEADER, value)
                .verify(&verifier, BODY),
            Err(SignatureError::MalformedHeader("revio-signature")),
            "{value:?}"
        );
    }
}

#[test]
fn stale_and_future_timestamps_are_refused_even_when_signed() {
    let verifier = rsa_verifier(DEV_REVIO_PUBLIC_KEY_PEM);
    for offset in [-301, 301, -86_400, 86_400] {
        let headers = revio_headers(&dev_signer(), "evt_1", now().timestamp() + offset, BODY);
        assert_eq!(
            headers.verify(&verifier, BODY),
            Err(SignatureError::StaleTimestamp),
            "{offset}"
        );
    }
    for offset in [-300, 300] {
        let headers = revio_headers(&dev_signer(), "evt_1", now().timestamp() + offset, BODY);
        assert!(headers.verify(&verifier, BODY).is_ok(), "{offset}");
    }
}

#[test]
fn missing_and_malformed_headers_are_named() {
    let verifier = rsa_verifier(DEV_REVIO_PUBLIC_KEY_PEM);
    for header in [REVIO_EVENT_ID_HEADER, REVIO_TIMESTAMP_HEADER] {
        assert_eq!(
            signed().without(header).verify(&verifier, BODY),
            Err(SignatureError::MissingHeader(header))
        );
    }
    for (header, value) in [
        (REVIO_EVENT_ID_HEADER, ""),
        (REVIO_EVENT_ID_HEADER, "evt 123"),
        (REVIO_TIMESTAMP_HEADER, "yesterday"),
        (REVIO_TIMESTAMP_HEADER, "-1700000000"),
    ] {
        assert_eq!(
            signed().with(header, value).verify(&verifier, BODY),
            Err(SignatureError::MalformedHeader(header)),
            "{header}: {value:?}"
        );
    }
}

#[test]
fn a_revio_delivery_without_a_revio_key_is_refused() {
    let verifier = hmac_verifier(SPEC_SECRET);
    assert_eq!(
        signed().verify(&verifier, BODY),
        Err(SignatureError::SchemeNotConfigured(Scheme::RevioRsa))
    );
}

#[test]
fn unusable_public_keys_are_refused_at_configuration() {
    assert_eq!(
        RevioPublicKey::from_pem(TEST_EC_PUBLIC_KEY_PEM),
        Err(KeyError::NotRsa)
    );
    assert_eq!(
        RevioPublicKey::from_pem(DEV_REVIO_PRIVATE_KEY_PEM),
        Err(KeyError::UnsupportedPemLabel(
            "PUBLIC KEY or RSA PUBLIC KEY"
        ))
    );
    assert!(matches!(
        RevioPublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----"),
        Err(KeyError::MalformedDer(_))
    ));
    assert!(RevioPublicKey::from_pem("").is_err());
}

#[test]
fn unusable_private_keys_are_refused() {
    assert!(matches!(
        RevioSigner::from_pkcs8_pem(DEV_REVIO_PUBLIC_KEY_PEM),
        Err(KeyError::UnsupportedPemLabel(_))
    ));
    assert!(matches!(
        RevioSigner::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----"),
        Err(KeyError::PrivateKeyRejected)
    ));
}
