//! Identity and tenancy: sign-up and sessions, tenants, members, invitations and API
//! keys. Every operation runs in the request's transaction and writes an audit event.

use std::collections::HashMap;
use std::sync::PoisonError;

use chrono::{DateTime, Duration, Utc};
use sea_orm::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, FromQueryResult, QueryOrder, QuerySelect};
use secrecy::SecretString;
use serde_json::json;
use trellis_entity::{
    api_key, invitation, membership, tenant, user, IdKind, InvitationStatus, Role, Severity,
    TenantStatus,
};

use crate::audit::{self, Event};
use crate::auth::{api_key::ApiKeySecret, password, token, JwtKeys, Scope};
use crate::email::Email;
use crate::error::FieldProblem;
use crate::mail::{Mail, Mailer};
use crate::scope::{stmt, Principal, RequestScope, TenantCtx};
use crate::throttle;
use crate::{Error, Result};

/// Lifetimes and keys of credentials, and how sign-up confirms an address.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    pub jwt: JwtKeys,
    pub refresh_ttl: Duration,
    pub invitation_ttl: Duration,
    /// Whether a new account must confirm its address before it can sign in. Then
    /// sign-up answers the same whether or not the address has an account.
    pub verify_email: bool,
    /// How long a confirmation token is good for.
    pub verification_ttl: Duration,
    /// The platform's mail: confirmation tokens, and "someone tried to sign up".
    pub mailer: Mailer,
}

/// What sign-up did.
#[derive(Debug)]
pub enum SignUp {
    /// Verification off: the account exists and is signed in.
    Session(Box<Session>),
    /// Verification on: a message went to the address (a confirmation token for a new
    /// or unconfirmed account, a notice for a confirmed one). Nothing else is said.
    ConfirmationSent,
}

/// A signed-in session: a short-lived access token and a rotating refresh token.
#[derive(Clone, Debug)]
pub struct Session {
    pub access_token: String,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub user: user::Model,
    pub tenant_id: Option<Uuid>,
    /// The session: the refresh-token family, named in the access token's `sid`.
    pub family_id: Uuid,
}

pub(crate) fn required_text(value: &str, field: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(Error::bad_input(
            field,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Argon2 costs 19 MiB and tens of milliseconds per call: at most one per core runs at
/// once, so a burst of logins queues instead of growing memory without bound.
static PASSWORD_WORK: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });

async fn password_work<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _permit = PASSWORD_WORK
        .acquire()
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(e.into()))
}

pub(crate) async fn hash_password(password: SecretString) -> Result<String> {
    password_work(move || password::hash(&password)).await?
}

pub(crate) async fn verify_password(
    password: SecretString,
    stored: Option<String>,
) -> Result<bool> {
    password_work(move || password::verify(&password, stored.as_deref())).await
}

/// Revokes a refresh-token family after a rotated token was presented again (someone
/// else holds a copy), with a critical audit event. It runs in a transaction of its
/// own, as the token's user under RLS, and commits although the request that found
/// the reuse fails and rolls back with everything else it did.
async fn revoke_family(scope: &RequestScope, user_id: Uuid, family_id: Uuid) -> Result<()> {
    let own = RequestScope::new(
        scope.db().clone(),
        Principal::User {
            user_id,
            tenant_id: None,
            session_id: None,
        },
        scope.meta().clone(),
    );
    own.tx()
        .await?
        .execute(stmt(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
            [family_id.into()],
        ))
        .await?;
    audit::record(
        &own,
        Event::new(None, "session.refresh_token_reused")
            .target(IdKind::User, user_id)
            .severity(Severity::Critical)
            .details(json!({ "family": family_id })),
    )
    .await?;
    RequestScope::finish_shared(own, true).await
}

impl IdentityConfig {
    /// Issues an access token and a refresh token in `family` (a new family if `None`).
    pub(crate) async fn open_session(
        &self,
        scope: &RequestScope,
        user: user::Model,
        tenant_id: Option<Uuid>,
        family: Option<Uuid>,
    ) -> Result<(Session, Uuid)> {
        let refresh_id = Uuid::now_v7();
        let family = family.unwrap_or(refresh_id);
        let (access_token, claims) = self.jwt.issue(user.id, tenant_id, Some(family))?;
        let refresh_token = token::generate("trr_");
        scope
            .tx()
            .await?
            .execute(stmt(
                "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, active_tenant_id, \
                   expires_at, user_agent, ip) \
                 VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 second', left($7, 512), left($8, 64))",
                [
                    refresh_id.into(),
                    user.id.into(),
                    family.into(),
                    token::sha256(&refresh_token).into(),
                    tenant_id.into(),
                    self.refresh_ttl.num_seconds().into(),
                    scope.meta().user_agent.clone().into(),
                    scope.meta().ip.clone().into(),
                ],
            ))
            .await?;
        let access_expires_at = DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(Utc::now);
        Ok((
            Session {
                access_token,
                access_expires_at,
                refresh_token,
                user,
                tenant_id,
                family_id: family,
            },
            refresh_id,
        ))
    }

