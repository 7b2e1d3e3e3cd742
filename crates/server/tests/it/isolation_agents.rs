//! Tenant isolation of agents (agents, agent_versions, agent_labels,
//! agent_label_moves). The threats: a query or resolver that forgets its tenant and
//! reads, changes, activates or relabels another customer's agent; a row of one tenant
//! that points into another's agents, versions, workflow versions, members or API keys;
//! an answer that tells another tenant's ID or slug apart from one never issued.

use sea_orm::{ConnectionTrait, Value as SqlValue};
use serde_json::{json, Value};
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::agents::{activate, create_agent, create_version, flow, MOVE};
use crate::isolation_processes::{answer, attempt, message};
use crate::isolation_workflows::{constraint, count, made_up, sqlstate, uuid};
use crate::processes::{payload, text};
use crate::support::{as_app, is_rls_violation, Member, TestApp};

const AGENT_TABLES: [&str; 4] = [
    "agents",
    "agent_versions",
    "agent_labels",
    "agent_label_moves",
];

/// One tenant with an agent whose version 1 (with a published flow) is archived and
/// version 2 active, a draft version 3, a `production` label moved v1 → v2 (the second
/// move by an API key), a deleted agent, and a member the agent assists. So every
/// agent table has rows of it.
struct Fixture {
    owner: Member,
    slug: String,
    agent: String,
    archived: String,
    active: String,
    draft: String,
    flow: String,
    label: String,
    label_move: String,
    retired: String,
    api_key: String,
}

async fn fixture(app: &TestApp, tenant: &str, slug: &str) -> Fixture {
    let owner = app.owner(tenant).await;
    let t = Some(owner.token.as_str());
    let assisted = app
        .member(&owner, &format!("helper@{tenant}.test"), "VIEWER")
        .await;
    let flow = flow(app, &owner, &format!("{slug}-flow"), true).await;
    let agent = create_agent(app, &owner, slug).await;
    app.ok(
        t,
        "mutation($id: ID!, $u: ID!) { updateAgent(input: {id: $id, assistedUserId: $u}) { userErrors { field message } } }",
        json!({ "id": agent, "u": assisted.user_id }),
    )
    .await;
    let data = app
        .ok(
            t,
            crate::agents::CREATE_VERSION,
            json!({ "a": agent, "spec": { "instructions": "v1" }, "flow": flow }),
        )
        .await;
    let archived = text(&payload(&data, "createAgentVersion")["version"]["id"]);
    activate(app, &owner, &archived).await;
    let active = create_version(app, &owner, &agent, json!({ "instructions": "v2" })).await;
    activate(app, &owner, &active).await;
    let draft = create_version(app, &owner, &agent, json!({ "instructions": "v3" })).await;
    let data = app
        .ok(t, MOVE, json!({ "v": archived, "l": "production" }))
        .await;
    let label = text(&payload(&data, "moveAgentLabel")["label"]["id"]);
    let (secret, api_key) = app.api_key(&owner, "WRITE").await;
    let data = app
        .ok(
            Some(&secret),
            MOVE,
            json!({ "v": active, "l": "production" }),
        )
        .await;
    let label_move = text(&payload(&data, "moveAgentLabel")["move"]["id"]);
    let retired = create_agent(app, &owner, "retired").await;
    let data = app
        .ok(
            t,
            "mutation($id: ID!) { deleteAgent(input: {id: $id}) { agent { deletedAt } userErrors { field message } } }",
            json!({ "id": retired }),
        )
        .await;
    assert!(payload(&data, "deleteAgent")["agent"]["deletedAt"].is_string());
    Fixture {
        owner,
        slug: slug.to_owned(),
        agent,
        archived,
        active,
        draft,
        flow,
        label,
        label_move,
        retired,
        api_key,
    }
}

