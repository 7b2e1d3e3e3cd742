//! Password hashing with argon2id (the crate's defaults: m = 19 MiB, t = 2, p = 1).

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use secrecy::{ExposeSecret, SecretString};

use crate::{Error, Result};

pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 512;

/// Checks the length rules and hashes; the error names the `password` field.
pub fn hash(password: &SecretString) -> Result<String> {
    let len = password.expose_secret().chars().count();
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&len) {
        return Err(Error::bad_input(
            "password",
            format!("password must be {MIN_LENGTH} to {MAX_LENGTH} characters"),
        ));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(anyhow::anyhow!("argon2 hash: {e}")))
}

/// True when `password` matches `stored`. With no stored hash it still spends the time
/// of one verification, so an unknown email takes as long as a wrong password.
pub fn verify(password: &SecretString, stored: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"not a password anyone has", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    });
    let (encoded, real) = match stored {
        Some(s) => (s, true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(encoded) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.expose_secret().as_bytes(), &parsed)
        .is_ok();
    ok && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let pw = SecretString::from("correct horse battery");
        let h = hash(&pw).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&pw, Some(&h)));
        assert!(!verify(
            &SecretString::from("wrong horse battery"),
            Some(&h)
        ));
        assert!(!verify(&pw, None));
        assert!(matches!(
            hash(&SecretString::from("short")),
            Err(Error::BadInput { .. })
        ));
    }
}