    /// Creates an account. With verification off it is signed in at once (a taken
    /// address is a CONFLICT). With it on, the answer is [`SignUp::ConfirmationSent`]
    /// whatever the address: a new account gets a confirmation token by mail and
    /// cannot sign in until [`Self::verify_email`]; an address that already has an
    /// account gets a notice (or, unconfirmed, a fresh token) and nothing changes. Both
    /// paths hash the password, so their timing does not tell them apart either.
    pub async fn sign_up(
        &self,
        scope: &RequestScope,
        email: &str,
        name: &str,
        password: SecretString,
    ) -> Result<SignUp> {
        let email = Email::parse(email, "email")?;
        let name = required_text(name, "name", 200)?;
        let password_hash = hash_password(password).await?;
        if self.verify_email {
            #[derive(FromQueryResult)]
            struct Existing {
                id: Uuid,
            }
            let existing = Existing::find_by_statement(stmt(
                "SELECT id FROM app.user_for_login($1)",
                [email.as_str().into()],
            ))
            .one(scope.tx().await?)
            .await?;
            if let Some(existing) = existing {
                self.tell_existing_account(scope, existing.id, &email)
                    .await?;
                return Ok(SignUp::ConfirmationSent);
            }
        }
        let user_id = Uuid::now_v7();
        scope.act_as_user(user_id).await?;
        let user = user::ActiveModel {
            id: Set(user_id),
            email: Set(email.as_str().to_owned()),
            name: Set(name),
            auth_provider: Set("password".into()),
            password_hash: Set(Some(password_hash)),
            email_verified_at: Set((!self.verify_email).then(Utc::now)),
            ..Default::default()
        }
        .insert(scope.tx().await?)
        .await?;
        audit::record(
            scope,
            Event::new(None, "user.sign_up").target(IdKind::User, user_id),
        )
        .await?;
        if self.verify_email {
            self.send_confirmation(scope, user_id, &email).await?;
            return Ok(SignUp::ConfirmationSent);
        }
        Ok(SignUp::Session(Box::new(
            self.open_session(scope, user, None, None).await?.0,
        )))
    }

    /// A sign-up with an address that has an account: a fresh confirmation token when
    /// it is unconfirmed (the first mail may be lost), otherwise a notice to its owner.
    async fn tell_existing_account(
        &self,
        scope: &RequestScope,
        user_id: Uuid,
        email: &Email,
    ) -> Result<()> {
        scope.act_as_user(user_id).await?;
        let user = user::Entity::find_by_id(user_id)
            .one(scope.tx().await?)
            .await?
            .ok_or(Error::NotFound)?;
        if user.email_verified_at.is_none() {
            return self.send_confirmation(scope, user_id, email).await;
        }
        self.mailer.send_later(Mail {
            to: email.as_str().to_owned(),
            subject: "Someone tried to sign up with your address".into(),
            body: "Someone asked to create a Trellis account with this email address, which \
                   already has one. If it was you, sign in (or reset your password); \
                   otherwise you can ignore this message: nothing was changed."
                .into(),
        });
        Ok(())
    }

    /// Stores a confirmation token for `user_id` (as that user, under RLS) and mails it.
    async fn send_confirmation(
        &self,
        scope: &RequestScope,
        user_id: Uuid,
        email: &Email,
    ) -> Result<()> {
        let token = token::generate("trv_");
        scope
            .tx()
            .await?
            .execute(stmt(
                "INSERT INTO email_verifications (id, user_id, token_hash, expires_at) \
                 VALUES ($1, $2, $3, now() + $4 * interval '1 second')",
                [
                    Uuid::now_v7().into(),
                    user_id.into(),
                    token::sha256(&token).into(),
                    self.verification_ttl.num_seconds().into(),
                ],
            ))
            .await?;
        let hours = self.verification_ttl.num_hours().max(1);
        self.mailer.send_later(Mail {
            to: email.as_str().to_owned(),
            subject: "Confirm your Trellis account".into(),
            body: format!(
                "Confirm your email address with this token (mutation verifyEmail), within \
                 {hours} hours:\n\n{token}\n\nIf you did not sign up, ignore this message."
            ),
        });
        Ok(())
    }

    /// Redeems a confirmation token: the account is confirmed and signed in. A token
    /// that is unknown, used or expired is UNAUTHENTICATED.
    pub async fn verify_email(&self, scope: &RequestScope, token: &str) -> Result<Session> {
        #[derive(FromQueryResult)]
        struct Verified {
            user_id: Option<Uuid>,
        }
        let verified = Verified::find_by_statement(stmt(
            "SELECT app.verify_email($1) AS user_id",
            [token::sha256(token).into()],
        ))
        .one(scope.tx().await?)
        .await?
        .and_then(|v| v.user_id)
        .ok_or(Error::Unauthenticated)?;
        scope.act_as_user(verified).await?;
        let user = user::Entity::find_by_id(verified)
            .one(scope.tx().await?)
            .await?
            .ok_or(Error::Unauthenticated)?;
        audit::record(
            scope,
            Event::new(None, "user.email_verified").target(IdKind::User, verified),
        )
        .await?;
        Ok(self.open_session(scope, user, None, None).await?.0)
    }

