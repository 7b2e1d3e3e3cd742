//! Credentials: passwords, access tokens, API keys and opaque tokens.

pub mod api_key;
pub mod jwt;
pub mod password;
pub mod token;

pub use api_key::{ApiKeySecret, Scope};
pub use jwt::{AccessClaims, JwtConfig, JwtKeys};
