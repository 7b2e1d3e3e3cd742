//! Execution logs, in both stores (PostgreSQL, and MongoDB through a real
//! wire-protocol server). The threats: one tenant reading or deleting another's logs
//! (MongoDB has no RLS: only the tenant handle stands between them), user text that
//! turns into a query operator, a secret's plaintext landing in a log, logs kept past
//! their retention, and logs lost or reordered while MongoDB is down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, Document};
use sea_orm::{ConnectionTrait, DbErr};
use secrecy::SecretString;
use serde_json::{json, Value};
use trellis_core::logs::{
    purge_expired_logs, LogCursor, LogEntry, LogFilter, LogLevel, LogPage, LogStore, NewLogEntry,
};
use trellis_core::scope::stmt;
use trellis_core::{Principal, RequestScope};
use uuid::Uuid;

use crate::mongo;
use crate::support::{as_app, Member, TestApp};

/// Two tenants, each with one run and one step run of it.
struct World {
    app: TestApp,
    a: Member,
    b: Member,
    run_a: Uuid,
    step_a: Uuid,
    run_b: Uuid,
    step_b: Uuid,
}

fn uuid_of(id: &Value) -> Uuid {
    let id = id.as_str().unwrap();
    Uuid::parse_str(id.rsplit_once('_').map_or(id, |(_, u)| u)).unwrap()
}

async fn world() -> World {
    let app = TestApp::new().await;
    let a = app.owner("logs-alpha").await;
    let b = app.owner("logs-beta").await;
    let (run_a, step_a) = make_run(&app, &a).await;
    let (run_b, step_b) = make_run(&app, &b).await;
    World {
        app,
        a,
        b,
        run_a,
        step_a,
        run_b,
        step_b,
    }
}