    /// Every failure is the same `Unauthenticated`, and takes the same time.
    pub async fn login(
        &self,
        scope: &RequestScope,
        email: &str,
        password: SecretString,
    ) -> Result<Session> {
        #[derive(FromQueryResult)]
        struct LoginRow {
            id: Uuid,
            password_hash: Option<String>,
        }
        let email = Email::parse(email, "email").map_err(|_| Error::Unauthenticated)?;
        // Guessing is counted per account and per client address, before any work.
        let account = throttle::account_key(email.as_str());
        throttle::hit(scope.db(), &account, 1, throttle::LOGIN_PER_ACCOUNT).await?;
        if let Some(ip) = &scope.meta().ip {
            let address = format!("login:address:{ip}");
            throttle::hit(scope.db(), &address, 1, throttle::LOGIN_PER_ADDRESS).await?;
        }
        // The look-up and the password check hold no connection of the request: a
        // burst of logins queues for hashing without starving every other request.
        let row = LoginRow::find_by_statement(stmt(
            "SELECT id, password_hash FROM app.user_for_login($1)",
            [email.as_str().into()],
        ))
        .one(scope.db().pool())
        .await?;
        let stored = row.as_ref().and_then(|r| r.password_hash.clone());
        let matches = verify_password(password, stored).await?;
        let Some(row) = row.filter(|_| matches) else {
            return Err(Error::Unauthenticated);
        };
        throttle::clear(scope.db(), &account).await?;
        scope.act_as_user(row.id).await?;
        let tx = scope.tx().await?;
        let user = user::Entity::find_by_id(row.id)
            .one(tx)
            .await?
            .ok_or(Error::Unauthenticated)?;
        // The right password proves the address's owner, so saying why is safe.
        if self.verify_email && user.email_verified_at.is_none() {
            return Err(Error::Forbidden(
                "confirm your email address first: use the token we mailed you (sign up \
                 again to get a new one)",
            ));
        }
        let tenant_id = membership::Entity::find()
            .filter(membership::Column::UserId.eq(row.id))
            .order_by(membership::Column::CreatedAt, sea_orm::Order::Asc)
            .one(tx)
            .await?
            .map(|m| m.tenant_id);
        audit::record(
            scope,
            Event::new(None, "user.login").target(IdKind::User, row.id),
        )
        .await?;
        Ok(self.open_session(scope, user, tenant_id, None).await?.0)
    }

    /// Rotates a refresh token. Presenting a token that was already rotated revokes its
    /// whole family: someone else holds a copy.
    pub async fn refresh(
        &self,
        scope: &RequestScope,
        refresh_token: &str,
        tenant_id: Option<Uuid>,
    ) -> Result<Session> {
        #[derive(FromQueryResult)]
        struct Found {
            id: Uuid,
            user_id: Uuid,
        }
        let hash = token::sha256(refresh_token);
        let found = Found::find_by_statement(stmt(
            "SELECT id, user_id FROM app.refresh_token_for_hash($1)",
            [hash.into()],
        ))
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::Unauthenticated)?;
        scope.act_as_user(found.user_id).await?;
        let tx = scope.tx().await?;
        let current = trellis_entity::refresh_token::Entity::find_by_id(found.id)
            .lock_exclusive()
            .one(tx)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if current.revoked_at.is_some() {
            if current.replaced_by.is_some() {
                revoke_family(scope, current.user_id, current.family_id).await?;
            }
            return Err(Error::Unauthenticated);
        }
        if current.expires_at <= Utc::now() {
            return Err(Error::Unauthenticated);
        }
        let user = user::Entity::find_by_id(current.user_id)
            .one(tx)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if let Some(requested) = tenant_id {
            // Only a tenant the user belongs to; anything else is indistinguishable from
            // a tenant that does not exist.
            let member = membership::Entity::find()
                .filter(membership::Column::TenantId.eq(requested))
                .filter(membership::Column::UserId.eq(current.user_id))
                .one(tx)
                .await?;
            if member.is_none() {
                return Err(Error::NotFound);
            }
        }
        let tenant_id = tenant_id.or(current.active_tenant_id);
        let (session, new_id) = self
            .open_session(scope, user, tenant_id, Some(current.family_id))
            .await?;
        tx.execute(stmt(
            "UPDATE refresh_tokens SET revoked_at = now(), replaced_by = $2 WHERE id = $1",
            [current.id.into(), new_id.into()],
        ))
        .await?;
        audit::record(
            scope,
            Event::new(None, "session.refresh").target(IdKind::User, current.user_id),
        )
        .await?;
        Ok(session)
    }

    /// Ends the session the refresh token belongs to (its whole family).
    pub async fn logout(&self, scope: &RequestScope, refresh_token: &str) -> Result<()> {
        let user_id = scope.user_id()?;
        let done = scope
            .tx()
            .await?
            .execute(stmt(
                "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE family_id = \
                 (SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2)",
                [token::sha256(refresh_token).into(), user_id.into()],
            ))
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        audit::record(
            scope,
            Event::new(None, "session.logout").target(IdKind::User, user_id),
        )
        .await
    }

    /// Mints an access token for a tenant the caller belongs to.
    pub async fn switch_tenant(
        &self,
        scope: &RequestScope,
        tenant_id: Uuid,
    ) -> Result<(String, DateTime<Utc>)> {
        let user_id = scope.user_id()?;
        let tx = scope.tx().await?;
        let member = membership::Entity::find()
            .filter(membership::Column::TenantId.eq(tenant_id))
            .filter(membership::Column::UserId.eq(user_id))
            .one(tx)
            .await?;
        let tenant = tenant::Entity::find_by_id(tenant_id).one(tx).await?;
        match (member, tenant) {
            (Some(_), Some(t)) if t.deleted_at.is_none() => {
                if t.status == TenantStatus::Suspended {
                    return Err(Error::Forbidden("this tenant is suspended"));
                }
            }
            _ => return Err(Error::NotFound),
        }
        let event =
            Event::new(Some(tenant_id), "session.switch_tenant").target(IdKind::User, user_id);
        inside_tenant(scope, tenant_id, audit::record(scope, event)).await?;
        let (token, claims) = self
            .jwt
            .issue(user_id, Some(tenant_id), scope.session_id())?;
        Ok((
            token,
            DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(Utc::now),
        ))
    }
}

