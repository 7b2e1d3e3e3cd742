//! Tenant isolation of the workflow tables (clients, workflows, workflow_versions,
//! workflow_steps, workflow_transitions, triggers). The threats: a query or resolver
//! that forgets its tenant filter and reads or changes another customer's automations;
//! a row of one tenant that points into another's graph (and so learns that an id
//! exists there); an API answer that tells another tenant's ID apart from one that was
//! never issued.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Value as SqlValue};
use serde_json::{json, Value};
use trellis_core::scope::stmt;
use trellis_entity::PrefixedId;
use uuid::Uuid;

use crate::support::{as_app, Member, TestApp};

const WORKFLOW_TABLES: [&str; 6] = [
    "clients",
    "workflows",
    "workflow_versions",
    "workflow_steps",
    "workflow_transitions",
    "triggers",
];

/// One tenant with a client, a workflow whose version 1 (two DELAY steps, one
/// transition) is published and active, a draft version 2 copied from it, a webhook
/// trigger and an HTTP connection.
struct Fixture {
    owner: Member,
    client: String,
    workflow: String,
    published: String,
    draft: String,
    steps: Vec<String>,
    transition: String,
    draft_steps: Vec<String>,
    trigger: String,
    connection: String,
    http_action: String,
}

pub(crate) fn uuid(id: &str) -> Uuid {
    PrefixedId::parse(id)
        .unwrap_or_else(|| panic!("not an ID: {id}"))
        .uuid
}

/// An ID of the same kind that was never issued.
pub(crate) fn made_up(id: &str) -> String {
    let (prefix, _) = id.split_once('_').unwrap();
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// The payload of a mutation that must have no userErrors.
fn payload<'a>(data: &'a Value, field: &str) -> &'a Value {
    let payload = &data[field];
    assert_eq!(payload["userErrors"], json!([]), "{field}: {payload:#}");
    payload
}

fn graph_steps() -> Value {
    json!([
        { "key": "wait", "name": "Wait", "type": "DELAY", "config": { "seconds": 5 } },
        { "key": "pause", "name": "Pause", "type": "DELAY", "config": { "seconds": 10 } },
    ])
}

