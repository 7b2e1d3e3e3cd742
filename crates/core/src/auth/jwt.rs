//! Access tokens: JWTs with one pinned algorithm, a key id, and `exp`, `nbf`, `iss` and
//! `aud` all required. Anything else (`alg: none`, another algorithm, an unknown `kid`,
//! a bad signature) is refused the same way.

use std::collections::HashSet;
use std::path::Path;

use chrono::{Duration, Utc};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result};

/// The claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user.
    pub sub: Uuid,
    /// The active tenant, if one is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<Uuid>,
    /// The session (refresh-token family) the token was issued in: once it is revoked
    /// (logout, a detected reuse) every request scope refuses the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: Uuid,
}

/// How tokens are signed and checked.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    /// At most 30 seconds.
    pub leeway_seconds: u64,
}

/// Keys for the one algorithm tokens are signed with.
#[derive(Clone)]
pub struct JwtKeys {
    algorithm: Algorithm,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    config: JwtConfig,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// HS256 with a shared secret of at least 32 bytes.
    pub fn hs256(secret: &[u8], kid: &str, config: JwtConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            secret.len() >= 32,
            "the JWT secret must be at least 32 bytes"
        );
        Self::new(
            Algorithm::HS256,
            kid,
            EncodingKey::from_secret(secret),
            DecodingKey::from_secret(secret),
            config,
        )
    }

    /// EdDSA (Ed25519) or RS256 from PEM key files.
    pub fn from_pem_files(
        algorithm: Algorithm,
        private: &Path,
        public: &Path,
        kid: &str,
        config: JwtConfig,
    ) -> anyhow::Result<Self> {
        let private = std::fs::read(private)?;
        let public = std::fs::read(public)?;
        let (encoding, decoding) = match algorithm {
            Algorithm::EdDSA => (
                EncodingKey::from_ed_pem(&private)?,
                DecodingKey::from_ed_pem(&public)?,
            ),
            Algorithm::RS256 => (
                EncodingKey::from_rsa_pem(&private)?,
                DecodingKey::from_rsa_pem(&public)?,
            ),
            other => {
                anyhow::bail!("unsupported JWT algorithm {other:?}: use HS256, EdDSA or RS256")
            }
        };
        Self::new(algorithm, kid, encoding, decoding, config)
    }

    fn new(
        algorithm: Algorithm,
        kid: &str,
        encoding: EncodingKey,
        decoding: DecodingKey,
        config: JwtConfig,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.leeway_seconds <= 30,
            "JWT leeway must be at most 30 seconds"
        );
        Ok(Self {
            algorithm,
            kid: kid.to_owned(),
            encoding,
            decoding,
            config,
        })
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// Signs an access token for `user`, naming `tenant` as active.
    /// Issues an access token for `user` acting in `tenant`, within `session`.
    pub fn issue(
        &self,
        user: Uuid,
        tenant: Option<Uuid>,
        session: Option<Uuid>,
    ) -> Result<(String, AccessClaims)> {
        let now = Utc::now();
        let claims = AccessClaims {
            sub: user,
            tid: tenant,
            sid: session,
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            exp: (now + self.config.access_ttl).timestamp(),
            nbf: now.timestamp(),
            iat: now.timestamp(),
            jti: Uuid::now_v7(),
        };
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        let token =
            encode(&header, &claims, &self.encoding).map_err(|e| Error::Internal(e.into()))?;
        Ok((token, claims))
    }

    /// Verifies a token; every failure is `Unauthenticated`.
    pub fn verify(&self, token: &str) -> Result<AccessClaims> {
        let header = decode_header(token).map_err(|_| Error::Unauthenticated)?;
        if header.alg != self.algorithm || header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(Error::Unauthenticated);
        }
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = self.config.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.required_spec_claims = ["exp", "nbf", "iss", "aud", "sub"]
            .into_iter()
            .map(String::from)
            .collect::<HashSet<_>>();
        decode::<AccessClaims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|_| Error::Unauthenticated)
    }
}
