//! Secrets: values sealed with the tenant's data key, which is itself wrapped by a
//! master key. Plaintext exists only in memory, as `SecretString`, and only inside this
//! module and its callers in `core`: no field, error or log line carries it.

use std::sync::Arc;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use trellis_entity::{connection_secret, secret, tenant_data_key, trigger, IdKind, Role, Severity};
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::crypto::{CryptoError, DataKey, MasterKeyring, SecretBinding, WrappedKey};
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// The most bytes a secret value may hold.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Seals and opens tenant secrets; holds the master keys.
#[derive(Clone, Debug)]
pub struct Vault {
    keyring: Arc<MasterKeyring>,
}

impl From<CryptoError> for Error {
    fn from(err: CryptoError) -> Self {
        // CryptoError never carries key or plaintext bytes, so its text may be logged.
        Error::Internal(anyhow::Error::new(err))
    }
}

impl Vault {
    pub fn new(keyring: MasterKeyring) -> Self {
        Self {
            keyring: Arc::new(keyring),
        }
    }

    /// The master keys.
    pub fn keyring(&self) -> &MasterKeyring {
        &self.keyring
    }

    /// The tenant's newest data key, created (and wrapped under the active master key)
    /// on first use. Concurrent first uses agree on one key.
    async fn current_data_key(
        &self,
        db: &impl ConnectionTrait,
        tenant_id: Uuid,
    ) -> Result<(i32, DataKey)> {
        if let Some(row) = newest_data_key(db, tenant_id).await? {
            return Ok((row.generation, self.unwrap(&row)?));
        }
        let key = DataKey::generate()?;
        let wrapped = self.keyring.wrap(tenant_id, &key)?;
        db.execute(stmt(
            "INSERT INTO tenant_data_keys (tenant_id, generation, master_key_id, wrapped) \
             VALUES ($1, 1, $2, $3) ON CONFLICT DO NOTHING",
            [
                tenant_id.into(),
                wrapped.master_key_id.into(),
                wrapped.ciphertext.into(),
            ],
        ))
        .await?;
        let row = newest_data_key(db, tenant_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("tenant data key missing after insert"))?;
        Ok((row.generation, self.unwrap(&row)?))
    }

    async fn data_key(
        &self,
        db: &impl ConnectionTrait,
        tenant_id: Uuid,
        generation: i32,
    ) -> Result<DataKey> {
        let row = tenant_data_key::Entity::find_by_id((tenant_id, generation))
            .one(db)
            .await?
            .ok_or_else(|| anyhow::anyhow!("data key generation {generation} missing"))?;
        self.unwrap(&row)
    }

    fn unwrap(&self, row: &tenant_data_key::Model) -> Result<DataKey> {
        Ok(self.keyring.unwrap(
            row.tenant_id,
            &WrappedKey {
                master_key_id: row.master_key_id.clone(),
                ciphertext: row.wrapped.clone(),
            },
        )?)
    }

    /// Opens a secret only to redact it from logs: no use is recorded. The caller must
    /// never log or return the value.
    pub async fn open_for_redaction(
        &self,
        scope: &RequestScope,
        secret: &secret::Model,
    ) -> Result<SecretString> {
        let key = self
            .data_key(
                scope.tx().await?,
                secret.tenant_id,
                secret.data_key_generation,
            )
            .await?;
        Ok(key.open(&binding(secret), &secret.ciphertext)?)
    }

    /// Opens a secret for use by the server (a connection test, a run) and records
    /// when it was last used. The caller must never log or return the value.
    pub async fn reveal(
        &self,
        scope: &RequestScope,
        secret: &secret::Model,
    ) -> Result<SecretString> {
        let tx = scope.tx().await?;
        let key =
            tenant_data_key::Entity::find_by_id((secret.tenant_id, secret.data_key_generation))
                .one(tx)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!("data key generation {} missing", secret.data_key_generation)
                })?;
        self.reveal_with(scope, secret, &key).await
    }

    /// [`Self::reveal`] with the secret's data key already read (by the caller's own
    /// statement, as `open_connection` reads a connection's secrets and keys at once).
    pub async fn reveal_with(
        &self,
        scope: &RequestScope,
        secret: &secret::Model,
        data_key: &tenant_data_key::Model,
    ) -> Result<SecretString> {
        let tx = scope.tx().await?;
        if (data_key.tenant_id, data_key.generation)
            != (secret.tenant_id, secret.data_key_generation)
        {
            return Err(anyhow::anyhow!("a secret opened with another data key").into());
        }
        let key = self.unwrap(data_key)?;
        let value = key.open(&binding(secret), &secret.ciphertext)?;
        // When it was last used, to the minute: a secret used on every call (a model
        // provider's key) is not rewritten on every call.
        let stale = secret
            .last_used_at
            .is_none_or(|used| used < chrono::Utc::now() - chrono::Duration::minutes(1));
        if stale {
            tx.execute(stmt(
                "UPDATE secrets SET last_used_at = now() WHERE id = $1",
                [secret.id.into()],
            ))
            .await?;
        }
        Ok(value)
    }
}