/// Runs `work` with the transaction switched into `tenant_id`, and switches back
/// whatever `work` returns, so no early exit leaves the request in another tenant.
pub(crate) async fn inside_tenant<T>(
    scope: &RequestScope,
    tenant_id: Uuid,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    scope.enter_tenant(tenant_id).await?;
    match work.await {
        Ok(value) => {
            scope.leave_tenant().await?;
            Ok(value)
        }
        Err(err) => {
            // After a database error the transaction is aborted and cannot switch back;
            // it only rolls back then, so the first error is the one to report.
            let _ = scope.leave_tenant().await;
            Err(err)
        }
    }
}

/// Validates a tenant slug (the database checks it again).
fn parse_slug(slug: &str) -> Result<String> {
    let slug = slug.trim().to_owned();
    let ok = (3..=64).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(slug)
    } else {
        Err(Error::bad_input("slug", "slug must be 3 to 64 lowercase letters, digits or dashes, not starting or ending with a dash"))
    }
}

/// The settings Trellis reads, and how many days each retention may be.
const RETENTION_SETTINGS: [&str; 4] = [
    "auditRetentionDays",
    "logRetentionDays",
    "payloadRetentionDays",
    "runRetentionDays",
];
/// The longest retention a setting may ask for, in days (ten years).
pub const MAX_RETENTION_DAYS: u64 = 3650;

/// Checks a tenant's settings before they are saved: every key Trellis reads, each in
/// its range, and nothing else (a misspelt key would silently do nothing). A bad value
/// saved once made every later log append of the tenant fail, or stalled the retention
/// job; every problem is reported with its path.
fn parse_settings(settings: serde_json::Value) -> Result<serde_json::Value> {
    let Some(map) = settings.as_object() else {
        return Err(Error::bad_input(
            "settings",
            "settings must be a JSON object",
        ));
    };
    let mut problems = vec![];
    for (key, value) in map {
        let field = format!("settings.{key}");
        match key.as_str() {
            key if RETENTION_SETTINGS.contains(&key) => {
                if !value
                    .as_u64()
                    .is_some_and(|days| (1..=MAX_RETENTION_DAYS).contains(&days))
                {
                    problems.push(FieldProblem::new(
                        field,
                        format!("a whole number of days from 1 to {MAX_RETENTION_DAYS}"),
                    ));
                }
            }
            "maxConcurrentRuns" => {
                let max = crate::engine::executor::MAX_CONCURRENT_RUNS;
                if !value.as_u64().is_some_and(|n| (1..=max).contains(&n)) {
                    problems.push(FieldProblem::new(
                        field,
                        format!("a whole number of runs from 1 to {max}"),
                    ));
                }
            }
            "allowedSkillPermissions" => {
                match crate::agents::skills::check_allowed_permissions_setting(value) {
                    Ok(()) => {}
                    Err(Error::BadInput { field, message }) => {
                        problems.push(FieldProblem::new(field, message));
                    }
                    Err(other) => return Err(other),
                }
            }
            "modelDefaults" => {
                problems.extend(crate::agents::settings::check_model_defaults(value))
            }
            "resourceLimits" => {
                problems.extend(crate::agents::settings::check_resource_limits(value))
            }
            "redaction" => match crate::logs::redact::Redactor::validate_settings(&settings) {
                Ok(()) => {}
                Err(Error::BadInput { field, message }) => {
                    problems.push(FieldProblem::new(field, message));
                }
                Err(Error::Invalid(more)) => problems.extend(more),
                Err(other) => return Err(other),
            },
            _ => problems.push(FieldProblem::new(
                field,
                "unknown setting: Trellis reads auditRetentionDays, logRetentionDays, \
                 payloadRetentionDays, runRetentionDays, maxConcurrentRuns, redaction, \
                 allowedSkillPermissions, modelDefaults and resourceLimits",
            )),
        }
    }
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(Error::Invalid(problems))
    }
}

