//! The maintenance loop's clean-up of tenants and accounts (process upkeep has its own
//! module, [`crate::processes::upkeep`]). Who has work is found by SECURITY DEFINER
//! functions that return ids only (migration 000025); the work itself runs in batches,
//! in the tenant's or the user's own transaction under RLS, like a request:
//!
//! - per tenant, as [`crate::Principal::Upkeep`] (which a suspended or deleted tenant
//!   admits too): run payload and run retention ([`crate::runs::retention`]), pending
//!   invitations past their expiry marked EXPIRED and deleted 30 days later, and
//!   idempotency keys past their expiry deleted;
//! - per user, as that user with no tenant: expired refresh tokens, and confirmation,
//!   reset and address-change tokens used or expired more than a day ago.
//!
//! One tenant's or user's failure is logged and counted, and the others go on.

use sea_orm::{ConnectionTrait, FromQueryResult};
use uuid::Uuid;

use crate::runs::retention;
use crate::scope::{stmt, Principal, RequestMeta, RequestScope};
use crate::tx::RequestTx;
use crate::{AppDb, Result};

/// How long an expired invitation stays listed (as EXPIRED) before it is deleted.
pub const EXPIRED_INVITATION_DAYS: i32 = 30;

/// What a pass over tenants did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantPass {
    pub tenants: u64,
    pub failed: u64,
    pub payloads_cleared: u64,
    pub runs_deleted: u64,
    pub invitations_expired: u64,
    pub invitations_deleted: u64,
    pub idempotency_keys_deleted: u64,
}

impl TenantPass {
    /// Rows changed or deleted, for the maintenance metrics.
    pub fn rows(&self) -> u64 {
        self.payloads_cleared
            + self.runs_deleted
            + self.invitations_expired
            + self.invitations_deleted
            + self.idempotency_keys_deleted
    }

    fn add(&mut self, batch: &TenantPass) {
        self.payloads_cleared += batch.payloads_cleared;
        self.runs_deleted += batch.runs_deleted;
        self.invitations_expired += batch.invitations_expired;
        self.invitations_deleted += batch.invitations_deleted;
        self.idempotency_keys_deleted += batch.idempotency_keys_deleted;
    }

    /// Whether every kind of work in a batch came back short (nothing more to do).
    fn is_short(&self, batch: i64) -> bool {
        let full = batch as u64;
        self.payloads_cleared < full
            && self.runs_deleted < full
            && self.invitations_deleted < full
            && self.idempotency_keys_deleted < full
    }
}

/// What a pass over accounts did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountPass {
    pub users: u64,
    pub failed: u64,
    pub refresh_tokens_deleted: u64,
    pub account_tokens_deleted: u64,
}

#[derive(FromQueryResult)]
struct Id {
    id: Uuid,
}

/// One batch of a tenant's upkeep, in one transaction of that tenant.
async fn tenant_batch(db: &AppDb, tenant_id: Uuid, batch: i64) -> Result<TenantPass> {
    let scope = RequestScope::for_upkeep(db.clone(), tenant_id);
    scope.require(trellis_entity::Role::Viewer).await?;
    let tx = scope.tx().await?;
    let done = TenantPass {
        payloads_cleared: retention::clear_payloads(tx, tenant_id, batch).await?,
        runs_deleted: retention::delete_runs(tx, tenant_id, batch).await?,
        invitations_expired: expire_invitations(tx, tenant_id).await?,
        invitations_deleted: delete_expired_invitations(tx, tenant_id, batch).await?,
        idempotency_keys_deleted: tx
            .execute(stmt(
                "DELETE FROM run_idempotency_keys k USING ( \
                   SELECT workflow_id, key FROM run_idempotency_keys \
                   WHERE tenant_id = $1 AND expires_at < now() \
                   ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) doomed \
                 WHERE k.tenant_id = $1 AND k.workflow_id = doomed.workflow_id \
                   AND k.key = doomed.key",
                [tenant_id.into(), batch.into()],
            ))
            .await?
            .rows_affected(),
        ..TenantPass::default()
    };
    RequestScope::finish_shared(scope, true).await?;
    Ok(done)
}

/// Pending invitations past their expiry become EXPIRED (they could not be accepted
/// anyway; now their list says so).
async fn expire_invitations(tx: &RequestTx, tenant_id: Uuid) -> Result<u64> {
    Ok(tx
        .execute(stmt(
            "UPDATE invitations SET status = 'expired' \
             WHERE tenant_id = $1 AND status = 'pending' AND expires_at < now()",
            [tenant_id.into()],
        ))
        .await?
        .rows_affected())
}

