//! The Standard Webhooks scheme.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

/// The specification's published test vector.
const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SPEC_TIMESTAMP: i64 = 1_614_265_330;
const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

const BODY: &[u8] = br#"{"type":"invoice.paid"}"#;

fn secret() -> StandardWebhookSecret {
    StandardWebhookSecret::from_whsec(SPEC_SECRET).expect("spec secret")
}

fn signed() -> Headers {
    standard_headers(SPEC_SECRET, "msg_1", now().timestamp(), BODY)
}

#[test]
fn the_specification_test_vector_signs_and_verifies() {
    assert_eq!(
        secret().sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
        SPEC_SIGNATURE
    );
    let headers = Headers::new(&[
        (WEBHOOK_ID_HEADER, SPEC_ID),
        (WEBHOOK_TIMESTAMP_HEADER, "1614265330"),
        (WEBHOOK_SIGNATURE_HEADER, SPEC_SIGNATURE),
    ]);
    let then = DateTime::from_timestamp(SPEC_TIMESTAMP + 10, 0).expect("valid");
    let verifier = hmac_verifier(SPEC_SECRET);
    let delivery = verifier
        .verify(&|name| headers.0.get(name).cloned(), SPEC_BODY, then)
        .expect("verifies");
    assert_eq!(
        delivery,
        VerifiedDelivery {
            event_id: SPEC_ID.to_owned(),
            timestamp: DateTime::from_timestamp(SPEC_TIMESTAMP, 0).expect("valid"),
            scheme: Scheme::StandardWebhooks,
        }
    );
    // Years later the same delivery is a replay.
    assert_eq!(
        verifier.verify(&|name| headers.0.get(name).cloned(), SPEC_BODY, now()),
        Err(SignatureError::StaleTimestamp)
    );
}

#[test]
fn a_signed_delivery_verifies() {
    let delivery = signed()
        .verify(&hmac_verifier(SPEC_SECRET), BODY)
        .expect("verifies");
    assert_eq!(delivery.event_id, "msg_1");
    assert_eq!(delivery.timestamp, now());
    assert_eq!(delivery.scheme, Scheme::StandardWebhooks);
}