/// Creates a tenant on `plan` (a plan's key; free when omitted); the caller becomes
/// its owner. A tenant `hosted` on Trellis runners starts PROVISIONING and becomes
/// ACTIVE (or FAILED) when its runner first reports health
/// ([`crate::agents::health::report`]); any other starts ACTIVE.
pub async fn create_tenant(
    scope: &RequestScope,
    slug: &str,
    name: &str,
    plan: Option<&str>,
    hosted: bool,
) -> Result<tenant::Model> {
    let user_id = scope.user_id()?;
    let slug = parse_slug(slug)?;
    let name = required_text(name, "name", 200)?;
    let tenant_id = Uuid::now_v7();
    let tx = scope.tx().await?;
    let plan = crate::plans::find_plan(tx, plan.unwrap_or(crate::plans::DEFAULT_PLAN), "plan")
        .await?
        .key;
    inside_tenant(scope, tenant_id, async {
        let tenant = tenant::ActiveModel {
            id: Set(tenant_id),
            slug: Set(slug),
            name: Set(name),
            plan: Set(plan),
            status: Set(if hosted {
                TenantStatus::Provisioning
            } else {
                TenantStatus::Active
            }),
            settings: Set(json!({})),
            ..Default::default()
        }
        .insert(tx)
        .await?;
        membership::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(tenant_id),
            user_id: Set(user_id),
            role: Set(Role::Owner),
            ..Default::default()
        }
        .insert(tx)
        .await?;
        audit::record(
            scope,
            Event::new(Some(tenant_id), "tenant.create").target(IdKind::Tenant, tenant_id),
        )
        .await?;
        Ok(tenant)
    })
    .await
}

/// The changes `updateTenant` may make.
#[derive(Debug, Default)]
pub struct TenantChanges {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub settings: Option<serde_json::Value>,
}

pub async fn update_tenant(scope: &RequestScope, changes: TenantChanges) -> Result<tenant::Model> {
    let ctx = scope.require(Role::Admin).await?;
    let mut model = tenant::ActiveModel {
        id: Set(ctx.tenant_id),
        ..Default::default()
    };
    let mut changed = vec![];
    if let Some(name) = changes.name {
        model.name = Set(required_text(&name, "name", 200)?);
        changed.push("name");
    }
    if let Some(slug) = changes.slug {
        model.slug = Set(parse_slug(&slug)?);
        changed.push("slug");
    }
    if let Some(settings) = changes.settings {
        model.settings = Set(parse_settings(settings)?);
        changed.push("settings");
    }
    let tx = scope.tx().await?;
    let tenant = if changed.is_empty() {
        tenant::Entity::find_by_id(ctx.tenant_id)
            .one(tx)
            .await?
            .ok_or(Error::NotFound)?
    } else {
        model.update(tx).await?
    };
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "tenant.update")
            .target(IdKind::Tenant, ctx.tenant_id)
            .details(json!({ "changed": changed })),
    )
    .await?;
    Ok(tenant)
}

/// Soft-deletes the active tenant (owners only), confirmed by its slug.
pub async fn delete_tenant(scope: &RequestScope, confirm_slug: &str) -> Result<tenant::Model> {
    let ctx = scope.require(Role::Owner).await?;
    let current = tenant::Entity::find_by_id(ctx.tenant_id)
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)?;
    if current.slug != confirm_slug.trim() {
        return Err(Error::bad_input(
            "slug",
            "type the active tenant's slug to confirm",
        ));
    }
    let tenant = tenant::ActiveModel {
        id: Set(ctx.tenant_id),
        deleted_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "tenant.delete")
            .target(IdKind::Tenant, ctx.tenant_id)
            .severity(Severity::Warning),
    )
    .await?;
    Ok(tenant)
}

/// Cancels the deletion of a soft-deleted tenant, during its grace period, for one of
/// its owners (the caller acts as a user: a deleted tenant cannot be switched into).
/// NOT_FOUND unless the caller is an owner of it; CONFLICT when it is not deleted,
/// when its purge has begun, or when another tenant took its slug meanwhile (the slug
/// is free while a tenant is deleted).
pub async fn restore_tenant(scope: &RequestScope, tenant_id: Uuid) -> Result<tenant::Model> {
    let user_id = scope.user_id()?;
    let tx = scope.tx().await?;
    // RLS shows a user their own memberships and the tenants they belong to.
    let owner = membership::Entity::find()
        .filter(membership::Column::TenantId.eq(tenant_id))
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::Role.eq(Role::Owner))
        .one(tx)
        .await?
        .is_some();
    let current = tenant::Entity::find_by_id(tenant_id).one(tx).await?;
    let current = match current {
        Some(t) if owner => t,
        _ => return Err(Error::NotFound),
    };
    if current.deleted_at.is_none() {
        return Err(Error::conflict(
            Some("tenantId"),
            "the tenant is not deleted",
        ));
    }
    inside_tenant(scope, tenant_id, async {
        // A slug another tenant took meanwhile fails here (tenants_slug_key: CONFLICT
        // on `slug`). The update locks the row, so a purge that began before it is
        // seen by the next statement, and one that begins after it finds the tenant
        // live.
        let tenant = tenant::Model::find_by_statement(stmt(
            "UPDATE tenants SET deleted_at = NULL \
             WHERE id = $1 AND deleted_at IS NOT NULL RETURNING *",
            [tenant_id.into()],
        ))
        .one(tx)
        .await?
        .ok_or_else(|| Error::conflict(Some("tenantId"), "the tenant is not deleted"))?;
        let purging = tx
            .query_one(stmt(
                "SELECT app.tenant_purge_started($1) AS started",
                [tenant_id.into()],
            ))
            .await?
            .map(|row| row.try_get::<bool>("", "started"))
            .transpose()?
            .unwrap_or(false);
        if purging {
            return Err(Error::conflict(
                Some("tenantId"),
                "the tenant's purge has begun; it can no longer be restored",
            ));
        }
        audit::record(
            scope,
            Event::new(Some(tenant_id), "tenant.restore")
                .target(IdKind::Tenant, tenant_id)
                .severity(Severity::Warning),
        )
        .await?;
        Ok(tenant)
    })
    .await
}

