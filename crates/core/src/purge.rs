//! Purging soft-deleted tenants after their grace period (`TRELLIS_TENANT_PURGE_DAYS`).
//!
//! The maintenance loop finds the tenants due through the narrow SECURITY DEFINER
//! function `app.tenants_due_for_purge` (ids only; migration 000026), records each
//! purge in the platform log `app.tenant_purges` (`app.begin_tenant_purge`, which
//! checks the grace period again under a row lock), then deletes the tenant's rows in
//! its own transactions, as [`crate::Principal::Upkeep`], at most `batch` rows per
//! transaction so no lock is held for long. The tables are every table with a
//! `tenant_id` column, read from the catalog, children before parents. Where the
//! application may delete, it deletes under RLS; from the tables it may not (audit
//! events, workflows, agents…) `app.purge_rows` deletes the transaction's own
//! tenant's rows, and only while that tenant's purge is in progress: at no other time
//! can the application delete append-only rows.
//!
//! Each batch commits on its own and the log row stays until the end, so a purge cut
//! short (a crash, a deploy) is taken up again by the next pass where it stopped. The
//! MongoDB log documents go next, then the tenant's audit archive files, and last
//! `app.finish_tenant_purge` deletes the tenant row itself, only when no row with its
//! id is left anywhere, and marks the log row finished. The log row outlives the
//! tenant; the application cannot read it.

use std::collections::BTreeSet;
use std::path::Path;

use sea_orm::{ConnectionTrait, FromQueryResult};
use trellis_entity::Role;
use uuid::Uuid;

use crate::logs::LogStore;
use crate::scope::{stmt, AppDb, RequestScope};
use crate::{Error, Result};

/// Days a soft-deleted tenant is kept (and can be restored) before it is purged.
pub const DEFAULT_PURGE_DAYS: i32 = 30;

/// How a purge pass runs.
#[derive(Clone, Copy, Debug)]
pub struct PurgeLimits {
    /// Days after its deletion a tenant is purged (at least 1).
    pub purge_days: i32,
    /// Rows deleted per transaction.
    pub batch: i64,
    /// Tenants per pass.
    pub max_tenants: i32,
    /// Transactions per tenant per pass; `None`: until the tenant is gone. A purge that
    /// stops here goes on in the next pass.
    pub max_batches: Option<u64>,
}

impl Default for PurgeLimits {
    fn default() -> Self {
        Self {
            purge_days: DEFAULT_PURGE_DAYS,
            batch: 500,
            max_tenants: 10,
            max_batches: None,
        }
    }
}

/// What a purge pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgePass {
    /// Tenants worked on (purged or not yet finished).
    pub tenants: u64,
    /// Tenants purged completely, their row deleted.
    pub purged: u64,
    pub failed: u64,
    /// Rows deleted in PostgreSQL.
    pub rows_deleted: u64,
    /// Log documents deleted in MongoDB.
    pub logs_deleted: u64,
    /// Files of the audit archive deleted.
    pub archive_files_deleted: u64,
}

/// A foreign key between two tables, for the deletion order.
#[derive(Clone, Debug, FromQueryResult)]
pub struct ForeignKey {
    pub child: String,
    pub parent: String,
    /// `confdeltype`: `a` no action, `r` restrict, `c` cascade, `n` set null, `d` set
    /// default.
    pub on_delete: String,
}

impl ForeignKey {
    /// A parent row cannot go while a child row points at it.
    fn blocks(&self) -> bool {
        matches!(self.on_delete.as_str(), "a" | "r")
    }
}

/// Orders `tables` so that every table comes before the tables it references
/// (children first). A cycle is broken at a key that cascades or sets null; a cycle
/// of blocking keys, which no order could satisfy, keeps the names' order.
pub fn deletion_order(tables: &[String], keys: &[ForeignKey]) -> Vec<String> {
    let mut left: BTreeSet<&str> = tables.iter().map(String::as_str).collect();
    let mut order = Vec::with_capacity(tables.len());
    let mut count_soft = true;
    while !left.is_empty() {
        let ready: Vec<&str> = left
            .iter()
            .copied()
            .filter(|table| {
                !keys.iter().any(|k| {
                    k.parent == *table
                        && k.child != k.parent
                        && left.contains(k.child.as_str())
                        && (count_soft || k.blocks())
                })
            })
            .collect();
        if ready.is_empty() {
            if count_soft {
                count_soft = false;
                continue;
            }
            order.extend(left.iter().map(|t| (*t).to_owned()));
            break;
        }
        for table in ready {
            left.remove(table);
            order.push(table.to_owned());
        }
        count_soft = true;
    }
    order
}

