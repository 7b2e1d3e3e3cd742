//! Agents: created, changed, deleted and restored; versions move draft → active →
//! archived (and back to active, a rollback), and an active version never changes,
//! through the API or the database; labels move between versions that cannot change
//! and keep every move; bad input names its field; the agents list costs the same
//! statements whatever its page size.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use trellis_core::scope::stmt;

use crate::isolation_workflows::uuid;
use crate::processes::{payload, text};
use crate::support::{as_app, Member, TestApp};

pub const CREATE_AGENT: &str = "mutation($slug: String!, $name: String!) { createAgent(input: {slug: $slug, name: $name}) { agent { id slug status } userErrors { field message code } } }";
pub const CREATE_VERSION: &str = "mutation($a: ID!, $spec: JSON, $md: String, $flow: ID, $from: ID) { createAgentVersion(input: {agentId: $a, spec: $spec, specMarkdown: $md, flowVersionId: $flow, fromVersionId: $from}) { version { id number status } userErrors { field message code } } }";
pub const ACTIVATE: &str = "mutation($id: ID!) { activateAgentVersion(input: {id: $id}) { version { id status activatedAt } agent { activeVersion { id } } userErrors { field message code } } }";
pub const ARCHIVE: &str = "mutation($id: ID!) { archiveAgentVersion(input: {id: $id}) { version { id status archivedAt } agent { activeVersion { id } } userErrors { field message code } } }";
pub const MOVE: &str = "mutation($v: ID!, $l: String!) { moveAgentLabel(input: {versionId: $v, label: $l}) { label { id name version { id number } } move { id fromVersion { number } toVersion { number } } userErrors { field message code } } }";

/// Creates an agent; its ID.
pub async fn create_agent(app: &TestApp, owner: &Member, slug: &str) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            CREATE_AGENT,
            json!({ "slug": slug, "name": format!("Agent {slug}") }),
        )
        .await;
    text(&payload(&data, "createAgent")["agent"]["id"])
}

/// Adds a draft version with `spec`; its ID.
pub async fn create_version(app: &TestApp, owner: &Member, agent: &str, spec: Value) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            CREATE_VERSION,
            json!({ "a": agent, "spec": spec, "md": "# Triage\nLabel every issue." }),
        )
        .await;
    text(&payload(&data, "createAgentVersion")["version"]["id"])
}

/// Activates a version, which must work.
pub async fn activate(app: &TestApp, owner: &Member, version: &str) {
    let data = app
        .ok(Some(&owner.token), ACTIVATE, json!({ "id": version }))
        .await;
    assert_eq!(
        payload(&data, "activateAgentVersion")["version"]["status"],
        "ACTIVE"
    );
}

/// A workflow of one DELAY step whose version 1 is a draft (or published): the
/// workflow version's ID.
pub async fn flow(app: &TestApp, owner: &Member, key: &str, publish: bool) -> String {
    let t = Some(owner.token.as_str());
    let data = app
        .ok(
            t,
            "mutation($k: String!) { createWorkflow(input: {key: $k, name: \"Flow\"}) { workflow { versions { id } } userErrors { field message } } }",
            json!({ "k": key }),
        )
        .await;
    let version = text(&payload(&data, "createWorkflow")["workflow"]["versions"][0]["id"]);
    let data = app
        .ok(
            t,
            "mutation($v: ID!) { saveWorkflowGraph(input: {versionId: $v, steps: [{key: \"wait\", name: \"Wait\", type: DELAY, config: {seconds: 1}}], transitions: []}) { version { id } userErrors { field message } } }",
            json!({ "v": version }),
        )
        .await;
    payload(&data, "saveWorkflowGraph");
    if publish {
        let data = app
            .ok(
                t,
                "mutation($id: ID!) { publishVersion(input: {id: $id}) { version { status } userErrors { field message } } }",
                json!({ "id": version }),
            )
            .await;
        assert_eq!(
            payload(&data, "publishVersion")["version"]["status"],
            "PUBLISHED"
        );
    }
    version
}

/// The first user error of a mutation: (code, field).
fn first_error(data: &Value, field: &str) -> (String, String) {
    let error = &data[field]["userErrors"][0];
    assert!(error.is_object(), "{field}: no userErrors in {data:#}");
    (text(&error["code"]), text(&error["field"]))
}

