//! Tenant isolation of the run tables (workflow_runs, step_runs, run_idempotency_keys,
//! workflow_reports). The threats: a query or resolver that forgets its tenant filter
//! and reads or changes another customer's runs; a run, step run, idempotency key or
//! rollup of one tenant that points into another's workflows, runs, triggers or
//! clients (and so learns that an id exists there); an API answer, a runner call or a
//! claim that tells another tenant's run apart from one that was never issued, or acts
//! on it.

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Value as SqlValue};
use serde_json::{json, Value};
use trellis_core::runs::reports::{write_reports, ReportJob};
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::isolation_workflows::{constraint, count, made_up, sqlstate, uuid};
use crate::runs::{active_workflow, claim, end_run, step};
use crate::support::{as_app, Member, TestApp};

const RUN_TABLES: [&str; 4] = [
    "workflow_runs",
    "step_runs",
    "run_idempotency_keys",
    "workflow_reports",
];

/// One tenant with a client, a workflow (active version of steps a → b → c) and a
/// manual trigger, and three runs: one finished (started with an idempotency key,
/// created in March 2025 and rolled up into workflow_reports), one running under a
/// runner's lease, one pending.
struct Fixture {
    owner: Member,
    runner: String,
    client: String,
    workflow: String,
    version: String,
    steps: Vec<String>,
    trigger: String,
    finished: String,
    finished_steps: Vec<String>,
    running: String,
    lease: String,
    pending: String,
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

async fn start(app: &TestApp, owner: &Member, workflow: &str, key: Option<&str>) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!, $k: String) { startRun(input: {workflowId: $w, input: {n: 1}, idempotencyKey: $k}) { run { id } userErrors { code message } } }",
            json!({ "w": workflow, "k": key }),
        )
        .await;
    assert_eq!(data["startRun"]["userErrors"], json!([]), "{data:#}");
    text(&data["startRun"]["run"]["id"])
}