/// Suspends or reactivates a tenant: the platform-administration path.
pub async fn set_tenant_suspended(
    scope: &RequestScope,
    tenant_id: Uuid,
    suspended: bool,
) -> Result<tenant::Model> {
    scope.require_platform_admin().await?;
    let (from, to, action) = if suspended {
        (
            TenantStatus::Active,
            TenantStatus::Suspended,
            "tenant.suspend",
        )
    } else {
        (
            TenantStatus::Suspended,
            TenantStatus::Active,
            "tenant.reactivate",
        )
    };
    let tx = scope.tx().await?;
    let tenant = tenant::Entity::find_by_id(tenant_id)
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    if tenant.status != from {
        return Err(Error::conflict(
            Some("tenantId"),
            format!("the tenant is {:?}, not {from:?}", tenant.status).to_lowercase(),
        ));
    }
    inside_tenant(scope, tenant_id, async {
        let tenant = tenant::ActiveModel {
            id: Set(tenant_id),
            status: Set(to),
            ..Default::default()
        }
        .update(tx)
        .await?;
        audit::record(
            scope,
            Event::new(Some(tenant_id), action)
                .target(IdKind::Tenant, tenant_id)
                .severity(Severity::Warning),
        )
        .await?;
        Ok(tenant)
    })
    .await
}

/// An invitation and its token, shown once.
pub struct NewInvitation {
    pub invitation: invitation::Model,
    pub token: String,
}

fn may_grant(ctx: TenantCtx, role: Role) -> Result<()> {
    if role == Role::Owner && ctx.role != Role::Owner {
        return Err(Error::Forbidden("only an owner can make owners"));
    }
    Ok(())
}

pub async fn invite_member(
    scope: &RequestScope,
    config: &IdentityConfig,
    email: &str,
    role: Role,
) -> Result<NewInvitation> {
    let ctx = scope.require(Role::Admin).await?;
    may_grant(ctx, role)?;
    let email = Email::parse(email, "email")?;
    let tx = scope.tx().await?;
    let already_member = tx
        .query_one(stmt(
            "SELECT 1 AS one FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = $1 AND u.email = $2",
            [ctx.tenant_id.into(), email.as_str().into()],
        ))
        .await?
        .is_some();
    if already_member {
        return Err(Error::conflict(
            Some("email"),
            "this user is already a member",
        ));
    }
    tx.execute(stmt(
        "UPDATE invitations SET status = 'expired' WHERE tenant_id = $1 AND email = $2 AND status = 'pending' AND expires_at <= now()",
        [ctx.tenant_id.into(), email.as_str().into()],
    ))
    .await?;
    let token = token::generate("tri_");
    let invitation = invitation::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        email: Set(email.as_str().to_owned()),
        role: Set(role),
        token_hash: Set(token::sha256(&token)),
        status: Set(InvitationStatus::Pending),
        expires_at: Set(Utc::now() + config.invitation_ttl),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "invitation.create")
            .target(IdKind::Invitation, invitation.id)
            .details(json!({ "email": invitation.email, "role": role })),
    )
    .await?;
    Ok(NewInvitation { invitation, token })
}

pub async fn revoke_invitation(scope: &RequestScope, id: Uuid) -> Result<invitation::Model> {
    let ctx = scope.require(Role::Admin).await?;
    let tx = scope.tx().await?;
    let found = invitation::Entity::find_by_id(id)
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    if found.status != InvitationStatus::Pending {
        return Err(Error::conflict(
            Some("id"),
            "only a pending invitation can be revoked",
        ));
    }
    let invitation = invitation::ActiveModel {
        id: Set(id),
        status: Set(InvitationStatus::Revoked),
        ..Default::default()
    }
    .update(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "invitation.revoke").target(IdKind::Invitation, id),
    )
    .await?;
    Ok(invitation)
}

