//! Password hashing with Argon2id (PHC strings).
//!
//! Hashing and verifying are deliberately slow (tens of milliseconds with the production
//! parameters) and CPU-bound: callers on an async runtime must run them on a blocking thread
//! (`spawn_blocking`). This module does no I/O and knows no runtime.

use std::fmt;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP memory cost for Argon2id, in KiB (19 MiB).
pub const OWASP_M_COST_KIB: u32 = 19_456;
/// OWASP number of passes for Argon2id.
pub const OWASP_T_COST: u32 = 2;
/// OWASP degree of parallelism for Argon2id.
pub const OWASP_P_COST: u32 = 1;

/// Password of the fixed hash [`PasswordHasher::verify_dummy`] checks against. It is never a
/// real credential: nothing is ever hashed with it except that fixed hash.
const DUMMY_PASSWORD: &[u8] = b"keel-dummy-password-never-valid";
/// Fixed salt of the dummy hash (16 bytes, the recommended length).
const DUMMY_SALT: &[u8; 16] = b"keel-dummy-salt!";

/// Why a password could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The Argon2 parameters are out of range.
    #[error("invalid Argon2 parameters: {0}")]
    InvalidParams(String),
    /// The operating system's random source failed while drawing a salt, or Argon2 failed.
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Argon2id hasher and verifier.
///
/// New hashes use this hasher's parameters; [`verify`](Self::verify) uses the parameters
/// written in the stored PHC string, so hashes made with older parameters still verify (see
/// [`needs_rehash`](Self::needs_rehash)). `Debug` prints the parameters only.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    /// A hash of [`DUMMY_PASSWORD`] with this hasher's parameters, for
    /// [`verify_dummy`](Self::verify_dummy).
    dummy: PasswordHash,
}

impl PasswordHasher {
    /// The production hasher: Argon2id v1.3 with the OWASP parameters (m = 19456 KiB, t = 2,
    /// p = 1, 32-byte output).
    ///
    /// Computes one hash (the dummy used by [`verify_dummy`](Self::verify_dummy)), so it costs
    /// as much as one [`hash`](Self::hash): build it once at start-up.
    pub fn new() -> Result<Self, PasswordError> {
        Self::with_params(OWASP_M_COST_KIB, OWASP_T_COST, OWASP_P_COST)
    }

    /// A hasher with tiny parameters (m = 64 KiB, t = 1, p = 1) for fast tests. Never use it
    /// for real accounts.
    pub fn for_tests() -> Result<Self, PasswordError> {
        Self::with_params(64, 1, 1)
    }

    /// Argon2id v1.3 with memory cost `m_cost_kib` KiB, `t_cost` passes and `p_cost` lanes.
    pub fn with_params(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Result<Self, PasswordError> {
        let params = Params::new(m_cost_kib, t_cost, p_cost, None)
            .map_err(|e| PasswordError::InvalidParams(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = argon2
            .hash_password_with_salt(DUMMY_PASSWORD, DUMMY_SALT)
            .map_err(|e| PasswordError::Hashing(e.to_string()))?;
        Ok(Self { argon2, dummy })
    }

    /// Hashes `password` with a fresh random 16-byte salt from the operating system's CSPRNG
    /// (`getrandom`), returning a PHC string such as `$argon2id$v=19$m=19456,t=2,p=1$…$…`.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        self.argon2
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| PasswordError::Hashing(e.to_string()))
    }

    /// Whether `password` matches the PHC string `phc`. False for a wrong password and for a
    /// malformed hash or one that is not Argon2id (the output comparison is constant-time).
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        if parsed.algorithm.as_str() != Algorithm::Argon2id.as_str() {
            return false;
        }
        self.argon2
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    }

    /// Runs one verification of `password` against a fixed hash with this hasher's parameters
    /// and discards the result, so a login for an unknown account costs the same time as a
    /// wrong password for a known one.
    pub fn verify_dummy(&self, password: &str) {
        let matched = self
            .argon2
            .verify_password(password.as_bytes(), &self.dummy)
            .is_ok();
        std::hint::black_box(matched);
    }