async fn fixture(app: &TestApp, slug: &str) -> Fixture {
    let owner = app.owner(slug).await;
    let t = Some(owner.token.as_str());
    let data = app
        .ok(
            t,
            "mutation { createClient(input: {name: \"Acme\"}) { client { id } userErrors { message } } }",
            json!({}),
        )
        .await;
    let client = text(&data["createClient"]["client"]["id"]);
    let workflow = active_workflow(app, &owner, "orders").await;
    let data = app
        .ok(
            t,
            "mutation($w: ID!, $c: ID!) { updateWorkflow(input: {id: $w, clientId: $c}) { workflow { activeVersion { id steps { id } } } userErrors { message } } }",
            json!({ "w": workflow, "c": client }),
        )
        .await;
    let version_data = &data["updateWorkflow"]["workflow"]["activeVersion"];
    let version = text(&version_data["id"]);
    let steps: Vec<String> = version_data["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| text(&s["id"]))
        .collect();
    let data = app
        .ok(
            t,
            "mutation($w: ID!) { createTrigger(input: {workflowId: $w, key: \"by-hand\", type: MANUAL}) { trigger { id } userErrors { message } } }",
            json!({ "w": workflow }),
        )
        .await;
    let trigger = text(&data["createTrigger"]["trigger"]["id"]);
    let (runner, _) = app.api_key(&owner, "RUNNER").await;

    let finished = start(app, &owner, &workflow, Some("order-1")).await;
    let leases = claim(app, &runner, 10).await;
    assert_eq!(leases.len(), 1);
    let token = text(&leases[0]["token"]);
    step(
        app,
        &runner,
        "startStep",
        &finished,
        &token,
        "a",
        json!({ "in": 1 }),
    )
    .await;
    step(
        app,
        &runner,
        "completeStep",
        &finished,
        &token,
        "a",
        json!({ "out": 1 }),
    )
    .await;
    let ended = end_run(
        app,
        &runner,
        "completeRun",
        &finished,
        &token,
        json!({ "ok": true }),
    )
    .await;
    assert_eq!(ended["run"]["status"], "SUCCEEDED", "{ended:#}");
    let data = app
        .ok(
            t,
            "query($id: ID!) { node(id: $id) { ... on WorkflowRun { stepRuns { id } } } }",
            json!({ "id": finished }),
        )
        .await;
    let finished_steps: Vec<String> = data["node"]["stepRuns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| text(&s["id"]))
        .collect();
    assert_eq!(finished_steps.len(), 3);

    let running = start(app, &owner, &workflow, None).await;
    let leases = claim(app, &runner, 10).await;
    assert_eq!(leases.len(), 1);
    let lease = text(&leases[0]["token"]);
    let pending = start(app, &owner, &workflow, None).await;

    // The finished run belongs to a closed period, which the job rolls up.
    let admin = app.db.admin().await;
    admin
        .execute(stmt(
            "UPDATE workflow_runs SET created_at = '2025-03-03T08:00:00Z', \
               started_at = '2025-03-03T08:00:01Z', finished_at = '2025-03-03T08:00:03Z' \
             WHERE id = $1",
            [uuid(&finished).into()],
        ))
        .await
        .unwrap();
    admin.close().await.unwrap();
    let job = ReportJob {
        tenant_id: Some(owner.tenant_uuid()),
        ..Default::default()
    };
    let pass = write_reports(&app.state.db, Utc::now(), &job)
        .await
        .unwrap();
    assert_eq!(pass.written, 3, "a day, a week and a month");
    Fixture {
        owner,
        runner,
        client,
        workflow,
        version,
        steps,
        trigger,
        finished,
        finished_steps,
        running,
        lease,
        pending,
    }
}

/// Every row of a tenant in the run tables, as the owner role sees them.
async fn snapshot(app: &TestApp, tenant: Uuid) -> Value {
    let admin = app.db.admin().await;
    let mut all = serde_json::Map::new();
    for table in RUN_TABLES {
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
/// filter) in its own transaction: committed when it succeeds, rolled back otherwise.
/// A deferred constraint fails at the commit, which counts as the statement failing.
async fn attempt(
    pool: &DatabaseConnection,
    me: &Member,
    sql: &str,
    values: Vec<SqlValue>,
) -> Result<u64, DbErr> {
    let tx = as_app(pool, Some(me.tenant_uuid()), Some(me.user_uuid())).await;
    match tx.execute(stmt(sql, values)).await {
        Ok(done) => tx.commit().await.map(|()| done.rows_affected()),
        Err(err) => {
            tx.rollback().await.unwrap();
            Err(err)
        }
    }
}

/// Runs `sql` as tenant A once pointing at tenant B's row and once at an id nobody has;
/// both must fail, with the same SQLSTATE and constraint.
async fn fails_like_a_missing_row(
    pool: &DatabaseConnection,
    me: &Member,
    what: &str,
    sql: &str,
    foreign: Vec<SqlValue>,
    missing: Vec<SqlValue>,
) {
    let foreign = attempt(pool, me, sql, foreign)
        .await
        .expect_err(&format!("{what}: referencing tenant B's row worked"));
    let missing = attempt(pool, me, sql, missing)
        .await
        .expect_err(&format!("{what}: referencing a missing row worked"));
    assert_eq!(
        sqlstate(&foreign).as_deref(),
        Some("23503"),
        "{what}: {foreign}"
    );
    assert_eq!(
        (sqlstate(&foreign), constraint(&foreign)),
        (sqlstate(&missing), constraint(&missing)),
        "{what}: tenant B's row is told apart from a missing one: {foreign} / {missing}"
    );
}

/// How to pick tenant B's rows of a table (by id, or by the run or workflow they
/// belong to), and the ids to pick them with.
fn theirs(table: &str, b: &Fixture) -> (&'static str, Vec<Uuid>) {
    let runs = vec![uuid(&b.finished), uuid(&b.running), uuid(&b.pending)];
    match table {
        "workflow_runs" => ("id", runs),
        "step_runs" => ("run_id", runs),
        "run_idempotency_keys" => ("run_id", runs),
        _ => ("workflow_id", vec![uuid(&b.workflow)]),
    }
}

#[tokio::test]
async fn foreign_run_rows_are_invisible_unchangeable_and_undeletable_in_sql() {
    let app = TestApp::new().await;
    let a = fixture(&app, "runs-alpha").await;
    let b = fixture(&app, "runs-bravo").await;
    let (ta, tb) = (a.owner.tenant_uuid(), b.owner.tenant_uuid());
    let before = snapshot(&app, tb).await;
    let pool = app.db.app_pool(1).await;
    let admin = app.db.admin().await;
    for table in RUN_TABLES {
        let (column, ids) = theirs(table, &b);
        let foreign = count(
            &admin,
            &format!("SELECT count(*) FROM {table} WHERE {column} = ANY($1)"),
            vec![ids.clone().into()],
        )
        .await;
        assert!(foreign > 0, "{table}: tenant B has no rows");
        let tx = as_app(&pool, Some(ta), Some(a.owner.user_uuid())).await;
        // No WHERE clause at all: RLS alone must leave exactly tenant A's rows.
        let seen = count(&tx, &format!("SELECT count(*) FROM {table}"), vec![]).await;
        let own = count(
            &admin,
            &format!("SELECT count(*) FROM {table} WHERE tenant_id = $1"),
            vec![ta.into()],
        )
        .await;
        assert!(own > 0, "{table}: tenant A has no rows");
        assert_eq!(
            seen, own,
            "{table}: tenant A sees rows that are not its own"
        );
        let by_key = count(
            &tx,
            &format!("SELECT count(*) FROM {table} WHERE {column} = ANY($1)"),
            vec![ids.into()],
        )
        .await;
        assert_eq!(by_key, 0, "{table}: tenant B's rows found by {column}");
        tx.rollback().await.unwrap();
    }
    admin.close().await.unwrap();

    // Changing or deleting B's rows by key (the code that forgot its tenant filter)
    // touches none.
    for (table, set) in [
        (
            "workflow_runs",
            "status = 'cancelled', output = '\"pwned\"'",
        ),
        ("step_runs", "status = 'cancelled', output = '\"pwned\"'"),
        (
            "run_idempotency_keys",
            "expires_at = now() - interval '1 day'",
        ),
        ("workflow_reports", "total = 0"),
    ] {
        let (column, ids) = theirs(table, &b);
        let updated = attempt(
            &pool,
            &a.owner,
            &format!("UPDATE {table} SET {set} WHERE {column} = ANY($1)"),
            vec![ids.clone().into()],
        )
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert_eq!(updated, 0, "{table}: updated tenant B's rows");
        let deleted = attempt(
            &pool,
            &a.owner,
            &format!("DELETE FROM {table} WHERE {column} = ANY($1)"),
            vec![ids.into()],
        )
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert_eq!(deleted, 0, "{table}: deleted tenant B's rows");
    }
    assert_eq!(snapshot(&app, tb).await, before, "tenant B's rows changed");
}

#[tokio::test]
async fn rows_cannot_be_written_into_or_moved_to_another_tenants_run_tables() {
    let app = TestApp::new().await;
    let a = fixture(&app, "runs-charlie").await;
    let b = fixture(&app, "runs-delta").await;
    let tb = b.owner.tenant_uuid();
    let before = snapshot(&app, tb).await;
    let pool = app.db.app_pool(1).await;
    let new = || SqlValue::from(Uuid::now_v7());
    // Rows of tenant B pointing at B's own objects: only the tenant is wrong.
    let inserts: [(&str, &str, Vec<SqlValue>); 4] = [
        (
            "workflow_runs",
            "INSERT INTO workflow_runs (id, tenant_id, workflow_id, version_id, trigger_type) VALUES ($1, $2, $3, $4, 'manual')",
            vec![new(), tb.into(), uuid(&b.workflow).into(), uuid(&b.version).into()],
        ),
        (
            "step_runs",
            "INSERT INTO step_runs (id, tenant_id, run_id, step_key) VALUES ($1, $2, $3, 'forged')",
            vec![new(), tb.into(), uuid(&b.pending).into()],
        ),
        (
            "run_idempotency_keys",
            "INSERT INTO run_idempotency_keys (tenant_id, workflow_id, key, run_id, input_hash, expires_at) VALUES ($1, $2, 'forged', $3, decode('00', 'hex'), now() + interval '1 hour')",
            vec![tb.into(), uuid(&b.workflow).into(), uuid(&b.pending).into()],
        ),
        (
            "workflow_reports",
            "INSERT INTO workflow_reports (tenant_id, workflow_id, period, period_start, total) VALUES ($1, $2, 'day', '2020-01-01T00:00:00Z', 1)",
            vec![tb.into(), uuid(&b.workflow).into()],
        ),
    ];
    for (table, sql, values) in inserts {
        let err = attempt(&pool, &a.owner, sql, values)
            .await
            .expect_err(table);
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{table}: {err}");
    }
    // Moving an own row to tenant B is refused by the WITH CHECK.
    for table in RUN_TABLES {
        let err = attempt(
            &pool,
            &a.owner,
            &format!("UPDATE {table} SET tenant_id = $1"),
            vec![tb.into()],
        )
        .await
        .expect_err(table);
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{table}: {err}");
    }
    assert_eq!(snapshot(&app, tb).await, before, "tenant B's rows changed");
}

#[tokio::test]
async fn referencing_another_tenants_rows_fails_like_referencing_missing_ones() {
    let app = TestApp::new().await;
    let a = fixture(&app, "runs-echo").await;
    let b = fixture(&app, "runs-foxtrot").await;
    let (ta, tb) = (a.owner.tenant_uuid(), b.owner.tenant_uuid());
    let before = snapshot(&app, tb).await;
    let pool = app.db.app_pool(1).await;
    let new = || SqlValue::from(Uuid::now_v7());
    let nobody = || SqlValue::from(Uuid::now_v7());
    let key = || SqlValue::from(format!("probe-{}", Uuid::now_v7().simple()));
    let run_insert = |workflow: SqlValue, version: SqlValue, column: &str, value: SqlValue| {
        (
            format!("INSERT INTO workflow_runs (id, tenant_id, workflow_id, version_id, trigger_type, {column}) VALUES ($1, $2, $3, $4, 'manual', $5)"),
            vec![new(), ta.into(), workflow, version, value],
        )
    };
    let mut cases: Vec<(&str, String, Vec<SqlValue>, Vec<SqlValue>)> = Vec::new();
    for (what, column, foreign) in [
        ("workflow_runs.trigger_id", "trigger_id", uuid(&b.trigger)),
        ("workflow_runs.client_id", "client_id", uuid(&b.client)),
        (
            "workflow_runs.retry_of_id",
            "retry_of_id",
            uuid(&b.finished),
        ),
    ] {
        let (sql, foreign) = run_insert(
            uuid(&a.workflow).into(),
            uuid(&a.version).into(),
            column,
            foreign.into(),
        );
        let (_, missing) = run_insert(
            uuid(&a.workflow).into(),
            uuid(&a.version).into(),
            column,
            nobody(),
        );
        cases.push((what, sql, foreign, missing));
    }
    let plain = "INSERT INTO workflow_runs (id, tenant_id, workflow_id, version_id, trigger_type) VALUES ($1, $2, $3, $4, 'manual')";
    cases.extend([
        (
            "workflow_runs.workflow_id",
            plain.to_owned(),
            vec![new(), ta.into(), uuid(&b.workflow).into(), uuid(&a.version).into()],
            vec![new(), ta.into(), nobody(), uuid(&a.version).into()],
        ),
        (
            "workflow_runs.version_id",
            plain.to_owned(),
            vec![new(), ta.into(), uuid(&a.workflow).into(), uuid(&b.version).into()],
            vec![new(), ta.into(), uuid(&a.workflow).into(), nobody()],
        ),
        (
            "workflow_runs.client_id on update",
            "UPDATE workflow_runs SET client_id = $1 WHERE id = $2".to_owned(),
            vec![uuid(&b.client).into(), uuid(&a.pending).into()],
            vec![nobody(), uuid(&a.pending).into()],
        ),
        (
            "step_runs.run_id",
            "INSERT INTO step_runs (id, tenant_id, run_id, step_key) VALUES ($1, $2, $3, 'probe')".to_owned(),
            vec![new(), ta.into(), uuid(&b.pending).into()],
            vec![new(), ta.into(), nobody()],
        ),
        (
            "step_runs.step_id",
            "INSERT INTO step_runs (id, tenant_id, run_id, step_id, step_key) VALUES ($1, $2, $3, $4, 'probe')".to_owned(),
            vec![new(), ta.into(), uuid(&a.pending).into(), uuid(&b.steps[0]).into()],
            vec![new(), ta.into(), uuid(&a.pending).into(), nobody()],
        ),
        (
            "step_runs.run_id on update",
            "UPDATE step_runs SET run_id = $1 WHERE id = $2".to_owned(),
            vec![uuid(&b.pending).into(), uuid(&a.finished_steps[0]).into()],
            vec![nobody(), uuid(&a.finished_steps[0]).into()],
        ),
        (
            "run_idempotency_keys.workflow_id",
            "INSERT INTO run_idempotency_keys (tenant_id, workflow_id, key, run_id, input_hash, expires_at) VALUES ($1, $2, $3, $4, decode('00', 'hex'), now() + interval '1 hour')".to_owned(),
            vec![ta.into(), uuid(&b.workflow).into(), key(), uuid(&a.pending).into()],
            vec![ta.into(), nobody(), key(), uuid(&a.pending).into()],
        ),
        (
            // A deferred constraint: it fails at the commit.
            "run_idempotency_keys.run_id",
            "INSERT INTO run_idempotency_keys (tenant_id, workflow_id, key, run_id, input_hash, expires_at) VALUES ($1, $2, $3, $4, decode('00', 'hex'), now() + interval '1 hour')".to_owned(),
            vec![ta.into(), uuid(&a.workflow).into(), key(), uuid(&b.pending).into()],
            vec![ta.into(), uuid(&a.workflow).into(), key(), nobody()],
        ),
        (
            "workflow_reports.workflow_id",
            "INSERT INTO workflow_reports (tenant_id, workflow_id, period, period_start) VALUES ($1, $2, 'day', '2020-01-01T00:00:00Z')".to_owned(),
            vec![ta.into(), uuid(&b.workflow).into()],
            vec![ta.into(), nobody()],
        ),
    ]);
    for (what, sql, foreign, missing) in cases {
        fails_like_a_missing_row(&pool, &a.owner, what, &sql, foreign, missing).await;
    }
    // The same statements work with tenant A's own rows, so the failures above are
    // about the foreign reference and nothing else.
    let own_run = Uuid::now_v7();
    let own = attempt(
        &pool,
        &a.owner,
        "INSERT INTO workflow_runs (id, tenant_id, workflow_id, version_id, trigger_type, trigger_id, client_id, retry_of_id) VALUES ($1, $2, $3, $4, 'manual', $5, $6, $7)",
        vec![
            own_run.into(),
            ta.into(),
            uuid(&a.workflow).into(),
            uuid(&a.version).into(),
            uuid(&a.trigger).into(),
            uuid(&a.client).into(),
            uuid(&a.finished).into(),
        ],
    )
    .await;
    assert_eq!(own.unwrap(), 1);
    for (sql, values) in [
        (
            "INSERT INTO step_runs (id, tenant_id, run_id, step_id, step_key) VALUES ($1, $2, $3, $4, 'probe')",
            vec![new(), ta.into(), own_run.into(), uuid(&a.steps[0]).into()],
        ),
        (
            "INSERT INTO run_idempotency_keys (tenant_id, workflow_id, key, run_id, input_hash, expires_at) VALUES ($1, $2, $3, $4, decode('00', 'hex'), now() + interval '1 hour')",
            vec![ta.into(), uuid(&a.workflow).into(), key(), own_run.into()],
        ),
        (
            "INSERT INTO workflow_reports (tenant_id, workflow_id, period, period_start) VALUES ($1, $2, 'day', '2020-01-01T00:00:00Z')",
            vec![ta.into(), uuid(&a.workflow).into()],
        ),
    ] {
        assert_eq!(attempt(&pool, &a.owner, sql, values).await.unwrap(), 1, "{sql}");
    }
    assert_eq!(snapshot(&app, tb).await, before, "tenant B's rows changed");
}

#[tokio::test]
async fn another_tenants_run_ids_are_not_found_like_made_up_ones() {
    let app = TestApp::new().await;
    let a = fixture(&app, "runs-golf").await;
    let b = fixture(&app, "runs-hotel").await;
    let before = snapshot(&app, b.owner.tenant_uuid()).await;
    let token = Some(a.owner.token.as_str());

    let node = "query($id: ID!) { node(id: $id) { id } }";
    let mut ids = vec![b.finished.clone(), b.running.clone(), b.pending.clone()];
    ids.extend(b.finished_steps.iter().cloned());
    for id in &ids {
        let found = app
            .ok(Some(&b.owner.token), node, json!({ "id": id }))
            .await;
        assert_eq!(
            found["node"]["id"],
            id.as_str(),
            "tenant B finds its own {id}"
        );
        for probe in [id.clone(), made_up(id)] {
            let (_, body) = app.post(token, node, json!({ "id": probe })).await;
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "NOT_FOUND",
                "node({probe}): {body:#}"
            );
            assert_eq!(body["data"], Value::Null, "node({probe}): {body:#}");
        }
    }
    let data = app
        .ok(
            token,
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            json!({ "ids": ids }),
        )
        .await;
    assert_eq!(data["nodes"], json!(vec![Value::Null; ids.len()]));

    // Operators' mutations with tenant B's ids, as the owner of A.
    let as_owner: Vec<(&str, &String)> = vec![
        (
            "mutation($id: ID!) { cancelRun(input: {id: $id}) { run { id } } }",
            &b.running,
        ),
        (
            "mutation($id: ID!) { cancelRun(input: {id: $id}) { run { id } } }",
            &b.pending,
        ),
        (
            "mutation($id: ID!) { retryRun(input: {id: $id}) { run { id } } }",
            &b.finished,
        ),
        (
            "mutation($id: ID!) { startRun(input: {workflowId: $id}) { run { id } } }",
            &b.workflow,
        ),
        (
            "mutation($id: ID!) { startRun(input: {workflowId: $id, idempotencyKey: \"order-1\", input: {n: 1}}) { run { id } deduplicated } }",
            &b.workflow,
        ),
    ];
    for (mutation, id) in &as_owner {
        for probe in [(*id).clone(), made_up(id)] {
            let (_, body) = app.post(token, mutation, json!({ "id": probe })).await;
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "NOT_FOUND",
                "{mutation} with {probe}: {body:#}"
            );
        }
    }
    // Tenant B's version named for tenant A's workflow is a bad versionId, worded as for
    // a version that does not exist.
    let start = "mutation($w: ID!, $v: ID!) { startRun(input: {workflowId: $w, versionId: $v}) { run { id } userErrors { code field message } } }";
    let foreign = app
        .ok(token, start, json!({ "w": a.workflow, "v": b.version }))
        .await;
    let missing = app
        .ok(
            token,
            start,
            json!({ "w": a.workflow, "v": made_up(&b.version) }),
        )
        .await;
    assert_eq!(foreign["startRun"]["run"], Value::Null);
    assert_eq!(foreign["startRun"]["userErrors"][0]["field"], "versionId");
    assert_eq!(foreign, missing);

    // Runner calls with A's runner key on B's runs, even with B's real lease token.
    let step_call = |op: &str| {
        format!("mutation($id: ID!, $t: ID!) {{ {op}(input: {{runId: $id, token: $t, stepKey: \"a\", payload: {{}}}}) {{ stepRun {{ id }} }} }}")
    };
    let run_call = |op: &str| {
        format!("mutation($id: ID!, $t: ID!) {{ {op}(input: {{runId: $id, token: $t, payload: {{}}}}) {{ run {{ id }} }} }}")
    };
    let runner_calls = vec![
        "mutation($id: ID!, $t: ID!) { renewLease(input: {runId: $id, token: $t}) { run { id } } }"
            .to_owned(),
        step_call("startStep"),
        step_call("completeStep"),
        step_call("failStep"),
        step_call("skipStep"),
        run_call("completeRun"),
        run_call("failRun"),
    ];
    for mutation in &runner_calls {
        for run in [&b.running, &b.pending, &b.finished] {
            for probe in [run.clone(), made_up(run)] {
                let (_, body) = app
                    .post(
                        Some(&a.runner),
                        mutation,
                        json!({ "id": probe, "t": b.lease }),
                    )
                    .await;
                assert_eq!(
                    body["errors"][0]["extensions"]["code"], "NOT_FOUND",
                    "{mutation} with {probe}: {body:#}"
                );
            }
        }
    }
    assert_eq!(
        snapshot(&app, b.owner.tenant_uuid()).await,
        before,
        "tenant B's rows changed"
    );
    // Tenant B's worker still holds its lease: nothing A did reached it.
    let ok = step(
        &app,
        &b.runner,
        "startStep",
        &b.running,
        &b.lease,
        "a",
        json!({}),
    )
    .await;
    assert_eq!(ok["stepRun"]["status"], "RUNNING", "{ok:#}");
}

#[tokio::test]
async fn lists_and_claims_never_reach_another_tenants_runs() {
    let app = TestApp::new().await;
    let a = fixture(&app, "runs-india").await;
    let b = fixture(&app, "runs-juliet").await;
    let token = Some(a.owner.token.as_str());
    let data = app
        .ok(
            token,
            "{ runs(first: 100) { totalCount nodes { id workflow { id } stepRuns { id } } } workflows(first: 100) { nodes { id runs(first: 50) { totalCount nodes { id } } } } }",
            json!({}),
        )
        .await;
    let text_of = data.to_string();
    let mut foreign = vec![&b.finished, &b.running, &b.pending, &b.workflow];
    foreign.extend(&b.finished_steps);
    for id in foreign {
        assert!(
            !text_of.contains(id.as_str()),
            "tenant A's lists show {id}: {data:#}"
        );
    }
    assert_eq!(data["runs"]["totalCount"], 3, "{data:#}");
    assert_eq!(data["workflows"]["nodes"][0]["runs"]["totalCount"], 3);
    // A filter naming B's workflow finds nothing, as for one that does not exist; a
    // paged Workflow.runs with a filter (the non-batched path) shows only A's runs.
    let filtered = "query($w: ID!) { runs(filter: {workflow: $w}) { totalCount nodes { id } } }";
    let foreign = app.ok(token, filtered, json!({ "w": b.workflow })).await;
    let missing = app
        .ok(token, filtered, json!({ "w": made_up(&b.workflow) }))
        .await;
    assert_eq!(foreign, missing);
    assert_eq!(foreign["runs"]["totalCount"], 0);
    let own = app
        .ok(Some(&b.owner.token), filtered, json!({ "w": b.workflow }))
        .await;
    assert_eq!(
        own["runs"]["totalCount"], 3,
        "the filter does find B's runs for B"
    );
    let data = app
        .ok(
            token,
            "query($w: ID!) { node(id: $w) { ... on Workflow { runs(filter: {status: [PENDING, RUNNING, SUCCEEDED]}) { totalCount nodes { id } } } } }",
            json!({ "w": a.workflow }),
        )
        .await;
    let ids: Vec<String> = data["node"]["runs"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| text(&n["id"]))
        .collect();
    let mut want = vec![a.finished.clone(), a.running.clone(), a.pending.clone()];
    let mut got = ids.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    // A's runner claims A's pending run, never B's; B's runner then claims B's.
    let leases = claim(&app, &a.runner, 100).await;
    let claimed: Vec<String> = leases.iter().map(|l| text(&l["run"]["id"])).collect();
    assert_eq!(claimed, vec![a.pending.clone()]);
    assert!(claim(&app, &a.runner, 100).await.is_empty());
    let status = app
        .ok(
            Some(&b.owner.token),
            "query($id: ID!) { node(id: $id) { ... on WorkflowRun { status } } }",
            json!({ "id": b.pending }),
        )
        .await;
    assert_eq!(status["node"]["status"], "PENDING");
    let leases = claim(&app, &b.runner, 100).await;
    let claimed: Vec<String> = leases.iter().map(|l| text(&l["run"]["id"])).collect();
    assert_eq!(claimed, vec![b.pending.clone()]);
    // Even with every lease expired, A's runner finds nothing of B's to re-claim.
    let admin = app.db.admin().await;
    admin
        .execute(stmt(
            "UPDATE workflow_runs SET lease_expires_at = now() - interval '1 minute' WHERE lease_expires_at IS NOT NULL",
            [],
        ))
        .await
        .unwrap();
    admin.close().await.unwrap();
    let leases = claim(&app, &a.runner, 100).await;
    let mut claimed: Vec<String> = leases.iter().map(|l| text(&l["run"]["id"])).collect();
    claimed.sort();
    let mut want = vec![a.running.clone(), a.pending.clone()];
    want.sort();
    assert_eq!(claimed, want);
}
