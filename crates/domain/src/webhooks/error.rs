//! The two error types: a delivery that fails verification, and a configured key that is unusable.

use thiserror::Error;

use super::Scheme;

/// Why a webhook delivery was refused. Messages name headers, never secrets or signature values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// A required header is absent (its lowercase name).
    #[error("webhook header {0} is missing")]
    MissingHeader(&'static str),
    /// A header is present but not in the expected form (its lowercase name).
    #[error("webhook header {0} is malformed")]
    MalformedHeader(&'static str),
    /// The timestamp is further from now than the tolerance, in the past or the future.
    #[error("webhook timestamp is outside the tolerated window")]
    StaleTimestamp,
    /// No signature matches the delivery.
    #[error("webhook signature does not match")]
    BadSignature,
    /// The delivery uses a scheme this verifier has no key for.
    #[error("webhook scheme {0:?} is not configured")]
    SchemeNotConfigured(Scheme),
}

/// Why a configured webhook key or secret cannot be used. Messages never include key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The PEM text is not a single well-formed PEM block.
    #[error("malformed PEM: {0}")]
    MalformedPem(&'static str),
    /// The PEM block is not of an accepted kind (accepted labels are listed).
    #[error("unsupported PEM block, expected {0}")]
    UnsupportedPemLabel(&'static str),
    /// The DER structure inside the PEM block is malformed.
    #[error("malformed key DER: {0}")]
    MalformedDer(&'static str),
    /// The public key is not an RSA (`rsaEncryption`) key.
    #[error("public key algorithm is not rsaEncryption")]
    NotRsa,
    /// The RSA modulus size is outside 2048..=8192 bits.
    #[error("RSA key of {0} bits is not supported (2048..=8192)")]
    UnsupportedKeySize(usize),
    /// The private key is not a usable RSA key (PKCS#8, 2048 to 8192 bits, consistent).
    #[error("private key is not a usable PKCS#8 RSA key of 2048 to 8192 bits")]
    PrivateKeyRejected,
    /// The Standard Webhooks secret is not `whsec_` followed by base64 of at least 24 bytes.
    #[error("malformed webhook secret: {0}")]
    MalformedSecret(&'static str),
}

/// Signing failed (the system random generator or the key refused); never expected in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("webhook signing failed")]
pub struct SigningError;
