//! Revio's scheme: RSA PKCS#1 v1.5 SHA-256 over `{event_id}.{timestamp}.{raw_body}`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};

use super::delivery::{HeaderLookup, check_event_id, required, signed_content};
use super::pem::decode_pem;
use super::rsa_der::{rsa_modulus_bits, rsa_public_key_from_spki};
use super::timestamp::check_named_timestamp;
use super::{KeyError, Scheme, SignatureError, SigningError, VerifiedDelivery};

/// Header carrying Revio's event id.
pub const REVIO_EVENT_ID_HEADER: &str = "revio-event-id";
/// Header carrying Revio's signing time (decimal unix seconds).
pub const REVIO_TIMESTAMP_HEADER: &str = "revio-timestamp";
/// Header carrying Revio's signature (standard base64).
pub const REVIO_SIGNATURE_HEADER: &str = "revio-signature";

/// PEM label of a SubjectPublicKeyInfo.
const SPKI_LABEL: &str = "PUBLIC KEY";
/// PEM label of a PKCS#1 `RSAPublicKey`.
const PKCS1_LABEL: &str = "RSA PUBLIC KEY";
/// PEM label of a PKCS#8 private key.
const PKCS8_LABEL: &str = "PRIVATE KEY";

/// Revio's RSA public key (2048 to 8192 bits), which verifies its webhook signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct RevioPublicKey {
    /// PKCS#1 `RSAPublicKey` DER, as ring expects it.
    rsa_public_key: Vec<u8>,
    /// Modulus size.
    bits: usize,
}

impl RevioPublicKey {
    /// Reads a PEM public key, either SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(
            pem,
            &[SPKI_LABEL, PKCS1_LABEL],
            "PUBLIC KEY or RSA PUBLIC KEY",
        )?;
        let rsa_public_key = if label == SPKI_LABEL {
            rsa_public_key_from_spki(&der)?
        } else {
            &der[..]
        };
        Self::from_rsa_public_key_der(rsa_public_key)
    }

    /// Reads a PKCS#1 `RSAPublicKey` DER.
    fn from_rsa_public_key_der(der: &[u8]) -> Result<Self, KeyError> {
        let bits = rsa_modulus_bits(der)?;
        Ok(Self {
            rsa_public_key: der.to_vec(),
            bits,
        })
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Checks a decoded `signature` over `{event_id}.{timestamp}.{body}` (headers as received).
    pub fn verify_signature(
        &self,
        event_id: &str,
        timestamp: &str,
        body: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.rsa_public_key)
            .verify(&signed_content(event_id, timestamp, body), signature)
            .map_err(|_| SignatureError::BadSignature)
    }
}

impl fmt::Debug for RevioPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevioPublicKey")
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

/// Signs deliveries as Revio does; for the built-in simulator and tests.
pub struct RevioSigner {
    key_pair: RsaKeyPair,
    rng: SystemRandom,
}

impl RevioSigner {
    /// Reads a PKCS#8 RSA private key PEM (`BEGIN PRIVATE KEY`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let (_, der) = decode_pem(pem, &[PKCS8_LABEL], "PRIVATE KEY (PKCS#8)")?;
        let key_pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| KeyError::PrivateKeyRejected)?;
        Ok(Self {
            key_pair,
            rng: SystemRandom::new(),
        })
    }

    /// The matching public key.
    pub fn public_key(&self) -> Result<RevioPublicKey, KeyError> {
        RevioPublicKey::from_rsa_public_key_der(self.key_pair.public().as_ref())
    }

    /// The `revio-signature` header value (standard base64) for a delivery.
    pub fn sign(
        &self,
        event_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<String, SigningError> {
        let content = signed_content(event_id, &timestamp.to_string(), body);
        let mut signature = vec![0; self.key_pair.public().modulus_len()];
        self.key_pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &self.rng,
                &content,
                &mut signature,
            )
            .map_err(|_| SigningError)?;
        Ok(STANDARD.encode(signature))
    }
}

impl fmt::Debug for RevioSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RevioSigner(<redacted>)")
    }
}

/// Verifies a delivery signed with Revio's scheme.
pub(super) fn verify_revio(
    key: &RevioPublicKey,
    headers: HeaderLookup<'_>,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<VerifiedDelivery, SignatureError> {
    let signature = required(headers, REVIO_SIGNATURE_HEADER)?;
    let event_id = required(headers, REVIO_EVENT_ID_HEADER)?;
    check_event_id(REVIO_EVENT_ID_HEADER, &event_id)?;
    let raw_timestamp = required(headers, REVIO_TIMESTAMP_HEADER)?;
    let timestamp = check_named_timestamp(REVIO_TIMESTAMP_HEADER, &raw_timestamp, now, tolerance)?;
    let signature = STANDARD
        .decode(signature.as_bytes())
        .ok()
        .filter(|signature| !signature.is_empty())
        .ok_or(SignatureError::MalformedHeader(REVIO_SIGNATURE_HEADER))?;
    key.verify_signature(&event_id, &raw_timestamp, body, &signature)?;
    Ok(VerifiedDelivery {
        event_id,
        timestamp,
        scheme: Scheme::RevioRsa,
    })
}