    /// Whether a stored hash should be replaced (on the next successful login) because it is
    /// malformed or was made with other parameters or another algorithm than this hasher's.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return true;
        };
        if parsed.algorithm.as_str() != Algorithm::Argon2id.as_str()
            || parsed.version != Some(Version::V0x13.into())
        {
            return true;
        }
        match Params::try_from(&parsed) {
            Ok(params) => {
                let mine = self.argon2.params();
                params.m_cost() != mine.m_cost()
                    || params.t_cost() != mine.t_cost()
                    || params.p_cost() != mine.p_cost()
            }
            Err(_) => true,
        }
    }
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params = self.argon2.params();
        f.debug_struct("PasswordHasher")
            .field("algorithm", &"argon2id")
            .field("m_cost_kib", &params.m_cost())
            .field("t_cost", &params.t_cost())
            .field("p_cost", &params.p_cost())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        PasswordHasher::for_tests().expect("test params are valid")
    }

    #[test]
    fn hash_then_verify_round_trips() {
        let h = hasher();
        let phc = h.hash("correct horse battery staple").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(h.verify("correct horse battery staple", &phc));
    }

    #[test]
    fn wrong_password_is_rejected() {
        let h = hasher();
        let phc = h.hash("s3cret-pass").expect("hash");
        assert!(!h.verify("s3cret-pasS", &phc));
        assert!(!h.verify("", &phc));
    }

    #[test]
    fn salts_are_random() {
        let h = hasher();
        let a = h.hash("same").expect("hash");
        let b = h.hash("same").expect("hash");
        assert_ne!(a, b);
        assert!(h.verify("same", &a) && h.verify("same", &b));
    }

    #[test]
    fn malformed_hashes_verify_false() {
        let h = hasher();
        for bad in [
            "",
            "not a hash",
            "$argon2id$",
            "$argon2id$v=19$m=64,t=1,p=1$",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$",
            "$argon2id$v=19$m=64,t=1,p=1$!!!$!!!",
        ] {
            assert!(!h.verify("anything", bad), "{bad:?}");
        }
    }

    #[test]
    fn non_argon2id_hashes_are_rejected() {
        let h = hasher();
        let phc = h.hash("pw").expect("hash");
        let argon2i = phc.replacen("$argon2id$", "$argon2i$", 1);
        assert!(!h.verify("pw", &argon2i));
    }

    #[test]
    fn hashes_with_other_params_still_verify_and_need_rehash() {
        let old = PasswordHasher::with_params(128, 1, 1).expect("params");
        let h = hasher();
        let phc = old.hash("pw").expect("hash");
        assert!(h.verify("pw", &phc));
        assert!(h.needs_rehash(&phc));
        assert!(!h.needs_rehash(&h.hash("pw").expect("hash")));
        assert!(h.needs_rehash("garbage"));
    }

    #[test]
    fn verify_dummy_runs_with_the_same_params() {
        let h = hasher();
        assert!(!h.needs_rehash(&h.dummy.to_string()));
        h.verify_dummy("whatever");
        // The dummy password is never a way in for a real hash.
        let phc = h.hash("real").expect("hash");
        assert!(!h.verify(std::str::from_utf8(DUMMY_PASSWORD).expect("ascii"), &phc));
    }

    #[test]
    fn invalid_params_are_an_error() {
        assert!(matches!(
            PasswordHasher::with_params(1, 1, 1),
            Err(PasswordError::InvalidParams(_))
        ));
        assert!(matches!(
            PasswordHasher::with_params(64, 0, 1),
            Err(PasswordError::InvalidParams(_))
        ));
    }

    #[test]
    fn debug_shows_params_only() {
        let text = format!("{:?}", hasher());
        assert!(text.contains("m_cost_kib: 64"), "{text}");
        assert!(!text.contains("dummy"), "{text}");
    }

    #[test]
    fn owasp_params_round_trip() {
        let h = PasswordHasher::new().expect("OWASP params are valid");
        let started = std::time::Instant::now();
        let phc = h.hash("correct horse battery staple").expect("hash");
        let hashed_in = started.elapsed();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let started = std::time::Instant::now();
        assert!(h.verify("correct horse battery staple", &phc));
        let verified_in = started.elapsed();
        let started = std::time::Instant::now();
        h.verify_dummy("correct horse battery staple");
        let dummy_in = started.elapsed();
        assert!(!h.verify("wrong", &phc));
        eprintln!("OWASP argon2id: hash {hashed_in:?}, verify {verified_in:?}, dummy {dummy_in:?}");
    }
}