/// A workflow (through GraphQL), then a run and a step run of it (SQL as the app role
/// in the member's tenant).
async fn make_run(app: &TestApp, m: &Member) -> (Uuid, Uuid) {
    let data = app
        .ok(
            Some(&m.token),
            "mutation($k: String!) { createWorkflow(input: {key: $k, name: \"Logs\"}) { workflow { id versions { id } } } }",
            json!({ "k": format!("wf-{}", &Uuid::new_v4().simple().to_string()[..8]) }),
        )
        .await;
    let workflow = &data["createWorkflow"]["workflow"];
    let (run, step) = (Uuid::now_v7(), Uuid::now_v7());
    let tx = as_app(
        app.state.db.pool(),
        Some(m.tenant_uuid()),
        Some(m.user_uuid()),
    )
    .await;
    tx.execute(stmt(
        "INSERT INTO workflow_runs (id, tenant_id, workflow_id, version_id, trigger_type) VALUES ($1, $2, $3, $4, 'manual')",
        [
            run.into(),
            m.tenant_uuid().into(),
            uuid_of(&workflow["id"]).into(),
            uuid_of(&workflow["versions"][0]["id"]).into(),
        ],
    ))
    .await
    .unwrap();
    tx.execute(stmt(
        "INSERT INTO step_runs (id, tenant_id, run_id, step_key) VALUES ($1, $2, $3, 'first')",
        [step.into(), m.tenant_uuid().into(), run.into()],
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (run, step)
}

fn scope(app: &TestApp, m: &Member) -> Arc<RequestScope> {
    RequestScope::new(
        app.state.db.clone(),
        Principal::User {
            user_id: m.user_uuid(),
            tenant_id: Some(m.tenant_uuid()),
            session_id: None,
        },
        Default::default(),
    )
}

async fn finish(scope: Arc<RequestScope>, ok: bool) {
    Arc::try_unwrap(scope).unwrap().finish(ok).await.unwrap();
}

fn line(run: Uuid, step: Option<Uuid>, level: LogLevel, message: &str) -> NewLogEntry {
    NewLogEntry {
        run_id: run,
        step_run_id: step,
        level,
        message: message.to_owned(),
        context: json!({}),
        logged_at: None,
    }
}

/// Appends in a request of its own, committed when it succeeds.
async fn append(
    app: &TestApp,
    store: &LogStore,
    m: &Member,
    entries: Vec<NewLogEntry>,
    secrets: &[SecretString],
) -> trellis_core::Result<usize> {
    let scope = scope(app, m);
    let result = match store.for_tenant(&scope).await {
        Ok(logs) => logs.append(entries, secrets).await,
        Err(err) => Err(err),
    };
    finish(scope, result.is_ok()).await;
    result
}

async fn query(
    app: &TestApp,
    store: &LogStore,
    m: &Member,
    filter: LogFilter,
    page: LogPage,
) -> (Vec<LogEntry>, bool) {
    let scope = scope(app, m);
    let result = store
        .for_tenant(&scope)
        .await
        .unwrap()
        .query(&filter, page)
        .await
        .unwrap();
    finish(scope, true).await;
    result
}

async fn all(app: &TestApp, store: &LogStore, m: &Member, filter: LogFilter) -> Vec<LogEntry> {
    let page = LogPage {
        limit: 100,
        ..LogPage::default()
    };
    query(app, store, m, filter, page).await.0
}

async fn delete_run(app: &TestApp, store: &LogStore, m: &Member, run: Uuid) -> u64 {
    let scope = scope(app, m);
    let deleted = store
        .for_tenant(&scope)
        .await
        .unwrap()
        .delete_run(run)
        .await
        .unwrap();
    finish(scope, true).await;
    deleted
}

fn text(t: &str) -> LogFilter {
    LogFilter {
        text: Some(t.to_owned()),
        ..LogFilter::default()
    }
}

fn messages(entries: &[LogEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.message.as_str()).collect()
}

async fn set_tenant(app: &TestApp, m: &Member, plan: &str, settings: Value) {
    let tx = as_app(
        app.state.db.pool(),
        Some(m.tenant_uuid()),
        Some(m.user_uuid()),
    )
    .await;
    let done = tx
        .execute(stmt(
            "UPDATE tenants SET plan = $1, settings = $2 WHERE id = $3",
            [plan.into(), settings.into(), m.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    tx.commit().await.unwrap();
}

// ---------------------------------------------------------------------------
// Isolation

/// The operator-looking strings a malicious user might type into a text filter.
const OPERATOR_TEXTS: [&str; 7] = [
    "$ne",
    "{\"$ne\": null}",
    "{\"$where\": \"return true\"}",
    "{\"$gt\": \"\"}",
    ".*",
    "%",
    "_",
];

async fn handles_never_cross_tenants(w: &World, store: &LogStore) {
    let (app, a, b) = (&w.app, &w.a, &w.b);
    append(
        app,
        store,
        a,
        vec![
            line(w.run_a, None, LogLevel::Info, "alpha starts"),
            line(
                w.run_a,
                Some(w.step_a),
                LogLevel::Warn,
                "alpha literally costs $ne and 100%",
            ),
        ],
        &[],
    )
    .await
    .unwrap();
    append(
        app,
        store,
        b,
        vec![
            line(
                w.run_b,
                None,
                LogLevel::Info,
                "beta private {\"$gt\": \"\"} .* % _",
            ),
            line(
                w.run_b,
                Some(w.step_b),
                LogLevel::Error,
                "beta secret plans $ne $where",
            ),
        ],
        &[],
    )
    .await
    .unwrap();

    // Everything A sees is A's, whatever the filter.
    assert_eq!(all(app, store, a, LogFilter::default()).await.len(), 2);
    // One line by its id (what `node(id:)` reads): for its tenant only.
    let b_line = all(app, store, b, LogFilter::default()).await[0].id;
    let by_id = LogFilter {
        id: Some(b_line),
        ..LogFilter::default()
    };
    assert_eq!(all(app, store, b, by_id.clone()).await.len(), 1);
    assert!(all(app, store, a, by_id).await.is_empty());
    let b_run = LogFilter {
        run_id: Some(w.run_b),
        ..LogFilter::default()
    };
    assert!(all(app, store, a, b_run.clone()).await.is_empty());
    let b_step = LogFilter {
        step_run_id: Some(w.step_b),
        ..LogFilter::default()
    };
    assert!(all(app, store, a, b_step).await.is_empty());
    for t in OPERATOR_TEXTS {
        let seen = all(app, store, a, text(t)).await;
        assert!(
            seen.iter()
                .all(|e| e.run_id == w.run_a && e.message.contains(t)),
            "{t}: {seen:?}"
        );
    }
    // Literal matching: these occur in A's lines and match exactly those.
    assert_eq!(
        messages(&all(app, store, a, text("$NE")).await),
        ["alpha literally costs $ne and 100%"]
    );
    assert_eq!(all(app, store, a, text("100%")).await.len(), 1);
    assert!(all(app, store, a, text(".*")).await.is_empty());
    assert!(all(app, store, a, text("{\"$gt\": \"\"}")).await.is_empty());
    // The same texts do match B's lines for B: the filter works, it is just bound.
    assert_eq!(all(app, store, b, text("{\"$gt\": \"\"}")).await.len(), 1);
    assert_eq!(all(app, store, b, text("$where")).await.len(), 1);

    // A cannot write into B's runs, nor pair its run with B's step run.
    let err = append(
        app,
        store,
        a,
        vec![line(w.run_b, None, LogLevel::Info, "x")],
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
    let err = append(
        app,
        store,
        a,
        vec![line(w.run_a, Some(w.step_b), LogLevel::Info, "x")],
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
    let random = append(
        app,
        store,
        a,
        vec![line(Uuid::now_v7(), None, LogLevel::Info, "x")],
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(random.code(), "NOT_FOUND");

    // A cannot delete B's logs.
    assert_eq!(delete_run(app, store, a, w.run_b).await, 0);
    assert_eq!(all(app, store, b, LogFilter::default()).await.len(), 2);
    assert_eq!(delete_run(app, store, b, w.run_b).await, 2);
    assert!(all(app, store, b, LogFilter::default()).await.is_empty());
    assert_eq!(all(app, store, a, LogFilter::default()).await.len(), 2);
}

#[tokio::test]
async fn postgres_handles_never_cross_tenants() {
    let w = world().await;
    handles_never_cross_tenants(&w, &LogStore::postgres()).await;
}

#[tokio::test]
async fn mongodb_handles_never_cross_tenants() {
    let w = world().await;
    let store = LogStore::mongodb(&mongo::fresh_url()).await.unwrap();
    handles_never_cross_tenants(&w, &store).await;
}

fn sql_state(err: &DbErr) -> String {
    trellis_core::error::database_error(err)
        .and_then(|db| db.code().map(|c| c.into_owned()))
        .unwrap_or_default()
}

#[tokio::test]
async fn the_app_role_cannot_cross_tenants_in_log_tables() {
    let w = world().await;
    let store = LogStore::postgres();
    append(
        &w.app,
        &store,
        &w.a,
        vec![line(w.run_a, None, LogLevel::Info, "a")],
        &[],
    )
    .await
    .unwrap();
    append(
        &w.app,
        &store,
        &w.b,
        vec![line(w.run_b, None, LogLevel::Info, "b")],
        &[],
    )
    .await
    .unwrap();
    let pool = w.app.state.db.pool();
    let insert = |table: &str, tenant: Uuid, run: Uuid| {
        stmt(
            &format!(
                "INSERT INTO {table} (id, tenant_id, run_id, level, message, logged_at, expire_at) \
                 VALUES ($1, $2, $3, 'info', 'x', now(), now() + interval '1 day')"
            ),
            [Uuid::now_v7().into(), tenant.into(), run.into()],
        )
    };
    for table in ["execution_logs", "log_outbox"] {
        // B's outbox row, written as B.
        let tx = as_app(pool, Some(w.b.tenant_uuid()), None).await;
        tx.execute(insert("log_outbox", w.b.tenant_uuid(), w.run_b))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let tenant_a = w.a.tenant_uuid();
        let count = |sql: String| async move {
            let tx = as_app(pool, Some(tenant_a), None).await;
            let n: i64 = tx
                .query_one(stmt(&sql, []))
                .await
                .unwrap()
                .unwrap()
                .try_get("", "n")
                .unwrap();
            n
        };
        // No filter at all: RLS shows A only its own rows.
        let foreign = count(format!(
            "SELECT count(*) AS n FROM {table} WHERE tenant_id <> '{}'",
            w.a.tenant_uuid()
        ))
        .await;
        assert_eq!(foreign, 0, "{table}");
        // No tenant, or garbage: nothing.
        for setting in [None, Some("garbage")] {
            let tx = sea_orm::TransactionTrait::begin(pool).await.unwrap();
            tx.execute(stmt(
                "SELECT set_config('app.tenant_id', $1, true)",
                [setting.unwrap_or("").into()],
            ))
            .await
            .unwrap();
            let n: i64 = tx
                .query_one(stmt(&format!("SELECT count(*) AS n FROM {table}"), []))
                .await
                .unwrap()
                .unwrap()
                .try_get("", "n")
                .unwrap();
            assert_eq!(n, 0, "{table} with {setting:?}");
        }

        let tx = as_app(pool, Some(w.a.tenant_uuid()), None).await;
        // Writing a row for B fails WITH CHECK.
        let err = tx
            .execute(insert(table, w.b.tenant_uuid(), w.run_b))
            .await
            .unwrap_err();
        assert_eq!(sql_state(&err), "42501", "{table}: {err}");
        drop(tx);
        // Pointing A's row at B's run fails exactly like a made-up run id.
        let tx = as_app(pool, Some(w.a.tenant_uuid()), None).await;
        let foreign = tx
            .execute(insert(table, w.a.tenant_uuid(), w.run_b))
            .await
            .unwrap_err();
        drop(tx);
        let tx = as_app(pool, Some(w.a.tenant_uuid()), None).await;
        let made_up = tx
            .execute(insert(table, w.a.tenant_uuid(), Uuid::now_v7()))
            .await
            .unwrap_err();
        drop(tx);
        assert_eq!(sql_state(&foreign), "23503");
        assert_eq!(sql_state(&made_up), "23503");
        let shape = |e: &DbErr| {
            trellis_core::error::database_error(e)
                .map(|d| d.message().to_owned())
                .unwrap()
        };
        assert_eq!(shape(&foreign), shape(&made_up));
        // Deleting B's rows as A touches nothing.
        let tx = as_app(pool, Some(w.a.tenant_uuid()), None).await;
        let done = tx
            .execute(stmt(
                &format!("DELETE FROM {table} WHERE tenant_id = $1"),
                [w.b.tenant_uuid().into()],
            ))
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 0, "{table}");
    }
    // Log lines are immutable for the application.
    let tx = as_app(pool, Some(w.a.tenant_uuid()), None).await;
    let err = tx
        .execute(stmt("UPDATE execution_logs SET message = 'changed'", []))
        .await
        .unwrap_err();
    assert_eq!(sql_state(&err), "42501");
}

// ---------------------------------------------------------------------------
// Redaction

const SECRET: &str = "sk_live_Sup3rS3cret";

fn redaction_settings() -> Value {
    json!({"redaction": {
        "patterns": [r"card-\d{4}"],
        "jsonPaths": ["$.password", "$.card.number"],
    }})
}

fn leaky_line(run: Uuid) -> NewLogEntry {
    NewLogEntry {
        run_id: run,
        step_run_id: None,
        level: LogLevel::Info,
        message: format!("calling with key={SECRET}x for Bob.Smith@example.com, card-1234"),
        context: json!({
            "password": "hunter2",
            "card": {"number": "4111111111111111", "brand": "visa"},
            "headers": {"authorization": format!("Bearer {SECRET}")},
            SECRET: ["nested", format!("prefix{SECRET}suffix")],
            "contact": "carol@example.org",
        }),
        logged_at: None,
    }
}

fn assert_redacted(stored: &str) {
    assert!(!stored.contains(SECRET), "secret stored: {stored}");
    assert!(!stored.contains("Sup3rS3cret"), "secret stored: {stored}");
    assert!(
        !stored.contains("hunter2"),
        "json path not redacted: {stored}"
    );
    assert!(
        !stored.contains("4111111111111111"),
        "json path not redacted: {stored}"
    );
    assert!(
        !stored.contains("card-1234"),
        "pattern not redacted: {stored}"
    );
    assert!(!stored.contains("Bob.Smith@"), "email not masked: {stored}");
    assert!(!stored.contains("carol@"), "email not masked: {stored}");
    assert!(stored.contains("[secret]"), "{stored}");
    assert!(stored.contains("B***@example.com"), "{stored}");
    assert!(stored.contains("visa"), "{stored}");
}

fn check_read_back(entries: &[LogEntry]) {
    let e = &entries[0];
    assert_eq!(
        e.message,
        "calling with key=[secret]x for B***@example.com, [redacted]"
    );
    assert_eq!(e.context["password"], "[redacted]");
    assert_eq!(
        e.context["card"],
        json!({"number": "[redacted]", "brand": "visa"})
    );
    assert_eq!(e.context["headers"]["authorization"], "Bearer [secret]");
    assert_eq!(
        e.context["[secret]"],
        json!(["nested", "prefix[secret]suffix"])
    );
    assert_eq!(e.context["contact"], "c***@example.org");
}

#[tokio::test]
async fn postgres_never_stores_a_secret_and_applies_tenant_rules() {
    let w = world().await;
    set_tenant(&w.app, &w.a, "free", redaction_settings()).await;
    let store = LogStore::postgres();
    let secrets = [SecretString::from(SECRET.to_owned())];
    append(&w.app, &store, &w.a, vec![leaky_line(w.run_a)], &secrets)
        .await
        .unwrap();
    let admin = w.app.db.admin().await;
    let rows = admin
        .query_all(stmt(
            "SELECT message || ' ' || context::text AS raw FROM execution_logs",
            [],
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_redacted(&rows[0].try_get::<String>("", "raw").unwrap());
    check_read_back(&all(&w.app, &store, &w.a, LogFilter::default()).await);
}

#[tokio::test]
async fn mongodb_never_stores_a_secret_and_applies_tenant_rules() {
    let w = world().await;
    set_tenant(&w.app, &w.a, "free", redaction_settings()).await;
    let url = mongo::fresh_url();
    let store = LogStore::mongodb(&url).await.unwrap();
    let secrets = [SecretString::from(SECRET.to_owned())];
    append(&w.app, &store, &w.a, vec![leaky_line(w.run_a)], &secrets)
        .await
        .unwrap();
    let raw = raw_documents(&url).await;
    assert_eq!(raw.len(), 1);
    assert_eq!(
        raw[0].get_str("tenantId").unwrap(),
        w.a.tenant_uuid().to_string()
    );
    assert_redacted(&format!("{}", raw[0]));
    check_read_back(&all(&w.app, &store, &w.a, LogFilter::default()).await);
}

async fn raw_documents(url: &str) -> Vec<Document> {
    let collection = mongo::raw_collection(url).await;
    let mut cursor = collection
        .find(doc! {})
        .sort(doc! {"loggedAt": 1, "_id": 1})
        .await
        .unwrap();
    let mut out = Vec::new();
    while cursor.advance().await.unwrap() {
        out.push(cursor.deserialize_current().unwrap());
    }
    out
}

#[tokio::test]
async fn invalid_redaction_rules_refuse_the_write() {
    let w = world().await;
    set_tenant(
        &w.app,
        &w.a,
        "free",
        json!({"redaction": {"patterns": ["(unclosed"]}}),
    )
    .await;
    let err = append(
        &w.app,
        &LogStore::postgres(),
        &w.a,
        vec![line(w.run_a, None, LogLevel::Info, "x")],
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
}

// ---------------------------------------------------------------------------
// Retention

fn days_kept(e: &LogEntry) -> i64 {
    (e.expire_at - e.logged_at).num_days()
}

async fn retention_follows_plan_and_override(w: &World, store: &LogStore) {
    let one = |run| vec![line(run, None, LogLevel::Info, "kept")];
    append(&w.app, store, &w.a, one(w.run_a), &[])
        .await
        .unwrap();
    set_tenant(&w.app, &w.b, "pro", json!({})).await;
    append(&w.app, store, &w.b, one(w.run_b), &[])
        .await
        .unwrap();
    assert_eq!(
        days_kept(&all(&w.app, store, &w.a, LogFilter::default()).await[0]),
        7
    );
    assert_eq!(
        days_kept(&all(&w.app, store, &w.b, LogFilter::default()).await[0]),
        30
    );
    set_tenant(&w.app, &w.b, "enterprise", json!({})).await;
    delete_run(&w.app, store, &w.b, w.run_b).await;
    append(&w.app, store, &w.b, one(w.run_b), &[])
        .await
        .unwrap();
    assert_eq!(
        days_kept(&all(&w.app, store, &w.b, LogFilter::default()).await[0]),
        90
    );
    set_tenant(&w.app, &w.a, "free", json!({"logRetentionDays": 365})).await;
    delete_run(&w.app, store, &w.a, w.run_a).await;
    append(&w.app, store, &w.a, one(w.run_a), &[])
        .await
        .unwrap();
    assert_eq!(
        days_kept(&all(&w.app, store, &w.a, LogFilter::default()).await[0]),
        365
    );
}

#[tokio::test]
async fn postgres_retention_follows_plan_and_override() {
    let w = world().await;
    retention_follows_plan_and_override(&w, &LogStore::postgres()).await;
}

#[tokio::test]
async fn mongodb_retention_follows_plan_and_override_and_has_a_ttl_index() {
    let w = world().await;
    let url = mongo::fresh_url();
    let store = LogStore::mongodb(&url).await.unwrap();
    retention_follows_plan_and_override(&w, &store).await;
    // The stored expireAt is a BSON date the TTL index acts on.
    let raw = raw_documents(&url).await;
    let a = raw
        .iter()
        .find(|d| d.get_str("tenantId").unwrap() == w.a.tenant_uuid().to_string())
        .unwrap();
    let kept = a.get_datetime("expireAt").unwrap().timestamp_millis()
        - a.get_datetime("loggedAt").unwrap().timestamp_millis();
    assert_eq!(kept, 365 * 86_400_000);
    let collection = mongo::raw_collection(&url).await;
    let mut indexes = collection.list_indexes().await.unwrap();
    let mut names = Vec::new();
    let mut ttl = None;
    while indexes.advance().await.unwrap() {
        let index = indexes.deserialize_current().unwrap();
        let options = index.options.unwrap_or_default();
        let name = options.name.clone().unwrap_or_default();
        if name == "expire_at_ttl" {
            ttl = Some((index.keys.clone(), options.expire_after));
        }
        names.push(name);
    }
    for expected in [
        "tenant_run_time",
        "tenant_step_run_time",
        "tenant_level_time",
        "expire_at_ttl",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    let (keys, expire_after) = ttl.unwrap();
    assert_eq!(keys, doc! {"expireAt": 1});
    assert_eq!(expire_after, Some(Duration::ZERO));
    // Creating the indexes again (a restart) is harmless.
    LogStore::mongodb(&url).await.unwrap();
    append(
        &w.app,
        &store,
        &w.a,
        vec![line(w.run_a, None, LogLevel::Info, "again")],
        &[],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn purge_deletes_only_expired_rows_in_batches() {
    let w = world().await;
    let store = LogStore::postgres();
    let at = |days_ago: i64, message: &str, run: Uuid| NewLogEntry {
        logged_at: Some(Utc::now() - chrono::Duration::days(days_ago)),
        ..line(run, None, LogLevel::Info, message)
    };
    // Free plan: 7 days. Three expired lines of A, one of B; two fresh ones.
    append(
        &w.app,
        &store,
        &w.a,
        vec![
            at(10, "old 1", w.run_a),
            at(9, "old 2", w.run_a),
            at(8, "old 3", w.run_a),
            at(1, "fresh a", w.run_a),
        ],
        &[],
    )
    .await
    .unwrap();
    append(
        &w.app,
        &store,
        &w.b,
        vec![at(30, "old b", w.run_b), at(0, "fresh b", w.run_b)],
        &[],
    )
    .await
    .unwrap();
    // Expired lines are not shown even before the purge.
    assert_eq!(
        messages(&all(&w.app, &store, &w.a, LogFilter::default()).await),
        ["fresh a"]
    );
    let deleted = purge_expired_logs(w.app.state.db.pool(), 1).await.unwrap();
    assert_eq!(deleted, 4);
    let admin = w.app.db.admin().await;
    let rows = admin
        .query_all(stmt(
            "SELECT message FROM execution_logs ORDER BY message",
            [],
        ))
        .await
        .unwrap();
    let left: Vec<String> = rows
        .iter()
        .map(|r| r.try_get("", "message").unwrap())
        .collect();
    assert_eq!(left, ["fresh a", "fresh b"]);
    assert_eq!(
        purge_expired_logs(w.app.state.db.pool(), 100)
            .await
            .unwrap(),
        0
    );
}

// ---------------------------------------------------------------------------
// Outage and replay

async fn outbox(app: &TestApp) -> Vec<(Uuid, String)> {
    let admin = app.db.admin().await;
    admin
        .query_all(stmt(
            "SELECT tenant_id, message FROM log_outbox ORDER BY tenant_id, seq",
            [],
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "tenant_id").unwrap(),
                r.try_get("", "message").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn mongodb_outage_keeps_entries_in_the_outbox_and_replay_restores_them_in_order() {
    let w = world().await;
    let started = Instant::now();
    let down = LogStore::mongodb(&mongo::dead_url()).await.unwrap();
    let build = started.elapsed();
    assert!(
        build < Duration::from_secs(1),
        "start-up waited for MongoDB: {build:?}"
    );

    let base = Utc::now() - chrono::Duration::seconds(60);
    let numbered = |run: Uuid, from: i64, n: i64| -> Vec<NewLogEntry> {
        (from..from + n)
            .map(|i| NewLogEntry {
                logged_at: Some(base + chrono::Duration::milliseconds(i)),
                ..line(run, None, LogLevel::Info, &format!("line {i:02}"))
            })
            .collect()
    };
    let started = Instant::now();
    assert_eq!(
        append(&w.app, &down, &w.a, numbered(w.run_a, 0, 5), &[])
            .await
            .unwrap(),
        5
    );
    let first = started.elapsed();
    let started = Instant::now();
    assert_eq!(
        append(&w.app, &down, &w.a, numbered(w.run_a, 5, 4), &[])
            .await
            .unwrap(),
        4
    );
    append(&w.app, &down, &w.b, numbered(w.run_b, 0, 2), &[])
        .await
        .unwrap();
    let later = started.elapsed();
    eprintln!("append with MongoDB down: first {first:?}, next two {later:?}");
    assert!(
        first < Duration::from_secs(3),
        "first append took {first:?}"
    );
    assert!(
        later < Duration::from_secs(3),
        "later appends took {later:?}"
    );

    let waiting = outbox(&w.app).await;
    assert_eq!(waiting.len(), 11);
    let a_lines: Vec<&str> = waiting
        .iter()
        .filter(|(t, _)| *t == w.a.tenant_uuid())
        .map(|(_, m)| m.as_str())
        .collect();
    let expected: Vec<String> = (0..9).map(|i| format!("line {i:02}")).collect();
    assert_eq!(a_lines, expected);

    // Reads fail rather than hang while MongoDB is down.
    let scope = scope(&w.app, &w.a);
    let started = Instant::now();
    let err = down
        .for_tenant(&scope)
        .await
        .unwrap()
        .query(&LogFilter::default(), LogPage::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "INTERNAL");
    assert!(started.elapsed() < Duration::from_secs(3));
    finish(scope, false).await;

    // MongoDB is back: replay in small batches.
    let url = mongo::fresh_url();
    let up = LogStore::mongodb(&url).await.unwrap();
    let report = up.replay_outbox(w.app.state.db.pool(), 2).await.unwrap();
    assert_eq!(report.replayed, 11);
    assert_eq!(report.tenants, 2);
    assert!(!report.interrupted);
    assert!(outbox(&w.app).await.is_empty());
    let raw = raw_documents(&url).await;
    let a_docs: Vec<&str> = raw
        .iter()
        .filter(|d| d.get_str("tenantId").unwrap() == w.a.tenant_uuid().to_string())
        .map(|d| d.get_str("message").unwrap())
        .collect();
    assert_eq!(a_docs, expected);
    let read = all(&w.app, &up, &w.a, LogFilter::default()).await;
    assert_eq!(messages(&read), expected);
    assert!(read.iter().all(|e| days_kept(e) == 7));
    assert_eq!(all(&w.app, &up, &w.b, LogFilter::default()).await.len(), 2);
    // Nothing left; a second pass is a no-op.
    assert_eq!(
        up.replay_outbox(w.app.state.db.pool(), 2)
            .await
            .unwrap()
            .replayed,
        0
    );
    // A replay against a MongoDB that is still down leaves the outbox alone.
    append(&w.app, &down, &w.a, numbered(w.run_a, 20, 1), &[])
        .await
        .unwrap();
    let report = down.replay_outbox(w.app.state.db.pool(), 10).await.unwrap();
    assert!(report.interrupted);
    assert_eq!(outbox(&w.app).await.len(), 1);
}

#[tokio::test]
async fn the_outbox_is_bounded_per_tenant() {
    let w = world().await;
    let down = LogStore::mongodb(&mongo::dead_url())
        .await
        .unwrap()
        .with_outbox_cap(3);
    let lines = |run, n: usize| {
        (0..n)
            .map(|i| line(run, None, LogLevel::Info, &format!("l{i}")))
            .collect()
    };
    append(&w.app, &down, &w.a, lines(w.run_a, 3), &[])
        .await
        .unwrap();
    let err = append(&w.app, &down, &w.a, lines(w.run_a, 1), &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), "RATE_LIMITED");
    // The refused request rolled back: the outbox holds the three accepted lines.
    assert_eq!(outbox(&w.app).await.len(), 3);
    // Another tenant has its own bound.
    append(&w.app, &down, &w.b, lines(w.run_b, 2), &[])
        .await
        .unwrap();
    assert_eq!(outbox(&w.app).await.len(), 5);
}

// ---------------------------------------------------------------------------
// Queries

async fn filters_and_pages(w: &World, store: &LogStore) {
    let base: DateTime<Utc> = Utc::now() - chrono::Duration::minutes(5);
    let levels = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];
    let entries: Vec<NewLogEntry> = (0..10)
        .map(|i| NewLogEntry {
            logged_at: Some(base + chrono::Duration::seconds(i)),
            ..line(
                w.run_a,
                (i % 2 == 0).then_some(w.step_a),
                levels[i as usize % 4],
                &if i == 7 {
                    "Timeout talking to the API".to_owned()
                } else {
                    format!("step {i}")
                },
            )
        })
        .collect();
    append(&w.app, store, &w.a, entries, &[]).await.unwrap();
    let app = &w.app;
    let full = all(app, store, &w.a, LogFilter::default()).await;
    assert_eq!(full.len(), 10);
    assert!(full.windows(2).all(|p| p[0].logged_at < p[1].logged_at));

    let severe = LogFilter {
        levels: Some(vec![LogLevel::Warn, LogLevel::Error]),
        ..LogFilter::default()
    };
    let seen = all(app, store, &w.a, severe).await;
    assert_eq!(
        messages(&seen),
        ["step 2", "step 3", "step 6", "Timeout talking to the API"]
    );
    assert!(seen
        .iter()
        .all(|e| matches!(e.level, LogLevel::Warn | LogLevel::Error)));
    assert_eq!(
        messages(&all(app, store, &w.a, text("TIMEOUT")).await),
        ["Timeout talking to the API"]
    );
    let combined = LogFilter {
        levels: Some(vec![LogLevel::Error]),
        text: Some("talking".into()),
        ..LogFilter::default()
    };
    assert_eq!(all(app, store, &w.a, combined).await.len(), 1);
    let steps = LogFilter {
        step_run_id: Some(w.step_a),
        ..LogFilter::default()
    };
    assert_eq!(all(app, store, &w.a, steps).await.len(), 5);

    // Keyset pages of 3, both directions, add up to the whole list.
    for newest_first in [false, true] {
        let mut collected = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let page = LogPage {
                after,
                limit: 3,
                newest_first,
            };
            let (rows, more) = query(app, store, &w.a, LogFilter::default(), page).await;
            pages += 1;
            assert!(rows.len() <= 3);
            after = rows.last().map(LogCursor::of);
            // Through the opaque form, as an API would.
            after = after.map(|c| LogCursor::decode(&c.encode(), "after").unwrap());
            collected.extend(rows);
            if !more {
                break;
            }
        }
        assert_eq!(pages, 4);
        let mut expected = full.clone();
        if newest_first {
            expected.reverse();
        }
        assert_eq!(collected, expected);
    }
    // The page size is capped.
    let big = LogPage {
        limit: 10_000,
        ..LogPage::default()
    };
    assert_eq!(
        query(app, store, &w.a, LogFilter::default(), big)
            .await
            .0
            .len(),
        10
    );
}

#[tokio::test]
async fn postgres_filters_by_level_and_text_and_pages() {
    let w = world().await;
    filters_and_pages(&w, &LogStore::postgres()).await;
}

#[tokio::test]
async fn mongodb_filters_by_level_and_text_and_pages() {
    let w = world().await;
    let store = LogStore::mongodb(&mongo::fresh_url()).await.unwrap();
    filters_and_pages(&w, &store).await;
}
