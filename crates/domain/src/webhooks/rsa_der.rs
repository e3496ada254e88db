//! The two DER shapes of an RSA public key: SPKI (`PUBLIC KEY`) and PKCS#1 (`RSA PUBLIC KEY`).

use super::KeyError;
use super::der::{
    BIT_STRING, DerReader, INTEGER, NULL, OBJECT_IDENTIFIER, SEQUENCE, positive_integer,
};

/// DER contents of the `rsaEncryption` object identifier, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// Smallest RSA modulus accepted, in bits (as ring's `RSA_PKCS1_2048_8192_SHA256`).
const MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
const MAX_BITS: usize = 8192;

/// Unwraps a SubjectPublicKeyInfo, which must hold an `rsaEncryption` key, into its
/// PKCS#1 `RSAPublicKey` DER.
///
/// `SEQUENCE { SEQUENCE { OID rsaEncryption, NULL (or absent) }, BIT STRING { RSAPublicKey } }`
pub(super) fn rsa_public_key_from_spki(spki: &[u8]) -> Result<&[u8], KeyError> {
    let mut outer = DerReader::new(spki);
    let info = outer.read(SEQUENCE)?;
    outer.finish()?;

    let mut info = DerReader::new(info);
    let algorithm = info.read(SEQUENCE)?;
    let key_bits = info.read(BIT_STRING)?;
    info.finish()?;

    let mut algorithm = DerReader::new(algorithm);
    if algorithm.read(OBJECT_IDENTIFIER)? != RSA_ENCRYPTION_OID {
        return Err(KeyError::NotRsa);
    }
    if !algorithm.is_empty() && !algorithm.read(NULL)?.is_empty() {
        return Err(KeyError::MalformedDer(
            "rsaEncryption parameters are not NULL",
        ));
    }
    algorithm.finish()?;

    match key_bits.split_first() {
        Some((0, key)) => Ok(key),
        Some(_) => Err(KeyError::MalformedDer("key bit string has unused bits")),
        None => Err(KeyError::MalformedDer("empty key bit string")),
    }
}

/// Checks a PKCS#1 `RSAPublicKey` (`SEQUENCE { INTEGER n, INTEGER e }`) and returns the modulus
/// size in bits, which must be within 2048..=8192.
pub(super) fn rsa_modulus_bits(rsa_public_key: &[u8]) -> Result<usize, KeyError> {
    let mut outer = DerReader::new(rsa_public_key);
    let key = outer.read(SEQUENCE)?;
    outer.finish()?;

    let mut key = DerReader::new(key);
    let modulus = positive_integer(key.read(INTEGER)?)?;
    positive_integer(key.read(INTEGER)?)?;
    key.finish()?;

    let bits = match modulus.split_first() {
        Some((&top, rest)) => rest
            .len()
            .saturating_mul(8)
            .saturating_add(8 - top.leading_zeros() as usize),
        None => 0,
    };
    if (MIN_BITS..=MAX_BITS).contains(&bits) {
        Ok(bits)
    } else {
        Err(KeyError::UnsupportedKeySize(bits))
    }
}

#[cfg(test)]
mod tests {
    use super::super::der::encode;
    use super::*;

    /// DER of `SEQUENCE { INTEGER n, INTEGER 65537 }` for a modulus of `bytes` bytes.
    fn pkcs1(bytes: usize) -> Vec<u8> {
        let mut modulus = vec![0x00];
        modulus.extend(std::iter::repeat_n(0xc5, bytes));
        let mut integers = encode(INTEGER, &modulus);
        integers.extend(encode(INTEGER, &[0x01, 0x00, 0x01]));
        encode(SEQUENCE, &integers)
    }

    #[test]
    fn modulus_size_is_bounded() {
        assert_eq!(rsa_modulus_bits(&pkcs1(256)), Ok(2048));
        assert_eq!(rsa_modulus_bits(&pkcs1(1024)), Ok(8192));
        assert_eq!(
            rsa_modulus_bits(&pkcs1(128)),
            Err(KeyError::UnsupportedKeySize(1024))
        );
        assert_eq!(
            rsa_modulus_bits(&pkcs1(1025)),
            Err(KeyError::UnsupportedKeySize(8200))
        );
    }

    #[test]
    fn spki_with_another_algorithm_is_not_rsa() {
        // SEQUENCE { SEQUENCE { OID 1.2.840.10045.2.1 (ecPublicKey) }, BIT STRING { 0 } }
        let ec = [
            0x30, 0x0e, 0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x03,
            0x01, 0x00,
        ];
        assert_eq!(rsa_public_key_from_spki(&ec), Err(KeyError::NotRsa));
    }

    #[test]
    fn spki_shape_is_checked() {
        let spki = |params: &[u8], bits: &[u8]| {
            let mut algorithm = encode(OBJECT_IDENTIFIER, RSA_ENCRYPTION_OID);
            algorithm.extend(params);
            let mut info = encode(SEQUENCE, &algorithm);
            info.extend(encode(BIT_STRING, bits));
            encode(SEQUENCE, &info)
        };
        assert_eq!(
            rsa_public_key_from_spki(&spki(&[0x05, 0x00], &[0, 7])),
            Ok(&[7][..])
        );
        assert_eq!(rsa_public_key_from_spki(&spki(&[], &[0, 7])), Ok(&[7][..]));
        assert!(rsa_public_key_from_spki(&spki(&[0x05, 0x01, 0x00], &[0, 7])).is_err());
        assert!(rsa_public_key_from_spki(&spki(&[0x05, 0x00], &[1, 7])).is_err());
        assert!(rsa_public_key_from_spki(&spki(&[0x05, 0x00], &[])).is_err());
        let mut trailing = spki(&[0x05, 0x00], &[0, 7]);
        trailing.push(0);
        assert!(rsa_public_key_from_spki(&trailing).is_err());
    }
}
