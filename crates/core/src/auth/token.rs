//! Opaque random tokens (refresh tokens, invitation tokens) stored only as SHA-256.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use ring::digest;

/// A fresh token `<prefix><43 url-safe characters>` carrying 256 random bits.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 of a token, as stored.
pub fn sha256(token: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_hash_to_32_bytes() {
        let a = generate("trr_");
        assert_ne!(a, generate("trr_"));
        assert_eq!(sha256(&a).len(), 32);
        assert!(constant_time_eq(&sha256(&a), &sha256(&a)));
        assert!(!constant_time_eq(&sha256(&a), &sha256("x")));
    }
}
