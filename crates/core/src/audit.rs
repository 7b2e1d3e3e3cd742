//! The audit log: every mutation writes one event in its own transaction. The table is
//! append-only for the application role and hash-chained per tenant by a trigger.
//!
//! Events are queued on the scope and inserted together, in one statement, when the
//! GraphQL operation ends or the transaction is about to commit: a tenant's chain head
//! is locked from its first insert to the commit, so inserting last keeps that lock
//! short for everyone else writing to the tenant (the engine's transactions move many
//! runs). An event never outlives a transaction that rolls back.

use sea_orm::{ConnectionTrait, Value};
use serde_json::Value as Json;
use trellis_entity::{IdKind, Severity};
use uuid::Uuid;

use crate::scope::{stmt, Actor, RequestScope};
use crate::Result;

/// One event to record.
pub struct Event<'a> {
    pub tenant_id: Option<Uuid>,
    pub action: &'a str,
    pub target: Option<(IdKind, Uuid)>,
    pub severity: Severity,
    pub details: Json,
}

impl<'a> Event<'a> {
    pub fn new(tenant_id: Option<Uuid>, action: &'a str) -> Self {
        Self {
            tenant_id,
            action,
            target: None,
            severity: Severity::Info,
            details: Json::Object(Default::default()),
        }
    }

    pub fn target(mut self, kind: IdKind, id: Uuid) -> Self {
        self.target = Some((kind, id));
        self
    }

    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    pub fn details(mut self, details: Json) -> Self {
        self.details = details;
        self
    }
}

/// An audit row as `INSERT INTO audit_events` takes it, in [`COLUMNS`] order.
pub(crate) type Row = [Value; 11];

const COLUMNS: &str = "id, tenant_id, actor_type, actor_id, action, target_type, target_id, \
     severity, ip, user_agent, details";

/// The most rows one insert carries (11 parameters each).
const ROWS_PER_INSERT: usize = 500;

/// Appends `event` to the audit log of the request's transaction (begun now if it was
/// not): queued, and inserted before the transaction commits.
pub async fn record(scope: &RequestScope, event: Event<'_>) -> Result<()> {
    let (actor_type, actor_id) = match scope.actor() {
        Actor::User(id) => ("user", Some(id)),
        Actor::ApiKey(id) => ("api_key", Some(id)),
        Actor::System => ("system", None),
    };
    let (target_type, target_id) = match event.target {
        Some((kind, id)) => (Some(kind.prefix()), Some(id)),
        None => (None, None),
    };
    let meta = scope.meta();
    let severity = match event.severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    };
    scope.tx().await?;
    scope.queue_audit([
        Uuid::now_v7().into(),
        event.tenant_id.into(),
        actor_type.into(),
        actor_id.into(),
        event.action.into(),
        target_type.map(str::to_owned).into(),
        target_id.into(),
        severity.into(),
        meta.ip.clone().into(),
        meta.user_agent.clone().into(),
        event.details.into(),
    ]);
    Ok(())
}

/// Inserts queued rows, in their order, a few hundred per statement.
pub(crate) async fn insert(db: &impl ConnectionTrait, rows: Vec<Row>) -> Result<()> {
    insert_and_notify(db, rows, Vec::new()).await
}

/// [`insert`], with the NOTIFYs of a committing request (as (channel, payload)) sent
/// in the same statement as the last rows: a mutation that audits and announces pays
/// one round trip for both. PostgreSQL delivers the notifications at the commit.
pub(crate) async fn insert_and_notify(
    db: &impl ConnectionTrait,
    rows: Vec<Row>,
    notices: Vec<(&'static str, String)>,
) -> Result<()> {
    // The notifications as two array parameters, and the SELECT that sends them.
    let mut notices = (!notices.is_empty()).then(|| {
        let (channels, payloads): (Vec<String>, Vec<String>) =
            notices.into_iter().map(|(c, p)| (c.to_owned(), p)).unzip();
        [Value::from(channels), Value::from(payloads)]
    });
    let notify = |first: usize| {
        format!(
            "SELECT pg_notify(c, p) FROM unnest(${first}::text[], ${}::text[]) AS a(c, p)",
            first + 1
        )
    };
    let chunks: Vec<&[Row]> = rows.chunks(ROWS_PER_INSERT).collect();
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.into_iter().enumerate() {
        let tuples: Vec<String> = (0..chunk.len())
            .map(|r| {
                let params: Vec<String> = (1..=11).map(|c| format!("${}", r * 11 + c)).collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let insert = format!(
            "INSERT INTO audit_events ({COLUMNS}) VALUES {}",
            tuples.join(", ")
        );
        let mut values: Vec<Value> = chunk.iter().flatten().cloned().collect();
        // Only the last chunk carries them (taking them earlier would drop them).
        let sql = match if i == last { notices.take() } else { None } {
            Some(arrays) => {
                let sql = format!("WITH written AS ({insert}) {}", notify(values.len() + 1));
                values.extend(arrays);
                sql
            }
            None => insert,
        };
        db.execute(stmt(&sql, values)).await?;
    }
    if let Some(arrays) = notices {
        // Nothing audited: the notifications alone.
        db.execute(stmt(&notify(1), arrays)).await?;
    }
    Ok(())
}

/// The first sequence number at which a tenant's chain is broken, or `None` when every
/// event verifies. Runs in the caller's transaction, so RLS limits it to what they see.
pub async fn verify_chain(
    conn: &impl ConnectionTrait,
    tenant_id: Option<Uuid>,
) -> Result<Option<i64>> {
    let row = conn
        .query_one(stmt(
            "SELECT app.verify_audit_chain($1) AS broken_at",
            [tenant_id.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<Option<i64>>("", "broken_at"))
        .transpose()?
        .flatten())
}