async fn delete_expired_invitations(tx: &RequestTx, tenant_id: Uuid, batch: i64) -> Result<u64> {
    Ok(tx
        .execute(stmt(
            "DELETE FROM invitations i USING ( \
               SELECT id FROM invitations \
               WHERE tenant_id = $1 AND status = 'expired' \
                 AND expires_at < now() - make_interval(days => $3) \
               ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) doomed \
             WHERE i.tenant_id = $1 AND i.id = doomed.id",
            [
                tenant_id.into(),
                batch.into(),
                EXPIRED_INVITATION_DAYS.into(),
            ],
        ))
        .await?
        .rows_affected())
}

/// A tenant's upkeep until it is done, batch by batch.
pub async fn tenant_upkeep(db: &AppDb, tenant_id: Uuid, batch: i64) -> Result<TenantPass> {
    let mut total = TenantPass {
        tenants: 1,
        ..TenantPass::default()
    };
    loop {
        let done = tenant_batch(db, tenant_id, batch).await?;
        total.add(&done);
        if done.is_short(batch) {
            return Ok(total);
        }
    }
}

/// One pass over the tenants with upkeep due (at most `max_tenants`).
pub async fn tenant_pass(db: &AppDb, batch: i64, max_tenants: i32) -> Result<TenantPass> {
    let tenants = Id::find_by_statement(stmt(
        "SELECT t AS id FROM app.tenants_with_upkeep($1, $2) AS t",
        [max_tenants.into(), EXPIRED_INVITATION_DAYS.into()],
    ))
    .all(db.pool())
    .await?;
    let mut pass = TenantPass::default();
    for Id { id } in tenants {
        match tenant_upkeep(db, id, batch).await {
            Ok(done) => {
                pass.tenants += 1;
                pass.add(&done);
            }
            Err(err) => {
                pass.failed += 1;
                tracing::warn!(tenant = %id, error = ?err, "tenant upkeep failed");
            }
        }
    }
    Ok(pass)
}

/// One user's spent credentials, deleted as that user under RLS.
pub async fn account_upkeep(db: &AppDb, user_id: Uuid) -> Result<AccountPass> {
    let scope = RequestScope::new(
        db.clone(),
        Principal::User {
            user_id,
            tenant_id: None,
            session_id: None,
        },
        RequestMeta {
            request_id: "maintenance".into(),
            ..RequestMeta::default()
        },
    );
    let tx = scope.tx().await?;
    let refresh_tokens_deleted = tx
        .execute(stmt(
            "DELETE FROM refresh_tokens WHERE user_id = $1 AND expires_at < now()",
            [user_id.into()],
        ))
        .await?
        .rows_affected();
    let mut account_tokens_deleted = 0;
    for table in ["email_verifications", "password_resets", "email_changes"] {
        account_tokens_deleted += tx
            .execute(stmt(
                &format!(
                    "DELETE FROM {table} WHERE user_id = $1 \
                     AND coalesce(used_at, expires_at) < now() - interval '1 day'"
                ),
                [user_id.into()],
            ))
            .await?
            .rows_affected();
    }
    RequestScope::finish_shared(scope, true).await?;
    Ok(AccountPass {
        users: 1,
        failed: 0,
        refresh_tokens_deleted,
        account_tokens_deleted,
    })
}

/// One pass over the users with spent credentials (at most `max_users`).
pub async fn account_pass(db: &AppDb, max_users: i32) -> Result<AccountPass> {
    let users = Id::find_by_statement(stmt(
        "SELECT u AS id FROM app.users_with_spent_credentials($1) AS u",
        [max_users.into()],
    ))
    .all(db.pool())
    .await?;
    let mut pass = AccountPass::default();
    for Id { id } in users {
        match account_upkeep(db, id).await {
            Ok(done) => {
                pass.users += 1;
                pass.refresh_tokens_deleted += done.refresh_tokens_deleted;
                pass.account_tokens_deleted += done.account_tokens_deleted;
            }
            Err(err) => {
                pass.failed += 1;
                tracing::warn!(user = %id, error = ?err, "account upkeep failed");
            }
        }
    }
    Ok(pass)
}