#[test]
fn any_one_valid_v1_signature_among_several_is_enough() {
    let valid = signed().0[WEBHOOK_SIGNATURE_HEADER].clone();
    let other = StandardWebhookSecret::from_whsec("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .expect("secret")
        .sign("msg_1", now().timestamp(), BODY);
    let verifier = hmac_verifier(SPEC_SECRET);
    for header in [
        format!("{other} {valid}"),
        format!("{valid} {other}"),
        format!("v2,abc v1,bm9wZQ== {valid}"),
        format!("  {other}   {valid} "),
        format!("garbage v1,!!! {valid}"),
    ] {
        let headers = signed().with(WEBHOOK_SIGNATURE_HEADER, &header);
        assert!(headers.verify(&verifier, BODY).is_ok(), "{header}");
    }
    let headers = signed().with(WEBHOOK_SIGNATURE_HEADER, &format!("{other} {other}"));
    assert_eq!(
        headers.verify(&verifier, BODY),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn other_versions_are_ignored() {
    let valid = signed().0[WEBHOOK_SIGNATURE_HEADER].clone();
    let as_v2 = valid.replacen("v1,", "v2,", 1);
    let as_v1a = valid.replacen("v1,", "v1a,", 1);
    let verifier = hmac_verifier(SPEC_SECRET);
    for header in [as_v2, as_v1a, valid.replacen("v1,", "", 1)] {
        let headers = signed().with(WEBHOOK_SIGNATURE_HEADER, &header);
        assert_eq!(
            headers.verify(&verifier, BODY),
            Err(SignatureError::BadSignature),
            "{header}"
        );
    }
}

#[test]
fn a_truncated_signature_never_matches() {
    let valid = signed().0[WEBHOOK_SIGNATURE_HEADER].clone();
    let tag = STANDARD.decode(&valid[3..]).expect("base64");
    assert_eq!(tag.len(), 32);
    let verifier = hmac_verifier(SPEC_SECRET);
    for keep in [0, 1, 16, 31] {
        let header = format!("v1,{}", STANDARD.encode(&tag[..keep]));
        let headers = signed().with(WEBHOOK_SIGNATURE_HEADER, &header);
        assert_eq!(
            headers.verify(&verifier, BODY),
            Err(SignatureError::BadSignature),
            "{keep} bytes"
        );
    }
    let mut longer = tag.clone();
    longer.push(0);
    let header = format!("v1,{}", STANDARD.encode(&longer));
    let headers = signed().with(WEBHOOK_SIGNATURE_HEADER, &header);
    assert_eq!(
        headers.verify(&verifier, BODY),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn a_wrong_secret_fails() {
    let verifier = hmac_verifier("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(
        signed().verify(&verifier, BODY),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn tampering_with_the_body_id_or_timestamp_breaks_the_signature() {
    let verifier = hmac_verifier(SPEC_SECRET);
    assert_eq!(
        signed().verify(&verifier, br#"{"type":"invoice.void"}"#),
        Err(SignatureError::BadSignature)
    );
    let other_id = signed().with(WEBHOOK_ID_HEADER, "msg_2");
    assert_eq!(
        other_id.verify(&verifier, BODY),
        Err(SignatureError::BadSignature)
    );
    let earlier = (now().timestamp() - 1).to_string();
    let other_time = signed().with(WEBHOOK_TIMESTAMP_HEADER, &earlier);
    assert_eq!(
        other_time.verify(&verifier, BODY),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn stale_and_future_timestamps_are_refused_even_when_signed() {
    let verifier = hmac_verifier(SPEC_SECRET);
    for offset in [-301, 301] {
        let headers = standard_headers(SPEC_SECRET, "msg_1", now().timestamp() + offset, BODY);
        assert_eq!(
            headers.verify(&verifier, BODY),
            Err(SignatureError::StaleTimestamp)
        );
    }
}

#[test]
fn missing_and_malformed_headers_are_named() {
    let verifier = hmac_verifier(SPEC_SECRET);
    for header in [WEBHOOK_ID_HEADER, WEBHOOK_TIMESTAMP_HEADER] {
        assert_eq!(
            signed().without(header).verify(&verifier, BODY),
            Err(SignatureError::MissingHeader(header))
        );
    }
    for (header, value) in [
        (WEBHOOK_ID_HEADER, ""),
        (WEBHOOK_ID_HEADER, "msg\u{0}1"),
        (WEBHOOK_TIMESTAMP_HEADER, "1.7e9"),
        (WEBHOOK_SIGNATURE_HEADER, ""),
        (WEBHOOK_SIGNATURE_HEADER, "   "),
    ] {
        assert_eq!(
            signed().with(header, value).verify(&verifier, BODY),
            Err(SignatureError::MalformedHeader(header)),
            "{header}: {value:?}"
        );
    }
    let many = vec!["v1,bm9wZQ=="; 17].join(" ");
    assert_eq!(
        signed()
            .with(WEBHOOK_SIGNATURE_HEADER, &many)
            .verify(&verifier, BODY),
        Err(SignatureError::MalformedHeader(WEBHOOK_SIGNATURE_HEADER))
    );
}

#[test]
fn a_standard_delivery_without_a_secret_is_refused() {
    let verifier = rsa_verifier(DEV_REVIO_PUBLIC_KEY_PEM);
    assert_eq!(
        signed().verify(&verifier, BODY),
        Err(SignatureError::SchemeNotConfigured(
            Scheme::StandardWebhooks
        ))
    );
}

#[test]
fn malformed_secrets_are_refused() {
    for (secret, reason) in [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "missing whsec_ prefix"),
        ("whsec_", "shorter than 24 bytes"),
        ("whsec_AAAA", "shorter than 24 bytes"),
        ("whsec_not base64!", "invalid base64"),
        (
            "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "missing whsec_ prefix",
        ),
    ] {
        assert_eq!(
            StandardWebhookSecret::from_whsec(secret).map(|_| ()),
            Err(KeyError::MalformedSecret(reason)),
            "{secret}"
        );
    }
}
