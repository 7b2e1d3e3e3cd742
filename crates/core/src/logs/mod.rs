//! Execution logs: what runs and their steps log, stored in MongoDB (collection
//! `execution_logs`) when a `MONGODB_URL` is configured and in the PostgreSQL table
//! `execution_logs` otherwise.
//!
//! MongoDB has no row-level security, so the store is reached only through a
//! [`TenantLogs`] handle bound to the tenant of one request: the handle puts `tenantId`
//! into every document and every filter itself, and no method takes a tenant id.
//! Every entry is redacted before any write (see [`redact`]) and carries an `expireAt`
//! from the tenant's retention ([`retention_days`]). When MongoDB cannot be reached the
//! entries go to the bounded `log_outbox` table in the request's transaction, and
//! [`LogStore::replay_outbox`] moves them to MongoDB once it answers again.
//! `docs/logs.md` describes the whole design.

mod mongo;
mod outbox;
mod postgres;
pub mod redact;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult};
use secrecy::SecretString;
use serde_json::Value as Json;
use trellis_entity::Role;
use uuid::Uuid;

use crate::scope::stmt;
use crate::{Error, RequestScope, Result};

pub use outbox::ReplayReport;
pub use redact::Redactor;

/// At most this many entries in one [`TenantLogs::append`] call.
pub const MAX_ENTRIES_PER_APPEND: usize = 1000;
/// A message longer than this (in characters) is refused; after redaction it is cut
/// to this length.
pub const MAX_MESSAGE_CHARS: usize = 16_384;
/// A context larger than this, serialised as JSON, is refused.
pub const MAX_CONTEXT_BYTES: usize = 64 * 1024;
/// At most this many entries in one page of [`TenantLogs::query`].
pub const MAX_PAGE: u32 = 100;
/// Default bound of the outbox: entries waiting for MongoDB, per tenant.
pub const DEFAULT_OUTBOX_CAP: u64 = 100_000;
/// How far in the future a caller-supplied `logged_at` may be (clock skew).
const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// How severe a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// Every level, least severe first.
    pub const ALL: [LogLevel; 4] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];

    /// The stored name: `debug`, `info`, `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// The level with this stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == name)
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A line to append, as a runner sends it.
#[derive(Clone, Debug)]
pub struct NewLogEntry {
    pub run_id: Uuid,
    pub step_run_id: Option<Uuid>,
    pub level: LogLevel,
    pub message: String,
    /// Structured detail (any JSON; `null` is stored as `{}`).
    pub context: Json,
    /// When it happened; now when absent. At most five minutes in the future.
    pub logged_at: Option<DateTime<Utc>>,
}

/// A stored line, redacted.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub id: Uuid,
    pub run_id: Uuid,
    pub step_run_id: Option<Uuid>,
    pub level: LogLevel,
    pub message: String,
    pub context: Json,
    /// Millisecond precision, in both stores.
    pub logged_at: DateTime<Utc>,
    /// When retention removes it.
    pub expire_at: DateTime<Utc>,
}

/// Which lines a query returns. Every field narrows; all values are matched literally.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    /// One line by its id.
    pub id: Option<Uuid>,
    pub run_id: Option<Uuid>,
    pub step_run_id: Option<Uuid>,
    /// Any of these levels; `None` or empty: every level.
    pub levels: Option<Vec<LogLevel>>,
    /// A case-insensitive substring of the message, taken literally (no pattern, no
    /// operator: `%`, `.*` or `$ne` match only themselves).
    pub text: Option<String>,
}

/// Where a page starts: the last line of the previous page (keyset on time, then id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogCursor {
    pub logged_at: DateTime<Utc>,
    pub id: Uuid,
}

impl LogCursor {
    /// The cursor just after `entry`.
    pub fn of(entry: &LogEntry) -> Self {
        Self {
            logged_at: entry.logged_at,
            id: entry.id,
        }
    }