/// A table the purge empties, and how.
#[derive(Clone, Debug, FromQueryResult, PartialEq, Eq)]
pub struct PurgeTable {
    pub name: String,
    /// The application may delete from it: the purge does, under RLS. What RLS does
    /// not admit (append-only and soft-delete-only tables have no DELETE at all) goes
    /// through `app.purge_rows`.
    pub deletable: bool,
}

/// Every table with a `tenant_id` column (but `tenants`), children first.
pub async fn tenant_tables(db: &AppDb) -> Result<Vec<PurgeTable>> {
    let found = PurgeTable::find_by_statement(stmt(
        "SELECT c.relname::text AS name, \
                has_table_privilege(current_user, c.oid, 'DELETE') AS deletable \
         FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' \
                            AND NOT a.attisdropped \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
         ORDER BY 1",
        [],
    ))
    .all(db.pool())
    .await?;
    let tables: Vec<String> = found.iter().map(|t| t.name.clone()).collect();
    let keys = ForeignKey::find_by_statement(stmt(
        "SELECT ch.relname::text AS child, pa.relname::text AS parent, \
                con.confdeltype::text AS on_delete \
         FROM pg_constraint con \
         JOIN pg_class ch ON ch.oid = con.conrelid \
         JOIN pg_class pa ON pa.oid = con.confrelid \
         WHERE con.contype = 'f' AND con.connamespace = 'public'::regnamespace",
        [],
    ))
    .all(db.pool())
    .await?;
    Ok(deletion_order(&tables, &keys)
        .into_iter()
        .filter_map(|name| found.iter().find(|t| t.name == name).cloned())
        .collect())
}

/// A tenant's purge: begins it (or takes it up again), deletes its rows batch by
/// batch, its MongoDB logs, its audit archive files under `archive_dir`, then the
/// tenant row. Returns what it did, with `purged` 1 when the tenant is gone; 0 when
/// `limits.max_batches` stopped it first, or when the tenant is not due (restored, or
/// not deleted long enough).
pub async fn purge_tenant(
    db: &AppDb,
    logs: &LogStore,
    archive_dir: Option<&Path>,
    tenant_id: Uuid,
    tables: &[PurgeTable],
    limits: PurgeLimits,
) -> Result<PurgePass> {
    let mut done = PurgePass {
        tenants: 1,
        ..PurgePass::default()
    };
    let begun = db
        .pool()
        .query_one(stmt(
            "SELECT app.begin_tenant_purge($1, $2) AS purging",
            [tenant_id.into(), limits.purge_days.into()],
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "purging"))
        .transpose()?
        .unwrap_or(false);
    if !begun {
        return Ok(PurgePass::default());
    }
    let batch = limits.batch.max(1);
    let mut next = 0;
    let mut batches = 0u64;
    while next < tables.len() {
        if limits.max_batches.is_some_and(|max| batches >= max) {
            return Ok(done);
        }
        batches += 1;
        let scope = RequestScope::for_upkeep(db.clone(), tenant_id);
        scope.require(Role::Viewer).await?;
        let tx = scope.tx().await?;
        let mut room = batch;
        while let Some(table) = tables.get(next) {
            let mut deleted = 0;
            if table.deletable {
                deleted = tx
                    .execute(stmt(
                        &format!(
                            "DELETE FROM \"{name}\" WHERE tenant_id = $1 AND ctid = ANY(ARRAY( \
                               SELECT ctid FROM \"{name}\" WHERE tenant_id = $1 LIMIT $2))",
                            name = table.name
                        ),
                        [tenant_id.into(), room.into()],
                    ))
                    .await?
                    .rows_affected();
            }
            if i64::try_from(deleted).unwrap_or(i64::MAX) < room {
                // The rest: rows no policy lets the application delete (append-only
                // tables, or policies that admit fewer rows than the tenant has).
                let rest = room - i64::try_from(deleted).unwrap_or(0);
                let n = tx
                    .query_one(stmt(
                        "SELECT app.purge_rows($1, $2) AS n",
                        [
                            table.name.clone().into(),
                            i32::try_from(rest).unwrap_or(i32::MAX).into(),
                        ],
                    ))
                    .await?
                    .map(|row| row.try_get::<i64>("", "n"))
                    .transpose()?
                    .unwrap_or(0);
                deleted += u64::try_from(n).unwrap_or(0);
            }
            done.rows_deleted += deleted;
            let deleted = i64::try_from(deleted).unwrap_or(i64::MAX);
            if deleted < room {
                // This table is empty now (a partitioned one may give more than asked).
                next += 1;
            }
            room -= deleted.min(room);
            if room == 0 {
                break;
            }
        }
        tx.execute(stmt(
            "SELECT app.tenant_purge_progress($1, $2)",
            [tenant_id.into(), (batch - room).into()],
        ))
        .await?;
        RequestScope::finish_shared(scope, true).await?;
    }
    done.logs_deleted = logs.purge_tenant(tenant_id).await?;
    if let Some(dir) = archive_dir {
        let dir = dir.to_owned();
        done.archive_files_deleted = tokio::task::spawn_blocking(move || {
            crate::audit_archive::remove_tenant(&dir, tenant_id)
        })
        .await
        .map_err(|err| Error::Internal(err.into()))?
        .map_err(Error::Internal)?;
    }
    let finished = db
        .pool()
        .query_one(stmt(
            "SELECT app.finish_tenant_purge($1) AS finished",
            [tenant_id.into()],
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "finished"))
        .transpose()?
        .unwrap_or(false);
    if !finished {
        return Err(Error::Internal(anyhow::anyhow!(
            "tenant {tenant_id}: rows are left after the purge's last batch"
        )));
    }
    done.purged = 1;
    Ok(done)
}

