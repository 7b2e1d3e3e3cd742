//! Throttles on password guessing and anonymous writes: attempts per key in a fixed
//! window, counted in PostgreSQL (`app.throttle_hit`), so a limit holds across any
//! number of replicas. Each count runs on its own pooled connection, outside the
//! request's transaction: a failed login rolls its request back, and must count anyway.

use sea_orm::ConnectionTrait;

use crate::scope::stmt;
use crate::{AppDb, Error, Result};

/// A limit: at most `max_hits` attempts per `window_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub max_hits: i32,
    pub window_seconds: i32,
}

/// Logins to one account (whatever the password): 10 per 15 minutes.
pub const LOGIN_PER_ACCOUNT: Limit = Limit {
    max_hits: 10,
    window_seconds: 15 * 60,
};
/// Logins from one client address: 50 per 15 minutes.
pub const LOGIN_PER_ADDRESS: Limit = Limit {
    max_hits: 50,
    window_seconds: 15 * 60,
};

/// The key of a login account: the address is lowercased and hashed, so the table
/// never holds emails.
pub fn account_key(email: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, email.to_lowercase().as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("login:account:{hex}")
}

/// Counts `hits` attempts of `key`; `RateLimited` with the seconds to wait once the
/// limit is passed.
pub async fn hit(db: &AppDb, key: &str, hits: u32, limit: Limit) -> Result<()> {
    let hits = i32::try_from(hits.max(1)).unwrap_or(i32::MAX);
    let row = db
        .pool()
        .query_one(stmt(
            "SELECT app.throttle_hit($1, $2, $3, $4) AS wait",
            [
                key.into(),
                hits.into(),
                limit.max_hits.into(),
                limit.window_seconds.into(),
            ],
        ))
        .await?;
    let wait = row
        .map(|r| r.try_get::<i32>("", "wait"))
        .transpose()?
        .unwrap_or(0);
    match u32::try_from(wait) {
        Ok(0) | Err(_) => Ok(()),
        Ok(retry_after_seconds) => Err(Error::RateLimited {
            retry_after_seconds,
        }),
    }
}

/// Forgets `key` (a successful login clears its account's count).
pub async fn clear(db: &AppDb, key: &str) -> Result<()> {
    db.pool()
        .execute(stmt("SELECT app.throttle_clear($1)", [key.into()]))
        .await?;
    Ok(())
}

/// Drops windows that ended over a day ago; returns how many.
pub async fn purge(db: &AppDb) -> Result<i32> {
    let row = db
        .pool()
        .query_one(stmt("SELECT app.purge_request_throttles() AS n", []))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i32>("", "n"))
        .transpose()?
        .unwrap_or(0))
}
