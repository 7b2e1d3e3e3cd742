//! The one rule for bringing a soft-deleted row back, shared by every `restore…`
//! mutation (workflows, processes, agents, apps, connections).
//!
//! A soft delete sets `deleted_at`; the table's unique index on the key, slug or name
//! is partial (`WHERE deleted_at IS NULL`), so a deleted row's key is free for a new
//! row. Restoring finds the deleted row (NOT_FOUND when it is live, another tenant's or
//! missing: row-level security hides other tenants' rows), locks it for the rest of the
//! request, and clears `deleted_at`. When a live row took the key meanwhile the partial
//! index refuses the update, which surfaces as CONFLICT naming the field
//! ([`crate::error`] maps each index to it); the request's transaction then writes
//! nothing. Callers check who may restore and record the audit event.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, PrimaryKeyTrait, QueryFilter,
    QuerySelect, Value,
};
use uuid::Uuid;

use crate::scope::RequestScope;
use crate::{Error, Result};

/// The entity a `deleted_at` column belongs to.
type EntityOf<C> = <C as ColumnTrait>::EntityName;
/// Its rows.
type ModelOf<C> = <EntityOf<C> as EntityTrait>::Model;

/// The deleted row `id` of the table `deleted_at` belongs to, as the caller can see it,
/// locked for the rest of the request; NOT_FOUND when there is none (live, missing, or
/// another tenant's).
pub(crate) async fn find_deleted<C>(
    scope: &RequestScope,
    id: Uuid,
    deleted_at: C,
) -> Result<ModelOf<C>>
where
    C: ColumnTrait,
    EntityOf<C>: EntityTrait<Column = C>,
    Uuid: Into<<<EntityOf<C> as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType>,
{
    EntityOf::<C>::find_by_id(id)
        .filter(deleted_at.is_not_null())
        .lock_exclusive()
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)
}

/// Clears `deleted_at` of a row [`find_deleted`] returned: it is live again. CONFLICT
/// (from the table's partial unique index) when a live row has its key now.
pub(crate) async fn undelete<C>(
    scope: &RequestScope,
    row: ModelOf<C>,
    deleted_at: C,
) -> Result<ModelOf<C>>
where
    C: ColumnTrait,
    EntityOf<C>: EntityTrait<Column = C>,
    ModelOf<C>: IntoActiveModel<<EntityOf<C> as EntityTrait>::ActiveModel>,
    <EntityOf<C> as EntityTrait>::ActiveModel: Send,
{
    let mut active = row.into_active_model();
    active.set(deleted_at, Value::ChronoDateTimeUtc(None));
    Ok(active.update(scope.tx().await?).await?)
}