#[tokio::test]
async fn agents_are_created_changed_deleted_and_restored() {
    let app = TestApp::new().await;
    let owner = app.owner("agents-crud").await;
    let t = Some(owner.token.as_str());
    let helper = app
        .member(&owner, "helper@agents-crud.test", "VIEWER")
        .await;

    let data = app
        .ok(
            t,
            "mutation($u: ID!, $p: JSON) { createAgent(input: {slug: \"triage\", name: \" Triage bot \", description: \"Labels issues\", role: ENGINEERING, modelTier: OPUS, thinkingMode: HIGH, toolPolicy: $p, budget: {monthlyCostLimit: 250.5, monthlyTokenLimit: 3000000000}, assistedUserId: $u}) { agent { id slug name description role status modelTier thinkingMode toolPolicy budget { monthlyCostLimit monthlyTokenLimit } assistedUser { email } createdBy { email } activeVersion { id } versions { id } labels { id } lastActiveAt deletedAt } userErrors { field message code } } }",
            json!({ "u": helper.user_id, "p": { "tools": { "github.issues:label": "ALLOW", "slack.post": "DENY" } } }),
        )
        .await;
    let agent = payload(&data, "createAgent")["agent"].clone();
    let id = text(&agent["id"]);
    assert!(id.starts_with("agt_"), "{id}");
    assert_eq!(
        agent,
        json!({
            "id": id, "slug": "triage", "name": "Triage bot", "description": "Labels issues",
            "role": "ENGINEERING", "status": "IDLE", "modelTier": "OPUS", "thinkingMode": "HIGH",
            "toolPolicy": { "tools": { "github.issues:label": "ALLOW", "slack.post": "DENY" }, "default": "ASK" },
            "budget": { "monthlyCostLimit": 250.5, "monthlyTokenLimit": 3_000_000_000_i64 },
            "assistedUser": { "email": "helper@agents-crud.test" },
            "createdBy": { "email": owner.email },
            "activeVersion": null, "versions": [], "labels": [], "lastActiveAt": null, "deletedAt": null
        })
    );
    let other = create_agent(&app, &owner, "ops-helper").await;

    // Viewers read but do not write.
    let code = app
        .error_code(
            Some(&helper.token),
            CREATE_AGENT,
            json!({ "slug": "nope", "name": "Nope" }),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");
    let data = app
        .ok(
            Some(&helper.token),
            "{ agent(slug: \"triage\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(data["agent"]["id"], id.as_str());

    // Changes: only what is given; null clears the assisted user.
    let data = app
        .ok(
            t,
            "mutation($id: ID!) { updateAgent(input: {id: $id, status: PAUSED, role: PM, toolPolicy: {default: \"DENY\"}, assistedUserId: null}) { agent { name status role toolPolicy assistedUser { email } budget { monthlyCostLimit } } userErrors { field message code } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        payload(&data, "updateAgent")["agent"],
        json!({
            "name": "Triage bot", "status": "PAUSED", "role": "PM",
            "toolPolicy": { "tools": {}, "default": "DENY" }, "assistedUser": null,
            "budget": { "monthlyCostLimit": 250.5 }
        })
    );

    // Filters: status, role, search; newest first by default.
    let list = "query($f: AgentFilter) { agents(filter: $f) { totalCount nodes { slug } } }";
    for (filter, slugs) in [
        (json!({}), json!(["ops-helper", "triage"])),
        (json!({ "status": "PAUSED" }), json!(["triage"])),
        (
            json!({ "status": ["IDLE", "ERROR"] }),
            json!(["ops-helper"]),
        ),
        (json!({ "role": ["CUSTOM"] }), json!(["ops-helper"])),
        (json!({ "search": "TRIAGE" }), json!(["triage"])),
        (json!({ "search": "%" }), json!([])),
    ] {
        let data = app.ok(t, list, json!({ "f": filter })).await;
        let got: Vec<Value> = data["agents"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["slug"].clone())
            .collect();
        assert_eq!(json!(got), slugs, "{filter}");
    }

    // Deleted: gone from lists and look-ups, its slug free; includeDeleted shows it.
    let delete = "mutation($id: ID!) { deleteAgent(input: {id: $id}) { agent { deletedAt } userErrors { field code } } }";
    let data = app.ok(t, delete, json!({ "id": id })).await;
    assert!(payload(&data, "deleteAgent")["agent"]["deletedAt"].is_string());
    let data = app
        .ok(t, "{ agent(slug: \"triage\") { id } }", json!({}))
        .await;
    assert_eq!(data["agent"], Value::Null);
    let data = app.ok(t, list, json!({ "f": {} })).await;
    assert_eq!(data["agents"]["totalCount"], 1);
    let data = app
        .ok(t, list, json!({ "f": { "includeDeleted": true } }))
        .await;
    assert_eq!(data["agents"]["totalCount"], 2);
    let data = app.ok(t, list, json!({ "f": { "deleted": true } })).await;
    assert_eq!(
        data["agents"]["nodes"],
        json!([{ "slug": "triage" }]),
        "only the deleted one"
    );
    let code = app.error_code(t, delete, json!({ "id": id })).await;
    assert_eq!(code, "NOT_FOUND", "a deleted agent is deleted once");

    // Another agent takes the slug: restoring is CONFLICT on the slug, until it moves.
    let taken = create_agent(&app, &owner, "triage").await;
    let restore = "mutation($id: ID!) { restoreAgent(input: {id: $id}) { agent { slug deletedAt } userErrors { field message code } } }";
    let data = app.ok(t, restore, json!({ "id": id })).await;
    assert_eq!(
        first_error(&data, "restoreAgent"),
        ("CONFLICT".into(), "slug".into())
    );
    app.ok(
        t,
        "mutation($id: ID!) { updateAgent(input: {id: $id, slug: \"triage-2\"}) { userErrors { field } } }",
        json!({ "id": taken }),
    )
    .await;
    let data = app.ok(t, restore, json!({ "id": id })).await;
    assert_eq!(
        payload(&data, "restoreAgent")["agent"],
        json!({ "slug": "triage", "deletedAt": null })
    );
    let data = app
        .ok(
            t,
            "query($id: ID!) { node(id: $id) { ... on Agent { slug } } }",
            json!({ "id": other }),
        )
        .await;
    assert_eq!(data["node"]["slug"], "ops-helper");

    // Every change is audited.
    let data = app
        .ok(
            t,
            "{ tenant { auditEvents(first: 100, orderBy: CREATED_AT_ASC) { edges { node { action targetId } } } } }",
            json!({}),
        )
        .await;
    let actions: Vec<(String, String)> = data["tenant"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["action"].as_str().unwrap().starts_with("agent."))
        .map(|e| {
            (
                text(&e["node"]["action"]),
                e["node"]["targetId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let of = |action: &str, target: &str| (action.to_owned(), target.to_owned());
    assert_eq!(
        actions,
        [
            of("agent.create", &id),
            of("agent.create", &other),
            of("agent.update", &id),
            of("agent.delete", &id),
            of("agent.create", &taken),
            of("agent.update", &taken),
            of("agent.restore", &id),
        ]
    );
}

#[tokio::test]
async fn versions_move_from_draft_to_active_and_active_versions_never_change() {
    let app = TestApp::new().await;
    let owner = app.owner("agents-versions").await;
    let t = Some(owner.token.as_str());
    let agent = create_agent(&app, &owner, "triage").await;
    let draft_flow = flow(&app, &owner, "triage-flow", false).await;

    // A draft with a flow that is itself a draft: it changes, but cannot be activated.
    let spec = json!({ "instructions": "Label issues.", "model": { "tier": "HAIKU" }, "tools": ["github.issues:label"] });
    let data = app
        .ok(
            t,
            CREATE_VERSION,
            json!({ "a": agent, "spec": spec, "md": "# v1", "flow": draft_flow }),
        )
        .await;
    let v1 = text(&payload(&data, "createAgentVersion")["version"]["id"]);
    assert!(v1.starts_with("agv_"));
    let data = app
        .ok(
            t,
            "mutation($id: ID!) { updateAgentVersion(input: {id: $id, specMarkdown: \"# v1, edited\"}) { version { number status specMarkdown spec flow { id } } userErrors { field message code } } }",
            json!({ "id": v1 }),
        )
        .await;
    assert_eq!(
        payload(&data, "updateAgentVersion")["version"],
        json!({ "number": 1, "status": "DRAFT", "specMarkdown": "# v1, edited", "spec": spec, "flow": { "id": draft_flow } })
    );
    let data = app.ok(t, ACTIVATE, json!({ "id": v1 })).await;
    assert_eq!(
        first_error(&data, "activateAgentVersion"),
        ("CONFLICT".into(), "flowVersionId".into())
    );

    // Once the flow is published (through the workflow editor, which checks its
    // graph), the version activates and the agent runs it.
    app.ok(
        t,
        "mutation($id: ID!) { publishVersion(input: {id: $id}) { userErrors { field } } }",
        json!({ "id": draft_flow }),
    )
    .await;
    activate(&app, &owner, &v1).await;

    // An active version never changes: not through the API ...
    let data = app
        .ok(
            t,
            "mutation($id: ID!) { updateAgentVersion(input: {id: $id, specMarkdown: \"changed\"}) { version { id } userErrors { field message code } } }",
            json!({ "id": v1 }),
        )
        .await;
    assert_eq!(
        first_error(&data, "updateAgentVersion"),
        ("CONFLICT".into(), "id".into())
    );
    // ... nor in the database, as the application role.
    let pool = app.db.app_pool(1).await;
    for sql in [
        "UPDATE agent_versions SET spec_markdown = 'x' WHERE id = $1",
        "UPDATE agent_versions SET spec = '{\"instructions\": \"x\"}' WHERE id = $1",
        "UPDATE agent_versions SET flow_version_id = NULL WHERE id = $1",
        "UPDATE agent_versions SET status = 'draft' WHERE id = $1",
    ] {
        let tx = as_app(&pool, Some(owner.tenant_uuid()), None).await;
        let err = sea_orm::ConnectionTrait::execute(&tx, stmt(sql, [uuid(&v1).into()]))
            .await
            .expect_err(sql);
        assert!(err.to_string().contains("cannot change"), "{sql}: {err}");
        drop(tx);
    }
    let tx = as_app(&pool, Some(owner.tenant_uuid()), None).await;
    let err = sea_orm::ConnectionTrait::execute(
        &tx,
        stmt(
            "DELETE FROM agent_versions WHERE id = $1",
            [uuid(&v1).into()],
        ),
    )
    .await
    .expect_err("delete");
    assert!(err.to_string().contains("permission denied"), "{err}");
    drop(tx);

    // v2 copies v1; activating it archives v1. An archived version is frozen as well,
    // and activating it again is a rollback.
    let data = app
        .ok(t, CREATE_VERSION, json!({ "a": agent, "from": v1 }))
        .await;
    let v2 = text(&payload(&data, "createAgentVersion")["version"]["id"]);
    let data = app
        .ok(t, "query($id: ID!) { node(id: $id) { ... on AgentVersion { number status specMarkdown spec flow { id } } } }", json!({ "id": v2 }))
        .await;
    assert_eq!(
        data["node"],
        json!({ "number": 2, "status": "DRAFT", "specMarkdown": "# v1, edited", "spec": spec, "flow": { "id": draft_flow } })
    );
    activate(&app, &owner, &v2).await;
    let read = "{ agent(slug: \"triage\") { activeVersion { number } versions { number status activatedAt archivedAt } } }";
    let data = app.ok(t, read, json!({})).await;
    assert_eq!(data["agent"]["activeVersion"]["number"], 2);
    let statuses: Vec<(i64, String, bool)> = data["agent"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["number"].as_i64().unwrap(),
                text(&v["status"]),
                v["archivedAt"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [(2, "ACTIVE".into(), false), (1, "ARCHIVED".into(), true)]
    );
    let data = app
        .ok(
            t,
            "mutation($id: ID!) { updateAgentVersion(input: {id: $id, specMarkdown: \"changed\"}) { userErrors { field code } } }",
            json!({ "id": v1 }),
        )
        .await;
    assert_eq!(first_error(&data, "updateAgentVersion").0, "CONFLICT");
    activate(&app, &owner, &v1).await;
    let data = app.ok(t, read, json!({})).await;
    assert_eq!(data["agent"]["activeVersion"]["number"], 1);
    assert_eq!(data["agent"]["versions"][0]["status"], "ARCHIVED");

    // Archiving the active version leaves the agent with none; a draft can be archived
    // (set aside), and nothing goes back to DRAFT.
    let data = app.ok(t, ARCHIVE, json!({ "id": v1 })).await;
    let archived = payload(&data, "archiveAgentVersion");
    assert_eq!(archived["version"]["status"], "ARCHIVED");
    assert_eq!(archived["agent"]["activeVersion"], Value::Null);
    let v3 = create_version(&app, &owner, &agent, json!({})).await;
    let data = app.ok(t, ARCHIVE, json!({ "id": v3 })).await;
    assert_eq!(
        payload(&data, "archiveAgentVersion")["version"]["status"],
        "ARCHIVED"
    );

    // The database holds the rules too: one active version per agent, and an agent's
    // active version is one of its own active ones.
    let tx = as_app(&pool, Some(owner.tenant_uuid()), None).await;
    let err = sea_orm::ConnectionTrait::execute(
        &tx,
        stmt(
            "UPDATE agents SET active_version_id = $1 WHERE id = $2",
            [uuid(&v3).into(), uuid(&agent).into()],
        ),
    )
    .await
    .expect_err("an archived version made active by hand");
    assert!(err.to_string().contains("active versions"), "{err}");
    drop(tx);

    let data = app
        .ok(
            t,
            "{ tenant { auditEvents(first: 100, orderBy: CREATED_AT_ASC) { edges { node { action } } } } }",
            json!({}),
        )
        .await;
    let actions: Vec<String> = data["tenant"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| text(&e["node"]["action"]))
        .filter(|a| a.starts_with("agent.version"))
        .collect();
    assert_eq!(
        actions,
        [
            "agent.version.create",
            "agent.version.update",
            "agent.version.activate",
            "agent.version.create",
            "agent.version.activate",
            "agent.version.activate",
            "agent.version.archive",
            "agent.version.create",
            "agent.version.archive",
        ]
    );
}

#[tokio::test]
async fn labels_point_at_frozen_versions_and_keep_every_move() {
    let app = TestApp::new().await;
    let owner = app.owner("agents-labels").await;
    let t = Some(owner.token.as_str());
    let agent = create_agent(&app, &owner, "triage").await;
    let v1 = create_version(&app, &owner, &agent, json!({})).await;
    let v2 = create_version(&app, &owner, &agent, json!({})).await;

    // A draft can change, so no label points at it.
    let data = app.ok(t, MOVE, json!({ "v": v1, "l": "production" })).await;
    assert_eq!(
        first_error(&data, "moveAgentLabel"),
        ("CONFLICT".into(), "versionId".into())
    );
    activate(&app, &owner, &v1).await;
    activate(&app, &owner, &v2).await;

    let moves = [
        ("production", &v1, Value::Null),
        ("staging", &v2, Value::Null),
        ("production", &v2, json!({ "number": 1 })),
        ("production", &v1, json!({ "number": 2 })),
    ];
    for (label, version, from) in moves {
        let data = app.ok(t, MOVE, json!({ "v": version, "l": label })).await;
        let moved = payload(&data, "moveAgentLabel");
        assert_eq!(moved["label"]["name"], label);
        assert_eq!(moved["label"]["version"]["id"], version.as_str());
        assert_eq!(moved["move"]["fromVersion"], from, "{label}");
    }
    // Moving a label where it already points changes nothing and adds no history.
    let data = app.ok(t, MOVE, json!({ "v": v1, "l": "production" })).await;
    let moved = payload(&data, "moveAgentLabel");
    assert_eq!(moved["move"], Value::Null);

    let data = app
        .ok(
            t,
            "{ agent(slug: \"triage\") { labels { name version { number } } labelMoves { label { name } fromVersion { number } toVersion { number } movedBy { email } createdAt } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["agent"]["labels"],
        json!([
            { "name": "production", "version": { "number": 1 } },
            { "name": "staging", "version": { "number": 2 } },
        ])
    );
    let history: Vec<(String, Value, i64)> = data["agent"]["labelMoves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["movedBy"]["email"], owner.email.as_str());
            (
                text(&m["label"]["name"]),
                m["fromVersion"]["number"].clone(),
                m["toVersion"]["number"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("production".into(), json!(2), 1),
            ("production".into(), json!(1), 2),
            ("staging".into(), Value::Null, 2),
            ("production".into(), Value::Null, 1),
        ],
        "newest first"
    );
    let data = app
        .ok(
            t,
            "{ agent(slug: \"triage\") { labelMoves(first: 1) { toVersion { number } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["agent"]["labelMoves"],
        json!([{ "toVersion": { "number": 1 } }])
    );

    // History rows are append-only for the application role.
    let pool = app.db.app_pool(1).await;
    for sql in [
        "UPDATE agent_label_moves SET to_version_id = from_version_id",
        "DELETE FROM agent_label_moves",
        "DELETE FROM agent_labels",
    ] {
        let tx = as_app(&pool, Some(owner.tenant_uuid()), None).await;
        let err = sea_orm::ConnectionTrait::execute(&tx, stmt(sql, []))
            .await
            .expect_err(sql);
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
        drop(tx);
    }
}

#[tokio::test]
async fn concurrent_label_moves_queue_and_keep_a_consistent_history() {
    let app = TestApp::new().await;
    let owner = app.owner("agents-race").await;
    let agent = create_agent(&app, &owner, "triage").await;
    let mut versions = vec![];
    for _ in 0..4 {
        let v = create_version(&app, &owner, &agent, json!({})).await;
        activate(&app, &owner, &v).await;
        versions.push(v);
    }
    let moves = (0..12).map(|i| {
        let version = versions[i % versions.len()].clone();
        let app = &app;
        let token = owner.token.clone();
        async move {
            app.post(
                Some(&token),
                MOVE,
                json!({ "v": version, "l": "production" }),
            )
            .await
        }
    });
    let results = futures::future::join_all(moves).await;
    let mut moved = 0;
    for (status, body) in results {
        assert!(status.is_success(), "{body:#}");
        let payload = &body["data"]["moveAgentLabel"];
        // A move may lose a race only as a retryable CONFLICT, never half done.
        match payload["userErrors"].as_array().map(Vec::len) {
            Some(0) => moved += usize::from(!payload["move"].is_null()),
            _ => assert_eq!(payload["userErrors"][0]["code"], "CONFLICT", "{body:#}"),
        }
    }
    let data = app
        .ok(
            Some(&owner.token),
            "{ agent(slug: \"triage\") { labels { version { id } } labelMoves(first: 100) { fromVersion { id } toVersion { id } } } }",
            json!({}),
        )
        .await;
    let history = data["agent"]["labelMoves"].as_array().unwrap();
    assert_eq!(history.len(), moved, "{data:#}");
    // Newest first: each move starts where the one before it ended, and the label is
    // where the newest left it.
    assert_eq!(
        history[0]["toVersion"]["id"],
        data["agent"]["labels"][0]["version"]["id"]
    );
    for pair in history.windows(2) {
        assert_eq!(
            pair[0]["fromVersion"]["id"], pair[1]["toVersion"]["id"],
            "{data:#}"
        );
    }
    assert_eq!(history.last().unwrap()["fromVersion"], Value::Null);
}

#[tokio::test]
async fn bad_input_is_refused_with_its_field() {
    let app = TestApp::new().await;
    let owner = app.owner("agents-input").await;
    let other = app.owner("agents-input-other").await;
    let t = Some(owner.token.as_str());
    let agent = create_agent(&app, &owner, "triage").await;
    let draft = create_version(&app, &owner, &agent, json!({})).await;

    let create = "mutation($in: CreateAgentInput!) { createAgent(input: $in) { agent { id } userErrors { field message code } } }";
    let base = json!({ "slug": "fine", "name": "Fine" });
    let with = |extra: Value| {
        let mut input = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            input[k] = v.clone();
        }
        json!({ "in": input })
    };
    for (extra, field) in [
        (json!({ "slug": "Not A Slug" }), "slug"),
        (json!({ "slug": "x" }), "slug"),
        (json!({ "slug": "triage" }), "slug"),
        (json!({ "name": "  " }), "name"),
        (json!({ "description": "d".repeat(4001) }), "description"),
        (json!({ "toolPolicy": [] }), "toolPolicy"),
        (
            json!({ "toolPolicy": { "default": "MAYBE" } }),
            "toolPolicy.default",
        ),
        (
            json!({ "toolPolicy": { "tools": { "slack.post": "YES" } } }),
            "toolPolicy.tools.slack.post",
        ),
        (json!({ "toolPolicy": { "rules": {} } }), "toolPolicy.rules"),
        (
            json!({ "budget": { "monthlyCostLimit": -1 } }),
            "budget.monthlyCostLimit",
        ),
        (
            json!({ "budget": { "monthlyTokenLimit": -5 } }),
            "budget.monthlyTokenLimit",
        ),
        // Another tenant's user is not a member here, like a user nobody has.
        (json!({ "assistedUserId": other.user_id }), "assistedUserId"),
        (
            json!({ "assistedUserId": crate::isolation_workflows::made_up(&other.user_id) }),
            "assistedUserId",
        ),
    ] {
        let data = app.ok(t, create, with(extra.clone())).await;
        let (code, got) = first_error(&data, "createAgent");
        assert_eq!(got, field, "{extra}: {data:#}");
        assert!(
            ["BAD_USER_INPUT", "CONFLICT"].contains(&code.as_str()),
            "{extra}: {code}"
        );
        assert_eq!(data["createAgent"]["agent"], Value::Null);
    }

    let version = "mutation($in: CreateAgentVersionInput!) { createAgentVersion(input: $in) { version { id } userErrors { field message code } } }";
    let other_flow = flow(&app, &other, "their-flow", true).await;
    for (input, field) in [
        (
            json!({ "spec": { "model": { "tier": "GPT" } } }),
            "spec/model/tier",
        ),
        (json!({ "spec": { "tools": ["ok", 7] } }), "spec/tools/1"),
        (json!({ "spec": { "surprise": true } }), "spec"),
        (json!({ "spec": [] }), "spec"),
        (
            json!({ "spec": { "inputSchema": { "type": "strin" } } }),
            "spec/inputSchema",
        ),
        (
            json!({ "specMarkdown": "m".repeat(200_001) }),
            "specMarkdown",
        ),
        // Another tenant's workflow version is refused like one that does not exist.
        (json!({ "flowVersionId": other_flow }), "flowVersionId"),
        (
            json!({ "flowVersionId": crate::isolation_workflows::made_up(&other_flow) }),
            "flowVersionId",
        ),
        (
            json!({ "fromVersionId": crate::isolation_workflows::made_up(&draft) }),
            "fromVersionId",
        ),
    ] {
        let mut input = input.clone();
        input["agentId"] = json!(agent);
        let data = app.ok(t, version, json!({ "in": input })).await;
        let (code, got) = first_error(&data, "createAgentVersion");
        assert_eq!(
            (code.as_str(), got.as_str()),
            ("BAD_USER_INPUT", field),
            "{input}"
        );
    }
    let data = app
        .ok(
            t,
            "mutation($id: ID!) { updateAgentVersion(input: {id: $id, spec: {model: {thinking: \"MAX\"}}}) { userErrors { field code } } }",
            json!({ "id": draft }),
        )
        .await;
    assert_eq!(
        first_error(&data, "updateAgentVersion"),
        ("BAD_USER_INPUT".into(), "spec/model/thinking".into())
    );
    activate(&app, &owner, &draft).await;
    for label in ["Production", "", "has space"] {
        let data = app.ok(t, MOVE, json!({ "v": draft, "l": label })).await;
        assert_eq!(
            first_error(&data, "moveAgentLabel"),
            ("BAD_USER_INPUT".into(), "label".into()),
            "{label}"
        );
    }
    // Nothing of it was written.
    let data = app
        .ok(t, "{ agents(filter: {includeDeleted: true}) { totalCount nodes { versions { id } labels { id } } } }", json!({}))
        .await;
    assert_eq!(data["agents"]["totalCount"], 1);
    assert_eq!(
        data["agents"]["nodes"][0]["versions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(data["agents"]["nodes"][0]["labels"], json!([]));
    // The published schema is served as it is documented.
    let data = app.ok(t, "{ agentSpecSchema }", json!({})).await;
    assert_eq!(
        data["agentSpecSchema"],
        trellis_core::agents::spec::spec_schema()
    );
}

#[tokio::test]
async fn the_agents_list_costs_the_same_statements_at_5_and_20_agents() {
    let app = TestApp::new().await;
    let owner = app.owner("agents-dash").await;
    let helper = app
        .member(&owner, "helper@agents-dash.test", "VIEWER")
        .await;
    for i in 0..20 {
        let data = app
            .ok(
                Some(&owner.token),
                "mutation($s: String!, $u: ID!) { createAgent(input: {slug: $s, name: $s, assistedUserId: $u}) { agent { id } userErrors { field message } } }",
                json!({ "s": format!("agent-{i:02}"), "u": helper.user_id }),
            )
            .await;
        let agent = text(&payload(&data, "createAgent")["agent"]["id"]);
        let v1 = create_version(&app, &owner, &agent, json!({ "instructions": "one" })).await;
        let v2 = create_version(&app, &owner, &agent, json!({ "instructions": "two" })).await;
        activate(&app, &owner, &v1).await;
        activate(&app, &owner, &v2).await;
        for (label, version) in [("production", &v1), ("staging", &v2), ("production", &v2)] {
            let data = app
                .ok(
                    Some(&owner.token),
                    MOVE,
                    json!({ "v": version, "l": label }),
                )
                .await;
            payload(&data, "moveAgentLabel");
        }
    }
    let dashboard = "query($n: Int!) { agents(first: $n) { totalCount edges { cursor node { id slug status createdBy { email } assistedUser { email } activeVersion { number spec } versions { number status } labels { name version { number } } labelMoves(first: 5) { label { name } fromVersion { number } toVersion { number } movedBy { email } } } } } }";
    let mut counts = vec![];
    for n in [5, 20] {
        for _ in 0..3 {
            let before = app.state.statements.load(Ordering::Relaxed);
            let data = app
                .ok(Some(&owner.token), dashboard, json!({ "n": n }))
                .await;
            counts.push(app.state.statements.load(Ordering::Relaxed) - before);
            let edges = data["agents"]["edges"].as_array().unwrap();
            assert_eq!(edges.len(), n as usize);
            let node = &edges[0]["node"];
            assert_eq!(node["activeVersion"]["number"], 2);
            assert_eq!(node["labels"][0]["version"]["number"], 2);
            assert_eq!(node["labelMoves"][0]["fromVersion"]["number"], 1);
            assert_eq!(node["assistedUser"]["email"], "helper@agents-dash.test");
        }
    }
    eprintln!("agents dashboard: SQL statements per request at 5 and 20 agents: {counts:?}");
    // An N+1 would add statements per agent (15 more at 20 than at 5); every relation
    // is one prefetched statement per page, so every request costs the same.
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "statements per request changed with the page: {counts:?}"
    );
}

#[test]
fn docs_publish_the_spec_schema_the_code_checks() {
    let docs = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/agents.md"));
    let (_, rest) = docs
        .split_once("```json\n")
        .expect("docs/agents.md has a json block");
    let (block, _) = rest.split_once("\n```").unwrap();
    let published: Value = serde_json::from_str(block).unwrap();
    assert_eq!(published, trellis_core::agents::spec::spec_schema());
}

/// The dashboard's relations of a page of agents: the active version, the skills, two
/// selections of the latest activities and two ranges of metrics.
const RELATIONS: &str = "slug activeVersion { id number spec } \
    skills { skillVersion config skill { key name } } \
    activities(first: 3) { pageInfo { hasNextPage } edges { cursor node { type summary details at } } } \
    tasks: activities(first: 10, filter: {type: [TASK]}) { nodes { summary } } \
    metrics(period: DAY, from: $from, to: $to) { periodStart runs errors inputTokens costMicros p50LatencyMs p95LatencyMs } \
    hours: metrics(period: HOUR, from: $from, to: $to) { periodStart runs }";

#[tokio::test]
async fn a_page_reads_its_relations_in_one_statement_and_answers_as_each_agent_alone() {
    let app = TestApp::new().await;
    let owner = app.owner("together").await;
    let t = Some(owner.token.as_str());
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let mut skills = vec![];
    for key in ["triage", "summaries"] {
        let data = app
            .ok(
                t,
                crate::skills::CREATE_SKILL,
                json!({ "in": { "key": key, "name": key, "category": "PRODUCTIVITY", "compatibleRoles": ["CUSTOM"], "status": "PUBLISHED", "version": "2.0.1" } }),
            )
            .await;
        skills.push(text(&payload(&data, "createSkill")["skill"]["id"]));
    }
    // Agents that differ in every relation: no active version, no skills, no
    // activities or usage, and more activities than a page.
    let mut slugs = vec![];
    for i in 0..6usize {
        let slug = format!("agent-{i}");
        let agent = create_agent(&app, &owner, &slug).await;
        if i % 3 != 0 {
            let version =
                create_version(&app, &owner, &agent, json!({ "instructions": slug })).await;
            activate(&app, &owner, &version).await;
        }
        for skill in skills.iter().take(i % 3) {
            let data = app
                .ok(
                    t,
                    crate::skills::INSTALL,
                    json!({ "a": agent, "s": skill, "c": { "for": slug } }),
                )
                .await;
            payload(&data, "installSkill");
        }
        for k in 0..i * 2 {
            let kind = ["MESSAGE", "TASK", "ALERT"][k % 3];
            crate::agent_hosting::record(&app, &runner, &agent, kind, &format!("{slug} #{k}"))
                .await;
        }
        for k in 0..i as i64 {
            crate::agent_usage::report(
                &app,
                &runner,
                &agent,
                (100 + k, 10),
                500 * k,
                40 * k,
                k == 1,
            )
            .await;
        }
        slugs.push(slug);
    }
    let now = chrono::Utc::now();
    let range =
        json!({ "from": now - chrono::Duration::hours(3), "to": now + chrono::Duration::hours(1) });

    let page = format!(
        "query($from: DateTime!, $to: DateTime!) {{ agents(first: 6) {{ nodes {{ {RELATIONS} }} }} }}"
    );
    let bare = "{ agents(first: 6) { nodes { slug } } }";
    let statements = |app: &TestApp| app.state.statements.load(Ordering::Relaxed);
    let before = statements(&app);
    app.ok(t, bare, json!({})).await;
    let bare_statements = statements(&app) - before;
    let before = statements(&app);
    let data = app.ok(t, &page, range.clone()).await;
    let page_statements = statements(&app) - before;
    // Six relation selections, four kinds of look-up: one statement more than the
    // page alone.
    assert_eq!(
        page_statements,
        bare_statements + 1,
        "{bare_statements} statements for the page alone, {page_statements} with its relations"
    );

    let nodes = data["agents"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 6);
    let one = format!(
        "query($slug: String!, $from: DateTime!, $to: DateTime!) {{ agent(slug: $slug) {{ {RELATIONS} }} }}"
    );
    for node in nodes {
        let mut variables = range.clone();
        variables["slug"] = node["slug"].clone();
        let alone = app.ok(t, &one, variables).await;
        assert_eq!(node, &alone["agent"], "the page and the agent alone differ");
    }
    // What the agents hold, so that the comparison above compares something.
    let by_slug = |slug: &str| nodes.iter().find(|n| n["slug"] == slug).unwrap();
    let five = by_slug("agent-5");
    assert_eq!(five["activeVersion"]["number"], 1);
    assert_eq!(
        five["skills"],
        json!([
            { "skillVersion": "2.0.1", "config": { "for": "agent-5" }, "skill": { "key": "triage", "name": "triage" } },
            { "skillVersion": "2.0.1", "config": { "for": "agent-5" }, "skill": { "key": "summaries", "name": "summaries" } },
        ])
    );
    let latest: Vec<&str> = five["activities"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["summary"].as_str().unwrap())
        .collect();
    assert_eq!(latest, ["agent-5 #9", "agent-5 #8", "agent-5 #7"]);
    assert_eq!(five["activities"]["pageInfo"]["hasNextPage"], true);
    let tasks: Vec<&str> = five["tasks"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["summary"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["agent-5 #7", "agent-5 #4", "agent-5 #1"]);
    let runs = |buckets: &Value| -> i64 {
        buckets
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["runs"].as_i64().unwrap())
            .sum()
    };
    assert_eq!((runs(&five["metrics"]), runs(&five["hours"])), (5, 5));
    let zero = by_slug("agent-0");
    assert_eq!(zero["activeVersion"], Value::Null);
    assert_eq!(zero["skills"], json!([]));
    assert_eq!(zero["activities"]["edges"], json!([]));
    assert_eq!((runs(&zero["metrics"]), runs(&zero["hours"])), (0, 0));
}