async fn newest_data_key(
    db: &impl ConnectionTrait,
    tenant_id: Uuid,
) -> Result<Option<tenant_data_key::Model>> {
    Ok(tenant_data_key::Entity::find()
        .filter(tenant_data_key::Column::TenantId.eq(tenant_id))
        .order_by_desc(tenant_data_key::Column::Generation)
        .one(db)
        .await?)
}

fn binding(secret: &secret::Model) -> SecretBinding {
    SecretBinding {
        tenant_id: secret.tenant_id,
        secret_id: secret.id,
        version: secret.version,
    }
}

fn check_value(value: &SecretString) -> Result<()> {
    let len = value.expose_secret().len();
    if len == 0 || len > MAX_SECRET_BYTES {
        return Err(Error::bad_input(
            "value",
            format!("value must be 1 to {MAX_SECRET_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    let valid = (1..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(Error::bad_input(
            "name",
            "name must be 1 to 128 letters, digits, '_', '.' or '-', starting with a letter",
        ));
    }
    Ok(name.to_owned())
}

/// Creates a secret (admins).
pub async fn create_secret(
    vault: &Vault,
    scope: &RequestScope,
    name: &str,
    value: &SecretString,
) -> Result<secret::Model> {
    let ctx = scope.require(Role::Admin).await?;
    let name = check_name(name)?;
    check_value(value)?;
    store_secret(vault, scope, ctx.tenant_id, name, value).await
}

/// Seals and stores a new secret of `tenant_id`, with its audit event. The caller has
/// checked the role: admins for [`create_secret`], builders for the signing secret a
/// webhook trigger generates.
pub(crate) async fn store_secret(
    vault: &Vault,
    scope: &RequestScope,
    tenant_id: Uuid,
    name: String,
    value: &SecretString,
) -> Result<secret::Model> {
    let tx = scope.tx().await?;
    let (generation, key) = vault.current_data_key(tx, tenant_id).await?;
    let id = Uuid::now_v7();
    let sealed = key.seal(
        &SecretBinding {
            tenant_id,
            secret_id: id,
            version: 1,
        },
        value,
    )?;
    let secret = secret::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant_id),
        name: Set(name),
        version: Set(1),
        data_key_generation: Set(generation),
        ciphertext: Set(sealed),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(tenant_id), "secret.create")
            .target(IdKind::Secret, id)
            .details(json!({ "name": secret.name })),
    )
    .await?;
    Ok(secret)
}

/// Replaces a secret's value (admins): the version goes up and `rotated_at` is set.
pub async fn rotate_secret(
    vault: &Vault,
    scope: &RequestScope,
    id: Uuid,
    value: &SecretString,
) -> Result<secret::Model> {
    let ctx = scope.require(Role::Admin).await?;
    check_value(value)?;
    let tx = scope.tx().await?;
    let current = secret::Entity::find_by_id(id)
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    let (generation, key) = vault.current_data_key(tx, ctx.tenant_id).await?;
    let version = current.version + 1;
    let sealed = key.seal(
        &SecretBinding {
            tenant_id: ctx.tenant_id,
            secret_id: id,
            version,
        },
        value,
    )?;
    let secret = secret::ActiveModel {
        id: Set(id),
        version: Set(version),
        data_key_generation: Set(generation),
        ciphertext: Set(sealed),
        rotated_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "secret.rotate")
            .target(IdKind::Secret, id)
            .details(json!({ "name": secret.name, "version": version })),
    )
    .await?;
    Ok(secret)
}

/// Deletes a secret (admins); refused with CONFLICT while a connection or a webhook
/// trigger uses it.
pub async fn delete_secret(scope: &RequestScope, id: Uuid) -> Result<secret::Model> {
    let ctx = scope.require(Role::Admin).await?;
    let tx = scope.tx().await?;
    let secret = secret::Entity::find_by_id(id)
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    let users = connection_secret::Entity::find()
        .filter(connection_secret::Column::SecretId.eq(id))
        .count(tx)
        .await?;
    if users > 0 {
        return Err(Error::conflict(
            Some("id"),
            format!("this secret is used by {users} connection field(s); change them first"),
        ));
    }
    let signing = trigger::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(trigger::Column::SigningSecretId.eq(id))
                .add(trigger::Column::PreviousSigningSecretId.eq(id)),
        )
        .count(tx)
        .await?;
    if signing > 0 {
        return Err(Error::conflict(
            Some("id"),
            "this secret signs a webhook trigger; rotate or delete the trigger first",
        ));
    }
    secret::Entity::delete_by_id(id).exec(tx).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "secret.delete")
            .target(IdKind::Secret, id)
            .severity(Severity::Warning)
            .details(json!({ "name": secret.name })),
    )
    .await?;
    Ok(secret)
}