    /// An opaque string for an API cursor.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}:{}",
            self.logged_at.timestamp_millis(),
            self.id
        ))
    }

    /// Reads [`Self::encode`]'s output; a malformed cursor is bad input of `field`.
    pub fn decode(cursor: &str, field: &str) -> Result<Self> {
        let bad = || Error::bad_input(field, "not a valid cursor");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (millis, id) = text.split_once(':').ok_or_else(bad)?;
        let millis: i64 = millis.parse().map_err(|_| bad())?;
        Ok(Self {
            logged_at: DateTime::from_timestamp_millis(millis).ok_or_else(bad)?,
            id: Uuid::parse_str(id).map_err(|_| bad())?,
        })
    }
}

/// One page request: oldest first unless `newest_first`.
#[derive(Clone, Copy, Debug)]
pub struct LogPage {
    pub after: Option<LogCursor>,
    /// Clamped to 1..=[`MAX_PAGE`].
    pub limit: u32,
    pub newest_first: bool,
}

impl Default for LogPage {
    fn default() -> Self {
        Self {
            after: None,
            limit: 50,
            newest_first: false,
        }
    }
}

impl LogPage {
    fn limit(&self) -> u32 {
        self.limit.clamp(1, MAX_PAGE)
    }
}

/// Days a tenant keeps execution logs: `settings.logRetentionDays` when it is an
/// integer in 1..=3650, else its plan's `limits.logRetentionDays` (7 when the plan sets
/// none).
pub fn retention_days(plan_limits: &Json, settings: &Json) -> u32 {
    let default = crate::plans::Limits::from_json(plan_limits)
        .log_retention_days
        .filter(|days| (1..=3650).contains(days))
        .and_then(|days| u32::try_from(days).ok())
        .unwrap_or(7);
    settings
        .get("logRetentionDays")
        .and_then(Json::as_u64)
        .filter(|days| (1..=3650).contains(days))
        .and_then(|days| u32::try_from(days).ok())
        .unwrap_or(default)
}

/// The execution-log store, built once at start-up and shared.
#[derive(Clone)]
pub struct LogStore {
    backend: Backend,
    outbox_cap: u64,
}

#[derive(Clone)]
enum Backend {
    Postgres,
    Mongo(Arc<mongo::MongoLogs>),
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.backend {
            Backend::Postgres => "postgres",
            Backend::Mongo(_) => "mongodb",
        };
        f.debug_struct("LogStore")
            .field("backend", &backend)
            .field("outbox_cap", &self.outbox_cap)
            .finish()
    }
}

impl LogStore {
    /// Logs in the PostgreSQL table `execution_logs` (no MongoDB configured).
    pub fn postgres() -> Self {
        Self {
            backend: Backend::Postgres,
            outbox_cap: DEFAULT_OUTBOX_CAP,
        }
    }

    /// Logs in MongoDB at `url` (its database, else `trellis`), collection
    /// `execution_logs`. Server selection waits at most 2 s. Creates the indexes in the
    /// background now, and on the next write or replay if MongoDB did not answer:
    /// start-up never waits for MongoDB. Call inside a Tokio runtime.
    pub async fn mongodb(url: &str) -> Result<Self> {
        let logs = Arc::new(mongo::MongoLogs::connect(url).await?);
        let background = logs.clone();
        tokio::spawn(async move {
            if let Err(err) = background.ensure_indexes().await {
                tracing::warn!(error = %err, "MongoDB log store unreachable at start-up; entries go to the outbox until it answers");
            }
        });
        Ok(Self {
            backend: Backend::Mongo(logs),
            outbox_cap: DEFAULT_OUTBOX_CAP,
        })
    }

    /// Changes the per-tenant bound of the outbox (default [`DEFAULT_OUTBOX_CAP`]).
    pub fn with_outbox_cap(mut self, cap: u64) -> Self {
        self.outbox_cap = cap.max(1);
        self
    }

    /// True when logs go to MongoDB.
    pub fn is_mongodb(&self) -> bool {
        matches!(self.backend, Backend::Mongo(_))
    }

