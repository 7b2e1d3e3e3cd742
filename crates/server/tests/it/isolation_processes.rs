//! Tenant isolation of processes (processes, process_versions, process_deployments,
//! process_promotions, call_logs, response_cache, process_usage_hourly) and of the keys
//! that invoke them. The threats: a query, resolver or invocation that forgets its
//! tenant and reads, changes, runs or bills another customer's prompt logic; a row of
//! one tenant that points into another's processes; an answer that tells another
//! tenant's ID or key apart from one never issued; a response cached for one tenant
//! answering another's identical call (the cache key is a hash of the input and the
//! prompt, which two tenants can share); an API key that invokes leaking reads, or
//! reaching past the environment and processes it is held to, or past its tenant.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Value as SqlValue};
use serde_json::{json, Value};
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::isolation_workflows::{constraint, count, made_up, sqlstate, uuid};
use crate::processes::{create_process, invoke_key, payload, published_template, text, PROMOTE};
use crate::support::{as_app, is_rls_violation, Member, TestApp};

const PROCESS_TABLES: [&str; 7] = [
    "processes",
    "process_versions",
    "process_deployments",
    "process_promotions",
    "call_logs",
    "response_cache",
    "process_usage_hourly",
];

const INVOKE: &str = "mutation($p: String!, $e: Environment!, $i: JSON!) { invokeProcess(input: {process: $p, environment: $e, input: $i}) { output cacheHit callId versionId } }";

/// One tenant with a process whose version 1 is published and promoted to PRODUCTION,
/// a draft version 2, a deleted process, an INVOKE key, and calls: two by the owner in
/// PRODUCTION (a miss that fills the cache, then a hit) and one by the key in SANDBOX
/// over REST. So every process table has rows of it.
struct Fixture {
    owner: Member,
    key: String,
    process: String,
    published: String,
    draft: String,
    retired: String,
    call: String,
    api_key: String,
    invoke_secret: String,
}

async fn create_version(app: &TestApp, owner: &Member, process: &str, prompt: &str) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($p: ID!, $u: String!) { createProcessVersion(input: {processId: $p, userPrompt: $u}) { version { id isPublished } userErrors { field message } } }",
            json!({ "p": process, "u": prompt }),
        )
        .await;
    let version = &payload(&data, "createProcessVersion")["version"];
    assert_eq!(version["isPublished"], false);
    text(&version["id"])
}

/// A process with a TEMPLATE version 1 of `prompt`, published (SANDBOX serves it) and
/// promoted to PRODUCTION: its ID and the version's.
async fn published_process(
    app: &TestApp,
    owner: &Member,
    key: &str,
    prompt: &str,
) -> (String, String) {
    let process = create_process(app, owner, key, json!({})).await;
    let version = published_template(app, owner, &process, prompt).await;
    let data = app
        .ok(
            Some(owner.token.as_str()),
            PROMOTE,
            json!({ "id": version }),
        )
        .await;
    assert_eq!(
        payload(&data, "promoteProcessVersion")["version"]["environment"],
        "PRODUCTION"
    );
    (process, version)
}

/// `invokeProcess` as `token`, which must succeed; returns its payload.
async fn invoke(app: &TestApp, token: &str, process: &str, env: &str, name: &str) -> Value {
    let data = app
        .ok(
            Some(token),
            INVOKE,
            json!({ "p": process, "e": env, "i": { "name": name } }),
        )
        .await;
    data["invokeProcess"].clone()
}

