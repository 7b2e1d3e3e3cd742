//! The seeds' fields (issue 20, §4; migration 000033): `updated_at` on every table
//! whose rows change, kept by the touch trigger; workflow steps' `description` and
//! dense `order`; runs' `client` and `metadata`; seed 003's report objects; and
//! invitation tokens unique across tenants. Where a new column carries tenant data,
//! another tenant can neither read, write nor probe it.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Duration, Utc};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::isolation_workflows::uuid;
use crate::runs::{active_workflow, claim, end_run};
use crate::support::{as_app, Member, TestApp, TestDb};

/// Tables whose rows are never updated once written (migration 000033 says why).
const APPEND_ONLY: [&str; 11] = [
    "agent_activities",
    "agent_label_moves",
    "agent_usage",
    "approval_decisions",
    "audit_events",
    "connection_secrets",
    "execution_logs",
    "log_outbox",
    "process_promotions",
    "skill_installations",
    "step_attempts",
];

const GRAPH: &str = "mutation($v: ID!, $s: [WorkflowStepInput!]!, $t: [WorkflowTransitionInput!]) { saveWorkflowGraph(input: {versionId: $v, steps: $s, transitions: $t}) { userErrors { field code message } } }";
const STEPS: &str = "query($v: ID!) { node(id: $v) { ... on WorkflowVersion { steps { key order description } } } }";
const START: &str = "mutation($w: ID!, $v: ID, $m: JSON, $c: ID, $sim: Boolean) { startRun(input: {workflowId: $w, versionId: $v, metadata: $m, clientId: $c, simulation: $sim}) { run { id metadata client { id name } stepRuns { stepKey } } userErrors { field code message } } }";

