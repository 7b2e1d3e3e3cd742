//! The MongoDB store: collection `execution_logs`, one document per line.
//!
//! Documents: `{_id, tenantId, runId, stepRunId, level, message, context, loggedAt,
//! expireAt}`, ids as UUID strings (their byte order is their time order, which keeps
//! keyset pages exact on any wire-compatible server), times as BSON dates. Filters are
//! built here from typed values only: the tenant comes from the handle, user text is
//! only ever the *value* of `$regex` after escaping, never a key or an operator.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, Bson, DateTime as BsonDate, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};
use serde_json::Value as Json;
use uuid::Uuid;

use super::{LogEntry, LogFilter, LogLevel, LogPage};
use crate::{Error, Result};

/// The collection's name.
pub(super) const COLLECTION: &str = "execution_logs";
/// Longest wait for a server to answer before a write gives up (and goes to the outbox).
const SERVER_SELECTION: Duration = Duration::from_secs(2);
const CONNECT: Duration = Duration::from_secs(1);
/// Upper bound of one operation, for a server that accepts but never answers.
const OPERATION: Duration = Duration::from_millis(2500);
/// After a failed write, later writes skip MongoDB for this long (straight to the
/// outbox) instead of each waiting for server selection; a successful replay ends it.
const BACKOFF: Duration = Duration::from_secs(10);
/// MongoDB's duplicate-key error: the entry is already there (a repeated replay).
const DUPLICATE_KEY: i32 = 11000;

pub(super) struct MongoLogs {
    collection: Collection<Document>,
    indexes_ready: AtomicBool,
    down_until: Mutex<Option<Instant>>,
}

impl MongoLogs {
    pub(super) async fn connect(url: &str) -> Result<Self> {
        let mut options = ClientOptions::parse(url)
            .await
            .map_err(|e| internal("parsing MONGODB_URL", &e))?;
        options.server_selection_timeout = Some(
            options
                .server_selection_timeout
                .map_or(SERVER_SELECTION, |t| t.min(SERVER_SELECTION)),
        );
        options.connect_timeout = Some(options.connect_timeout.map_or(CONNECT, |t| t.min(CONNECT)));
        options.app_name.get_or_insert_with(|| "trellis".to_owned());
        let database = options
            .default_database
            .clone()
            .unwrap_or_else(|| "trellis".to_owned());
        let client = Client::with_options(options).map_err(|e| internal("MongoDB client", &e))?;
        Ok(Self {
            collection: client.database(&database).collection(COLLECTION),
            indexes_ready: AtomicBool::new(false),
            down_until: Mutex::new(None),
        })
    }

