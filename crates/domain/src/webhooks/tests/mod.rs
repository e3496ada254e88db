//! Tests of the whole webhooks module: both schemes through [`WebhookVerifier`], and properties.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::*;

mod mutations;
mod properties;
mod revio;
mod standard;

/// A fixed "now" for every test.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("valid timestamp")
}

/// Headers as the HTTP layer would pass them: looked up by lowercase name.
struct Headers(HashMap<String, String>);

impl Headers {
    fn new(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        )
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.to_owned(), value.to_owned());
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.0.remove(name);
        self
    }

    fn verify(
        &self,
        verifier: &WebhookVerifier,
        body: &[u8],
    ) -> Result<VerifiedDelivery, SignatureError> {
        verifier.verify(&|name| self.0.get(name).cloned(), body, now())
    }
}

fn dev_signer() -> RevioSigner {
    RevioSigner::from_pkcs8_pem(DEV_REVIO_PRIVATE_KEY_PEM).expect("dev private key")
}

fn rsa_verifier(public_pem: &str) -> WebhookVerifier {
    WebhookVerifier {
        rsa: Some(RevioPublicKey::from_pem(public_pem).expect("public key")),
        hmac: None,
        tolerance: DEFAULT_TOLERANCE,
    }
}

/// The Standard Webhooks specification's test secret.
const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn hmac_verifier(secret: &str) -> WebhookVerifier {
    WebhookVerifier {
        rsa: None,
        hmac: Some(StandardWebhookSecret::from_whsec(secret).expect("secret")),
        tolerance: DEFAULT_TOLERANCE,
    }
}

/// Headers of a Revio delivery signed with `signer` at `timestamp`.
fn revio_headers(signer: &RevioSigner, id: &str, timestamp: i64, body: &[u8]) -> Headers {
    let signature = signer.sign(id, timestamp, body).expect("signs");
    Headers::new(&[
        (REVIO_EVENT_ID_HEADER, id),
        (REVIO_TIMESTAMP_HEADER, &timestamp.to_string()),
        (REVIO_SIGNATURE_HEADER, &signature),
    ])
}

/// Headers of a Standard Webhooks delivery signed with `secret` at `timestamp`.
fn standard_headers(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Headers {
    let signature = StandardWebhookSecret::from_whsec(secret)
        .expect("secret")
        .sign(id, timestamp, body);
    Headers::new(&[
        (WEBHOOK_ID_HEADER, id),
        (WEBHOOK_TIMESTAMP_HEADER, &timestamp.to_string()),
        (WEBHOOK_SIGNATURE_HEADER, &signature),
    ])
}

#[test]
fn no_signature_header_is_missing_header() {
    let verifier = WebhookVerifier {
        rsa: Some(RevioPublicKey::from_pem(DEV_REVIO_PUBLIC_KEY_PEM).expect("key")),
        hmac: Some(StandardWebhookSecret::from_whsec(SPEC_SECRET).expect("secret")),
        tolerance: DEFAULT_TOLERANCE,
    };
    let headers = Headers::new(&[("revio-event-id", "evt_1"), ("webhook-id", "msg_1")]);
    assert_eq!(
        headers.verify(&verifier, b"{}"),
        Err(SignatureError::MissingHeader("webhook-signature"))
    );
}

#[test]
fn both_schemes_work_side_by_side_and_revio_wins_when_both_headers_are_sent() {
    let verifier = WebhookVerifier {
        rsa: Some(RevioPublicKey::from_pem(DEV_REVIO_PUBLIC_KEY_PEM).expect("key")),
        hmac: Some(StandardWebhookSecret::from_whsec(SPEC_SECRET).expect("secret")),
        tolerance: DEFAULT_TOLERANCE,
    };
    let ts = now().timestamp();
    let revio = revio_headers(&dev_signer(), "evt_1", ts, b"{}");
    let standard = standard_headers(SPEC_SECRET, "msg_1", ts, b"{}");
    let scheme = |headers: &Headers| headers.verify(&verifier, b"{}").map(|d| d.scheme);
    assert_eq!(scheme(&revio), Ok(Scheme::RevioRsa));
    assert_eq!(scheme(&standard), Ok(Scheme::StandardWebhooks));

    let mut both = standard;
    both.0.extend(revio.0);
    assert_eq!(scheme(&both), Ok(Scheme::RevioRsa));
    // A bad Revio signature is not rescued by a good Standard Webhooks one.
    let both = both.with(REVIO_SIGNATURE_HEADER, "AAAA");
    assert_eq!(scheme(&both), Err(SignatureError::BadSignature));
}

#[test]
fn error_messages_and_debug_never_show_secrets() {
    let secret = StandardWebhookSecret::from_whsec(SPEC_SECRET).expect("secret");
    let signer = dev_signer();
    let verifier = hmac_verifier(SPEC_SECRET);
    for shown in [
        format!("{secret:?}"),
        format!("{signer:?}"),
        format!("{verifier:?}"),
    ] {
        assert!(!shown.contains("MfKQ9r8G"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
    let headers = standard_headers(SPEC_SECRET, "msg_1", now().timestamp(), b"{}");
    let signature = headers.0[WEBHOOK_SIGNATURE_HEADER].clone();
    let wrong = hmac_verifier("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let error = headers.verify(&wrong, b"{}").expect_err("wrong secret");
    assert!(!error.to_string().contains(&signature[3..]));
    for error in [
        StandardWebhookSecret::from_whsec("whsec_!!secret!!").expect_err("bad"),
        StandardWebhookSecret::from_whsec("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect_err("bad"),
    ] {
        assert!(!error.to_string().contains("secret!!"));
        assert!(!error.to_string().contains("MfKQ9r8G"));
    }
}