/// Every row of a tenant in the agent tables, as the owner role sees them.
async fn snapshot(app: &TestApp, tenant: Uuid) -> Value {
    let admin = app.db.admin().await;
    let mut all = serde_json::Map::new();
    for table in AGENT_TABLES {
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

#[tokio::test]
async fn foreign_agent_rows_are_invisible_unchangeable_and_undeletable_in_sql() {
    let app = TestApp::new().await;
    let a = fixture(&app, "agt-alpha", "triage").await;
    let b = fixture(&app, "agt-bravo", "triage").await;
    let (ta, tb) = (a.owner.tenant_uuid(), b.owner.tenant_uuid());
    let before = snapshot(&app, ta).await;
    let pool = app.db.app_pool(1).await;
    let admin = app.db.admin().await;
    for table in AGENT_TABLES {
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
        ("agents", &a.agent),
        ("agents", &a.retired),
        ("agent_versions", &a.active),
        ("agent_versions", &a.draft),
        ("agent_labels", &a.label),
        ("agent_label_moves", &a.label_move),
    ] {
        let sql = format!("SELECT count(*) FROM {table} WHERE id = $1");
        let tx = as_app(&pool, Some(ta), Some(a.owner.user_uuid())).await;
        assert_eq!(count(&tx, &sql, vec![uuid(id).into()]).await, 1, "{id}");
        tx.rollback().await.unwrap();
        let tx = as_app(&pool, Some(tb), Some(b.owner.user_uuid())).await;
        assert_eq!(count(&tx, &sql, vec![uuid(id).into()]).await, 0, "{id}");
        tx.rollback().await.unwrap();
    }

    // Changing or deleting tenant A's rows touches none of them from tenant B; the same
    // statement changes tenant A's own rows when tenant A runs it (rolled back). Where
    // the app role has no such privilege, both are refused alike.
    let writes: [(&str, &str); 11] = [
        ("agents", "UPDATE agents SET name = 'pwned', tool_policy = '{\"tools\": {}, \"default\": \"ALLOW\"}' WHERE tenant_id = $1"),
        ("agents", "UPDATE agents SET active_version_id = NULL WHERE tenant_id = $1"),
        ("agents", "UPDATE agents SET deleted_at = now() WHERE tenant_id = $1"),
        (
            "agent_versions",
            "UPDATE agent_versions SET spec_markdown = 'pwned' WHERE tenant_id = $1 AND status = 'draft'",
        ),
        (
            "agent_versions",
            "UPDATE agent_versions SET status = 'archived', archived_at = now() WHERE tenant_id = $1 AND status = 'active'",
        ),
        ("agent_labels", "UPDATE agent_labels SET version_id = version_id WHERE tenant_id = $1"),
        ("agent_label_moves", "UPDATE agent_label_moves SET from_version_id = NULL WHERE tenant_id = $1"),
        ("agents", "DELETE FROM agents WHERE tenant_id = $1"),
        ("agent_versions", "DELETE FROM agent_versions WHERE tenant_id = $1"),
        ("agent_labels", "DELETE FROM agent_labels WHERE tenant_id = $1"),
        ("agent_label_moves", "DELETE FROM agent_label_moves WHERE tenant_id = $1"),
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
                // No such privilege for the app role: refused outright, for anybody.
                assert_eq!(sqlstate(&own).as_deref(), Some("42501"), "{sql}: {own}");
                let foreign = foreign.expect_err(sql);
                assert_eq!(
                    sqlstate(&foreign).as_deref(),
                    Some("42501"),
                    "{sql}: {foreign}"
                );
                assert!(
                    sql.starts_with("DELETE") || table == "agent_label_moves",
                    "{sql}: refused to tenant A itself: {own}"
                );
            }
        }
    }
    admin.close().await.unwrap();
    assert_eq!(snapshot(&app, ta).await, before, "tenant A's rows changed");
}

