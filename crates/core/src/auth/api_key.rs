//! API keys: `trl_` + 12-character public prefix + 32-character secret + 6-character
//! checksum, all base62. Stored as SHA-256 of the whole key; found by prefix.

use rand::Rng;
use ring::digest;
use serde::{Deserialize, Serialize};

use crate::auth::token::sha256;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PREFIX_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const CHECK_LEN: usize = 6;
const TAG: &str = "trl_";

/// What a key may do. Each maps onto a member role (read = viewer, write = builder,
/// admin = admin, runner = operator); a key never acts as owner. Only runner keys
/// claim and execute runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
    Admin,
    Runner,
    /// Invoke processes, and nothing else.
    Invoke,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
            Scope::Runner => "runner",
            Scope::Invoke => "invoke",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            "runner" => Some(Scope::Runner),
            "invoke" => Some(Scope::Invoke),
            _ => None,
        }
    }
}

/// A freshly generated key: the plaintext (shown once) and what is stored.
pub struct ApiKeySecret {
    pub plaintext: String,
    pub prefix: String,
    pub hash: Vec<u8>,
}

fn random_base62(len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn checksum(body: &str) -> String {
    let d = digest::digest(&digest::SHA256, body.as_bytes());
    d.as_ref()[..CHECK_LEN]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl ApiKeySecret {
    pub fn generate() -> Self {
        let prefix = random_base62(PREFIX_LEN);
        let body = format!("{prefix}{}", random_base62(SECRET_LEN));
        let plaintext = format!("{TAG}{body}{}", checksum(&body));
        let hash = sha256(&plaintext);
        Self {
            plaintext,
            prefix,
            hash,
        }
    }
}

/// The prefix of a well-formed key whose checksum holds, or `None`.
pub fn parse_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(TAG)?;
    if rest.len() != PREFIX_LEN + SECRET_LEN + CHECK_LEN
        || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    let (body, check) = rest.split_at(PREFIX_LEN + SECRET_LEN);
    (checksum(body) == check).then(|| &body[..PREFIX_LEN])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_typos_do_not() {
        let key = ApiKeySecret::generate();
        assert!(key.plaintext.starts_with("trl_"));
        assert_eq!(parse_prefix(&key.plaintext), Some(key.prefix.as_str()));
        let mut typo = key.plaintext.into_bytes();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        assert_eq!(parse_prefix(std::str::from_utf8(&typo).unwrap()), None);
        assert_eq!(parse_prefix("trl_short"), None);
    }
}
