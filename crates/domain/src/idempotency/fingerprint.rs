//! The request fingerprint that tells a true retry from a different request reusing a key.

use std::fmt;

use ring::digest::{Context, SHA256};

/// SHA-256 over method, route path, principal and body, each length-prefixed so that no two
/// different requests can produce the same input bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestFingerprint([u8; 32]);

impl RequestFingerprint {
    /// Fingerprints one request.
    pub fn compute(method: &str, path: &str, principal: &str, body: &[u8]) -> Self {
        let mut ctx = Context::new(&SHA256);
        for part in [
            method.as_bytes(),
            path.as_bytes(),
            principal.as_bytes(),
            body,
        ] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }

    /// Rebuilds a fingerprint read back from storage.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for RequestFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_changes_the_fingerprint() {
        let base = RequestFingerprint::compute("POST", "/a", "user:1", b"{}");
        assert_eq!(
            base,
            RequestFingerprint::compute("POST", "/a", "user:1", b"{}")
        );
        assert_ne!(
            base,
            RequestFingerprint::compute("PUT", "/a", "user:1", b"{}")
        );
        assert_ne!(
            base,
            RequestFingerprint::compute("POST", "/b", "user:1", b"{}")
        );
        assert_ne!(
            base,
            RequestFingerprint::compute("POST", "/a", "user:2", b"{}")
        );
        assert_ne!(
            base,
            RequestFingerprint::compute("POST", "/a", "user:1", b"{ }")
        );
    }

    #[test]
    fn length_prefixes_keep_boundaries_apart() {
        assert_ne!(
            RequestFingerprint::compute("POST", "/ab", "c", b""),
            RequestFingerprint::compute("POST", "/a", "bc", b"")
        );
    }

    #[test]
    fn round_trips_through_bytes() {
        let fp = RequestFingerprint::compute("POST", "/a", "u", b"x");
        assert_eq!(RequestFingerprint::from_bytes(fp.as_bytes()), Some(fp));
        assert_eq!(RequestFingerprint::from_bytes(&[0; 31]), None);
    }
}
