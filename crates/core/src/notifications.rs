//! In-app notifications: the inbox of each member of a tenant. A NOTIFICATION step
//! with channel `in_app` delivers one row per recipient in its run's transaction (so
//! a step delivers exactly once, with its move); members list their own and mark them
//! read.

use chrono::Utc;
use sea_orm::{ColumnTrait, Condition};
use sea_orm::{
    ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;
use trellis_entity::{notification, Role};
use uuid::Uuid;

use crate::engine::people::Person;
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// One in-app message to deliver.
#[derive(Clone, Debug)]
pub struct InApp<'a> {
    pub run_id: Uuid,
    pub step_run_id: Uuid,
    pub title: &'a str,
    pub body: &'a str,
    pub data: Option<Value>,
}

/// The longest title and body kept.
pub const MAX_TITLE_CHARS: usize = 500;
pub const MAX_BODY_CHARS: usize = 10_000;

fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Delivers `message` to the members of the transaction's tenant that `recipients`
/// name; returns the user ids reached. Delivering a step's message again reaches
/// nobody new.
pub async fn deliver_in_app(
    tx: &impl ConnectionTrait,
    tenant_id: Uuid,
    recipients: &[Person],
    message: &InApp<'_>,
) -> Result<Vec<Uuid>> {
    #[derive(FromQueryResult)]
    struct Member {
        user_id: Uuid,
        email: String,
        role: Role,
    }
    let members = Member::find_by_statement(stmt(
        "SELECT m.user_id, u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1",
        [tenant_id.into()],
    ))
    .all(tx)
    .await?;
    let reached: Vec<Uuid> = members
        .iter()
        .filter(|m| {
            recipients
                .iter()
                .any(|p| p.names(m.user_id, &m.email, m.role))
        })
        .map(|m| m.user_id)
        .collect();
    if reached.is_empty() {
        return Ok(reached);
    }
    let ids: Vec<Uuid> = reached.iter().map(|_| Uuid::now_v7()).collect();
    tx.execute(stmt(
        "INSERT INTO notifications (id, tenant_id, user_id, run_id, step_run_id, title, body, data) \
         SELECT id, $2, user_id, $3, $4, $5, $6, $7 FROM unnest($1::uuid[], $8::uuid[]) AS n(id, user_id) \
         ON CONFLICT (tenant_id, step_run_id, user_id) DO NOTHING",
        [
            ids.into(),
            tenant_id.into(),
            message.run_id.into(),
            message.step_run_id.into(),
            clip(message.title, MAX_TITLE_CHARS).into(),
            clip(message.body, MAX_BODY_CHARS).into(),
            message.data.clone().into(),
            reached.clone().into(),
        ],
    ))
    .await?;
    Ok(reached)
}

/// The most notifications one page lists.
pub const MAX_PAGE: u64 = 100;

/// The caller's notifications, newest first, at most `limit`; only unread ones when
/// `unread_only`; those older than `before` (an id) when given.
pub async fn inbox(
    scope: &RequestScope,
    limit: u64,
    unread_only: bool,
    before: Option<Uuid>,
) -> Result<Vec<notification::Model>> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::bad_input(
            "first",
            format!("first is 1 to {MAX_PAGE}"),
        ));
    }
    scope.require(Role::Viewer).await?;
    let user_id = scope.user_id()?;
    let mut select = notification::Entity::find()
        .filter(notification::Column::UserId.eq(user_id))
        .order_by_desc(notification::Column::Id)
        .limit(limit);
    if unread_only {
        select = select.filter(notification::Column::ReadAt.is_null());
    }
    if let Some(before) = before {
        select = select.filter(notification::Column::Id.lt(before));
    }
    Ok(select.all(scope.tx().await?).await?)
}

/// One of the caller's notifications; `None` for anyone else's.
pub async fn own_notification(
    scope: &RequestScope,
    id: Uuid,
) -> Result<Option<notification::Model>> {
    scope.require(Role::Viewer).await?;
    let user_id = scope.user_id()?;
    Ok(notification::Entity::find_by_id(id)
        .filter(notification::Column::UserId.eq(user_id))
        .one(scope.tx().await?)
        .await?)
}

/// How many of the caller's notifications are unread.
pub async fn unread_count(scope: &RequestScope) -> Result<u64> {
    scope.require(Role::Viewer).await?;
    let user_id = scope.user_id()?;
    let row = scope
        .tx()
        .await?
        .query_one(stmt(
            "SELECT count(*) AS n FROM notifications WHERE user_id = $1 AND read_at IS NULL",
            [user_id.into()],
        ))
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("count returned no row")))?;
    let n: i64 = row.try_get("", "n")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Marks the caller's notifications read: those of `ids`, or all when `ids` is
/// `None`. Returns how many changed; ids that are not the caller's change nothing.
pub async fn mark_read(scope: &RequestScope, ids: Option<Vec<Uuid>>) -> Result<u64> {
    scope.require(Role::Viewer).await?;
    let user_id = scope.user_id()?;
    let mut which = Condition::all()
        .add(notification::Column::UserId.eq(user_id))
        .add(notification::Column::ReadAt.is_null());
    if let Some(ids) = ids {
        if ids.len() as u64 > MAX_PAGE {
            return Err(Error::bad_input("ids", format!("at most {MAX_PAGE} ids")));
        }
        which = which.add(notification::Column::Id.is_in(ids));
    }
    let done = notification::Entity::update_many()
        .col_expr(
            notification::Column::ReadAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(which)
        .exec(scope.tx().await?)
        .await?;
    Ok(done.rows_affected)
}