#[tokio::test]
async fn agent_rows_cannot_be_written_into_or_moved_to_another_tenant() {
    let app = TestApp::new().await;
    let a = fixture(&app, "agt-charlie", "triage").await;
    let b = fixture(&app, "agt-delta", "triage").await;
    let ta = a.owner.tenant_uuid();
    let before = snapshot(&app, ta).await;
    let pool = app.db.app_pool(1).await;
    let new = || SqlValue::from(Uuid::now_v7());
    let (agent, version, label) = (uuid(&a.agent), uuid(&a.active), uuid(&a.label));
    // Rows of tenant A pointing only at tenant A's rows: nothing but RLS stands in the
    // way (every foreign key would hold).
    let inserts: Vec<(&str, &str, Vec<SqlValue>)> = vec![
        (
            "agents",
            "INSERT INTO agents (id, tenant_id, slug, name) VALUES ($1, $2, 'forged', 'Forged')",
            vec![new(), ta.into()],
        ),
        (
            "agent_versions",
            "INSERT INTO agent_versions (id, tenant_id, agent_id, number) VALUES ($1, $2, $3, 9)",
            vec![new(), ta.into(), agent.into()],
        ),
        (
            "agent_labels",
            "INSERT INTO agent_labels (id, tenant_id, agent_id, name, version_id) VALUES ($1, $2, $3, 'forged', $4)",
            vec![new(), ta.into(), agent.into(), version.into()],
        ),
        (
            "agent_label_moves",
            "INSERT INTO agent_label_moves (id, tenant_id, agent_id, label_id, to_version_id) VALUES ($1, $2, $3, $4, $5)",
            vec![new(), ta.into(), agent.into(), label.into(), version.into()],
        ),
    ];
    for (table, sql, values) in inserts {
        let err = attempt(&pool, &b.owner, sql, values, true)
            .await
            .expect_err(table);
        assert!(is_rls_violation(&err), "{table}: {err}");
    }
    // Moving tenant B's own rows to tenant A is refused: the app role may not change
    // tenant_id at all (and a WITH CHECK would refuse it anyway).
    for table in AGENT_TABLES {
        let sql = format!("UPDATE {table} SET tenant_id = $1");
        let err = attempt(&pool, &b.owner, &sql, vec![ta.into()], true)
            .await
            .expect_err(table);
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{table}: {err}");
    }
    assert_eq!(snapshot(&app, ta).await, before, "tenant A's rows changed");
}

/// A probe of a reference: what it references, the statement, the SQLSTATE expected,
/// values naming the other tenant's row, values naming a row nobody has.
type Probe = (
    &'static str,
    &'static str,
    &'static str,
    Vec<SqlValue>,
    Vec<SqlValue>,
);