/// Accepts an invitation for the signed-in user, whose email must be the invited one.
/// Of two concurrent accepts, the row lock lets exactly one through.
pub async fn accept_invitation(
    scope: &RequestScope,
    token_text: &str,
) -> Result<membership::Model> {
    #[derive(FromQueryResult)]
    struct Found {
        id: Uuid,
        tenant_id: Uuid,
        email: String,
    }
    let user_id = scope.user_id()?;
    let tx = scope.tx().await?;
    let found = Found::find_by_statement(stmt(
        "SELECT id, tenant_id, email FROM app.invitation_for_token($1)",
        [token::sha256(token_text).into()],
    ))
    .one(tx)
    .await?
    .ok_or(Error::NotFound)?;
    let me = user::Entity::find_by_id(user_id)
        .one(tx)
        .await?
        .ok_or(Error::Unauthenticated)?;
    if me.email != found.email {
        return Err(Error::NotFound);
    }
    inside_tenant(scope, found.tenant_id, async {
        let invitation = invitation::Entity::find_by_id(found.id)
            .lock_exclusive()
            .one(tx)
            .await?
            .ok_or(Error::NotFound)?;
        match invitation.status {
            InvitationStatus::Pending if invitation.expires_at > Utc::now() => {}
            InvitationStatus::Pending | InvitationStatus::Expired => {
                return Err(Error::conflict(
                    Some("token"),
                    "this invitation has expired",
                ))
            }
            _ => {
                return Err(Error::conflict(
                    Some("token"),
                    "this invitation is no longer pending",
                ))
            }
        }
        invitation::ActiveModel {
            id: Set(invitation.id),
            status: Set(InvitationStatus::Accepted),
            accepted_at: Set(Some(Utc::now())),
            accepted_by: Set(Some(user_id)),
            ..Default::default()
        }
        .update(tx)
        .await?;
        let membership = membership::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(found.tenant_id),
            user_id: Set(user_id),
            role: Set(invitation.role),
            ..Default::default()
        }
        .insert(tx)
        .await?;
        audit::record(
            scope,
            Event::new(Some(found.tenant_id), "invitation.accept")
                .target(IdKind::Membership, membership.id),
        )
        .await?;
        Ok(membership)
    })
    .await
}

/// Locks the tenant's owner memberships and counts them.
async fn lock_owners(tx: &impl ConnectionTrait, tenant_id: Uuid) -> Result<usize> {
    Ok(membership::Entity::find()
        .filter(membership::Column::TenantId.eq(tenant_id))
        .filter(membership::Column::Role.eq(Role::Owner))
        .lock_exclusive()
        .all(tx)
        .await?
        .len())
}

pub async fn update_member_role(
    scope: &RequestScope,
    membership_id: Uuid,
    role: Role,
) -> Result<membership::Model> {
    let ctx = scope.require(Role::Admin).await?;
    let tx = scope.tx().await?;
    let owners = lock_owners(tx, ctx.tenant_id).await?;
    let member = membership::Entity::find_by_id(membership_id)
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    may_grant(ctx, role)?;
    may_grant(ctx, member.role)?;
    if member.role == Role::Owner && role != Role::Owner && owners <= 1 {
        return Err(Error::conflict(
            Some("role"),
            "the last owner cannot be demoted",
        ));
    }
    let updated = membership::ActiveModel {
        id: Set(member.id),
        role: Set(role),
        ..Default::default()
    }
    .update(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "membership.update_role")
            .target(IdKind::Membership, member.id)
            .details(json!({ "from": member.role, "to": role })),
    )
    .await?;
    Ok(updated)
}

/// Removes a member; members may remove themselves (leave), admins anyone but owners,
/// owners anyone. The last owner stays.
pub async fn remove_member(scope: &RequestScope, membership_id: Uuid) -> Result<membership::Model> {
    let ctx = scope.require(Role::Viewer).await?;
    let tx = scope.tx().await?;
    let owners = lock_owners(tx, ctx.tenant_id).await?;
    let member = membership::Entity::find_by_id(membership_id)
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    let is_self = scope.user_id().ok() == Some(member.user_id);
    if !is_self {
        if !ctx.role.at_least(Role::Admin) {
            return Err(Error::Forbidden("your role does not allow this"));
        }
        may_grant(ctx, member.role)?;
    }
    if member.role == Role::Owner && owners <= 1 {
        return Err(Error::conflict(
            Some("id"),
            "the last owner cannot leave or be removed",
        ));
    }
    membership::Entity::delete_by_id(member.id).exec(tx).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "membership.remove")
            .target(IdKind::Membership, member.id)
            .severity(Severity::Warning),
    )
    .await?;
    Ok(member)
}

/// A new API key and its plaintext, shown once.
pub struct NewApiKey {
    pub key: api_key::Model,
    pub plaintext: String,
}

/// What an API key may call of the tenant's processes (keys with the `invoke` scope):
/// `None` fields hold it to nothing.
#[derive(Clone, Debug, Default)]
pub struct ProcessAccess {
    /// The one environment it may call.
    pub environment: Option<trellis_entity::Environment>,
    /// The keys of the processes it may call (1 to 100).
    pub process_keys: Option<Vec<String>>,
}