async fn fixture(app: &TestApp, slug: &str) -> Fixture {
    let owner = app.owner(slug).await;
    let t = Some(owner.token.as_str());
    let data = app
        .ok(
            t,
            "mutation { createClient(input: {name: \"Acme\", email: \"ops@acme.test\", company: \"Acme\"}) { client { id } userErrors { field message } } }",
            json!({}),
        )
        .await;
    let client = text(&payload(&data, "createClient")["client"]["id"]);
    let data = app
        .ok(
            t,
            "mutation($c: ID!) { createWorkflow(input: {key: \"onboarding\", name: \"Onboarding\", clientId: $c}) { workflow { id versions { id } } userErrors { field message } } }",
            json!({ "c": client }),
        )
        .await;
    let created = &payload(&data, "createWorkflow")["workflow"];
    let workflow = text(&created["id"]);
    let published = text(&created["versions"][0]["id"]);
    let data = app
        .ok(
            t,
            "mutation($v: ID!, $s: [WorkflowStepInput!]!, $t: [WorkflowTransitionInput!]!) { saveWorkflowGraph(input: {versionId: $v, steps: $s, transitions: $t}) { version { steps { id } transitions { id } } userErrors { field message } } }",
            json!({ "v": published, "s": graph_steps(), "t": [{ "from": "wait", "to": "pause" }] }),
        )
        .await;
    let version = &payload(&data, "saveWorkflowGraph")["version"];
    let steps: Vec<String> = version["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| text(&s["id"]))
        .collect();
    assert_eq!(steps.len(), 2);
    let transition = text(&version["transitions"][0]["id"]);
    let data = app
        .ok(
            t,
            "mutation($v: ID!) { publishVersion(input: {id: $v}) { version { status } userErrors { field message } } }",
            json!({ "v": published }),
        )
        .await;
    assert_eq!(
        payload(&data, "publishVersion")["version"]["status"],
        "PUBLISHED"
    );
    let data = app
        .ok(
            t,
            "mutation($v: ID!) { activateVersion(input: {id: $v}) { workflow { status } userErrors { field message } } }",
            json!({ "v": published }),
        )
        .await;
    assert_eq!(
        payload(&data, "activateVersion")["workflow"]["status"],
        "ACTIVE"
    );
    let data = app
        .ok(
            t,
            "mutation($w: ID!, $v: ID!) { createDraftVersion(input: {workflowId: $w, fromVersionId: $v}) { version { id status steps { id } } userErrors { field message } } }",
            json!({ "w": workflow, "v": published }),
        )
        .await;
    let version = &payload(&data, "createDraftVersion")["version"];
    assert_eq!(version["status"], "DRAFT");
    let draft = text(&version["id"]);
    let draft_steps: Vec<String> = version["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| text(&s["id"]))
        .collect();
    assert_eq!(draft_steps.len(), 2);
    let data = app
        .ok(
            t,
            "mutation($w: ID!) { createTrigger(input: {workflowId: $w, key: \"inbound\", type: WEBHOOK}) { trigger { id } signingSecret userErrors { field message } } }",
            json!({ "w": workflow }),
        )
        .await;
    let trigger = text(&payload(&data, "createTrigger")["trigger"]["id"]);
    let data = app
        .ok(
            t,
            "{ app(key: \"http\") { latestVersion { id actions(kind: ACTION) { id key kind } } } }",
            json!({}),
        )
        .await;
    let version = &data["app"]["latestVersion"];
    let action = version["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "request")
        .unwrap_or_else(|| panic!("the http app has no request action: {version:#}"));
    assert_eq!(action["kind"], "ACTION");
    let http_action = text(&action["id"]);
    let data = app
        .ok(
            t,
            "mutation($v: ID!) { createConnection(input: {appVersionId: $v, name: \"api\", config: {baseUrl: \"https://api.example.com\"}}) { connection { id } userErrors { field message } } }",
            json!({ "v": version["id"] }),
        )
        .await;
    let connection = text(&payload(&data, "createConnection")["connection"]["id"]);
    Fixture {
        owner,
        client,
        workflow,
        published,
        draft,
        steps,
        transition,
        draft_steps,
        trigger,
        connection,
        http_action,
    }
}

pub(crate) async fn count(conn: &impl ConnectionTrait, sql: &str, values: Vec<SqlValue>) -> i64 {
    conn.query_one(stmt(sql, values))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

pub(crate) fn sqlstate(err: &DbErr) -> Option<String> {
    trellis_core::error::database_error(err)
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

pub(crate) fn constraint(err: &DbErr) -> Option<String> {
    trellis_core::error::database_error(err)
        .and_then(|e| e.constraint())
        .map(str::to_owned)
}

/// Runs one statement as `me` (the application role, tenant and user set, no other
/// filter) in its own transaction: committed when it succeeds, rolled back otherwise.
async fn attempt(
    pool: &DatabaseConnection,
    me: &Member,
    sql: &str,
    values: Vec<SqlValue>,
) -> Result<u64, DbErr> {
    let tx = as_app(pool, Some(me.tenant_uuid()), Some(me.user_uuid())).await;
    match tx.execute(stmt(sql, values)).await {
        Ok(done) => {
            tx.commit().await.unwrap();
            Ok(done.rows_affected())
        }
        Err(err) => {
            tx.rollback().await.unwrap();
            Err(err)
        }
    }
}

/// Every row of a tenant in the workflow tables and the tables they point into, as
/// the owner role sees them.
async fn snapshot(app: &TestApp, tenant: Uuid) -> Value {
    let admin = app.db.admin().await;
    let mut all = serde_json::Map::new();
    for table in WORKFLOW_TABLES
        .iter()
        .chain(&["secrets", "connections", "audit_events"])
    {
        let row = admin
            .query_one(stmt(
                &format!("SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.id), '[]') AS rows FROM {table} x WHERE tenant_id = $1"),
                [tenant.into()],
            ))
            .await
            .unwrap()
            .unwrap();
        let rows: Value = row.try_get("", "rows").unwrap();
        assert!(!rows.as_array().unwrap().is_empty(), "{table} has no rows");
        all.insert((*table).to_owned(), rows);
    }
    admin.close().await.unwrap();
    Value::Object(all)
}

/// The ids of a tenant's rows in `table`, read as the owner role.
async fn ids_in(app: &TestApp, table: &str, tenant: Uuid) -> Vec<Uuid> {
    let admin = app.db.admin().await;
    let rows = admin
        .query_all(stmt(
            &format!("SELECT id FROM {table} WHERE tenant_id = $1"),
            [tenant.into()],
        ))
        .await
        .unwrap();
    admin.close().await.unwrap();
    rows.iter().map(|r| r.try_get("", "id").unwrap()).collect()
}

async fn signing_secret_of(app: &TestApp, trigger: Uuid) -> Uuid {
    let admin = app.db.admin().await;
    let row = admin
        .query_one(stmt(
            "SELECT signing_secret_id FROM triggers WHERE id = $1",
            [trigger.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    admin.close().await.unwrap();
    row.try_get("", "signing_secret_id").unwrap()
}

#[tokio::test]
async fn foreign_workflow_rows_are_invisible_unchangeable_and_undeletable_in_sql() {
    let app = TestApp::new().await;
    let a = fixture(&app, "wf-alpha").await;
    let b = fixture(&app, "wf-bravo").await;
    let (ta, tb) = (a.owner.tenant_uuid(), b.owner.tenant_uuid());
    let before = snapshot(&app, tb).await;
    let pool = app.db.app_pool(1).await;
    let admin = app.db.admin().await;
    for table in WORKFLOW_TABLES {
        let theirs = ids_in(&app, table, tb).await;
        assert!(!theirs.is_empty(), "{table}: tenant B has no rows");
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
        let by_id = count(
            &tx,
            &format!("SELECT count(*) FROM {table} WHERE id = ANY($1)"),
            vec![theirs.clone().into()],
        )
        .await;
        assert_eq!(by_id, 0, "{table}: tenant B's rows found by id");
        tx.rollback().await.unwrap();
    }

    // Changing B's rows by id (the resolver that forgot its tenant filter) touches none.
    for (table, set) in [
        ("clients", "name = 'pwned'"),
        ("workflows", "name = 'pwned'"),
        ("workflow_versions", "spec = 'pwned'"),
        ("workflow_steps", "name = 'pwned'"),
        ("workflow_transitions", "key = 'pwned'"),
        ("triggers", "key = 'pwned'"),
    ] {
        let theirs = ids_in(&app, table, tb).await;
        let updated = attempt(
            &pool,
            &a.owner,
            &format!("UPDATE {table} SET {set} WHERE id = ANY($1)"),
            vec![theirs.clone().into()],
        )
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert_eq!(updated, 0, "{table}: updated tenant B's rows");
        let deleted = attempt(
            &pool,
            &a.owner,
            &format!("DELETE FROM {table} WHERE id = ANY($1)"),
            vec![theirs.into()],
        )
        .await;
        match table {
            // Clients and workflows are never deleted by the app role (deactivate,
            // soft delete): the statement itself is refused.
            "clients" | "workflows" => {
                let err = deleted.expect_err(table);
                assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{table}: {err}");
            }
            _ => assert_eq!(
                deleted.unwrap_or_else(|e| panic!("{table}: {e}")),
                0,
                "{table}: deleted tenant B's rows"
            ),
        }
    }
    admin.close().await.unwrap();
    assert_eq!(snapshot(&app, tb).await, before, "tenant B's rows changed");
}

#[tokio::test]
async fn rows_cannot_be_written_into_or_moved_to_another_tenants_workflow_tables() {
    let app = TestApp::new().await;
    let a = fixture(&app, "wf-charlie").await;
    let b = fixture(&app, "wf-delta").await;
    let tb = b.owner.tenant_uuid();
    let before = snapshot(&app, tb).await;
    let pool = app.db.app_pool(1).await;
    let new = || SqlValue::from(Uuid::now_v7());
    let inserts: [(&str, &str, Vec<SqlValue>); 6] = [
        (
            "clients",
            "INSERT INTO clients (id, tenant_id, name) VALUES ($1, $2, 'Forged')",
            vec![new(), tb.into()],
        ),
        (
            "workflows",
            "INSERT INTO workflows (id, tenant_id, key, name) VALUES ($1, $2, 'forged', 'Forged')",
            vec![new(), tb.into()],
        ),
        (
            "workflow_versions",
            "INSERT INTO workflow_versions (id, tenant_id, workflow_id, number) VALUES ($1, $2, $3, 9)",
            vec![new(), tb.into(), uuid(&b.workflow).into()],
        ),
        (
            "workflow_steps",
            "INSERT INTO workflow_steps (id, tenant_id, version_id, key, name, type, config) VALUES ($1, $2, $3, 'forged', 'Forged', 'delay', '{\"seconds\": 1}')",
            vec![new(), tb.into(), uuid(&b.draft).into()],
        ),
        (
            "workflow_transitions",
            "INSERT INTO workflow_transitions (id, tenant_id, version_id, key, from_step_id, to_step_id) VALUES ($1, $2, $3, 'forged', $4, $5)",
            vec![
                new(),
                tb.into(),
                uuid(&b.draft).into(),
                uuid(&b.draft_steps[1]).into(),
                uuid(&b.draft_steps[0]).into(),
            ],
        ),
        (
            "triggers",
            "INSERT INTO triggers (id, tenant_id, key, workflow_id, type) VALUES ($1, $2, 'forged', $3, 'manual')",
            vec![new(), tb.into(), uuid(&b.workflow).into()],
        ),
    ];
    for (table, sql, values) in inserts {
        let err = attempt(&pool, &a.owner, sql, values)
            .await
            .expect_err(table);
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{table}: {err}");
    }
    // Moving an own row to tenant B is refused (by the WITH CHECK, or because the
    // tenant column is not the app role's to change at all). Graph rows are taken from
    // the draft: a published version's graph refuses any change before RLS is asked.
    for table in WORKFLOW_TABLES {
        let (sql, values) = match table {
            "workflow_steps" | "workflow_transitions" => (
                format!("UPDATE {table} SET tenant_id = $1 WHERE version_id = $2"),
                vec![tb.into(), uuid(&a.draft).into()],
            ),
            _ => (
                format!("UPDATE {table} SET tenant_id = $1"),
                vec![tb.into()],
            ),
        };
        let err = attempt(&pool, &a.owner, &sql, values)
            .await
            .expect_err(table);
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{table}: {err}");
    }
    assert_eq!(snapshot(&app, tb).await, before, "tenant B's rows changed");
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
    assert!(sqlstate(&foreign).is_some(), "{what}: {foreign}");
    assert_eq!(
        (sqlstate(&foreign), constraint(&foreign)),
        (sqlstate(&missing), constraint(&missing)),
        "{what}: tenant B's row is told apart from a missing one: {foreign} / {missing}"
    );
}

#[tokio::test]
async fn referencing_another_tenants_rows_fails_like_referencing_missing_ones() {
    let app = TestApp::new().await;
    let a = fixture(&app, "wf-echo").await;
    let b = fixture(&app, "wf-foxtrot").await;
    let (ta, tb) = (a.owner.tenant_uuid(), b.owner.tenant_uuid());
    let before = snapshot(&app, tb).await;
    let b_secret = signing_secret_of(&app, uuid(&b.trigger)).await;
    let pool = app.db.app_pool(1).await;
    let new = || SqlValue::from(Uuid::now_v7());
    let nobody = || SqlValue::from(Uuid::now_v7());
    let path = || SqlValue::from(Uuid::now_v7().simple().to_string());
    let cases: Vec<(&str, &str, Vec<SqlValue>, Vec<SqlValue>)> = vec![
        (
            "workflows.client_id on insert",
            "INSERT INTO workflows (id, tenant_id, key, name, client_id) VALUES ($1, $2, 'probe', 'Probe', $3)",
            vec![new(), ta.into(), uuid(&b.client).into()],
            vec![new(), ta.into(), nobody()],
        ),
        (
            "workflows.client_id on update",
            "UPDATE workflows SET client_id = $1 WHERE id = $2",
            vec![uuid(&b.client).into(), uuid(&a.workflow).into()],
            vec![nobody(), uuid(&a.workflow).into()],
        ),
        (
            "workflows.active_version_id",
            "UPDATE workflows SET active_version_id = $1 WHERE id = $2",
            vec![uuid(&b.published).into(), uuid(&a.workflow).into()],
            vec![nobody(), uuid(&a.workflow).into()],
        ),
        (
            "workflow_versions.workflow_id",
            "INSERT INTO workflow_versions (id, tenant_id, workflow_id, number) VALUES ($1, $2, $3, 7)",
            vec![new(), ta.into(), uuid(&b.workflow).into()],
            vec![new(), ta.into(), nobody()],
        ),
        (
            "workflow_steps.version_id (a published version)",
            "INSERT INTO workflow_steps (id, tenant_id, version_id, key, name, type, config) VALUES ($1, $2, $3, 'probe', 'Probe', 'delay', '{\"seconds\": 1}')",
            vec![new(), ta.into(), uuid(&b.published).into()],
            vec![new(), ta.into(), nobody()],
        ),
        (
            "workflow_steps.version_id (a draft)",
            "INSERT INTO workflow_steps (id, tenant_id, version_id, key, name, type, config) VALUES ($1, $2, $3, 'probe', 'Probe', 'delay', '{\"seconds\": 1}')",
            vec![new(), ta.into(), uuid(&b.draft).into()],
            vec![new(), ta.into(), nobody()],
        ),
        (
            "workflow_steps.connection_id",
            "INSERT INTO workflow_steps (id, tenant_id, version_id, key, name, type, action_id, connection_id) VALUES ($1, $2, $3, 'probe', 'Probe', 'action', $4, $5)",
            vec![
                new(),
                ta.into(),
                uuid(&a.draft).into(),
                uuid(&a.http_action).into(),
                uuid(&b.connection).into(),
            ],
            vec![
                new(),
                ta.into(),
                uuid(&a.draft).into(),
                uuid(&a.http_action).into(),
                nobody(),
            ],
        ),
        (
            "workflow_transitions endpoints",
            "INSERT INTO workflow_transitions (id, tenant_id, version_id, key, from_step_id, to_step_id) VALUES ($1, $2, $3, 'probe', $4, $5)",
            vec![
                new(),
                ta.into(),
                uuid(&a.draft).into(),
                uuid(&b.draft_steps[1]).into(),
                uuid(&b.draft_steps[0]).into(),
            ],
            vec![new(), ta.into(), uuid(&a.draft).into(), nobody(), nobody()],
        ),
        (
            "workflow_transitions from an own step to a foreign one",
            "INSERT INTO workflow_transitions (id, tenant_id, version_id, key, from_step_id, to_step_id) VALUES ($1, $2, $3, 'probe', $4, $5)",
            vec![
                new(),
                ta.into(),
                uuid(&a.draft).into(),
                uuid(&a.draft_steps[1]).into(),
                uuid(&b.draft_steps[0]).into(),
            ],
            vec![
                new(),
                ta.into(),
                uuid(&a.draft).into(),
                uuid(&a.draft_steps[1]).into(),
                nobody(),
            ],
        ),
        (
            "workflow_transitions.version_id",
            "INSERT INTO workflow_transitions (id, tenant_id, version_id, key, from_step_id, to_step_id) VALUES ($1, $2, $3, 'probe', $4, $5)",
            vec![
                new(),
                ta.into(),
                uuid(&b.draft).into(),
                uuid(&b.draft_steps[1]).into(),
                uuid(&b.draft_steps[0]).into(),
            ],
            vec![new(), ta.into(), nobody(), nobody(), nobody()],
        ),
        (
            "triggers.workflow_id",
            "INSERT INTO triggers (id, tenant_id, key, workflow_id, type) VALUES ($1, $2, 'probe', $3, 'manual')",
            vec![new(), ta.into(), uuid(&b.workflow).into()],
            vec![new(), ta.into(), nobody()],
        ),
        (
            "triggers.signing_secret_id on insert",
            "INSERT INTO triggers (id, tenant_id, key, workflow_id, type, webhook_path, signing_secret_id) VALUES ($1, $2, 'probe', $3, 'webhook', $4, $5)",
            vec![new(), ta.into(), uuid(&a.workflow).into(), path(), b_secret.into()],
            vec![new(), ta.into(), uuid(&a.workflow).into(), path(), nobody()],
        ),
        (
            "triggers.previous_signing_secret_id on update",
            "UPDATE triggers SET previous_signing_secret_id = $1 WHERE id = $2",
            vec![b_secret.into(), uuid(&a.trigger).into()],
            vec![nobody(), uuid(&a.trigger).into()],
        ),
    ];
    for (what, sql, foreign, missing) in cases {
        fails_like_a_missing_row(&pool, &a.owner, what, sql, foreign, missing).await;
    }
    // The same statements work with tenant A's own rows, so the failures above are
    // about the foreign reference and nothing else.
    let own = attempt(
        &pool,
        &a.owner,
        "INSERT INTO workflow_transitions (id, tenant_id, version_id, key, from_step_id, to_step_id) VALUES ($1, $2, $3, 'probe', $4, $5)",
        vec![
            new(),
            ta.into(),
            uuid(&a.draft).into(),
            uuid(&a.draft_steps[1]).into(),
            uuid(&a.draft_steps[0]).into(),
        ],
    )
    .await;
    assert_eq!(own.unwrap(), 1);
    let own = attempt(
        &pool,
        &a.owner,
        "INSERT INTO workflow_steps (id, tenant_id, version_id, key, name, type, action_id, connection_id) VALUES ($1, $2, $3, 'probe', 'Probe', 'action', $4, $5)",
        vec![
            new(),
            ta.into(),
            uuid(&a.draft).into(),
            uuid(&a.http_action).into(),
            uuid(&a.connection).into(),
        ],
    )
    .await;
    assert_eq!(own.unwrap(), 1);
    let own = attempt(
        &pool,
        &a.owner,
        "INSERT INTO triggers (id, tenant_id, key, workflow_id, type) VALUES ($1, $2, 'probe', $3, 'manual')",
        vec![new(), ta.into(), uuid(&a.workflow).into()],
    )
    .await;
    assert_eq!(own.unwrap(), 1);
    assert_eq!(snapshot(&app, tb).await, before, "tenant B's rows changed");
}

#[tokio::test]
async fn another_tenants_workflow_ids_are_not_found_like_made_up_ones() {
    let app = TestApp::new().await;
    let a = fixture(&app, "wf-golf").await;
    let b = fixture(&app, "wf-hotel").await;
    let before = snapshot(&app, b.owner.tenant_uuid()).await;
    let token = Some(a.owner.token.as_str());

    let node = "query($id: ID!) { node(id: $id) { id } }";
    let theirs = [
        &b.client,
        &b.workflow,
        &b.published,
        &b.draft,
        &b.steps[0],
        &b.steps[1],
        &b.transition,
        &b.trigger,
    ];
    for id in theirs {
        // Tenant B itself finds it, so the ID is real.
        let found = app
            .ok(Some(&b.owner.token), node, json!({ "id": id }))
            .await;
        assert_eq!(found["node"]["id"], id.as_str());
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
            json!({ "ids": theirs }),
        )
        .await;
    assert_eq!(data["nodes"], json!(vec![Value::Null; theirs.len()]));

    let steps = json!([{ "key": "x", "name": "X", "type": "DELAY", "config": { "seconds": 1 } }]);
    // (mutation, the ID variable it takes from tenant B, other variables).
    let mutations: Vec<(&str, &String, Value)> = vec![
        (
            "mutation($id: ID!) { updateClient(input: {id: $id, name: \"pwned\"}) { client { id } } }",
            &b.client,
            json!({}),
        ),
        (
            "mutation($id: ID!) { deactivateClient(input: {id: $id}) { client { id } } }",
            &b.client,
            json!({}),
        ),
        (
            "mutation($id: ID!) { updateWorkflow(input: {id: $id, name: \"pwned\"}) { workflow { id } } }",
            &b.workflow,
            json!({}),
        ),
        (
            "mutation($id: ID!) { setWorkflowStatus(input: {id: $id, status: INACTIVE}) { workflow { id } } }",
            &b.workflow,
            json!({}),
        ),
        (
            "mutation($id: ID!) { deleteWorkflow(input: {id: $id}) { workflow { id } } }",
            &b.workflow,
            json!({}),
        ),
        (
            "mutation($id: ID!) { restoreWorkflow(input: {id: $id}) { workflow { id } } }",
            &b.workflow,
            json!({}),
        ),
        (
            "mutation($id: ID!) { createDraftVersion(input: {workflowId: $id}) { version { id } } }",
            &b.workflow,
            json!({}),
        ),
        (
            "mutation($id: ID!) { updateWorkflowVersion(input: {id: $id, spec: \"pwned\"}) { version { id } } }",
            &b.draft,
            json!({}),
        ),
        (
            "mutation($id: ID!, $steps: [WorkflowStepInput!]!) { saveWorkflowGraph(input: {versionId: $id, steps: $steps}) { version { id } } }",
            &b.draft,
            json!({ "steps": steps }),
        ),
        (
            "mutation($id: ID!) { publishVersion(input: {id: $id}) { version { id } } }",
            &b.draft,
            json!({}),
        ),
        (
            "mutation($id: ID!) { activateVersion(input: {id: $id}) { workflow { id } } }",
            &b.published,
            json!({}),
        ),
        (
            "mutation($id: ID!) { updateTrigger(input: {id: $id, isActive: false}) { trigger { id } } }",
            &b.trigger,
            json!({}),
        ),
        (
            "mutation($id: ID!) { deleteTrigger(input: {id: $id}) { trigger { id } } }",
            &b.trigger,
            json!({}),
        ),
        (
            "mutation($id: ID!) { rotateWebhookSecret(input: {id: $id}) { trigger { id } signingSecret } }",
            &b.trigger,
            json!({}),
        ),
        (
            "mutation($id: ID!) { createTrigger(input: {workflowId: $id, key: \"stolen\", type: MANUAL}) { trigger { id } } }",
            &b.workflow,
            json!({}),
        ),
        (
            "mutation($id: ID!) { createWorkflow(input: {key: \"stolen\", name: \"Stolen\", clientId: $id}) { workflow { id } } }",
            &b.client,
            json!({}),
        ),
        (
            "mutation($id: ID!, $own: ID!) { updateWorkflow(input: {id: $own, clientId: $id}) { workflow { id } } }",
            &b.client,
            json!({ "own": a.workflow }),
        ),
    ];
    for (mutation, id, extra) in &mutations {
        for probe in [(*id).clone(), made_up(id)] {
            let mut variables = extra.clone();
            variables["id"] = json!(probe);
            let (_, body) = app.post(token, mutation, variables).await;
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "NOT_FOUND",
                "{mutation} with {probe}: {body:#}"
            );
        }
    }
    // Copying tenant B's version into an own draft is a bad fromVersionId, worded
    // exactly as for a version that does not exist.
    let copy = "mutation($w: ID!, $v: ID!) { createDraftVersion(input: {workflowId: $w, fromVersionId: $v}) { version { id } userErrors { code field message } } }";
    let foreign = app
        .ok(token, copy, json!({ "w": a.workflow, "v": b.published }))
        .await;
    let missing = app
        .ok(
            token,
            copy,
            json!({ "w": a.workflow, "v": made_up(&b.published) }),
        )
        .await;
    assert_eq!(foreign["createDraftVersion"]["version"], Value::Null);
    assert_eq!(
        foreign["createDraftVersion"]["userErrors"][0]["field"],
        "fromVersionId"
    );
    assert_eq!(foreign, missing);

    assert_eq!(
        snapshot(&app, b.owner.tenant_uuid()).await,
        before,
        "tenant B's rows changed"
    );
    // Tenant A's own workflow kept its client: the refused re-assignment changed nothing.
    let data = app
        .ok(
            token,
            "query($id: ID!) { node(id: $id) { ... on Workflow { client { id } } } }",
            json!({ "id": a.workflow }),
        )
        .await;
    assert_eq!(data["node"]["client"]["id"], a.client.as_str());
}

#[tokio::test]
async fn a_step_cannot_bind_another_tenants_connection() {
    let app = TestApp::new().await;
    let a = fixture(&app, "wf-india").await;
    let b = fixture(&app, "wf-juliet").await;
    let save = "mutation($v: ID!, $s: [WorkflowStepInput!]!) { saveWorkflowGraph(input: {versionId: $v, steps: $s}) { version { steps { id connection { id } } } userErrors { code field message } } }";
    let step = |connection: &str| {
        json!([{
            "key": "call",
            "name": "Call the API",
            "type": "ACTION",
            "actionId": a.http_action,
            "connectionId": connection,
            "config": { "method": "GET", "path": "/status" },
        }])
    };
    let token = Some(a.owner.token.as_str());
    let foreign = app
        .ok(
            token,
            save,
            json!({ "v": a.draft, "s": step(&b.connection) }),
        )
        .await;
    let missing = app
        .ok(
            token,
            save,
            json!({ "v": a.draft, "s": step(&made_up(&b.connection)) }),
        )
        .await;
    assert_eq!(foreign["saveWorkflowGraph"]["version"], Value::Null);
    assert_eq!(
        foreign["saveWorkflowGraph"]["userErrors"],
        json!([{ "code": "BAD_USER_INPUT", "field": "steps.call.connectionId", "message": "no such connection" }]),
    );
    assert_eq!(foreign, missing);
    // The draft kept its graph.
    let data = app
        .ok(
            token,
            "query($id: ID!) { node(id: $id) { ... on WorkflowVersion { steps { id } } } }",
            json!({ "id": a.draft }),
        )
        .await;
    let kept: Vec<String> = data["node"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| text(&s["id"]))
        .collect();
    assert_eq!(kept, a.draft_steps);
    // The tenant's own connection is accepted: the refusal above is about ownership.
    let own = app
        .ok(
            token,
            save,
            json!({ "v": a.draft, "s": step(&a.connection) }),
        )
        .await;
    let version = &payload(&own, "saveWorkflowGraph")["version"];
    assert_eq!(
        version["steps"][0]["connection"]["id"],
        a.connection.as_str()
    );
}

#[tokio::test]
async fn workflow_lists_never_show_another_tenants_rows() {
    let app = TestApp::new().await;
    let a = fixture(&app, "wf-kilo").await;
    let b = fixture(&app, "wf-lima").await;
    let theirs = [&b.client, &b.workflow, &b.trigger];
    let data = app
        .ok(
            Some(&a.owner.token),
            "{ clients(first: 100) { totalCount nodes { id workflows { id } } } workflows(first: 100) { totalCount nodes { id client { id } versions { id steps { id } transitions { id } } triggers { id } } } triggers(first: 100) { totalCount nodes { id workflow { id } } } }",
            json!({}),
        )
        .await;
    let text_of = data.to_string();
    for id in theirs.iter().map(|s| s.as_str()).chain([
        b.published.as_str(),
        b.draft.as_str(),
        b.steps[0].as_str(),
        b.transition.as_str(),
    ]) {
        assert!(
            !text_of.contains(id),
            "tenant A's lists show {id}: {data:#}"
        );
    }
    for (list, own) in [
        ("clients", &a.client),
        ("workflows", &a.workflow),
        ("triggers", &a.trigger),
    ] {
        assert_eq!(data[list]["totalCount"], 1, "{list}: {data:#}");
        assert_eq!(data[list]["nodes"][0]["id"], own.as_str(), "{list}");
    }
    assert_eq!(
        data["workflows"]["nodes"][0]["triggers"][0]["id"],
        a.trigger.as_str()
    );
    // Filters naming tenant B's objects find nothing, as for objects that do not exist.
    for (query, id) in [
        (
            "query($id: ID!) { workflows(filter: {client: $id}) { totalCount nodes { id } } }",
            &b.client,
        ),
        (
            "query($id: ID!) { triggers(filter: {workflow: $id}) { totalCount nodes { id } } }",
            &b.workflow,
        ),
    ] {
        let foreign = app
            .ok(Some(&a.owner.token), query, json!({ "id": id }))
            .await;
        let missing = app
            .ok(Some(&a.owner.token), query, json!({ "id": made_up(id) }))
            .await;
        assert_eq!(foreign, missing, "{query}");
        let list = foreign.as_object().unwrap().values().next().unwrap();
        assert_eq!(list["totalCount"], 0, "{query}: {foreign:#}");
        // The same filter with tenant B's token does find them: the ids are real.
        let own = app
            .ok(Some(&b.owner.token), query, json!({ "id": id }))
            .await;
        let list = own.as_object().unwrap().values().next().unwrap();
        assert_eq!(list["totalCount"], 1, "{query}: {own:#}");
    }
    // Search cannot reach across either: both tenants named their client "Acme".
    let data = app
        .ok(
            Some(&a.owner.token),
            "{ clients(filter: {search: \"acme\"}) { nodes { id } } workflows(filter: {search: \"onboarding\"}) { nodes { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["clients"]["nodes"], json!([{ "id": a.client }]));
    assert_eq!(data["workflows"]["nodes"], json!([{ "id": a.workflow }]));
}