#[tokio::test]
async fn referencing_another_tenants_agent_rows_fails_like_referencing_missing_ones() {
    let app = TestApp::new().await;
    let a = fixture(&app, "agt-echo", "triage").await;
    let b = fixture(&app, "agt-foxtrot", "triage").await;
    let tb = b.owner.tenant_uuid();
    let before = snapshot(&app, a.owner.tenant_uuid()).await;
    let pool = app.db.app_pool(1).await;
    let new = || SqlValue::from(Uuid::now_v7());
    let nobody = || SqlValue::from(Uuid::now_v7());
    let none = || SqlValue::from(Option::<Uuid>::None);
    let id = |s: &str| SqlValue::from(uuid(s));
    let a_user = SqlValue::from(a.owner.user_uuid());
    const AGENT: &str = "INSERT INTO agents (id, tenant_id, slug, name, assisted_user_id) VALUES ($1, $2, 'probe', 'Probe', $3)";
    const ACTIVE: &str = "UPDATE agents SET active_version_id = $1 WHERE id = $2";
    const VERSION: &str = "INSERT INTO agent_versions (id, tenant_id, agent_id, number, flow_version_id) VALUES ($1, $2, $3, 9, $4)";
    const LABEL: &str = "INSERT INTO agent_labels (id, tenant_id, agent_id, name, version_id) VALUES ($1, $2, $3, 'probe', $4)";
    const MOVE_ROW: &str = "INSERT INTO agent_label_moves (id, tenant_id, agent_id, label_id, from_version_id, to_version_id, moved_by_key) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    // Every row is tenant B's own; each names tenant A's row, then one nobody has.
    let cases: Vec<Probe> = vec![
        (
            "agents.assisted_user_id (a user of tenant A only)",
            AGENT,
            "23503",
            vec![new(), tb.into(), a_user.clone()],
            vec![new(), tb.into(), nobody()],
        ),
        (
            // The trigger looks for the version first: under RLS it finds neither.
            "agents.active_version_id",
            ACTIVE,
            "23514",
            vec![id(&a.active), id(&b.agent)],
            vec![nobody(), id(&b.agent)],
        ),
        (
            "agent_versions.agent_id",
            VERSION,
            "23503",
            vec![new(), tb.into(), id(&a.agent), none()],
            vec![new(), tb.into(), nobody(), none()],
        ),
        (
            "agent_versions.flow_version_id",
            VERSION,
            "23503",
            vec![new(), tb.into(), id(&b.agent), id(&a.flow)],
            vec![new(), tb.into(), id(&b.agent), nobody()],
        ),
        (
            "agent_labels.agent_id",
            LABEL,
            "23503",
            vec![new(), tb.into(), id(&a.agent), id(&b.active)],
            vec![new(), tb.into(), nobody(), id(&b.active)],
        ),
        (
            "agent_labels.version_id",
            LABEL,
            "23503",
            vec![new(), tb.into(), id(&b.agent), id(&a.active)],
            vec![new(), tb.into(), id(&b.agent), nobody()],
        ),
        (
            "agent_label_moves.agent_id",
            MOVE_ROW,
            "23503",
            vec![
                new(),
                tb.into(),
                id(&a.agent),
                id(&b.label),
                none(),
                id(&b.active),
                none(),
            ],
            vec![
                new(),
                tb.into(),
                nobody(),
                id(&b.label),
                none(),
                id(&b.active),
                none(),
            ],
        ),
        (
            "agent_label_moves.label_id",
            MOVE_ROW,
            "23503",
            vec![
                new(),
                tb.into(),
                id(&b.agent),
                id(&a.label),
                none(),
                id(&b.active),
                none(),
            ],
            vec![
                new(),
                tb.into(),
                id(&b.agent),
                nobody(),
                none(),
                id(&b.active),
                none(),
            ],
        ),
        (
            "agent_label_moves.from_version_id",
            MOVE_ROW,
            "23503",
            vec![
                new(),
                tb.into(),
                id(&b.agent),
                id(&b.label),
                id(&a.archived),
                id(&b.active),
                none(),
            ],
            vec![
                new(),
                tb.into(),
                id(&b.agent),
                id(&b.label),
                nobody(),
                id(&b.active),
                none(),
            ],
        ),
        (
            "agent_label_moves.to_version_id",
            MOVE_ROW,
            "23503",
            vec![
                new(),
                tb.into(),
                id(&b.agent),
                id(&b.label),
                none(),
                id(&a.active),
                none(),
            ],
            vec![
                new(),
                tb.into(),
                id(&b.agent),
                id(&b.label),
                none(),
                nobody(),
                none(),
            ],
        ),
        (
            "agent_label_moves.moved_by_key",
            MOVE_ROW,
            "23503",
            vec![
                new(),
                tb.into(),
                id(&b.agent),
                id(&b.label),
                none(),
                id(&b.active),
                id(&a.api_key),
            ],
            vec![
                new(),
                tb.into(),
                id(&b.agent),
                id(&b.label),
                none(),
                id(&b.active),
                nobody(),
            ],
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
    let b_user = SqlValue::from(b.owner.user_uuid());
    let own: Vec<(&str, Vec<SqlValue>)> = vec![
        (AGENT, vec![new(), tb.into(), b_user]),
        (ACTIVE, vec![id(&b.active), id(&b.agent)]),
        (VERSION, vec![new(), tb.into(), id(&b.agent), id(&b.flow)]),
        (LABEL, vec![new(), tb.into(), id(&b.agent), id(&b.active)]),
        (
            MOVE_ROW,
            vec![
                new(),
                tb.into(),
                id(&b.agent),
                id(&b.label),
                id(&b.archived),
                id(&b.active),
                id(&b.api_key),
            ],
        ),
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
async fn without_a_tenant_no_agent_row_is_visible_or_writable() {
    let app = TestApp::new().await;
    let a = fixture(&app, "agt-golf", "triage").await;
    let ta = a.owner.tenant_uuid();
    let pool = app.db.app_pool(1).await;
    let admin = app.db.admin().await;
    for table in AGENT_TABLES {
        let all = format!("SELECT count(*) FROM {table}");
        let rows = count(&admin, &all, vec![]).await;
        assert!(rows > 0, "{table} has no rows");
        let tx = as_app(&pool, Some(ta), None).await;
        assert_eq!(count(&tx, &all, vec![]).await, rows, "{table}");
        tx.rollback().await.unwrap();
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
            "INSERT INTO agents (id, tenant_id, slug, name) VALUES ($1, $2, 'forged', 'Forged')",
            [Uuid::now_v7().into(), ta.into()],
        ))
        .await
        .unwrap_err();
    assert!(is_rls_violation(&err), "{err}");
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn another_tenants_agent_ids_are_not_found_like_made_up_ones() {
    let app = TestApp::new().await;
    let a = fixture(&app, "agt-hotel", "alpha-triage").await;
    let b = fixture(&app, "agt-india", "bravo-triage").await;
    let before = snapshot(&app, a.owner.tenant_uuid()).await;
    let token = Some(b.owner.token.as_str());

    let node = "query($id: ID!) { node(id: $id) { id } }";
    let theirs = [
        &a.agent,
        &a.retired,
        &a.archived,
        &a.active,
        &a.draft,
        &a.label,
        &a.label_move,
    ];
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

    // Every mutation that takes an ID, given tenant A's.
    let mutations: Vec<(&str, &String)> = vec![
        ("mutation($id: ID!) { updateAgent(input: {id: $id, name: \"pwned\"}) { agent { id } userErrors { code field message } } }", &a.agent),
        ("mutation($id: ID!) { updateAgent(input: {id: $id, slug: \"pwned\"}) { agent { id } userErrors { code field message } } }", &a.agent),
        ("mutation($id: ID!) { deleteAgent(input: {id: $id}) { agent { id } userErrors { code field message } } }", &a.agent),
        ("mutation($id: ID!) { restoreAgent(input: {id: $id}) { agent { id } userErrors { code field message } } }", &a.retired),
        ("mutation($id: ID!) { createAgentVersion(input: {agentId: $id}) { version { id } userErrors { code field message } } }", &a.agent),
        ("mutation($id: ID!) { updateAgentVersion(input: {id: $id, specMarkdown: \"pwned\"}) { version { id } userErrors { code field message } } }", &a.draft),
        ("mutation($id: ID!) { activateAgentVersion(input: {id: $id}) { version { id } userErrors { code field message } } }", &a.draft),
        ("mutation($id: ID!) { activateAgentVersion(input: {id: $id}) { version { id } userErrors { code field message } } }", &a.archived),
        ("mutation($id: ID!) { archiveAgentVersion(input: {id: $id}) { version { id } userErrors { code field message } } }", &a.active),
        ("mutation($id: ID!) { moveAgentLabel(input: {versionId: $id, label: \"production\"}) { label { id } userErrors { code field message } } }", &a.archived),
        ("mutation($id: ID!) { moveAgentLabel(input: {versionId: $id, label: \"pwned\"}) { label { id } userErrors { code field message } } }", &a.draft),
    ];
    for (mutation, id) in &mutations {
        let (_, foreign) = app.post(token, mutation, json!({ "id": id })).await;
        let (_, missing) = app
            .post(token, mutation, json!({ "id": made_up(id) }))
            .await;
        assert_eq!(
            foreign["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{mutation} with {id}: {foreign:#}"
        );
        assert_eq!(answer(&foreign), answer(&missing), "{mutation} with {id}");
    }
    // IDs inside tenant B's own writes: tenant A's version to copy, workflow version
    // as a flow, user to assist, worded exactly as for ones that do not exist.
    let copies: Vec<(&str, Value, Value)> = vec![
        (
            "mutation($a: ID!, $v: ID!) { createAgentVersion(input: {agentId: $a, fromVersionId: $v}) { version { id } userErrors { code field message } } }",
            json!({ "a": b.agent, "v": a.active }),
            json!({ "a": b.agent, "v": made_up(&a.active) }),
        ),
        (
            "mutation($a: ID!, $v: ID!) { createAgentVersion(input: {agentId: $a, flowVersionId: $v}) { version { id } userErrors { code field message } } }",
            json!({ "a": b.agent, "v": a.flow }),
            json!({ "a": b.agent, "v": made_up(&a.flow) }),
        ),
        (
            "mutation($a: ID!, $v: ID!) { updateAgentVersion(input: {id: $a, flowVersionId: $v}) { version { id } userErrors { code field message } } }",
            json!({ "a": b.draft, "v": a.flow }),
            json!({ "a": b.draft, "v": made_up(&a.flow) }),
        ),
        (
            "mutation($a: ID!, $u: ID!) { updateAgent(input: {id: $a, assistedUserId: $u}) { agent { id } userErrors { code field message } } }",
            json!({ "a": b.agent, "u": a.owner.user_id }),
            json!({ "a": b.agent, "u": made_up(&a.owner.user_id) }),
        ),
    ];
    for (mutation, foreign, missing) in copies {
        let foreign = app.ok(token, mutation, foreign).await;
        let missing = app.ok(token, mutation, missing).await;
        let payload = foreign.as_object().unwrap().values().next().unwrap();
        assert_eq!(
            payload["userErrors"][0]["code"], "BAD_USER_INPUT",
            "{mutation}: {foreign:#}"
        );
        assert_eq!(foreign, missing, "{mutation}");
    }

    assert_eq!(
        snapshot(&app, a.owner.tenant_uuid()).await,
        before,
        "tenant A's rows changed"
    );
    let data = app
        .ok(
            Some(&a.owner.token),
            "query($s: String!) { agent(slug: $s) { id name activeVersion { id } versions { id status specMarkdown } labels { version { id } } } }",
            json!({ "s": a.slug }),
        )
        .await;
    assert_eq!(data["agent"]["id"], a.agent.as_str());
    assert_eq!(data["agent"]["name"], "Agent alpha-triage");
    assert_eq!(data["agent"]["activeVersion"]["id"], a.active.as_str());
    assert_eq!(
        data["agent"]["labels"][0]["version"]["id"],
        a.active.as_str()
    );
}

#[tokio::test]
async fn agent_lists_never_show_another_tenants_rows() {
    let app = TestApp::new().await;
    let a = fixture(&app, "agt-juliet", "alpha-triage").await;
    let b = fixture(&app, "agt-kilo", "bravo-triage").await;
    let lists = "{ agents(first: 100, filter: {includeDeleted: true}) { totalCount nodes { id slug assistedUser { id } activeVersion { id flow { id } } versions { id flow { id } } labels { id version { id } } labelMoves { id fromVersion { id } toVersion { id } movedByKey { id } } } } }";
    let mine = app.ok(Some(&a.owner.token), lists, json!({})).await;
    let theirs = app.ok(Some(&b.owner.token), lists, json!({})).await;
    let ids = [
        &a.agent,
        &a.retired,
        &a.archived,
        &a.active,
        &a.draft,
        &a.label,
        &a.label_move,
        &a.flow,
    ];
    assert_eq!(mine["agents"]["totalCount"], 2, "{mine:#}");
    let mine_text = mine.to_string();
    for id in ids {
        assert!(
            mine_text.contains(id.as_str()),
            "tenant A's lists lack {id}"
        );
    }
    assert_eq!(theirs["agents"]["totalCount"], 2, "{theirs:#}");
    let theirs_text = theirs.to_string();
    for id in ids {
        assert!(
            !theirs_text.contains(id.as_str()),
            "tenant B's lists show {id}: {theirs:#}"
        );
    }
    // Look-ups and filters naming tenant A's agent find nothing, as for one that does
    // not exist; tenant A's own token finds it, so the names are real.
    let by_slug = "query($s: String!) { agent(slug: $s) { id } }";
    let found = app
        .ok(Some(&a.owner.token), by_slug, json!({ "s": a.slug }))
        .await;
    assert_eq!(found["agent"]["id"], a.agent.as_str());
    let search = "query($s: String!) { agents(filter: {search: $s}) { totalCount nodes { id } } }";
    let own = app
        .ok(Some(&a.owner.token), search, json!({ "s": a.slug }))
        .await;
    assert_eq!(own["agents"]["totalCount"], 1);
    for query in [by_slug, search] {
        let foreign = app
            .ok(Some(&b.owner.token), query, json!({ "s": a.slug }))
            .await;
        let missing = app
            .ok(Some(&b.owner.token), query, json!({ "s": "no-such-agent" }))
            .await;
        assert_eq!(foreign, missing, "{query}");
    }
}