/// `POST /v1/processes/{process}/invoke` with `bearer`.
async fn rest_invoke(
    app: &TestApp,
    bearer: &str,
    process: &str,
    body: Value,
) -> (StatusCode, Value) {
    let request = Request::post(format!("/v1/processes/{process}/invoke"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {bearer}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    app.send(request).await
}

async fn fixture(app: &TestApp, slug: &str, key: &str, prompt: &str) -> Fixture {
    let owner = app.owner(slug).await;
    let (process, published) = published_process(app, &owner, key, prompt).await;
    let draft = create_version(app, &owner, &process, &format!("{prompt} (draft)")).await;
    let retired = create_process(app, &owner, "retired", json!({})).await;
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { deleteProcess(input: {id: $id}) { process { deletedAt } userErrors { field message } } }",
            json!({ "id": retired }),
        )
        .await;
    assert!(payload(&data, "deleteProcess")["process"]["deletedAt"].is_string());

    let first = invoke(app, &owner.token, key, "PRODUCTION", "Ada").await;
    assert_eq!(first["cacheHit"], false, "{first:#}");
    assert_eq!(first["versionId"], published.as_str());
    let again = invoke(app, &owner.token, key, "PRODUCTION", "Ada").await;
    assert_eq!(again["cacheHit"], true, "{again:#}");
    assert_eq!(again["output"], first["output"]);

    let (invoke_secret, api_key) = invoke_key(app, &owner, "").await;
    let (status, body) = rest_invoke(
        app,
        &invoke_secret,
        key,
        json!({ "input": { "name": "Bob" }, "environment": "sandbox" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    crate::processes::logged(app, &owner.token, body["callId"].as_str().unwrap()).await;
    Fixture {
        owner,
        key: key.to_owned(),
        process,
        published,
        draft,
        retired,
        call: text(&first["callId"]),
        api_key,
        invoke_secret,
    }
}

/// Every row of a tenant in the process tables, as the owner role sees them.
async fn snapshot(app: &TestApp, tenant: Uuid) -> Value {
    let admin = app.db.admin().await;
    let mut all = serde_json::Map::new();
    for table in PROCESS_TABLES {
        let row = admin
            .query_one(stmt(
                &format!("SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY to_jsonb(x)::text), '[]') AS rows FROM {table} x WHERE tenant_id = $1"),
                [tenant.into()],
            ))
            .await
            .unwrap()
            .unwrap();
        let rows: Value = row.try_get("", "rows").unwrap();
        assert!(!rows.as_array().unwrap().is_empty(), "{table} has no rows");
        all.insert(table.to_owned(), rows);
    }
    admin.close().await.unwrap();
    Value::Object(all)
}

/// Runs one statement as `me` (the application role, tenant and user set, no other
/// filter) in its own transaction, committed when it succeeds and `commit`, rolled back
/// otherwise.
pub(crate) async fn attempt(
    pool: &DatabaseConnection,
    me: &Member,
    sql: &str,
    values: Vec<SqlValue>,
    commit: bool,
) -> Result<u64, DbErr> {
    let tx = as_app(pool, Some(me.tenant_uuid()), Some(me.user_uuid())).await;
    match tx.execute(stmt(sql, values)).await {
        Ok(done) if commit => {
            tx.commit().await.unwrap();
            Ok(done.rows_affected())
        }
        Ok(done) => {
            tx.rollback().await.unwrap();
            Ok(done.rows_affected())
        }
        Err(err) => {
            tx.rollback().await.unwrap();
            Err(err)
        }
    }
}

/// A statement probing a reference: what it references, the statement, the SQLSTATE
/// expected, values naming the other tenant's row, values naming a row nobody has.
type Probe = (
    &'static str,
    &'static str,
    &'static str,
    Vec<SqlValue>,
    Vec<SqlValue>,
);

pub(crate) fn message(err: &DbErr) -> Option<String> {
    trellis_core::error::database_error(err).map(|e| e.message().to_owned())
}

#[tokio::test]
async fn foreign_process_rows_are_invisible_unchangeable_and_undeletable_in_sql() {
    let app = TestApp::new().await;
    let a = fixture(&app, "proc-alpha", "digest", "Hello {{ input.name }}").await;
    let b = fixture(&app, "proc-bravo", "digest", "Hello {{ input.name }}").await;
    let (ta, tb) = (a.owner.tenant_uuid(), b.owner.tenant_uuid());
    let before = snapshot(&app, ta).await;
    let pool = app.db.app_pool(1).await;
    let admin = app.db.admin().await;
    for table in PROCESS_TABLES {
        let filtered = format!("SELECT count(*) FROM {table} WHERE tenant_id = $1");
        let a_rows = count(&admin, &filtered, vec![ta.into()]).await;
        let b_rows = count(&admin, &filtered, vec![tb.into()]).await;
        assert!(a_rows > 0 && b_rows > 0, "{table}: {a_rows} / {b_rows}");
        // Tenant A itself sees its rows through the same statement ...
        let tx = as_app(&pool, Some(ta), Some(a.owner.user_uuid())).await;
        assert_eq!(
            count(&tx, &filtered, vec![ta.into()]).await,
            a_rows,
            "{table}"
        );
        tx.rollback().await.unwrap();
        // ... tenant B sees none of them, and with no WHERE clause only its own.
        let tx = as_app(&pool, Some(tb), Some(b.owner.user_uuid())).await;
        assert_eq!(
            count(&tx, &filtered, vec![ta.into()]).await,
            0,
            "{table}: tenant B sees tenant A's rows"
        );
        assert_eq!(
            count(&tx, &format!("SELECT count(*) FROM {table}"), vec![]).await,
            b_rows,
            "{table}: tenant B sees rows that are not its own"
        );
        tx.rollback().await.unwrap();
    }
    // The rows a resolver would fetch by ID are not found by it either.
    for (table, id) in [
        ("processes", &a.process),
        ("process_versions", &a.published),
        ("process_versions", &a.draft),
        ("call_logs", &a.call),
    ] {
        let sql = format!("SELECT count(*) FROM {table} WHERE id = $1");
        let tx = as_app(&pool, Some(ta), Some(a.owner.user_uuid())).await;
        assert_eq!(count(&tx, &sql, vec![uuid(id).into()]).await, 1, "{id}");
        tx.rollback().await.unwrap();
        let tx = as_app(&pool, Some(tb), Some(b.owner.user_uuid())).await;
        assert_eq!(count(&tx, &sql, vec![uuid(id).into()]).await, 0, "{id}");
        tx.rollback().await.unwrap();
    }

    // Changing or deleting tenant A's rows (the resolver that forgot its tenant filter)
    // touches none from tenant B; the same statement changes tenant A's own rows when
    // tenant A runs it (rolled back), so it is not a statement that matches nothing.
    // Where the app role has no such privilege at all, both are refused alike.
    let writes: [(&str, &str); 14] = [
        ("processes", "UPDATE processes SET name = 'pwned' WHERE tenant_id = $1"),
        (
            "process_versions",
            "UPDATE process_versions SET notes = 'pwned' WHERE tenant_id = $1 AND published_at IS NULL",
        ),
        (
            "process_versions",
            "UPDATE process_versions SET environment = 'production' WHERE tenant_id = $1 AND published_at IS NOT NULL",
        ),
        (
            "process_deployments",
            "UPDATE process_deployments SET updated_at = now() WHERE tenant_id = $1",
        ),
        (
            "process_promotions",
            "UPDATE process_promotions SET environment = 'sandbox' WHERE tenant_id = $1",
        ),
        (
            "call_logs",
            "UPDATE call_logs SET input = NULL, output = NULL WHERE tenant_id = $1",
        ),
        (
            "response_cache",
            "UPDATE response_cache SET output = '\"pwned\"' WHERE tenant_id = $1",
        ),
        (
            "process_usage_hourly",
            "UPDATE process_usage_hourly SET calls = calls + 1000 WHERE tenant_id = $1",
        ),
        ("processes", "DELETE FROM processes WHERE tenant_id = $1"),
        (
            "process_versions",
            "DELETE FROM process_versions WHERE tenant_id = $1 AND published_at IS NULL",
        ),
        (
            "process_deployments",
            "DELETE FROM process_deployments WHERE tenant_id = $1",
        ),
        (
            "process_promotions",
            "DELETE FROM process_promotions WHERE tenant_id = $1",
        ),
        ("call_logs", "DELETE FROM call_logs WHERE tenant_id = $1"),
        (
            "response_cache",
            "DELETE FROM response_cache WHERE tenant_id = $1",
        ),
    ];
    for (table, sql) in writes {
        let own = attempt(&pool, &a.owner, sql, vec![ta.into()], false).await;
        let foreign = attempt(&pool, &b.owner, sql, vec![ta.into()], true).await;
        match own {
            Ok(n) => {
                assert!(n > 0, "{sql}: tenant A's own rows are not matched");
                assert_eq!(
                    foreign.unwrap_or_else(|e| panic!("{sql}: {e}")),
                    0,
                    "{sql}: tenant B changed tenant A's rows"
                );
            }
            Err(own) => {
                // Append-only for the app role: refused outright, for anybody.
                assert_eq!(sqlstate(&own).as_deref(), Some("42501"), "{sql}: {own}");
                let foreign = foreign.expect_err(sql);
                assert_eq!(
                    sqlstate(&foreign).as_deref(),
                    Some("42501"),
                    "{sql}: {foreign}"
                );
                assert!(
                    [
                        "processes",
                        "process_deployments",
                        "process_promotions",
                        "call_logs"
                    ]
                    .contains(&table),
                    "{sql}: refused to tenant A itself: {own}"
                );
            }
        }
    }
    let usage_delete = "DELETE FROM process_usage_hourly WHERE tenant_id = $1";
    let refused = attempt(&pool, &b.owner, usage_delete, vec![ta.into()], true)
        .await
        .expect_err(usage_delete);
    assert_eq!(sqlstate(&refused).as_deref(), Some("42501"), "{refused}");
    admin.close().await.unwrap();
    assert_eq!(snapshot(&app, ta).await, before, "tenant A's rows changed");
}

#[tokio::test]
async fn process_rows_cannot_be_written_into_or_moved_to_another_tenant() {
    let app = TestApp::new().await;
    let a = fixture(&app, "proc-charlie", "digest", "Hello {{ input.name }}").await;
    let b = fixture(&app, "proc-delta", "digest", "Hello {{ input.name }}").await;
    let ta = a.owner.tenant_uuid();
    let before = snapshot(&app, ta).await;
    let pool = app.db.app_pool(1).await;
    let admin = app.db.admin().await;
    // Tenant A's real cache key, for an attempt to overwrite (poison) its entry.
    let entry = admin
        .query_one(stmt(
            "SELECT input_hash, settings_hash FROM response_cache WHERE tenant_id = $1 AND version_id = $2",
            [ta.into(), uuid(&a.published).into()],
        ))
        .await
        .unwrap()
        .expect("tenant A has a cache entry");
    let input_hash: Vec<u8> = entry.try_get("", "input_hash").unwrap();
    let settings_hash: Vec<u8> = entry.try_get("", "settings_hash").unwrap();
    admin.close().await.unwrap();

    let new = || SqlValue::from(Uuid::now_v7());
    let (process, version, key) = (uuid(&a.process), uuid(&a.published), uuid(&a.api_key));
    // Rows of tenant A pointing only at tenant A's rows: nothing but RLS stands in the
    // way (every foreign key would hold).
    let inserts: Vec<(&str, &str, Vec<SqlValue>)> = vec![
        (
            "processes",
            "INSERT INTO processes (id, tenant_id, key, name) VALUES ($1, $2, 'forged', 'Forged')",
            vec![new(), ta.into()],
        ),
        (
            "process_versions",
            "INSERT INTO process_versions (id, tenant_id, process_id, number, user_prompt, provider) VALUES ($1, $2, $3, 9, 'forged', 'template')",
            vec![new(), ta.into(), process.into()],
        ),
        (
            "process_promotions",
            "INSERT INTO process_promotions (id, tenant_id, process_id, environment, to_version_id) VALUES ($1, $2, $3, 'production', $4)",
            vec![new(), ta.into(), process.into(), version.into()],
        ),
        (
            "call_logs",
            "INSERT INTO call_logs (id, tenant_id, process_id, version_id, environment, api_key_id, input_hash, status, latency_ms, payload_expires_at) VALUES ($1, $2, $3, $4, 'production', $5, $6, 'succeeded', 1, now() + interval '1 day')",
            vec![new(), ta.into(), process.into(), version.into(), key.into(), vec![7u8; 32].into()],
        ),
        (
            "response_cache",
            "INSERT INTO response_cache (tenant_id, version_id, input_hash, settings_hash, state, output, expires_at) VALUES ($1, $2, $3, $4, 'ready', '\"pwned\"', now() + interval '1 day')",
            vec![ta.into(), version.into(), vec![7u8; 32].into(), vec![7u8; 32].into()],
        ),
        (
            "response_cache (overwriting tenant A's entry)",
            "INSERT INTO response_cache AS c (tenant_id, version_id, input_hash, settings_hash, state, output, expires_at) VALUES ($1, $2, $3, $4, 'ready', '\"pwned\"', now() + interval '1 day') ON CONFLICT (tenant_id, version_id, input_hash, settings_hash) DO UPDATE SET output = EXCLUDED.output",
            vec![ta.into(), version.into(), input_hash.into(), settings_hash.into()],
        ),
        (
            "process_usage_hourly",
            "INSERT INTO process_usage_hourly (tenant_id, process_id, environment, api_key_id, hour, calls) VALUES ($1, $2, 'production', $3, '2000-01-01T00:00:00Z', 1000)",
            vec![ta.into(), process.into(), key.into()],
        ),
    ];
    for (table, sql, values) in inserts {
        let err = attempt(&pool, &b.owner, sql, values, true)
            .await
            .expect_err(table);
        assert!(is_rls_violation(&err), "{table}: {err}");
    }
    // A deployment is checked by its trigger before RLS is asked. The trigger runs
    // under RLS too: as tenant B it cannot see tenant A's version, and refuses exactly
    // as for a version nobody has; the same statement as tenant A passes (rolled back).
    let deploy = "INSERT INTO process_deployments (tenant_id, process_id, environment, version_id) VALUES ($1, $2, 'sandbox', $3) ON CONFLICT (tenant_id, process_id, environment) DO UPDATE SET version_id = EXCLUDED.version_id";
    let values = |v: Uuid| vec![ta.into(), process.into(), v.into()];
    let own = attempt(&pool, &a.owner, deploy, values(version), false).await;
    assert_eq!(own.unwrap(), 1);
    for v in [version, Uuid::now_v7()] {
        let err = attempt(&pool, &b.owner, deploy, values(v), true)
            .await
            .expect_err("process_deployments");
        assert_eq!(
            (sqlstate(&err).as_deref(), constraint(&err).as_deref()),
            (Some("23514"), Some("process_deployments_version_published")),
            "process_deployments: {err}"
        );
    }

    // Moving tenant B's own rows to tenant A is refused: by the WITH CHECK where the app
    // role may change the column, by the missing privilege elsewhere.
    for table in PROCESS_TABLES {
        let sql = format!("UPDATE {table} SET tenant_id = $1");
        let err = attempt(&pool, &b.owner, &sql, vec![ta.into()], true)
            .await
            .expect_err(table);
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{table}: {err}");
    }
    assert_eq!(snapshot(&app, ta).await, before, "tenant A's rows changed");
}

#[tokio::test]
async fn referencing_another_tenants_process_rows_fails_like_referencing_missing_ones() {
    let app = TestApp::new().await;
    let a = fixture(&app, "proc-echo", "digest", "Hello {{ input.name }}").await;
    let b = fixture(&app, "proc-foxtrot", "digest", "Hello {{ input.name }}").await;
    let tb = b.owner.tenant_uuid();
    let before = snapshot(&app, a.owner.tenant_uuid()).await;
    let pool = app.db.app_pool(1).await;
    let new = || SqlValue::from(Uuid::now_v7());
    let nobody = || SqlValue::from(Uuid::now_v7());
    let none = || SqlValue::from(Option::<Uuid>::None);
    let hash = || SqlValue::from(Uuid::now_v7().as_bytes().repeat(2));
    let (a_process, a_version, a_draft, a_key) = (
        || SqlValue::from(uuid(&a.process)),
        || SqlValue::from(uuid(&a.published)),
        || SqlValue::from(uuid(&a.draft)),
        || SqlValue::from(uuid(&a.api_key)),
    );
    let (b_process, b_version) = (
        || SqlValue::from(uuid(&b.process)),
        || SqlValue::from(uuid(&b.published)),
    );
    const VERSION: &str = "INSERT INTO process_versions (id, tenant_id, process_id, number, user_prompt, provider) VALUES ($1, $2, $3, 9, 'probe', 'template')";
    const DEPLOY: &str = "INSERT INTO process_deployments (tenant_id, process_id, environment, version_id) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, process_id, environment) DO UPDATE SET version_id = EXCLUDED.version_id";
    const PROMOTION: &str = "INSERT INTO process_promotions (id, tenant_id, process_id, environment, from_version_id, to_version_id) VALUES ($1, $2, $3, 'production', $4, $5)";
    const CALL: &str = "INSERT INTO call_logs (id, tenant_id, process_id, version_id, environment, api_key_id, input_hash, status, latency_ms, payload_expires_at) VALUES ($1, $2, $3, $4, 'production', $5, $6, 'succeeded', 1, now() + interval '1 day')";
    const CACHE: &str = "INSERT INTO response_cache (tenant_id, version_id, input_hash, settings_hash, state, output, expires_at) VALUES ($1, $2, $3, $4, 'ready', '\"probe\"', now() + interval '1 day')";
    const USAGE: &str = "INSERT INTO process_usage_hourly (tenant_id, process_id, environment, api_key_id, hour, calls) VALUES ($1, $2, 'production', $3, '2000-01-01T00:00:00Z', 1)";
    // Every row is tenant B's own; each names tenant A's row, then one nobody has.
    let cases: Vec<Probe> = vec![
        (
            "process_versions.process_id",
            VERSION,
            "23503",
            vec![new(), tb.into(), a_process()],
            vec![new(), tb.into(), nobody()],
        ),
        (
            "process_deployments.process_id",
            DEPLOY,
            "23503",
            vec![tb.into(), a_process(), "sandbox".into(), b_version()],
            vec![tb.into(), nobody(), "sandbox".into(), b_version()],
        ),
        (
            // The deployment trigger looks for the version first: it finds neither.
            "process_deployments.version_id",
            DEPLOY,
            "23514",
            vec![tb.into(), b_process(), "production".into(), a_version()],
            vec![tb.into(), b_process(), "production".into(), nobody()],
        ),
        (
            "process_promotions.process_id",
            PROMOTION,
            "23503",
            vec![new(), tb.into(), a_process(), none(), b_version()],
            vec![new(), tb.into(), nobody(), none(), b_version()],
        ),
        (
            "process_promotions.to_version_id",
            PROMOTION,
            "23503",
            vec![new(), tb.into(), b_process(), none(), a_version()],
            vec![new(), tb.into(), b_process(), none(), nobody()],
        ),
        (
            "process_promotions.from_version_id",
            PROMOTION,
            "23503",
            vec![new(), tb.into(), b_process(), a_draft(), b_version()],
            vec![new(), tb.into(), b_process(), nobody(), b_version()],
        ),
        (
            "call_logs.process_id",
            CALL,
            "23503",
            vec![new(), tb.into(), a_process(), none(), none(), hash()],
            vec![new(), tb.into(), nobody(), none(), none(), hash()],
        ),
        (
            "call_logs.version_id",
            CALL,
            "23503",
            vec![new(), tb.into(), b_process(), a_version(), none(), hash()],
            vec![new(), tb.into(), b_process(), nobody(), none(), hash()],
        ),
        (
            "call_logs.api_key_id",
            CALL,
            "23503",
            vec![new(), tb.into(), b_process(), b_version(), a_key(), hash()],
            vec![new(), tb.into(), b_process(), b_version(), nobody(), hash()],
        ),
        (
            "response_cache.version_id",
            CACHE,
            "23503",
            vec![tb.into(), a_version(), hash(), hash()],
            vec![tb.into(), nobody(), hash(), hash()],
        ),
        (
            "process_usage_hourly.process_id",
            USAGE,
            "23503",
            vec![tb.into(), a_process(), none()],
            vec![tb.into(), nobody(), none()],
        ),
        (
            "process_usage_hourly.api_key_id",
            USAGE,
            "23503",
            vec![tb.into(), b_process(), a_key()],
            vec![tb.into(), b_process(), nobody()],
        ),
    ];
    for (what, sql, expected, foreign, missing) in cases {
        let foreign = attempt(&pool, &b.owner, sql, foreign, true)
            .await
            .expect_err(&format!("{what}: referencing tenant A's row worked"));
        let missing = attempt(&pool, &b.owner, sql, missing, true)
            .await
            .expect_err(&format!("{what}: referencing a missing row worked"));
        assert_eq!(
            sqlstate(&foreign).as_deref(),
            Some(expected),
            "{what}: {foreign}"
        );
        assert_eq!(
            (sqlstate(&foreign), constraint(&foreign), message(&foreign)),
            (sqlstate(&missing), constraint(&missing), message(&missing)),
            "{what}: tenant A's row is told apart from a missing one"
        );
    }
    // The same statements with tenant B's own rows work (rolled back), so each failure
    // above is about the foreign reference and nothing else.
    let own: Vec<(&str, Vec<SqlValue>)> = vec![
        (VERSION, vec![new(), tb.into(), b_process()]),
        (
            DEPLOY,
            vec![tb.into(), b_process(), "production".into(), b_version()],
        ),
        (
            PROMOTION,
            vec![new(), tb.into(), b_process(), none(), b_version()],
        ),
        (
            CALL,
            vec![new(), tb.into(), b_process(), b_version(), none(), hash()],
        ),
        (CACHE, vec![tb.into(), b_version(), hash(), hash()]),
        (USAGE, vec![tb.into(), b_process(), none()]),
    ];
    for (sql, values) in own {
        let done = attempt(&pool, &b.owner, sql, values, false).await;
        assert_eq!(done.unwrap_or_else(|e| panic!("{sql}: {e}")), 1, "{sql}");
    }
    assert_eq!(
        snapshot(&app, a.owner.tenant_uuid()).await,
        before,
        "tenant A's rows changed"
    );
}

#[tokio::test]
async fn without_a_tenant_no_process_row_is_visible_or_writable() {
    let app = TestApp::new().await;
    let a = fixture(&app, "proc-golf", "digest", "Hello {{ input.name }}").await;
    let ta = a.owner.tenant_uuid();
    let pool = app.db.app_pool(1).await;
    let admin = app.db.admin().await;
    for table in PROCESS_TABLES {
        let all = format!("SELECT count(*) FROM {table}");
        let rows = count(&admin, &all, vec![]).await;
        assert!(rows > 0, "{table} has no rows");
        // With the tenant set, the same statement sees them ...
        let tx = as_app(&pool, Some(ta), None).await;
        assert_eq!(count(&tx, &all, vec![]).await, rows, "{table}");
        tx.rollback().await.unwrap();
        // ... with none set (or an empty one), nothing.
        let tx = as_app(&pool, None, None).await;
        assert_eq!(
            count(&tx, &all, vec![]).await,
            0,
            "{table} without a tenant"
        );
        tx.rollback().await.unwrap();
        assert_eq!(count(&pool, &all, vec![]).await, 0, "{table}, nothing set");
    }
    admin.close().await.unwrap();
    let tx = as_app(&pool, None, None).await;
    let err = tx
        .execute(stmt(
            "INSERT INTO processes (id, tenant_id, key, name) VALUES ($1, $2, 'forged', 'Forged')",
            [Uuid::now_v7().into(), ta.into()],
        ))
        .await
        .unwrap_err();
    assert!(is_rls_violation(&err), "{err}");
    tx.rollback().await.unwrap();
}

/// The code and message of each error and the data: what tells two answers apart.
pub(crate) fn answer(body: &Value) -> Value {
    let errors: Vec<Value> = body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| json!([e["extensions"]["code"], e["message"], e["path"]]))
                .collect()
        })
        .unwrap_or_default();
    json!({ "errors": errors, "data": body["data"] })
}

#[tokio::test]
async fn another_tenants_process_ids_are_not_found_like_made_up_ones() {
    let app = TestApp::new().await;
    let a = fixture(&app, "proc-hotel", "alpha-digest", "Hello {{ input.name }}").await;
    let b = fixture(&app, "proc-india", "bravo-digest", "Hello {{ input.name }}").await;
    let before = snapshot(&app, a.owner.tenant_uuid()).await;
    let token = Some(b.owner.token.as_str());

    let node = "query($id: ID!) { node(id: $id) { id } }";
    let theirs = [&a.process, &a.retired, &a.published, &a.draft, &a.call];
    for id in theirs {
        // Tenant A itself finds it, so the ID is real.
        let found = app
            .ok(Some(&a.owner.token), node, json!({ "id": id }))
            .await;
        assert_eq!(found["node"]["id"], id.as_str());
        let (_, foreign) = app.post(token, node, json!({ "id": id })).await;
        let (_, missing) = app.post(token, node, json!({ "id": made_up(id) })).await;
        assert_eq!(
            foreign["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "node({id}): {foreign:#}"
        );
        assert_eq!(foreign["data"], Value::Null, "node({id}): {foreign:#}");
        assert_eq!(answer(&foreign), answer(&missing), "node({id})");
    }
    let data = app
        .ok(
            token,
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            json!({ "ids": theirs }),
        )
        .await;
    assert_eq!(data["nodes"], json!(vec![Value::Null; theirs.len()]));

    // (mutation, the ID variable it takes from tenant A, other variables).
    let mutations: Vec<(&str, &String, Value)> = vec![
        (
            "mutation($id: ID!) { updateProcess(input: {id: $id, name: \"pwned\"}) { process { id } userErrors { code field message } } }",
            &a.process,
            json!({}),
        ),
        (
            "mutation($id: ID!) { updateProcess(input: {id: $id, key: \"pwned\"}) { process { id } userErrors { code field message } } }",
            &a.process,
            json!({}),
        ),
        (
            "mutation($id: ID!) { deleteProcess(input: {id: $id}) { process { id } userErrors { code field message } } }",
            &a.process,
            json!({}),
        ),
        (
            "mutation($id: ID!) { restoreProcess(input: {id: $id}) { process { id } userErrors { code field message } } }",
            &a.retired,
            json!({}),
        ),
        (
            "mutation($id: ID!) { createProcessVersion(input: {processId: $id, userPrompt: \"pwned\"}) { version { id } userErrors { code field message } } }",
            &a.process,
            json!({}),
        ),
        (
            "mutation($id: ID!) { updateProcessVersion(input: {id: $id, notes: \"pwned\"}) { version { id } userErrors { code field message } } }",
            &a.draft,
            json!({}),
        ),
        (
            "mutation($id: ID!) { publishProcessVersion(input: {id: $id}) { version { id } userErrors { code field message } } }",
            &a.draft,
            json!({}),
        ),
        (
            "mutation($id: ID!) { promoteProcessVersion(input: {versionId: $id, environment: PRODUCTION}) { version { id } userErrors { code field message } } }",
            &a.published,
            json!({}),
        ),
        (
            "mutation($id: ID!) { promoteProcessVersion(input: {versionId: $id, environment: SANDBOX}) { version { id } userErrors { code field message } } }",
            &a.draft,
            json!({}),
        ),
    ];
    for (mutation, id, extra) in &mutations {
        let mut foreign = extra.clone();
        foreign["id"] = json!(id);
        let mut missing = extra.clone();
        missing["id"] = json!(made_up(id));
        let (_, foreign) = app.post(token, mutation, foreign).await;
        let (_, missing) = app.post(token, mutation, missing).await;
        assert_eq!(
            foreign["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{mutation} with {id}: {foreign:#}"
        );
        assert_eq!(answer(&foreign), answer(&missing), "{mutation} with {id}");
    }
    // Copying tenant A's version into a draft of tenant B's own process is a bad
    // fromVersionId, worded exactly as for a version that does not exist.
    let copy = "mutation($p: ID!, $v: ID!) { createProcessVersion(input: {processId: $p, fromVersionId: $v}) { version { id userPrompt } userErrors { code field message } } }";
    let foreign = app
        .ok(token, copy, json!({ "p": b.process, "v": a.published }))
        .await;
    let missing = app
        .ok(
            token,
            copy,
            json!({ "p": b.process, "v": made_up(&a.published) }),
        )
        .await;
    assert_eq!(foreign["createProcessVersion"]["version"], Value::Null);
    assert_eq!(
        foreign["createProcessVersion"]["userErrors"][0]["field"],
        "fromVersionId"
    );
    assert_eq!(foreign, missing);

    assert_eq!(
        snapshot(&app, a.owner.tenant_uuid()).await,
        before,
        "tenant A's rows changed"
    );
    // Tenant A's process kept its name and its draft stayed a draft (newest first).
    let data = app
        .ok(
            Some(&a.owner.token),
            "query($k: String!) { process(key: $k) { id name versions { id isPublished notes } } }",
            json!({ "k": a.key }),
        )
        .await;
    assert_eq!(data["process"]["id"], a.process.as_str());
    assert_eq!(data["process"]["name"], "alpha-digest");
    assert_eq!(
        data["process"]["versions"],
        json!([
            { "id": a.draft, "isPublished": false, "notes": "" },
            { "id": a.published, "isPublished": true, "notes": "" },
        ])
    );
}

#[tokio::test]
async fn process_lists_never_show_another_tenants_rows() {
    let app = TestApp::new().await;
    let a = fixture(
        &app,
        "proc-juliet",
        "alpha-digest",
        "Hello {{ input.name }}",
    )
    .await;
    let b = fixture(&app, "proc-kilo", "bravo-digest", "Hello {{ input.name }}").await;
    let lists = "{ processes(first: 100) { totalCount nodes { id key versions { id } sandboxVersion { id } productionVersion { id } promotions { id } calls(first: 100) { nodes { id } } } } deleted: processes(first: 100, filter: {deleted: true}) { totalCount nodes { id } } calls(first: 100) { totalCount nodes { id process { id } version { id } } } }";
    let mine = app.ok(Some(&a.owner.token), lists, json!({})).await;
    let theirs = app.ok(Some(&b.owner.token), lists, json!({})).await;
    // Tenant A's lists hold its rows ...
    assert_eq!(mine["processes"]["totalCount"], 1, "{mine:#}");
    assert_eq!(mine["processes"]["nodes"][0]["id"], a.process.as_str());
    assert_eq!(mine["deleted"]["nodes"][0]["id"], a.retired.as_str());
    assert_eq!(mine["calls"]["totalCount"], 3, "{mine:#}");
    let mine_text = mine.to_string();
    for id in [&a.process, &a.retired, &a.published, &a.draft, &a.call] {
        assert!(
            mine_text.contains(id.as_str()),
            "tenant A's lists lack {id}"
        );
    }
    // ... and tenant B's lists, alike in shape, hold none of them.
    assert_eq!(theirs["processes"]["totalCount"], 1, "{theirs:#}");
    assert_eq!(theirs["processes"]["nodes"][0]["id"], b.process.as_str());
    assert_eq!(theirs["deleted"]["totalCount"], 1, "{theirs:#}");
    assert_eq!(theirs["calls"]["totalCount"], 3, "{theirs:#}");
    let theirs_text = theirs.to_string();
    for id in [&a.process, &a.retired, &a.published, &a.draft, &a.call] {
        assert!(
            !theirs_text.contains(id.as_str()),
            "tenant B's lists show {id}: {theirs:#}"
        );
    }
    let a_calls: Vec<Value> = mine["calls"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    for call in &a_calls {
        assert!(!theirs_text.contains(call.as_str().unwrap()), "{call}");
    }

    // Lookups and filters naming tenant A's process find nothing, as for one that does
    // not exist; tenant A's own token finds it, so the names are real.
    let by_key = "query($k: String!) { process(key: $k) { id } }";
    let found = app
        .ok(Some(&a.owner.token), by_key, json!({ "k": a.key }))
        .await;
    assert_eq!(found["process"]["id"], a.process.as_str());
    for key in [a.key.as_str(), "no-such-process"] {
        let data = app
            .ok(Some(&b.owner.token), by_key, json!({ "k": key }))
            .await;
        assert_eq!(data["process"], Value::Null, "process(key: {key})");
    }
    let calls_of = "query($p: String!) { calls(first: 100, filter: {process: $p}) { totalCount nodes { id } } }";
    let search =
        "query($s: String!) { processes(filter: {search: $s}) { totalCount nodes { id } } }";
    for (query, named, made) in [
        (calls_of, a.key.clone(), "no-such-process".to_owned()),
        (calls_of, a.process.clone(), made_up(&a.process)),
        (search, a.key.clone(), "no-such-process".to_owned()),
    ] {
        let variables = |v: &str| {
            if query == search {
                json!({ "s": v })
            } else {
                json!({ "p": v })
            }
        };
        let own = app.ok(Some(&a.owner.token), query, variables(&named)).await;
        let list = own.as_object().unwrap().values().next().unwrap();
        assert!(list["totalCount"].as_i64().unwrap() > 0, "{query}: {own:#}");
        let foreign = app.ok(Some(&b.owner.token), query, variables(&named)).await;
        let missing = app.ok(Some(&b.owner.token), query, variables(&made)).await;
        let list = foreign.as_object().unwrap().values().next().unwrap();
        assert_eq!(list["totalCount"], 0, "{query} with {named}: {foreign:#}");
        assert_eq!(foreign, missing, "{query} with {named}");
    }
}

#[tokio::test]
async fn invoking_another_tenants_process_is_not_found_like_a_made_up_one() {
    let app = TestApp::new().await;
    let a = fixture(&app, "proc-lima", "alpha-digest", "Hello {{ input.name }}").await;
    let b = fixture(&app, "proc-mike", "bravo-digest", "Howdy {{ input.name }}").await;
    let before = snapshot(&app, a.owner.tenant_uuid()).await;
    let b_before = snapshot(&app, b.owner.tenant_uuid()).await;
    // Tenant A calls its process by key and by ID in both environments.
    for process in [&a.key, &a.process] {
        for env in ["PRODUCTION", "SANDBOX"] {
            let done = invoke(&app, &a.owner.token, process, env, "Ada").await;
            assert_eq!(done["output"], "Hello Ada", "{process} in {env}");
        }
    }
    let before_calls = snapshot(&app, a.owner.tenant_uuid()).await;
    assert_ne!(before, before_calls, "tenant A's calls were not logged");

    let token = Some(b.owner.token.as_str());
    for env in ["PRODUCTION", "SANDBOX"] {
        for (theirs, made) in [
            (a.key.clone(), "no-such-process".to_owned()),
            (a.process.clone(), made_up(&a.process)),
        ] {
            let call = |p: String| json!({ "p": p, "e": env, "i": { "name": "Ada" } });
            let (_, foreign) = app.post(token, INVOKE, call(theirs.clone())).await;
            let (_, missing) = app.post(token, INVOKE, call(made)).await;
            assert_eq!(
                foreign["errors"][0]["extensions"]["code"], "NOT_FOUND",
                "invokeProcess({theirs}) in {env}: {foreign:#}"
            );
            assert_eq!(
                answer(&foreign),
                answer(&missing),
                "invokeProcess({theirs}) in {env}"
            );
        }
    }
    // Nothing was logged, cached or billed on either side.
    assert_eq!(snapshot(&app, a.owner.tenant_uuid()).await, before_calls);
    assert_eq!(snapshot(&app, b.owner.tenant_uuid()).await, b_before);
}

/// What one tenant's response cache holds: (version, input hash, settings hash,
/// output) per entry, read as the owner role.
async fn cache_of(app: &TestApp, tenant: Uuid) -> Vec<(Uuid, Vec<u8>, Vec<u8>, Value)> {
    let admin = app.db.admin().await;
    let rows = admin
        .query_all(stmt(
            "SELECT version_id, input_hash, settings_hash, output FROM response_cache WHERE tenant_id = $1 AND state = 'ready' ORDER BY version_id",
            [tenant.into()],
        ))
        .await
        .unwrap();
    admin.close().await.unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get("", "version_id").unwrap(),
                r.try_get("", "input_hash").unwrap(),
                r.try_get("", "settings_hash").unwrap(),
                r.try_get("", "output").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_response_cache_never_answers_across_tenants() {
    let app = TestApp::new().await;
    let a = app.owner("proc-november").await;
    let b = app.owner("proc-oscar").await;
    // "greet": the same key and the very same prompt in both tenants, so the same
    // input has the same input hash and settings hash; only tenant and version differ.
    // "welcome": the same key, prompts that answer differently.
    let (a_greet, _) = published_process(&app, &a, "greet", "Hello {{ input.name }}").await;
    let (b_greet, _) = published_process(&app, &b, "greet", "Hello {{ input.name }}").await;
    published_process(&app, &a, "welcome", "Welcome, {{ input.name }}").await;
    published_process(&app, &b, "welcome", "Go away, {{ input.name }}").await;

    for (key, a_says) in [("greet", "Hello Ada"), ("welcome", "Welcome, Ada")] {
        let first = invoke(&app, &a.token, key, "PRODUCTION", "Ada").await;
        assert_eq!(
            (&first["output"], &first["cacheHit"]),
            (&json!(a_says), &json!(false))
        );
        let again = invoke(&app, &a.token, key, "PRODUCTION", "Ada").await;
        assert_eq!(
            (&again["output"], &again["cacheHit"]),
            (&json!(a_says), &json!(true)),
            "tenant A's second call of {key} is not a hit, so B's below proves nothing"
        );
    }
    // Tenant A's entries are in place; now tenant B makes the identical calls.
    for (key, b_says) in [("greet", "Hello Ada"), ("welcome", "Go away, Ada")] {
        let first = invoke(&app, &b.token, key, "PRODUCTION", "Ada").await;
        assert_eq!(
            (&first["output"], &first["cacheHit"]),
            (&json!(b_says), &json!(false)),
            "{key}: tenant B's first call was answered from tenant A's cache"
        );
        let again = invoke(&app, &b.token, key, "PRODUCTION", "Ada").await;
        assert_eq!(
            (&again["output"], &again["cacheHit"]),
            (&json!(b_says), &json!(true)),
            "{key}"
        );
    }
    // Tenant A still gets its own answers from its own entries.
    for (key, a_says) in [("greet", "Hello Ada"), ("welcome", "Welcome, Ada")] {
        let again = invoke(&app, &a.token, key, "PRODUCTION", "Ada").await;
        assert_eq!(
            (&again["output"], &again["cacheHit"]),
            (&json!(a_says), &json!(true)),
            "{key}"
        );
    }
    // Each tenant has its own entries; the "greet" ones share their hashes, so nothing
    // but the tenant and version kept them apart.
    let (in_a, in_b) = (
        cache_of(&app, a.tenant_uuid()).await,
        cache_of(&app, b.tenant_uuid()).await,
    );
    assert_eq!((in_a.len(), in_b.len()), (2, 2), "{in_a:?} / {in_b:?}");
    let greet_a = in_a
        .iter()
        .find(|e| e.3 == json!("Hello Ada"))
        .expect("tenant A's greet entry");
    let greet_b = in_b
        .iter()
        .find(|e| e.3 == json!("Hello Ada"))
        .expect("tenant B's greet entry");
    assert_eq!((&greet_a.1, &greet_a.2), (&greet_b.1, &greet_b.2));
    assert_ne!(greet_a.0, greet_b.0);
    assert!(
        in_b.iter().all(|e| e.3 != json!("Welcome, Ada")),
        "{in_b:?}"
    );
    assert!(
        in_a.iter().all(|e| e.3 != json!("Go away, Ada")),
        "{in_a:?}"
    );
    // Each tenant's call log holds its own calls, hits and misses, and nothing else.
    let calls = "{ calls(first: 100) { totalCount nodes { cacheHit process { id key } } } }";
    for (owner, greet) in [(&a, &a_greet), (&b, &b_greet)] {
        let data = app.ok(Some(&owner.token), calls, json!({})).await;
        let nodes = data["calls"]["nodes"].as_array().unwrap();
        let expected = if owner.tenant_id == a.tenant_id { 6 } else { 4 };
        assert_eq!(nodes.len(), expected, "{data:#}");
        let greets = nodes
            .iter()
            .filter(|c| c["process"]["key"] == "greet")
            .collect::<Vec<_>>();
        assert!(greets.iter().all(|c| c["process"]["id"] == greet.as_str()));
        assert_eq!(greets.iter().filter(|c| c["cacheHit"] == false).count(), 1);
    }
}

#[tokio::test]
async fn an_invoke_key_calls_its_tenants_processes_and_reads_nothing() {
    let app = TestApp::new().await;
    let a = fixture(&app, "proc-papa", "alpha-digest", "Hello {{ input.name }}").await;
    let key = a.invoke_secret.as_str();
    // It invokes over REST (by key and by ID) and through GraphQL.
    for process in [&a.key, &a.process] {
        let (status, body) =
            rest_invoke(&app, key, process, json!({ "input": { "name": "Cy" } })).await;
        assert_eq!(status, StatusCode::OK, "{body:#}");
        assert_eq!(body["output"], "Hello Cy", "{body:#}");
        assert_eq!(body["versionId"], a.published.as_str());
    }
    let done = invoke(&app, key, &a.key, "PRODUCTION", "Cy").await;
    assert_eq!(done["output"], "Hello Cy");

    // A READ key of the same tenant reads what the INVOKE key may not: the refusals
    // below are about the scope, not about the objects.
    let (reader, _) = app.api_key(&a.owner, "READ").await;
    let reads: [(&str, Value); 5] = [
        ("{ processes { nodes { id } } }", json!({})),
        (
            "query($k: String!) { process(key: $k) { id } }",
            json!({ "k": a.key }),
        ),
        ("{ calls { nodes { id } } }", json!({})),
        (
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": a.process }),
        ),
        (
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": a.call }),
        ),
    ];
    for (query, variables) in &reads {
        let data = app.ok(Some(&reader), query, variables.clone()).await;
        assert!(
            data.to_string().contains("proc_") || data.to_string().contains("call_"),
            "{query}: {data:#}"
        );
        assert_eq!(
            app.error_code(Some(key), query, variables.clone()).await,
            "FORBIDDEN",
            "{query}"
        );
    }
    let writes = [
        "mutation { createProcess(input: {key: \"sneaky\", name: \"Sneaky\"}) { process { id } } }",
        "mutation($id: ID!) { updateProcess(input: {id: $id, name: \"pwned\"}) { process { id } } }",
        "mutation($id: ID!) { createProcessVersion(input: {processId: $id, userPrompt: \"pwned\"}) { version { id } } }",
    ];
    for mutation in writes {
        assert_eq!(
            app.error_code(Some(key), mutation, json!({ "id": a.process }))
                .await,
            "FORBIDDEN",
            "{mutation}"
        );
    }
}

#[tokio::test]
async fn an_invoke_key_is_held_to_its_environment_and_processes() {
    let app = TestApp::new().await;
    let a = fixture(
        &app,
        "proc-quebec",
        "alpha-digest",
        "Hello {{ input.name }}",
    )
    .await;
    published_process(&app, &a.owner, "other", "Other {{ input.name }}").await;
    let rest_body = |env: &str| json!({ "input": { "name": "Di" }, "environment": env });

    // Held to SANDBOX: SANDBOX answers, PRODUCTION is FORBIDDEN.
    let (sandbox_key, _) = invoke_key(&app, &a.owner, ", processEnvironment: SANDBOX").await;
    let done = invoke(&app, &sandbox_key, &a.key, "SANDBOX", "Di").await;
    assert_eq!(done["output"], "Hello Di");
    let (status, body) = rest_invoke(&app, &sandbox_key, &a.key, rest_body("sandbox")).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    let call = json!({ "p": a.key, "e": "PRODUCTION", "i": { "name": "Di" } });
    assert_eq!(
        app.error_code(Some(&sandbox_key), INVOKE, call).await,
        "FORBIDDEN"
    );
    let (status, body) = rest_invoke(&app, &sandbox_key, &a.key, rest_body("production")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    // The environment's default is PRODUCTION: omitting it does not get around the hold.
    let (status, _) = rest_invoke(
        &app,
        &sandbox_key,
        &a.key,
        json!({ "input": { "name": "Di" } }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Held to the process "other": it calls "other", not the tenant's other process.
    let (other_key, _) = invoke_key(&app, &a.owner, ", processKeys: [\"other\"]").await;
    let done = invoke(&app, &other_key, "other", "PRODUCTION", "Di").await;
    assert_eq!(done["output"], "Other Di");
    for process in [&a.key, &a.process] {
        let call = json!({ "p": process, "e": "PRODUCTION", "i": { "name": "Di" } });
        assert_eq!(
            app.error_code(Some(&other_key), INVOKE, call).await,
            "FORBIDDEN",
            "{process}"
        );
        let (status, body) = rest_invoke(&app, &other_key, process, rest_body("production")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{process}: {body:#}");
    }
    // The refused calls were not logged.
    let calls = app
        .ok(
            Some(&a.owner.token),
            "{ calls(first: 100, filter: {process: \"alpha-digest\"}) { totalCount } }",
            json!({}),
        )
        .await;
    // The fixture's three calls, and the two SANDBOX ones of the held key.
    assert_eq!(calls["calls"]["totalCount"], 5, "{calls:#}");
}

#[tokio::test]
async fn an_invoke_key_cannot_reach_another_tenants_process() {
    let app = TestApp::new().await;
    let a = fixture(&app, "proc-romeo", "alpha-digest", "Hello {{ input.name }}").await;
    let b = fixture(
        &app,
        "proc-sierra",
        "bravo-digest",
        "Howdy {{ input.name }}",
    )
    .await;
    let b_before = snapshot(&app, b.owner.tenant_uuid()).await;
    // Tenant B's own key calls its process by key and by ID: both names are real.
    for process in [&b.key, &b.process] {
        let (status, body) = rest_invoke(
            &app,
            &b.invoke_secret,
            process,
            json!({ "input": { "name": "Ed" } }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body:#}");
        assert_eq!(body["output"], "Howdy Ed");
    }
    let b_after_own = snapshot(&app, b.owner.tenant_uuid()).await;
    assert_ne!(b_before, b_after_own);

    // Tenant A's keys: unrestricted, and one held to tenant B's process key.
    let (held, _) = invoke_key(&app, &a.owner, ", processKeys: [\"bravo-digest\"]").await;
    for key in [a.invoke_secret.as_str(), held.as_str()] {
        for (theirs, made) in [
            (b.key.clone(), "no-such-process".to_owned()),
            (b.process.clone(), made_up(&b.process)),
        ] {
            let body = json!({ "input": { "name": "Ed" } });
            let (status, foreign) = rest_invoke(&app, key, &theirs, body.clone()).await;
            let (missing_status, missing) = rest_invoke(&app, key, &made, body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{theirs}: {foreign:#}");
            assert_eq!(missing_status, StatusCode::NOT_FOUND);
            assert_eq!(foreign["error"]["code"], "NOT_FOUND");
            assert_eq!(
                (&foreign["error"]["code"], &foreign["error"]["message"]),
                (&missing["error"]["code"], &missing["error"]["message"]),
                "{theirs}"
            );
            let call = |p: &str| json!({ "p": p, "e": "PRODUCTION", "i": { "name": "Ed" } });
            let (_, foreign) = app.post(Some(key), INVOKE, call(&theirs)).await;
            let (_, missing) = app.post(Some(key), INVOKE, call(&made)).await;
            assert_eq!(
                foreign["errors"][0]["extensions"]["code"], "NOT_FOUND",
                "{theirs}: {foreign:#}"
            );
            assert_eq!(answer(&foreign), answer(&missing), "{theirs}");
        }
    }
    // Nothing was logged, cached or billed in tenant B by tenant A's keys.
    assert_eq!(snapshot(&app, b.owner.tenant_uuid()).await, b_after_own);
}
