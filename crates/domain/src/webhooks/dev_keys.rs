//! Dev-only RSA keys for the built-in Revio simulator. PUBLIC: never use them in production.

/// **PUBLIC, DEV-ONLY** PKCS#8 RSA private key of the built-in Revio simulator.
///
/// It is committed to the repository, so anyone can sign with it: it must never be configured
/// as a real provider key, and a production deployment must never trust its public half.
pub const DEV_REVIO_PRIVATE_KEY_PEM: &str = include_str!("dev_keys/revio_dev_private.pem");

/// **PUBLIC, DEV-ONLY** SPKI public key matching [`DEV_REVIO_PRIVATE_KEY_PEM`].
///
/// Trusting it accepts deliveries anyone can forge: for local development and tests only, never
/// in production.
pub const DEV_REVIO_PUBLIC_KEY_PEM: &str = include_str!("dev_keys/revio_dev_public.pem");

/// The dev public key in PKCS#1 form (`BEGIN RSA PUBLIC KEY`), for tests.
#[cfg(test)]
pub(super) const DEV_REVIO_PUBLIC_KEY_PKCS1_PEM: &str =
    include_str!("dev_keys/revio_dev_public_pkcs1.pem");

/// Another throwaway PKCS#8 RSA private key, for forgery tests.
#[cfg(test)]
pub(super) const TEST_OTHER_PRIVATE_KEY_PEM: &str = include_str!("dev_keys/test_other_private.pem");

/// The public half of [`TEST_OTHER_PRIVATE_KEY_PEM`].
#[cfg(test)]
pub(super) const TEST_OTHER_PUBLIC_KEY_PEM: &str = include_str!("dev_keys/test_other_public.pem");

/// An EC P-256 SPKI public key, to check non-RSA keys are refused.
#[cfg(test)]
pub(super) const TEST_EC_PUBLIC_KEY_PEM: &str = include_str!("dev_keys/test_ec_public.pem");