#[tokio::test]
async fn every_table_whose_rows_change_has_a_touched_updated_at() {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let rows = admin
        .query_all(stmt(
            "SELECT c.relname::text AS name, \
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                 AND a.attname = 'updated_at' AND NOT a.attisdropped \
                 AND a.attnotnull AND a.atthasdef) AS has_column, \
               EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid \
                 AND t.tgfoid = 'app.touch_updated_at'::regproc \
                 AND t.tgtype & 2 = 2 AND t.tgtype & 16 = 16) AS touched, \
               has_any_column_privilege('trellis_app', c.oid, 'UPDATE') AS app_updates \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') \
               AND c.relname <> 'seaql_migrations' ORDER BY 1",
            [],
        ))
        .await
        .unwrap();
    assert!(rows.len() > 40, "{} tables", rows.len());
    let mut wrong = vec![];
    for row in rows {
        let name: String = row.try_get("", "name").unwrap();
        let has_column: bool = row.try_get("", "has_column").unwrap();
        let touched: bool = row.try_get("", "touched").unwrap();
        let app_updates: bool = row.try_get("", "app_updates").unwrap();
        if APPEND_ONLY.contains(&name.as_str()) {
            // Append-only in fact: the server cannot update them.
            if app_updates || has_column {
                wrong.push(format!("{name}: listed as append-only but updatable"));
            }
        } else if !(has_column && touched) {
            wrong.push(format!(
                "{name}: updated_at column {has_column}, touch trigger {touched}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A notification written long ago moves its `updatedAt` when it is read; the new
/// trigger keeps it, the server never sets it.
#[tokio::test]
async fn updated_at_moves_when_a_row_changes() {
    let app = TestApp::new().await;
    let owner = app.owner("touch").await;
    let admin = app.db.admin().await;
    admin
        .execute(stmt(
            "INSERT INTO notifications (id, tenant_id, user_id, title, body, created_at, updated_at) \
             VALUES ($1, $2, $3, 'Hello', 'Body', '2001-01-01T00:00:00Z', '2001-01-01T00:00:00Z')",
            [
                Uuid::now_v7().into(),
                owner.tenant_uuid().into(),
                owner.user_uuid().into(),
            ],
        ))
        .await
        .unwrap();
    let inbox = "{ notifications { readAt createdAt updatedAt } }";
    let before = app.ok(Some(&owner.token), inbox, json!({})).await;
    assert_eq!(
        before["notifications"][0]["updatedAt"], "2001-01-01T00:00:00+00:00",
        "{before:#}"
    );
    let started = Utc::now();
    let marked = app
        .ok(
            Some(&owner.token),
            "mutation { markNotificationsRead(input: {}) { marked } }",
            json!({}),
        )
        .await;
    assert_eq!(marked["markNotificationsRead"]["marked"], 1);
    let after = app.ok(Some(&owner.token), inbox, json!({})).await;
    let note = &after["notifications"][0];
    assert_eq!(note["createdAt"], "2001-01-01T00:00:00+00:00");
    let updated: DateTime<Utc> = note["updatedAt"].as_str().unwrap().parse().unwrap();
    assert!(updated >= started - Duration::seconds(5), "{note:#}");

    // The types that expose createdAt expose updatedAt too.
    let key = app.api_key(&owner, "READ").await.1;
    let data = app
        .ok(
            Some(&owner.token),
            "query($k: ID!) { viewer { user { createdAt updatedAt } } node(id: $k) { ... on ApiKey { createdAt updatedAt } } }",
            json!({ "k": key }),
        )
        .await;
    assert!(data["viewer"]["user"]["updatedAt"].is_string(), "{data:#}");
    assert!(data["node"]["updatedAt"].is_string(), "{data:#}");
}

/// A workflow with a draft version; returns (workflow, version).
async fn draft(app: &TestApp, owner: &Member, key: &str, client: Option<&str>) -> (String, String) {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($k: String!, $c: ID) { createWorkflow(input: {key: $k, name: $k, clientId: $c}) { workflow { id versions { id } } userErrors { message } } }",
            json!({ "k": key, "c": client }),
        )
        .await;
    let workflow = &data["createWorkflow"]["workflow"];
    (
        workflow["id"].as_str().unwrap().to_owned(),
        workflow["versions"][0]["id"].as_str().unwrap().to_owned(),
    )
}

fn delay(key: &str, order: Option<i32>, description: Option<&str>) -> Value {
    json!({ "key": key, "name": key, "type": "DELAY", "config": { "seconds": 1 },
            "order": order, "description": description })
}

#[tokio::test]
async fn steps_keep_a_description_and_a_dense_order() {
    let app = TestApp::new().await;
    let owner = app.owner("step-order").await;
    let (workflow, version) = draft(&app, &owner, "ordered", None).await;
    // Sent as c, a, b, d: c asks for 50, a for 0, b for none (its index, 2), d for 2
    // (a tie with b, after it in the input).
    let steps = json!([
        delay(
            "c",
            Some(50),
            Some("  Last, whatever its place in the input  ")
        ),
        delay("a", Some(0), Some("First")),
        delay("b", None, None),
        delay("d", Some(2), None),
    ]);
    let edges =
        json!([{ "from": "a", "to": "b" }, { "from": "b", "to": "d" }, { "from": "d", "to": "c" }]);
    let saved = app
        .ok(
            Some(&owner.token),
            GRAPH,
            json!({ "v": version, "s": steps, "t": edges }),
        )
        .await;
    assert_eq!(saved["saveWorkflowGraph"]["userErrors"], json!([]));
    let read = app
        .ok(Some(&owner.token), STEPS, json!({ "v": version }))
        .await;
    assert_eq!(
        read["node"]["steps"],
        json!([
            { "key": "a", "order": 0, "description": "First" },
            { "key": "b", "order": 1, "description": "" },
            { "key": "d", "order": 2, "description": "" },
            { "key": "c", "order": 3, "description": "Last, whatever its place in the input" },
        ])
    );

    // A draft made from it keeps both; a run's steps follow the order.
    let copy = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!, $v: ID!) { createDraftVersion(input: {workflowId: $w, fromVersionId: $v}) { version { id } } }",
            json!({ "w": workflow, "v": version }),
        )
        .await;
    let copy = copy["createDraftVersion"]["version"]["id"].clone();
    let copied = app
        .ok(Some(&owner.token), STEPS, json!({ "v": copy }))
        .await;
    assert_eq!(copied["node"]["steps"], read["node"]["steps"]);
    let run = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!, $v: ID!) { startRun(input: {workflowId: $w, versionId: $v, simulation: true}) { run { stepRuns { stepKey } } userErrors { message } } }",
            json!({ "w": workflow, "v": version }),
        )
        .await;
    let keys: Vec<&str> = run["startRun"]["run"]["stepRuns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stepKey"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a", "b", "d", "c"]);

    // Bad values are userErrors on the step's field, and nothing is written.
    let bad = json!([
        delay("a", Some(-1), None),
        delay("b", None, Some(&"x".repeat(4001))),
    ]);
    let refused = app
        .ok(
            Some(&owner.token),
            GRAPH,
            json!({ "v": version, "s": bad, "t": [{ "from": "a", "to": "b" }] }),
        )
        .await;
    let fields: Vec<&str> = refused["saveWorkflowGraph"]["userErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["steps.a.order", "steps.b.description"],
        "{refused:#}"
    );
    let unchanged = app
        .ok(Some(&owner.token), STEPS, json!({ "v": version }))
        .await;
    assert_eq!(unchanged, read);

    // Another tenant can neither read, find nor change the steps' new fields.
    let other = app.owner("step-order-b").await;
    assert_eq!(
        app.error_code(Some(&other.token), STEPS, json!({ "v": version }))
            .await,
        "NOT_FOUND"
    );
    let pool = app.db.app_pool(1).await;
    let tx = as_app(&pool, Some(other.tenant_uuid()), Some(other.user_uuid())).await;
    let found = tx
        .query_one(stmt(
            "SELECT count(*) AS n FROM workflow_steps WHERE description = 'First'",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.try_get::<i64>("", "n").unwrap(), 0);
    let changed = tx
        .execute(stmt(
            "UPDATE workflow_steps SET description = 'mine', sort_order = 9 WHERE version_id = $1",
            [uuid(&version).into()],
        ))
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 0);
}

async fn client(app: &TestApp, owner: &Member, name: &str) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($n: String!) { createClient(input: {name: $n}) { client { id } } }",
            json!({ "n": name }),
        )
        .await;
    data["createClient"]["client"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn runs_carry_their_client_and_metadata() {
    let app = TestApp::new().await;
    let alice = app.owner("meta-a").await;
    let bob = app.owner("meta-b").await;
    let acme = client(&app, &alice, "Acme").await;
    let globex = client(&app, &alice, "Globex").await;
    let bobs = client(&app, &bob, "Bob's client").await;
    let (workflow, version) = draft(&app, &alice, "meta", Some(&acme)).await;
    app.ok(
        Some(&alice.token),
        GRAPH,
        json!({ "v": version, "s": [delay("a", None, None)], "t": [] }),
    )
    .await;
    let start = |metadata: Value, client: Option<&str>| {
        let vars = json!({ "w": workflow, "v": version, "m": metadata, "c": client, "sim": true });
        let token = alice.token.clone();
        let app = &app;
        async move { app.ok(Some(&token), START, vars).await["startRun"].clone() }
    };

    let metadata = json!({ "simulation": true, "inputData": { "userId": "123" } });
    let started = start(metadata.clone(), None).await;
    assert_eq!(started["userErrors"], json!([]), "{started:#}");
    assert_eq!(started["run"]["metadata"], metadata);
    // Without a client named, the workflow's.
    assert_eq!(started["run"]["client"]["name"], "Acme");
    let named = start(Value::Null, Some(&globex)).await;
    assert_eq!(named["run"]["client"]["name"], "Globex");
    assert_eq!(named["run"]["metadata"], json!({}));

    // Bad metadata and clients are userErrors naming the field.
    for (metadata, client, field) in [
        (json!([1, 2]), None, "metadata"),
        (json!("text"), None, "metadata"),
        (json!({ "big": "x".repeat(16 * 1024) }), None, "metadata"),
        (json!({}), Some(bobs.as_str()), "clientId"),
    ] {
        let refused = start(metadata, client).await;
        assert_eq!(refused["run"], Value::Null, "{refused:#}");
        assert_eq!(refused["userErrors"][0]["field"], field, "{refused:#}");
        assert_eq!(refused["userErrors"][0]["code"], "BAD_USER_INPUT");
    }
    // Another tenant's client answers exactly like one that never existed.
    let made_up = crate::isolation_workflows::made_up(&bobs);
    let foreign = start(json!({}), Some(&bobs)).await;
    let unknown = start(json!({}), Some(&made_up)).await;
    assert_eq!(foreign["userErrors"], unknown["userErrors"]);

    // Bob cannot read, change or find Alice's run metadata, through SQL either.
    let run_id = started["run"]["id"].as_str().unwrap().to_owned();
    let seen = app
        .error_code(
            Some(&bob.token),
            "query($id: ID!) { node(id: $id) { ... on WorkflowRun { metadata } } }",
            json!({ "id": run_id }),
        )
        .await;
    assert_eq!(seen, "NOT_FOUND");
    let pool = app.db.app_pool(1).await;
    let tx = as_app(&pool, Some(bob.tenant_uuid()), Some(bob.user_uuid())).await;
    let found = tx
        .query_one(stmt(
            "SELECT count(*) AS n FROM workflow_runs WHERE metadata @> '{\"inputData\": {\"userId\": \"123\"}}'",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.try_get::<i64>("", "n").unwrap(), 0);
    let changed = tx
        .execute(stmt(
            "UPDATE workflow_runs SET metadata = '{\"hijacked\": true}' WHERE id = $1",
            [uuid(&run_id).into()],
        ))
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 0);
    tx.commit().await.unwrap();
    let tx = as_app(&pool, Some(alice.tenant_uuid()), Some(alice.user_uuid())).await;
    let row = tx
        .query_one(stmt(
            "SELECT metadata FROM workflow_runs WHERE id = $1",
            [uuid(&run_id).into()],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<Value>("", "metadata").unwrap(), metadata);
}

#[tokio::test]
async fn a_retry_keeps_the_metadata_and_client() {
    let app = TestApp::new().await;
    let owner = app.owner("meta-retry").await;
    let acme = client(&app, &owner, "Acme").await;
    let workflow = active_workflow(&app, &owner, "retry-meta").await;
    let started = app
        .ok(
            Some(&owner.token),
            START,
            json!({ "w": workflow, "m": { "ticket": 42 }, "c": acme }),
        )
        .await;
    let run = started["startRun"]["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { cancelRun(input: {id: $id}) { userErrors { code } } }",
        json!({ "id": run }),
    )
    .await;
    let retried = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { retryRun(input: {id: $id}) { run { metadata client { name } } userErrors { message } } }",
            json!({ "id": run }),
        )
        .await;
    assert_eq!(
        retried["retryRun"]["run"],
        json!({ "metadata": { "ticket": 42 }, "client": { "name": "Acme" } }),
        "{retried:#}"
    );
}

const REPORTS: &str = "query($w: ID!, $p: ReportPeriod!, $from: DateTime!, $to: DateTime!) { node(id: $w) { ... on Workflow { reports(period: $p, from: $from, to: $to) { reportType period periodStart periodEnd metrics } stats(period: $p, from: $from, to: $to) { periodStart total succeeded failed cancelled } } } }";

#[tokio::test]
async fn reports_are_the_seed_objects_over_the_rollups_and_runs() {
    let app = TestApp::new().await;
    let owner = app.owner("seed-reports").await;
    let other = app.owner("seed-reports-b").await;
    let workflow = active_workflow(&app, &owner, "reported").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let mut runs = vec![];
    for _ in 0..3 {
        let started = app
            .ok(Some(&owner.token), START, json!({ "w": workflow }))
            .await;
        runs.push(
            started["startRun"]["run"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let leases = claim(&app, &runner, 2).await;
    assert_eq!(leases.len(), 2);
    let mut ended = vec![];
    for (lease, op) in leases.iter().zip(["completeRun", "failRun"]) {
        let run = lease["run"]["id"].as_str().unwrap();
        let token = lease["token"].as_str().unwrap();
        let payload = json!({ "done": true });
        assert_eq!(
            end_run(&app, &runner, op, run, token, payload).await["userErrors"],
            json!([])
        );
        ended.push((run.to_owned(), op));
    }

    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let tomorrow = today + Duration::days(1);
    let vars = json!({ "w": workflow, "p": "DAY", "from": today, "to": tomorrow });
    let data = app.ok(Some(&owner.token), REPORTS, vars.clone()).await;
    let reports = data["node"]["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "{data:#}");
    let report = &reports[0];
    assert_eq!(report["reportType"], "DAILY");
    assert_eq!(report["period"], "DAY");
    let start: DateTime<Utc> = report["periodStart"].as_str().unwrap().parse().unwrap();
    let end: DateTime<Utc> = report["periodEnd"].as_str().unwrap().parse().unwrap();
    assert_eq!((start, end), (today, tomorrow));
    let metrics = &report["metrics"];
    assert_eq!(metrics["totalExecutions"], 3, "{metrics:#}");
    assert_eq!(metrics["completedExecutions"], 1);
    assert_eq!(metrics["failedExecutions"], 1);
    assert_eq!(metrics["cancelledExecutions"], 0);
    assert!(metrics["averageExecutionTime"].is_number(), "{metrics:#}");
    // The same figures as `stats`.
    let stats = &data["node"]["stats"][0];
    assert_eq!(stats["total"], metrics["totalExecutions"]);
    assert_eq!(stats["succeeded"], metrics["completedExecutions"]);
    for (period, kind) in [("WEEK", "WEEKLY"), ("MONTH", "MONTHLY")] {
        let vars = json!({ "w": workflow, "p": period, "from": today, "to": tomorrow });
        let data = app.ok(Some(&owner.token), REPORTS, vars).await;
        assert_eq!(data["node"]["reports"][0]["reportType"], kind);
        assert_eq!(data["node"]["reports"][0]["metrics"]["totalExecutions"], 3);
    }

    // Each run's EXECUTION report.
    let run_report = "query($id: ID!) { node(id: $id) { ... on WorkflowRun { status report { reportType period periodStart periodEnd metrics } } } }";
    for (run, op) in &ended {
        let data = app
            .ok(Some(&owner.token), run_report, json!({ "id": run }))
            .await;
        let report = &data["node"]["report"];
        assert_eq!(report["reportType"], "EXECUTION", "{data:#}");
        assert_eq!(report["period"], Value::Null);
        assert!(report["periodEnd"].is_string(), "{data:#}");
        let metrics = &report["metrics"];
        assert_eq!(metrics["totalSteps"], 3, "{data:#}");
        assert!(metrics["executionTime"].is_number(), "{data:#}");
        assert_eq!(metrics["simulation"], false);
        let settled = metrics["completedSteps"].as_i64().unwrap()
            + metrics["skippedSteps"].as_i64().unwrap()
            + metrics["cancelledSteps"].as_i64().unwrap()
            + metrics["failedSteps"].as_i64().unwrap();
        assert_eq!(settled, 3, "{op}: {data:#}");
        assert_eq!(metrics["pendingSteps"], 0, "{op}: {data:#}");
    }
    let pending = runs
        .iter()
        .find(|r| ended.iter().all(|(e, _)| e != *r))
        .unwrap();
    let data = app
        .ok(Some(&owner.token), run_report, json!({ "id": pending }))
        .await;
    let report = &data["node"]["report"];
    assert_eq!(report["periodEnd"], Value::Null, "{data:#}");
    assert_eq!(report["metrics"]["pendingSteps"], 3);
    assert_eq!(report["metrics"]["executionTime"], Value::Null);

    // Another tenant sees no reports of this workflow: it is not there for them.
    assert_eq!(
        app.error_code(Some(&other.token), REPORTS, vars).await,
        "NOT_FOUND"
    );

    // A page of runs with their reports costs the same statements at any size.
    let page = "query($n: Int!) { runs(first: $n) { edges { node { id report { metrics } } } } }";
    let mut counts = vec![];
    for n in [1, 2, 3] {
        let before = app.state.statements.load(Ordering::Relaxed);
        let data = app.ok(Some(&owner.token), page, json!({ "n": n })).await;
        counts.push(app.state.statements.load(Ordering::Relaxed) - before);
        let edges = data["runs"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), n as usize);
        for edge in edges {
            assert_eq!(edge["node"]["report"]["metrics"]["totalSteps"], 3);
        }
    }
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "statements per request changed: {counts:?}"
    );
}

/// An invitation token's hash names one invitation in the whole database: a second
/// row with the same hash is refused in any tenant, as the owner and as the
/// application role. The RLS doctor admits that one index by name.
#[tokio::test]
async fn invitation_tokens_are_unique_across_tenants() {
    let app = TestApp::new().await;
    let alice = app.owner("tok-a").await;
    let bob = app.owner("tok-b").await;
    app.ok(
        Some(&alice.token),
        "mutation { inviteMember(input: {email: \"pending@x.test\", role: VIEWER}) { token } }",
        json!({}),
    )
    .await;
    let admin = app.db.admin().await;
    let hash: Vec<u8> = admin
        .query_one(stmt(
            "SELECT token_hash FROM invitations WHERE tenant_id = $1",
            [alice.tenant_uuid().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "token_hash")
        .unwrap();
    let insert = "INSERT INTO invitations (id, tenant_id, email, role, token_hash, expires_at) \
                  VALUES ($1, $2, 'other@x.test', 'viewer', $3, now() + interval '1 day')";
    let values = || -> [sea_orm::Value; 3] {
        [
            Uuid::now_v7().into(),
            bob.tenant_uuid().into(),
            hash.clone().into(),
        ]
    };
    let err = admin.execute(stmt(insert, values())).await.unwrap_err();
    assert!(
        err.to_string().contains("invitations_token_hash_key"),
        "{err}"
    );
    let pool = app.db.app_pool(1).await;
    let tx = as_app(&pool, Some(bob.tenant_uuid()), Some(bob.user_uuid())).await;
    let err = tx.execute(stmt(insert, values())).await.unwrap_err();
    assert!(
        err.to_string().contains("invitations_token_hash_key"),
        "{err}"
    );
    drop(tx);
    // Another value goes in; the doctor passes with the named exception.
    let mut fresh = values();
    fresh[2] = vec![7u8; 32].into();
    admin.execute(stmt(insert, fresh)).await.unwrap();
    let report = trellis_core::doctor::examine(&app.db.app_pool(1).await)
        .await
        .unwrap();
    assert!(report.is_healthy(), "{report}");
}

/// The doctor's exception is one index on one table: the same kind of index anywhere
/// else is still reported.
#[tokio::test]
async fn the_doctor_admits_no_other_global_unique() {
    let db = TestDb::new().await;
    db.admin()
        .await
        .execute_unprepared(
            "CREATE UNIQUE INDEX api_keys_global_name_key ON api_keys (name);
             ALTER INDEX invitations_token_hash_key RENAME TO invitations_token_hash_key2;",
        )
        .await
        .unwrap();
    let report = trellis_core::doctor::examine(&db.app_pool(1).await)
        .await
        .unwrap();
    let failed: Vec<String> = report
        .failures()
        .map(|f| format!("{}: {}", f.subject, f.check))
        .collect();
    assert_eq!(
        failed,
        [
            "table api_keys: every unique constraint includes tenant_id",
            "table invitations: every unique constraint includes tenant_id",
        ],
        "{report}"
    );
}

/// The uniqueness rules docs/api.md states ("Deletion and restore") are the schema's:
/// keys (and tenant slugs) unique among live rows, API key names among unrevoked keys,
/// secret names and trigger keys per tenant outright.
#[tokio::test]
async fn key_uniqueness_is_what_the_docs_say() {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    for (index, columns, predicate) in [
        (
            "workflows_tenant_key_key",
            "(tenant_id, key)",
            Some("(deleted_at IS NULL)"),
        ),
        (
            "processes_tenant_key_key",
            "(tenant_id, key)",
            Some("(deleted_at IS NULL)"),
        ),
        (
            "agents_tenant_slug_key",
            "(tenant_id, slug)",
            Some("(deleted_at IS NULL)"),
        ),
        (
            "apps_tenant_key_key",
            "(tenant_id, key)",
            Some("(deleted_at IS NULL)"),
        ),
        (
            "connections_tenant_name_key",
            "(tenant_id, name)",
            Some("(deleted_at IS NULL)"),
        ),
        (
            "api_keys_active_name_key",
            "(tenant_id, name)",
            Some("(revoked_at IS NULL)"),
        ),
        ("tenants_slug_key", "(slug)", Some("(deleted_at IS NULL)")),
        ("secrets_tenant_name_key", "(tenant_id, name)", None),
        ("triggers_tenant_key_key", "(tenant_id, key)", None),
        ("invitations_token_hash_key", "(token_hash)", None),
    ] {
        let row = admin
            .query_one(stmt(
                "SELECT pg_get_indexdef(i.indexrelid) AS def, i.indisunique AS is_unique \
                 FROM pg_index i WHERE i.indexrelid = $1::regclass",
                [index.into()],
            ))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no index {index}"));
        let def: String = row.try_get("", "def").unwrap();
        assert!(row.try_get::<bool>("", "is_unique").unwrap(), "{def}");
        assert!(def.contains(columns), "{def}");
        match predicate {
            Some(p) => assert!(def.ends_with(&format!("WHERE {p}")), "{def}"),
            None => assert!(!def.contains(" WHERE "), "{def}"),
        }
    }
}