    /// The handle for the tenant the request acts in (any role). Fails like
    /// `scope.require` when there is none.
    pub async fn for_tenant<'a>(&'a self, scope: &'a RequestScope) -> Result<TenantLogs<'a>> {
        let tenant_id = scope.require(Role::Viewer).await?.tenant_id;
        Ok(TenantLogs {
            store: self,
            scope,
            tenant_id,
        })
    }

    /// Moves outbox entries to MongoDB, oldest first per tenant, `batch` at a time,
    /// deleting what it wrote; stops at the first MongoDB error (the entries stay).
    /// `pool` is the application pool: each tenant's entries are read in a transaction
    /// with its `app.tenant_id` set, so RLS applies; the tenants come from the narrow
    /// `app.log_outbox_tenants()` function. Safe to run concurrently (a tenant is
    /// replayed by one caller at a time) and to repeat (ids make writes idempotent).
    /// With the PostgreSQL store this does nothing.
    pub async fn replay_outbox(
        &self,
        pool: &DatabaseConnection,
        batch: u64,
    ) -> Result<ReplayReport> {
        match &self.backend {
            Backend::Postgres => Ok(ReplayReport::default()),
            Backend::Mongo(logs) => outbox::replay(logs, pool, batch).await,
        }
    }

    /// Deletes every log line a purged tenant left outside PostgreSQL (its MongoDB
    /// documents); returns how many. Its PostgreSQL rows (`execution_logs`,
    /// `log_outbox`) go with the tenant's other rows ([`crate::purge`]), before this is
    /// called, so the outbox cannot bring any back.
    pub async fn purge_tenant(&self, tenant_id: Uuid) -> Result<u64> {
        match &self.backend {
            Backend::Postgres => Ok(0),
            Backend::Mongo(logs) => logs.delete_tenant(tenant_id).await,
        }
    }

    /// One maintenance pass: replays the outbox (MongoDB) or purges expired rows
    /// (PostgreSQL). Returns how many entries it moved or deleted.
    pub async fn maintain_once(&self, pool: &DatabaseConnection) -> Result<u64> {
        match &self.backend {
            Backend::Postgres => purge_expired_logs(pool, 1000).await,
            Backend::Mongo(_) => Ok(self.replay_outbox(pool, 500).await?.replayed),
        }
    }

    /// Runs [`Self::maintain_once`] every `every`, forever: spawn it at start-up with
    /// the application pool. Errors are logged and retried on the next tick.
    pub async fn maintain(self, pool: DatabaseConnection, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.maintain_once(&pool).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, "execution-log maintenance"),
                Err(err) => tracing::warn!(error = %err, "execution-log maintenance failed"),
            }
        }
    }
}

/// Deletes expired rows of the PostgreSQL store, `batch` at a time (each batch one
/// statement, `FOR UPDATE SKIP LOCKED`, so concurrent purges share the work) until
/// none are left; returns how many it deleted. `pool` is the application pool: the
/// cross-tenant delete is the narrow `app.purge_expired_execution_logs()` function.
pub async fn purge_expired_logs(pool: &DatabaseConnection, batch: u32) -> Result<u64> {
    let batch = batch.clamp(1, 10_000);
    let mut total = 0u64;
    loop {
        let deleted = postgres::purge_batch(pool, batch).await?;
        total += u64::from(deleted);
        if deleted < batch {
            return Ok(total);
        }
    }
}

/// The log store of one tenant: the only way to read or write logs.
pub struct TenantLogs<'a> {
    store: &'a LogStore,
    scope: &'a RequestScope,
    tenant_id: Uuid,
}

impl fmt::Debug for TenantLogs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLogs")
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

#[derive(FromQueryResult)]
struct TenantRow {
    limits: Json,
    settings: Json,
}

#[derive(FromQueryResult)]
struct StepRow {
    id: Uuid,
    run_id: Uuid,
}