    /// Creates the indexes (idempotent: the same definitions again are a no-op).
    pub(super) async fn ensure_indexes(&self) -> Result<()> {
        if self.indexes_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let named = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        let indexes = vec![
            named(
                doc! {"tenantId": 1, "runId": 1, "loggedAt": 1, "_id": 1},
                "tenant_run_time",
            ),
            named(
                doc! {"tenantId": 1, "stepRunId": 1, "loggedAt": 1, "_id": 1},
                "tenant_step_run_time",
            ),
            named(
                doc! {"tenantId": 1, "level": 1, "loggedAt": 1, "_id": 1},
                "tenant_level_time",
            ),
            IndexModel::builder()
                .keys(doc! {"expireAt": 1})
                .options(
                    IndexOptions::builder()
                        .name("expire_at_ttl".to_owned())
                        .expire_after(Duration::ZERO)
                        .build(),
                )
                .build(),
        ];
        timed(self.collection.create_indexes(indexes)).await?;
        self.indexes_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn backing_off(&self) -> bool {
        let guard = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        guard.is_some_and(|until| Instant::now() < until)
    }

    fn mark(&self, up: bool) {
        let mut guard = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        *guard = (!up).then(|| Instant::now() + BACKOFF);
    }

    /// Writes entries of a request. Fails fast while backing off after a failure.
    pub(super) async fn insert(&self, tenant: Uuid, entries: &[LogEntry]) -> Result<()> {
        if self.backing_off() {
            return Err(Error::Internal(anyhow::anyhow!(
                "MongoDB recently unreachable"
            )));
        }
        let result = self.write(tenant, entries).await;
        self.mark(result.is_ok());
        result
    }

    /// Writes entries, idempotently: an entry already stored (same id) counts as
    /// written. Used by requests and by the outbox replay.
    pub(super) async fn write(&self, tenant: Uuid, entries: &[LogEntry]) -> Result<()> {
        self.ensure_indexes().await?;
        let docs: Vec<Document> = entries.iter().map(|e| to_document(tenant, e)).collect();
        match timed(self.collection.insert_many(docs).ordered(false)).await {
            Ok(_) => Ok(()),
            Err(Error::Internal(err)) => match err.downcast_ref::<mongodb::error::Error>() {
                Some(mongo) if only_duplicates(mongo) => Ok(()),
                _ => Err(Error::Internal(err)),
            },
            Err(other) => Err(other),
        }
    }

    /// Marks MongoDB as answering again (after a successful replay).
    pub(super) fn mark_up(&self) {
        self.mark(true);
    }

    pub(super) async fn query(
        &self,
        tenant: Uuid,
        filter: &LogFilter,
        page: &LogPage,
        limit: u32,
    ) -> Result<Vec<LogEntry>> {
        let query = filter_document(tenant, filter, page, Utc::now());
        let order = if page.newest_first { -1 } else { 1 };
        let mut cursor = timed(
            self.collection
                .find(query)
                .sort(doc! {"loggedAt": order, "_id": order})
                .limit(i64::from(limit) + 1),
        )
        .await?;
        let mut entries = Vec::new();
        while timed(cursor.advance()).await? {
            let raw = cursor
                .deserialize_current()
                .map_err(|e| internal("reading a log", &e))?;
            entries.push(from_document(&raw)?);
        }
        Ok(entries)
    }

    pub(super) async fn delete_tenant(&self, tenant: Uuid) -> Result<u64> {
        let filter = doc! {"tenantId": tenant.to_string()};
        Ok(timed(self.collection.delete_many(filter))
            .await?
            .deleted_count)
    }

    pub(super) async fn delete_run(&self, tenant: Uuid, run: Uuid) -> Result<u64> {
        let filter = doc! {"tenantId": tenant.to_string(), "runId": run.to_string()};
        Ok(timed(self.collection.delete_many(filter))
            .await?
            .deleted_count)
    }
}

/// Awaits a driver operation for at most [`OPERATION`].
async fn timed<T>(
    operation: impl std::future::IntoFuture<Output = mongodb::error::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(OPERATION, operation.into_future()).await {
        Ok(result) => result.map_err(|e| Error::Internal(anyhow::Error::new(e))),
        Err(_) => Err(Error::Internal(anyhow::anyhow!(
            "MongoDB did not answer in time"
        ))),
    }
}

fn internal(what: &str, err: &dyn std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!("{what}: {err}"))
}

fn only_duplicates(err: &mongodb::error::Error) -> bool {
    match err.kind.as_ref() {
        ErrorKind::InsertMany(failure) => {
            failure.write_concern_error.is_none()
                && failure
                    .write_errors
                    .as_ref()
                    .is_some_and(|errors| errors.iter().all(|e| e.code == DUPLICATE_KEY))
        }
        _ => false,
    }
}

/// The filter of a query: the handle's tenant, unexpired, and the typed filter.
pub(super) fn filter_document(
    tenant: Uuid,
    filter: &LogFilter,
    page: &LogPage,
    now: DateTime<Utc>,
) -> Document {
    let mut query = Document::new();
    if let Some(id) = filter.id {
        query.insert("_id", id.to_string());
    }
    if let Some(run) = filter.run_id {
        query.insert("runId", run.to_string());
    }
    if let Some(step) = filter.step_run_id {
        query.insert("stepRunId", step.to_string());
    }
    if let Some(levels) = filter.levels.as_ref().filter(|l| !l.is_empty()) {
        let names: Vec<Bson> = levels
            .iter()
            .map(|l| Bson::String(l.as_str().to_owned()))
            .collect();
        query.insert("level", doc! {"$in": names});
    }
    if let Some(text) = filter.text.as_ref().filter(|t| !t.is_empty()) {
        query.insert(
            "message",
            doc! {"$regex": escape_regex(text), "$options": "i"},
        );
    }
    if let Some(after) = page.after {
        let op = if page.newest_first { "$lt" } else { "$gt" };
        let at = BsonDate::from_millis(after.logged_at.timestamp_millis());
        query.insert(
            "$or",
            vec![
                Bson::Document(doc! {"loggedAt": {op: at}}),
                Bson::Document(doc! {"loggedAt": at, "_id": {op: after.id.to_string()}}),
            ],
        );
    }
    query.insert(
        "expireAt",
        doc! {"$gt": BsonDate::from_millis(now.timestamp_millis())},
    );
    // Last, so nothing above can stand in for it.
    query.insert("tenantId", tenant.to_string());
    query
}