pub async fn create_api_key(
    scope: &RequestScope,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<DateTime<Utc>>,
    process_access: ProcessAccess,
) -> Result<NewApiKey> {
    let ctx = scope.require(Role::Admin).await?;
    let name = required_text(name, "name", 100)?;
    if scopes.is_empty() {
        return Err(Error::bad_input("scopes", "give at least one scope"));
    }
    let restricted = process_access.environment.is_some() || process_access.process_keys.is_some();
    if restricted && !scopes.contains(&Scope::Invoke) {
        return Err(Error::bad_input(
            "processEnvironment",
            "process restrictions apply to keys with the INVOKE scope",
        ));
    }
    let process_keys = match process_access.process_keys {
        Some(keys) => {
            if keys.is_empty() || keys.len() > 100 {
                return Err(Error::bad_input(
                    "processKeys",
                    "give 1 to 100 process keys",
                ));
            }
            let mut checked = keys
                .iter()
                .map(|k| {
                    crate::workflows::check_key(k).map_err(|_| {
                        Error::bad_input("processKeys", format!("{k:?} is not a process key"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            checked.sort();
            checked.dedup();
            Some(checked)
        }
        None => None,
    };
    if expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(Error::bad_input(
            "expiresAt",
            "expiresAt must be in the future",
        ));
    }
    let mut scope_names: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
    scope_names.sort();
    scope_names.dedup();
    let secret = ApiKeySecret::generate();
    let key = api_key::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        name: Set(name),
        prefix: Set(secret.prefix.clone()),
        key_hash: Set(secret.hash.clone()),
        scopes: Set(scope_names),
        expires_at: Set(expires_at),
        process_environment: Set(process_access.environment),
        process_keys: Set(process_keys),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "api_key.create")
            .target(IdKind::ApiKey, key.id)
            .details(json!({ "name": key.name, "scopes": key.scopes })),
    )
    .await?;
    Ok(NewApiKey {
        key,
        plaintext: secret.plaintext,
    })
}

pub async fn revoke_api_key(scope: &RequestScope, id: Uuid) -> Result<api_key::Model> {
    let ctx = scope.require(Role::Admin).await?;
    let tx = scope.tx().await?;
    let key = api_key::Entity::find_by_id(id)
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    if key.revoked_at.is_some() {
        return Err(Error::conflict(
            Some("id"),
            "this API key is already revoked",
        ));
    }
    let key = api_key::ActiveModel {
        id: Set(id),
        revoked_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "api_key.revoke")
            .target(IdKind::ApiKey, id)
            .severity(Severity::Warning),
    )
    .await?;
    Ok(key)
}

/// API keys this process verified recently, by the SHA-256 of their plaintext: a
/// request with one skips the key's look-up. Only the look-up: every request's
/// transaction still checks that the key is neither revoked nor expired
/// (`app.enter_request`), and a key that fails that check is answered like an unknown
/// one ([`RequestScope::credential_ended`]). Keys cannot change their tenant or scopes,
/// so nothing else here can go stale. Cheap to clone (one shared map).
#[derive(Clone, Default)]
pub struct VerifiedKeys {
    keys: std::sync::Arc<std::sync::Mutex<HashMap<Vec<u8>, VerifiedKey>>>,
}

#[derive(Clone)]
struct VerifiedKey {
    principal: crate::Principal,
    expires_at: Option<DateTime<Utc>>,
    verified_at: std::time::Instant,
}

impl VerifiedKeys {
    /// How long a verification is reused.
    const TTL: std::time::Duration = std::time::Duration::from_secs(30);
    /// The most keys kept; past it the map starts over.
    const MAX: usize = 10_000;

    fn get(&self, hash: &[u8]) -> Option<crate::Principal> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let key = keys.get(hash)?;
        let now = Utc::now();
        (key.verified_at.elapsed() < Self::TTL && key.expires_at.is_none_or(|t| t > now))
            .then(|| key.principal.clone())
    }

    fn put(&self, hash: Vec<u8>, principal: crate::Principal, expires_at: Option<DateTime<Utc>>) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= Self::MAX {
            keys.clear();
        }
        let verified_at = std::time::Instant::now();
        keys.insert(
            hash,
            VerifiedKey {
                principal,
                expires_at,
                verified_at,
            },
        );
    }

    /// Drops a key whose request found it revoked or expired.
    pub fn forget(&self, plaintext: &str) {
        let hash = token::sha256(plaintext);
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&hash);
    }
}

/// The principal of an API key's plaintext: from `verified` when this process checked
/// it in the last seconds, else looked up by prefix (a SECURITY DEFINER function: there
/// is no tenant yet) and compared in constant time. Unknown, revoked and expired keys
/// are all `Unauthenticated`.
pub async fn authenticate_api_key(
    conn: &impl ConnectionTrait,
    verified: &VerifiedKeys,
    plaintext: &str,
) -> Result<crate::Principal> {
    #[derive(FromQueryResult)]
    struct KeyRow {
        id: Uuid,
        tenant_id: Uuid,
        key_hash: Vec<u8>,
        scopes: Vec<String>,
        expires_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
    }
    let prefix = crate::auth::api_key::parse_prefix(plaintext).ok_or(Error::Unauthenticated)?;
    let hash = token::sha256(plaintext);
    if let Some(principal) = verified.get(&hash) {
        return Ok(principal);
    }
    let rows = KeyRow::find_by_statement(stmt(
        "SELECT id, tenant_id, key_hash, scopes, expires_at, revoked_at FROM app.api_key_for_auth($1)",
        [prefix.into()],
    ))
    .all(conn)
    .await?;
    let now = Utc::now();
    let row = rows
        .into_iter()
        .find(|row| token::constant_time_eq(&row.key_hash, &hash))
        .filter(|row| row.revoked_at.is_none() && row.expires_at.is_none_or(|t| t > now))
        .ok_or(Error::Unauthenticated)?;
    let principal = crate::Principal::ApiKey {
        key_id: row.id,
        tenant_id: row.tenant_id,
        scopes: row.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
    };
    verified.put(hash, principal.clone(), row.expires_at);
    Ok(principal)
}