impl TenantLogs<'_> {
    /// Redacts and stores `entries`; returns how many were stored. Every run and step
    /// run must be the tenant's, and each step run must belong to its entry's run
    /// (NOT_FOUND otherwise). The plaintext of every secret in `run_secrets` is
    /// replaced by `[secret]` wherever it appears. With MongoDB unreachable the
    /// entries go to the outbox in the request's transaction; a full outbox refuses
    /// them (RATE_LIMITED: retry later).
    pub async fn append(
        &self,
        entries: Vec<NewLogEntry>,
        run_secrets: &[SecretString],
    ) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let now = truncate_millis(Utc::now());
        validate(&entries, now)?;
        self.check_runs(&entries).await?;
        let tx = self.scope.tx().await?;
        let tenant = TenantRow::find_by_statement(stmt(
            "SELECT p.limits, t.settings FROM tenants t JOIN plans p ON p.key = t.plan WHERE t.id = $1",
            [self.tenant_id.into()],
        ))
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
        let days = retention_days(&tenant.limits, &tenant.settings);
        let redactor = Redactor::new(&tenant.settings, run_secrets)?;
        let stored: Vec<LogEntry> = entries
            .into_iter()
            .map(|e| {
                let logged_at = e.logged_at.map_or(now, truncate_millis);
                LogEntry {
                    id: Uuid::now_v7(),
                    run_id: e.run_id,
                    step_run_id: e.step_run_id,
                    level: e.level,
                    message: truncate_chars(redactor.text(&e.message), MAX_MESSAGE_CHARS),
                    context: redactor.json(if e.context.is_null() {
                        Json::Object(Default::default())
                    } else {
                        e.context
                    }),
                    logged_at,
                    expire_at: logged_at + chrono::Duration::days(i64::from(days)),
                }
            })
            .collect();
        let count = stored.len();
        match &self.store.backend {
            Backend::Postgres => postgres::insert(tx, self.tenant_id, &stored).await?,
            Backend::Mongo(logs) => {
                if let Err(err) = logs.insert(self.tenant_id, &stored).await {
                    tracing::warn!(error = %err, entries = count, "MongoDB write failed; entries kept in the outbox");
                    outbox::push(tx, self.tenant_id, &stored, self.store.outbox_cap).await?;
                }
            }
        }
        Ok(count)
    }

    /// One page of the tenant's unexpired lines matching `filter`, and whether more
    /// follow.
    pub async fn query(&self, filter: &LogFilter, page: LogPage) -> Result<(Vec<LogEntry>, bool)> {
        let limit = page.limit();
        let mut rows = match &self.store.backend {
            Backend::Postgres => {
                postgres::query(self.scope.tx().await?, self.tenant_id, filter, &page, limit)
                    .await?
            }
            Backend::Mongo(logs) => logs.query(self.tenant_id, filter, &page, limit).await?,
        };
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Ok((rows, more))
    }

    /// Deletes every line of one run of the tenant (also those waiting in the
    /// outbox); returns how many. Call it when a run is deleted: the PostgreSQL rows
    /// go with the run by cascade, MongoDB documents do not.
    pub async fn delete_run(&self, run_id: Uuid) -> Result<u64> {
        let tx = self.scope.tx().await?;
        let mut deleted = outbox::delete_run(tx, self.tenant_id, run_id).await?;
        deleted += match &self.store.backend {
            Backend::Postgres => postgres::delete_run(tx, self.tenant_id, run_id).await?,
            Backend::Mongo(logs) => logs.delete_run(self.tenant_id, run_id).await?,
        };
        Ok(deleted)
    }

    /// Checks, in the request's transaction (RLS applies), that every run and step run
    /// named is the tenant's and that each step run belongs to its entry's run.
    async fn check_runs(&self, entries: &[NewLogEntry]) -> Result<()> {
        let tx = self.scope.tx().await?;
        let mut runs: Vec<Uuid> = entries.iter().map(|e| e.run_id).collect();
        runs.sort_unstable();
        runs.dedup();
        let found = tx
            .query_one(stmt(
                "SELECT count(*) AS n FROM workflow_runs WHERE tenant_id = $1 AND id = ANY($2)",
                [self.tenant_id.into(), uuid_array(&runs)],
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if found != runs.len() as i64 {
            return Err(Error::NotFound);
        }
        let mut steps: Vec<Uuid> = entries.iter().filter_map(|e| e.step_run_id).collect();
        if steps.is_empty() {
            return Ok(());
        }
        steps.sort_unstable();
        steps.dedup();
        let rows = StepRow::find_by_statement(stmt(
            "SELECT id, run_id FROM step_runs WHERE tenant_id = $1 AND id = ANY($2)",
            [self.tenant_id.into(), uuid_array(&steps)],
        ))
        .all(tx)
        .await?;
        let belongs = entries.iter().all(|e| {
            e.step_run_id
                .is_none_or(|s| rows.iter().any(|r| r.id == s && r.run_id == e.run_id))
        });
        if belongs {
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }
}

fn validate(entries: &[NewLogEntry], now: DateTime<Utc>) -> Result<()> {
    if entries.len() > MAX_ENTRIES_PER_APPEND {
        return Err(Error::bad_input(
            "entries",
            format!("at most {MAX_ENTRIES_PER_APPEND} entries at once"),
        ));
    }
    for (i, entry) in entries.iter().enumerate() {
        if entry.message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(Error::bad_input(
                format!("entries.{i}.message"),
                format!("at most {MAX_MESSAGE_CHARS} characters"),
            ));
        }
        let size = serde_json::to_vec(&entry.context).map_or(usize::MAX, |v| v.len());
        if size > MAX_CONTEXT_BYTES {
            return Err(Error::bad_input(
                format!("entries.{i}.context"),
                format!("at most {MAX_CONTEXT_BYTES} bytes of JSON"),
            ));
        }
        if entry.logged_at.is_some_and(|t| t > now + MAX_CLOCK_SKEW) {
            return Err(Error::bad_input(
                format!("entries.{i}.loggedAt"),
                "in the future",
            ));
        }
    }
    Ok(())
}

fn uuid_array(ids: &[Uuid]) -> sea_orm::Value {
    sea_orm::Value::Array(
        sea_orm::sea_query::ArrayType::Uuid,
        Some(Box::new(ids.iter().map(|id| (*id).into()).collect())),
    )
}

fn truncate_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

fn truncate_chars(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retention_follows_plan_and_override() {
        // The seeded plans' limits (migration 000030).
        let free = json!({"logRetentionDays": 7});
        let pro = json!({"logRetentionDays": 30});
        let enterprise = json!({"logRetentionDays": 90});
        assert_eq!(retention_days(&free, &json!({})), 7);
        assert_eq!(retention_days(&pro, &json!({})), 30);
        assert_eq!(retention_days(&enterprise, &json!({})), 90);
        assert_eq!(retention_days(&json!({}), &json!({})), 7);
        assert_eq!(
            retention_days(&free, &json!({"logRetentionDays": 365})),
            365
        );
        for bad in [json!(0), json!(3651), json!(-1), json!("30"), json!(2.5)] {
            assert_eq!(retention_days(&pro, &json!({"logRetentionDays": bad})), 30);
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = LogCursor {
            logged_at: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(
            LogCursor::decode(&cursor.encode(), "after").unwrap(),
            cursor
        );
        assert!(LogCursor::decode("$ne", "after").is_err());
    }

    #[test]
    fn limits_are_enforced() {
        let now = Utc::now();
        let entry = |message: String| NewLogEntry {
            run_id: Uuid::nil(),
            step_run_id: None,
            level: LogLevel::Info,
            message,
            context: Json::Null,
            logged_at: None,
        };
        assert!(validate(&[entry("x".repeat(MAX_MESSAGE_CHARS))], now).is_ok());
        assert!(validate(&[entry("x".repeat(MAX_MESSAGE_CHARS + 1))], now).is_err());
        let mut future = entry("x".into());
        future.logged_at = Some(now + chrono::Duration::hours(1));
        assert!(validate(&[future], now).is_err());
        assert_eq!(truncate_chars("héllo".into(), 2), "hé");
        assert_eq!(
            LogPage {
                limit: 1000,
                ..LogPage::default()
            }
            .limit(),
            MAX_PAGE
        );
    }
}