/// Replaces the tenant's data key (admins): every secret is re-encrypted under a new
/// key in the request's one transaction, and the old keys are dropped. Returns the new
/// generation and how many secrets were re-encrypted.
pub async fn rotate_data_key(vault: &Vault, scope: &RequestScope) -> Result<(i32, usize)> {
    let ctx = scope.require(Role::Admin).await?;
    let tx = scope.tx().await?;
    // Serialises with concurrent rotations and secret writes of this tenant.
    tx.execute(stmt(
        "SELECT pg_advisory_xact_lock(hashtextextended('trellis.data_key:' || $1::text, 0))",
        [ctx.tenant_id.into()],
    ))
    .await?;
    let (old_generation, _) = vault.current_data_key(tx, ctx.tenant_id).await?;
    let generation = old_generation + 1;
    let key = DataKey::generate()?;
    let wrapped = vault.keyring.wrap(ctx.tenant_id, &key)?;
    tenant_data_key::ActiveModel {
        tenant_id: Set(ctx.tenant_id),
        generation: Set(generation),
        master_key_id: Set(wrapped.master_key_id),
        wrapped: Set(wrapped.ciphertext),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    let secrets = secret::Entity::find()
        .filter(secret::Column::TenantId.eq(ctx.tenant_id))
        .lock_exclusive()
        .all(tx)
        .await?;
    let mut old_keys = std::collections::HashMap::new();
    for secret in &secrets {
        let generation_of = secret.data_key_generation;
        let old = match old_keys.entry(generation_of) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(vault.data_key(tx, ctx.tenant_id, generation_of).await?)
            }
        };
        let value = old.open(&binding(secret), &secret.ciphertext)?;
        let sealed = key.seal(&binding(secret), &value)?;
        tx.execute(stmt(
            "UPDATE secrets SET ciphertext = $2, data_key_generation = $3 WHERE id = $1",
            [secret.id.into(), sealed.into(), generation.into()],
        ))
        .await?;
    }
    tenant_data_key::Entity::delete_many()
        .filter(tenant_data_key::Column::TenantId.eq(ctx.tenant_id))
        .filter(tenant_data_key::Column::Generation.lt(generation))
        .exec(tx)
        .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "tenant.data_key.rotate")
            .severity(Severity::Warning)
            .details(json!({ "generation": generation, "secrets": secrets.len() })),
    )
    .await?;
    Ok((generation, secrets.len()))
}

/// What a master-key rotation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MasterKeyRotation {
    /// Data keys re-wrapped by this run.
    pub rewrapped: usize,
    /// Data keys still under another master key (only when `limit` stopped the run).
    pub remaining: usize,
}

/// Re-wraps every tenant data key under the active master key, one key per
/// transaction, so an interrupted run leaves every key readable and a rerun finishes
/// the rest. Secret ciphertexts are not touched. Runs on the owner connection (it
/// crosses tenants). Fails before changing anything when a data key names a master
/// key the keyring does not hold. `limit` stops after that many keys (for tests and
/// for spreading the work).
pub async fn rotate_master_key(
    keyring: &MasterKeyring,
    owner: &DatabaseConnection,
    limit: Option<usize>,
) -> Result<MasterKeyRotation> {
    let active = keyring.active_id().to_owned();
    let in_use: Vec<String> = tenant_data_key::Entity::find()
        .select_only()
        .column(tenant_data_key::Column::MasterKeyId)
        .distinct()
        .into_tuple()
        .all(owner)
        .await?;
    let unknown: Vec<&String> = in_use.iter().filter(|id| !keyring.contains(id)).collect();
    if !unknown.is_empty() {
        return Err(Error::Internal(anyhow::anyhow!(
            "data keys are wrapped by master key(s) {unknown:?}, which TRELLIS_MASTER_KEYS does not hold; add them (after the active key) and rerun"
        )));
    }
    let mut report = MasterKeyRotation::default();
    loop {
        if limit.is_some_and(|limit| report.rewrapped >= limit) {
            break;
        }
        let tx = owner.begin().await?;
        let Some(row) = tenant_data_key::Entity::find()
            .filter(tenant_data_key::Column::MasterKeyId.ne(active.as_str()))
            .lock_with_behavior(
                sea_orm::sea_query::LockType::Update,
                sea_orm::sea_query::LockBehavior::SkipLocked,
            )
            .one(&tx)
            .await?
        else {
            break;
        };
        let key = keyring.unwrap(
            row.tenant_id,
            &WrappedKey {
                master_key_id: row.master_key_id.clone(),
                ciphertext: row.wrapped.clone(),
            },
        )?;
        let wrapped = keyring.wrap(row.tenant_id, &key)?;
        tenant_data_key::Entity::update_many()
            .col_expr(
                tenant_data_key::Column::MasterKeyId,
                Expr::value(wrapped.master_key_id),
            )
            .col_expr(
                tenant_data_key::Column::Wrapped,
                Expr::value(wrapped.ciphertext),
            )
            .col_expr(
                tenant_data_key::Column::RewrappedAt,
                Expr::current_timestamp().into(),
            )
            .filter(tenant_data_key::Column::TenantId.eq(row.tenant_id))
            .filter(tenant_data_key::Column::Generation.eq(row.generation))
            .exec(&tx)
            .await?;
        tx.commit().await?;
        report.rewrapped += 1;
    }
    report.remaining = tenant_data_key::Entity::find()
        .filter(tenant_data_key::Column::MasterKeyId.ne(active.as_str()))
        .count(owner)
        .await? as usize;
    Ok(report)
}
