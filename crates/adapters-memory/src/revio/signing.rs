//! How the simulator signs its webhooks.

use keel_domain::webhooks::{
    DEV_REVIO_PRIVATE_KEY_PEM, KeyError, REVIO_EVENT_ID_HEADER, REVIO_SIGNATURE_HEADER,
    REVIO_TIMESTAMP_HEADER, RevioSigner, SigningError, StandardWebhookSecret, WEBHOOK_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER,
};

use super::sink::SignedWebhook;

/// The signature scheme of the simulator's webhooks.
#[derive(Debug)]
pub enum SimSigning {
    /// Revio's RSA signature (`revio-*` headers).
    Rsa(RevioSigner),
    /// Standard Webhooks HMAC (`webhook-*` headers).
    Standard(StandardWebhookSecret),
}

impl SimSigning {
    /// RSA with the public development key (the default of the built-in simulator).
    pub fn dev_rsa() -> Result<Self, KeyError> {
        RevioSigner::from_pkcs8_pem(DEV_REVIO_PRIVATE_KEY_PEM).map(Self::Rsa)
    }

    /// Signs `body` as event `event_id` sent at `timestamp` (Unix seconds).
    pub fn sign(
        &self,
        event_id: &str,
        timestamp: i64,
        body: Vec<u8>,
    ) -> Result<SignedWebhook, SigningError> {
        let (id_header, timestamp_header, signature_header, signature) = match self {
            Self::Rsa(signer) => (
                REVIO_EVENT_ID_HEADER,
                REVIO_TIMESTAMP_HEADER,
                REVIO_SIGNATURE_HEADER,
                signer.sign(event_id, timestamp, &body)?,
            ),
            Self::Standard(secret) => (
                WEBHOOK_ID_HEADER,
                WEBHOOK_TIMESTAMP_HEADER,
                WEBHOOK_SIGNATURE_HEADER,
                secret.sign(event_id, timestamp, &body),
            ),
        };
        Ok(SignedWebhook {
            headers: vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                (id_header.to_owned(), event_id.to_owned()),
                (timestamp_header.to_owned(), timestamp.to_string()),
                (signature_header.to_owned(), signature),
            ],
            body,
        })
    }
}
