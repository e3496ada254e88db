//! Fuzz properties over signed deliveries: any printable id, any body and any timestamp within
//! the window round-trip, while no mutation of the id, timestamp or signature header, no swap of
//! id and timestamp and no signature by another secret verifies.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

use super::*;
use crate::fuzz::{Mutation, mutation};

const BODY: &[u8] = br#"{"type":"payment.succeeded","amount_minor":1250}"#;

/// The three headers of one scheme: id, timestamp, signature.
type Names = [&'static str; 3];
const REVIO: Names = [
    REVIO_EVENT_ID_HEADER,
    REVIO_TIMESTAMP_HEADER,
    REVIO_SIGNATURE_HEADER,
];
const STANDARD_WEBHOOKS: Names = [
    WEBHOOK_ID_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
];

/// One Revio delivery signed once (RSA signing is slow), mutated by every case.
fn revio_signed() -> &'static Headers {
    static SIGNED: OnceLock<Headers> = OnceLock::new();
    SIGNED.get_or_init(|| revio_headers(&dev_signer(), "evt_42", now().timestamp(), BODY))
}

fn verifier() -> WebhookVerifier {
    WebhookVerifier {
        rsa: Some(RevioPublicKey::from_pem(DEV_REVIO_PUBLIC_KEY_PEM).expect("key")),
        hmac: Some(StandardWebhookSecret::from_whsec(SPEC_SECRET).expect("secret")),
        tolerance: DEFAULT_TOLERANCE,
    }
}

/// `signed` with header `which` (0 id, 1 timestamp, 2 signature) changed by `change`; `None` when
/// the change is a no-op or only adds another entry to a Standard Webhooks signature list (the
/// specification lets any one entry match, so that is not tampering).
fn mutated(signed: &Headers, names: Names, which: usize, change: &Mutation) -> Option<Headers> {
    let name = names[which % 3];
    let separator = if which % 3 == 2 { ',' } else { '.' };
    let value = change.apply(&signed.0[name], separator)?;
    if name == WEBHOOK_SIGNATURE_HEADER && value.contains(' ') {
        return None;
    }
    Some(Headers(signed.0.clone()).with(name, &value))
}

/// `signed` with the values of its id and timestamp headers exchanged.
fn swapped(signed: &Headers, names: Names) -> Headers {
    let [id, timestamp, _] = names;
    Headers(signed.0.clone())
        .with(id, &signed.0[timestamp])
        .with(timestamp, &signed.0[id])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_mutation_of_a_standard_delivery_verifies(which in 0usize..3, change in mutation()) {
        let signed = standard_headers(SPEC_SECRET, "msg_42", now().timestamp(), BODY);
        prop_assert!(signed.verify(&verifier(), BODY).is_ok());
        prop_assert!(swapped(&signed, STANDARD_WEBHOOKS).verify(&verifier(), BODY).is_err());
        if let Some(headers) = mutated(&signed, STANDARD_WEBHOOKS, which, &change) {
            prop_assert!(headers.verify(&verifier(), BODY).is_err(), "{:?} accepted: {:?}", change, headers.0);
        }
    }

    #[test]
    fn no_mutation_of_a_revio_delivery_verifies(which in 0usize..3, change in mutation()) {
        let signed = revio_signed();
        prop_assert!(signed.verify(&verifier(), BODY).is_ok());
        prop_assert!(swapped(signed, REVIO).verify(&verifier(), BODY).is_err());
        if let Some(headers) = mutated(signed, REVIO, which, &change) {
            prop_assert!(headers.verify(&verifier(), BODY).is_err(), "{:?} accepted: {:?}", change, headers.0);
        }
    }

    #[test]
    fn another_standard_secret_never_verifies(key in proptest::collection::vec(any::<u8>(), 24..64)) {
        let other = format!("whsec_{}", STANDARD.encode(&key));
        prop_assume!(other != SPEC_SECRET);
        let headers = standard_headers(&other, "msg_42", now().timestamp(), BODY);
        prop_assert_eq!(headers.verify(&verifier(), BODY), Err(SignatureError::BadSignature));
    }

    #[test]
    fn standard_deliveries_round_trip(
        id in "[!-~]{1,255}",
        offset in -300i64..=300,
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let timestamp = now().timestamp() + offset;
        let delivery = standard_headers(SPEC_SECRET, &id, timestamp, &body)
            .verify(&verifier(), &body)
            .expect("a signed delivery verifies");
        prop_assert_eq!(delivery.event_id, id);
        prop_assert_eq!(delivery.timestamp.timestamp(), timestamp);
    }
}

proptest! {
    // RSA signing is slow: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn revio_deliveries_round_trip(id in "[!-~]{1,255}", offset in -300i64..=300) {
        let timestamp = now().timestamp() + offset;
        let delivery = revio_headers(&dev_signer(), &id, timestamp, BODY)
            .verify(&verifier(), BODY)
            .expect("a signed delivery verifies");
        prop_assert_eq!((delivery.event_id, delivery.scheme), (id, Scheme::RevioRsa));
    }
}