/// One pass over the tenants due for purge (deleted more than `limits.purge_days`
/// ago, or with a purge left unfinished), their audit archive files under
/// `archive_dir` included. One tenant's failure is logged and counted, and the others
/// go on.
pub async fn purge_pass(
    db: &AppDb,
    logs: &LogStore,
    archive_dir: Option<&Path>,
    limits: PurgeLimits,
) -> Result<PurgePass> {
    #[derive(FromQueryResult)]
    struct Id {
        id: Uuid,
    }
    let due = Id::find_by_statement(stmt(
        "SELECT t AS id FROM app.tenants_due_for_purge($1, $2) AS t",
        [limits.purge_days.into(), limits.max_tenants.into()],
    ))
    .all(db.pool())
    .await?;
    let mut pass = PurgePass::default();
    if due.is_empty() {
        return Ok(pass);
    }
    let tables = tenant_tables(db).await?;
    for Id { id } in due {
        match purge_tenant(db, logs, archive_dir, id, &tables, limits).await {
            Ok(done) => {
                pass.tenants += done.tenants;
                pass.purged += done.purged;
                pass.rows_deleted += done.rows_deleted;
                pass.logs_deleted += done.logs_deleted;
                pass.archive_files_deleted += done.archive_files_deleted;
                if done.purged == 1 {
                    tracing::warn!(tenant = %id, rows = done.rows_deleted, "tenant purged");
                }
            }
            Err(err) => {
                pass.failed += 1;
                tracing::warn!(tenant = %id, error = ?err, "tenant purge failed");
            }
        }
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::{deletion_order, ForeignKey};

    fn key(child: &str, parent: &str, on_delete: &str) -> ForeignKey {
        ForeignKey {
            child: child.into(),
            parent: parent.into(),
            on_delete: on_delete.into(),
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn children_come_before_their_parents() {
        let order = deletion_order(
            &names(&["runs", "steps", "versions", "workflows"]),
            &[
                key("versions", "workflows", "a"),
                key("steps", "versions", "c"),
                key("runs", "versions", "a"),
                key("runs", "runs", "n"),
            ],
        );
        let at = |t: &str| order.iter().position(|o| o == t).unwrap();
        assert!(at("steps") < at("versions"));
        assert!(at("runs") < at("versions"));
        assert!(at("versions") < at("workflows"));
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn a_cycle_is_broken_at_a_key_that_sets_null() {
        // workflows.active_version_id sets null; versions.workflow_id blocks.
        let order = deletion_order(
            &names(&["versions", "workflows"]),
            &[
                key("versions", "workflows", "a"),
                key("workflows", "versions", "n"),
            ],
        );
        assert_eq!(order, names(&["versions", "workflows"]));
    }
}