/// Escapes every ASCII punctuation character, so the text matches only itself under
/// PCRE (mongod) and the other regex dialects wire-compatible servers use.
pub(super) fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn to_document(tenant: Uuid, e: &LogEntry) -> Document {
    doc! {
        "_id": e.id.to_string(),
        "tenantId": tenant.to_string(),
        "runId": e.run_id.to_string(),
        "stepRunId": e.step_run_id.map_or(Bson::Null, |s| Bson::String(s.to_string())),
        "level": e.level.as_str(),
        "message": e.message.as_str(),
        "context": json_to_bson(&e.context),
        "loggedAt": BsonDate::from_millis(e.logged_at.timestamp_millis()),
        "expireAt": BsonDate::from_millis(e.expire_at.timestamp_millis()),
    }
}

fn from_document(d: &Document) -> Result<LogEntry> {
    let bad = || Error::Internal(anyhow::anyhow!("malformed execution log document"));
    let uuid = |key: &str| d.get_str(key).ok().and_then(|s| Uuid::parse_str(s).ok());
    let time = |key: &str| {
        d.get_datetime(key)
            .ok()
            .and_then(|t| DateTime::from_timestamp_millis(t.timestamp_millis()))
    };
    Ok(LogEntry {
        id: uuid("_id").ok_or_else(bad)?,
        run_id: uuid("runId").ok_or_else(bad)?,
        step_run_id: uuid("stepRunId"),
        level: d
            .get_str("level")
            .ok()
            .and_then(LogLevel::parse)
            .ok_or_else(bad)?,
        message: d.get_str("message").map_err(|_| bad())?.to_owned(),
        context: d.get("context").map_or(Json::Null, bson_to_json),
        logged_at: time("loggedAt").ok_or_else(bad)?,
        expire_at: time("expireAt").ok_or_else(bad)?,
    })
}

/// JSON to BSON, keys and strings taken literally (no extended-JSON reading, so a
/// context holding `{"$oid": …}` stays a plain document).
fn json_to_bson(value: &Json) -> Bson {
    match value {
        Json::Null => Bson::Null,
        Json::Bool(b) => Bson::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Bson::String(s.clone()),
        Json::Array(items) => Bson::Array(items.iter().map(json_to_bson).collect()),
        Json::Object(map) => Bson::Document(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_bson(v)))
                .collect(),
        ),
    }
}

fn bson_to_json(value: &Bson) -> Json {
    match value {
        Bson::Null | Bson::Undefined => Json::Null,
        Bson::Boolean(b) => Json::Bool(*b),
        Bson::Int32(i) => Json::from(*i),
        Bson::Int64(i) => Json::from(*i),
        Bson::Double(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Bson::String(s) => Json::String(s.clone()),
        Bson::Array(items) => Json::Array(items.iter().map(bson_to_json).collect()),
        Bson::Document(d) => Json::Object(
            d.iter()
                .map(|(k, v)| (k.clone(), bson_to_json(v)))
                .collect(),
        ),
        Bson::DateTime(t) => Json::String(t.try_to_rfc3339_string().unwrap_or_default()),
        other => Json::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_text_never_becomes_an_operator() {
        let tenant = Uuid::now_v7();
        for text in [
            "$ne",
            "{\"$where\": \"sleep(1000)\"}",
            "{\"$gt\": \"\"}",
            ".*",
            "a|b",
        ] {
            let filter = LogFilter {
                text: Some(text.to_owned()),
                ..LogFilter::default()
            };
            let q = filter_document(tenant, &filter, &LogPage::default(), Utc::now());
            let keys: Vec<&str> = q.keys().map(String::as_str).collect();
            assert_eq!(keys, ["message", "expireAt", "tenantId"]);
            assert_eq!(q.get_str("tenantId").unwrap(), tenant.to_string());
            let message = q.get_document("message").unwrap();
            let pattern = message.get_str("$regex").unwrap();
            assert!(
                !pattern.contains('$') || pattern.contains("\\$"),
                "{pattern}"
            );
            assert_eq!(message.len(), 2);
        }
        assert_eq!(escape_regex("a.b*$ne(x)"), r"a\.b\*\$ne\(x\)");
        assert_eq!(escape_regex("héllo wörld"), "héllo wörld");
    }

    #[test]
    fn contexts_round_trip_literally() {
        let context =
            json!({"$where": "x", "a.b": [1, 2.5, null, true], "$oid": "abc", "big": u64::MAX});
        let back = bson_to_json(&json_to_bson(&context));
        assert_eq!(back["$where"], "x");
        assert_eq!(back["a.b"], json!([1, 2.5, null, true]));
        assert_eq!(back["$oid"], "abc");
        assert_eq!(back["big"].as_f64(), Some(u64::MAX as f64));
    }
}
