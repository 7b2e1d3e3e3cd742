//! Workflows through the API: versioned graphs saved whole, checked rule by rule with
//! userErrors that name the step or transition, published versions that the database
//! keeps immutable, concurrent publishes, the workflow life cycle, and the list's
//! statement count.

use std::sync::atomic::Ordering;

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use trellis_core::scope::stmt;

use crate::support::{as_app, Member, TestApp};

const SAVE: &str = "mutation($v: ID!, $steps: [WorkflowStepInput!]!, $transitions: [WorkflowTransitionInput!]!) { saveWorkflowGraph(input: {versionId: $v, steps: $steps, transitions: $transitions}) { version { id number status stepCount } userErrors { field message code } } }";
const PUBLISH: &str = "mutation($id: ID!) { publishVersion(input: {id: $id}) { version { id status publishedAt } userErrors { field message code } } }";

/// A workflow with its draft version 1; returns (workflow id, version id).
async fn workflow(app: &TestApp, owner: &Member, key: &str) -> (String, String) {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($k: String!) { createWorkflow(input: {key: $k, name: \"Onboarding\"}) { workflow { id status versions { id number status } } userErrors { field message } } }",
            json!({ "k": key }),
        )
        .await;
    let w = &data["createWorkflow"]["workflow"];
    assert_eq!(w["status"], "DRAFT");
    assert_eq!(w["versions"][0]["number"], 1);
    (
        w["id"].as_str().unwrap().to_owned(),
        w["versions"][0]["id"].as_str().unwrap().to_owned(),
    )
}

fn delay(key: &str) -> Value {
    json!({ "key": key, "name": key, "type": "DELAY", "config": { "seconds": 5 } })
}

fn edge(from: &str, to: &str) -> Value {
    json!({ "from": from, "to": to })
}

/// A three-step graph: fetch → check → (approve | notify by default).
fn onboarding_graph() -> (Value, Value) {
    let steps = json!([
        { "key": "fetch", "name": "Fetch the order", "type": "HTTP", "position": { "x": 0, "y": 0 },
          "config": { "url": "https://api.example.com/orders", "method": "GET" } },
        { "key": "check", "name": "Big order?", "type": "CONDITION" },
        { "key": "approve", "name": "Manager approval", "type": "APPROVAL", "config": { "approvers": ["ADMIN"] } },
        { "key": "notify", "name": "Tell the team", "type": "NOTIFICATION",
          "config": { "channel": "in_app", "to": "ADMIN", "message": "New order" }, "isRequired": false }
    ]);
    let transitions = json!([
        edge("fetch", "check"),
        { "key": "big", "from": "check", "to": "approve",
          "condition": { "all": [ { "field": "input.total", "operator": "gte", "value": 1000 },
                                  { "not": { "field": "input.vip", "operator": "eq", "value": true } } ] } },
        { "from": "check", "to": "notify", "isDefault": true }
    ]);
    (steps, transitions)
}

async fn save(
    app: &TestApp,
    member: &Member,
    version: &str,
    steps: Value,
    transitions: Value,
) -> Value {
    app.ok(
        Some(&member.token),
        SAVE,
        json!({ "v": version, "steps": steps, "transitions": transitions }),
    )
    .await["saveWorkflowGraph"]
        .clone()
}

#[tokio::test]
async fn a_graph_is_saved_published_activated_and_read_back() {
    let app = TestApp::new().await;
    let owner = app.owner("wf-roundtrip").await;
    let client = app
        .ok(
            Some(&owner.token),
            "mutation { createClient(input: {name: \"Acme GmbH\", email: \"Ops@Acme.test\", company: \"Acme\"}) { client { id email } userErrors { field message } } }",
            json!({}),
        )
        .await["createClient"]["client"]
        .clone();
    assert_eq!(client["email"], "ops@acme.test");
    let (workflow_id, version) = workflow(&app, &owner, "onboarding").await;
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!, $c: ID!) { updateWorkflow(input: {id: $id, clientId: $c}) { workflow { id } } }",
        json!({ "id": workflow_id, "c": client["id"] }),
    )
    .await;
    let (steps, transitions) = onboarding_graph();
    let saved = save(&app, &owner, &version, steps, transitions).await;
    assert_eq!(saved["userErrors"], json!([]), "{saved}");
    assert_eq!(saved["version"]["stepCount"], 4);

    let published = app
        .ok(Some(&owner.token), PUBLISH, json!({ "id": version }))
        .await;
    assert_eq!(
        published["publishVersion"]["version"]["status"],
        "PUBLISHED"
    );
    let activated = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { activateVersion(input: {id: $id}) { workflow { status activeVersion { number } } userErrors { message } } }",
            json!({ "id": version }),
        )
        .await;
    assert_eq!(activated["activateVersion"]["workflow"]["status"], "ACTIVE");
    assert_eq!(
        activated["activateVersion"]["workflow"]["activeVersion"]["number"],
        1
    );

    let data = app
        .ok(
            Some(&owner.token),
            "query($k: String!) { workflow(key: $k) { key client { name workflows { key } } activeVersion { number status steps { key type isEntry isRequired config outgoing { key isDefault to { key } } incoming { from { key } } } transitions { key condition isDefault from { key } to { key } } } } }",
            json!({ "k": "onboarding" }),
        )
        .await;
    let w = &data["workflow"];
    assert_eq!(w["client"]["name"], "Acme GmbH");
    assert_eq!(w["client"]["workflows"][0]["key"], "onboarding");
    let steps = w["activeVersion"]["steps"].as_array().unwrap();
    let keys: Vec<&str> = steps.iter().map(|s| s["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["fetch", "check", "approve", "notify"]);
    let entries: Vec<&str> = steps
        .iter()
        .filter(|s| s["isEntry"] == true)
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(entries, ["fetch"]);
    let check = &steps[1];
    assert_eq!(check["outgoing"].as_array().unwrap().len(), 2);
    assert_eq!(check["incoming"][0]["from"]["key"], "fetch");
    assert_eq!(steps[3]["isRequired"], false);
    let transitions = w["activeVersion"]["transitions"].as_array().unwrap();
    assert_eq!(transitions[0]["key"], "fetch->check");
    assert_eq!(transitions[1]["key"], "big");
    assert_eq!(
        transitions[1]["condition"]["all"][0]["operator"], "gte",
        "{transitions:?}"
    );
    assert_eq!(transitions[2]["isDefault"], true);

    // A draft copied from version 1 has the same graph under version 2.
    let draft = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!, $from: ID!) { createDraftVersion(input: {workflowId: $w, fromVersionId: $from}) { version { number status stepCount transitions { key } } userErrors { message } } }",
            json!({ "w": workflow_id, "from": version }),
        )
        .await;
    let draft = &draft["createDraftVersion"]["version"];
    assert_eq!(draft["number"], 2);
    assert_eq!(draft["status"], "DRAFT");
    assert_eq!(draft["stepCount"], 4);
    assert_eq!(draft["transitions"].as_array().unwrap().len(), 3);
}

/// Saves `steps`/`transitions` on a fresh draft and returns the userErrors' fields.
async fn problems(
    app: &TestApp,
    owner: &Member,
    version: &str,
    steps: Value,
    transitions: Value,
) -> Vec<String> {
    let saved = save(app, owner, version, steps, transitions).await;
    assert!(saved["version"].is_null(), "{saved}");
    saved["userErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["code"], "BAD_USER_INPUT", "{e}");
            e["field"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn every_graph_rule_gives_a_user_error_naming_its_step_or_transition() {
    let app = TestApp::new().await;
    let owner = app.owner("wf-rules").await;
    let (_, version) = workflow(&app, &owner, "rules").await;
    // A valid graph first, so the failing saves below must leave it as it is.
    let saved = save(
        &app,
        &owner,
        &version,
        json!([delay("a"), delay("b")]),
        json!([edge("a", "b")]),
    )
    .await;
    assert_eq!(saved["userErrors"], json!([]));

    let mut a_default = edge("a", "b");
    a_default["isDefault"] = json!(true);
    let mut c_default = edge("a", "c");
    c_default["isDefault"] = json!(true);
    // (case, steps, transitions, the userErrors' fields)
    type Case = (&'static str, Value, Value, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        (
            "duplicate step key",
            json!([delay("a"), delay("a")]),
            json!([]),
            vec!["steps.a.key", "steps"],
        ),
        (
            "two entry steps",
            json!([delay("a"), delay("b"), delay("c")]),
            json!([edge("a", "c")]),
            vec!["steps"],
        ),
        (
            "an endpoint outside the version",
            json!([delay("a")]),
            json!([edge("a", "ghost")]),
            vec!["transitions.a->ghost.to"],
        ),
        (
            "two default transitions",
            json!([delay("a"), delay("b"), delay("c")]),
            json!([a_default, c_default]),
            vec!["transitions.a->c.isDefault"],
        ),
        (
            "a cycle",
            json!([delay("a"), delay("b"), delay("c")]),
            json!([edge("a", "b"), edge("b", "c"), edge("c", "b")]),
            vec!["steps.b"],
        ),
        (
            "a self loop",
            json!([delay("a")]),
            json!([edge("a", "a")]),
            vec!["transitions.a->a.to"],
        ),
        (
            "an unknown operator",
            json!([delay("a"), delay("b")]),
            json!([{ "key": "ab", "from": "a", "to": "b", "condition": { "field": "x", "operator": "like", "value": 1 } }]),
            vec!["transitions.ab.condition/operator"],
        ),
        (
            "a nested malformed condition",
            json!([delay("a"), delay("b")]),
            json!([{ "key": "ab", "from": "a", "to": "b", "condition": { "any": [ { "field": "x", "operator": "in", "value": 3 } ] } }]),
            vec!["transitions.ab.condition/any/0/value"],
        ),
        (
            "a bad regex",
            json!([delay("a"), delay("b")]),
            json!([{ "key": "ab", "from": "a", "to": "b", "condition": { "field": "x", "operator": "matches", "value": "([" } }]),
            vec!["transitions.ab.condition/value"],
        ),
        (
            "a config invalid for its type",
            json!([{ "key": "call", "name": "Call", "type": "HTTP", "config": { "url": "ftp://nope" } }]),
            json!([]),
            vec!["steps.call.config/url"],
        ),
        (
            "a delay without seconds",
            json!([{ "key": "wait", "name": "Wait", "type": "DELAY" }]),
            json!([]),
            vec!["steps.wait.config"],
        ),
        (
            "an action step without an action",
            json!([{ "key": "act", "name": "Act", "type": "ACTION" }]),
            json!([]),
            vec!["steps.act.actionId"],
        ),
        (
            "a made-up action",
            json!([{ "key": "act", "name": "Act", "type": "ACTION", "actionId": "act_0190000000007000800000000000000a" }]),
            json!([]),
            vec!["steps.act.actionId"],
        ),
    ];
    for (case, steps, transitions, expected) in cases {
        let found = problems(&app, &owner, &version, steps, transitions).await;
        assert_eq!(found, expected, "{case}");
    }

    // Every problem of one graph comes back at once.
    let found = problems(
        &app,
        &owner,
        &version,
        json!([delay("a"), delay("a"), { "key": "h", "name": "H", "type": "HTTP" }]),
        json!([edge("a", "nowhere")]),
    )
    .await;
    assert!(found.len() >= 3, "{found:?}");

    // Nothing of the failed saves was written.
    let data = app
        .ok(Some(&owner.token), "query($id: ID!) { node(id: $id) { ... on WorkflowVersion { steps { key } transitions { key } } } }", json!({ "id": version }))
        .await;
    assert_eq!(
        data["node"]["steps"],
        json!([{ "key": "a" }, { "key": "b" }])
    );
    assert_eq!(data["node"]["transitions"], json!([{ "key": "a->b" }]));

    // An empty draft saves, but does not publish.
    let saved = save(&app, &owner, &version, json!([]), json!([])).await;
    assert_eq!(saved["userErrors"], json!([]));
    let published = app
        .ok(Some(&owner.token), PUBLISH, json!({ "id": version }))
        .await;
    assert_eq!(
        published["publishVersion"]["userErrors"][0]["field"],
        "steps"
    );
}

#[tokio::test]
async fn action_steps_are_checked_against_the_catalog_and_connections() {
    let app = TestApp::new().await;
    let owner = app.owner("wf-actions").await;
    let (_, version) = workflow(&app, &owner, "actions").await;
    let catalog = app
        .ok(
            Some(&owner.token),
            "{ slack: app(key: \"slack\") { id latestVersion { id actions { id key kind inputSchema } } } http: app(key: \"http\") { latestVersion { id actions { id key kind } } } }",
            json!({}),
        )
        .await;
    let slack_actions = catalog["slack"]["latestVersion"]["actions"]
        .as_array()
        .unwrap();
    let action = slack_actions
        .iter()
        .find(|a| {
            a["kind"] == "ACTION"
                && a["inputSchema"]["required"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
        })
        .expect("slack has an action with required inputs");
    let required: Vec<&str> = action["inputSchema"]["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        !required.is_empty(),
        "the slack action has required inputs: {action}"
    );
    let step = |config: Value, connection: Option<&str>| json!([{ "key": "post", "name": "Post", "type": "ACTION", "actionId": action["id"], "connectionId": connection, "config": config }]);
    // Its input schema applies to the step's config.
    let found = problems(&app, &owner, &version, step(json!({}), None), json!([])).await;
    assert_eq!(found, ["steps.post.config"]);
    // A trigger of the catalog cannot be a step.
    if let Some(trigger) = catalog["http"]["latestVersion"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .chain(slack_actions)
        .find(|a| a["kind"] == "TRIGGER")
    {
        let steps =
            json!([{ "key": "t", "name": "T", "type": "ACTION", "actionId": trigger["id"] }]);
        assert_eq!(
            problems(&app, &owner, &version, steps, json!([])).await,
            ["steps.t.actionId"]
        );
    }
    // A made-up connection, and one of another app, are refused on the step.
    let found = problems(
        &app,
        &owner,
        &version,
        step(json!({}), Some("con_0190000000007000800000000000000a")),
        json!([]),
    )
    .await;
    assert!(
        found.contains(&"steps.post.connectionId".to_owned()),
        "{found:?}"
    );
    let http_connection = app
        .ok(
            Some(&owner.token),
            "mutation($v: ID!) { createConnection(input: {appVersionId: $v, name: \"api\", config: {baseUrl: \"https://api.example.com\"}}) { connection { id } userErrors { field message } } }",
            json!({ "v": catalog["http"]["latestVersion"]["id"] }),
        )
        .await;
    let connection_id = http_connection["createConnection"]["connection"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{http_connection}"))
        .to_owned();
    let found = problems(
        &app,
        &owner,
        &version,
        step(json!({}), Some(&connection_id)),
        json!([]),
    )
    .await;
    assert!(
        found.contains(&"steps.post.connectionId".to_owned()),
        "{found:?}"
    );
}

#[tokio::test]
async fn published_versions_cannot_change_even_through_raw_sql() {
    let app = TestApp::new().await;
    let owner = app.owner("wf-immutable").await;
    let (_, version) = workflow(&app, &owner, "frozen").await;
    save(
        &app,
        &owner,
        &version,
        json!([delay("a"), delay("b")]),
        json!([edge("a", "b")]),
    )
    .await;
    app.ok(Some(&owner.token), PUBLISH, json!({ "id": version }))
        .await;

    // Through the API: CONFLICT, and a second publish too.
    let saved = save(&app, &owner, &version, json!([delay("x")]), json!([])).await;
    assert_eq!(saved["userErrors"][0]["code"], "CONFLICT", "{saved}");
    let again = app
        .ok(Some(&owner.token), PUBLISH, json!({ "id": version }))
        .await;
    assert_eq!(again["publishVersion"]["userErrors"][0]["code"], "CONFLICT");
    let spec = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { updateWorkflowVersion(input: {id: $id, spec: \"# new\"}) { userErrors { code } } }",
            json!({ "id": version }),
        )
        .await;
    assert_eq!(
        spec["updateWorkflowVersion"]["userErrors"][0]["code"],
        "CONFLICT"
    );

    // As the application role, with the tenant set: the database refuses every write.
    let version_uuid = uuid::Uuid::parse_str(&version[4..]).unwrap();
    let pool = app.db.app_pool(1).await;
    let writes = [
        "UPDATE workflow_steps SET name = 'changed' WHERE version_id = $1",
        "UPDATE workflow_steps SET config = '{\"seconds\": 9}' WHERE version_id = $1",
        "DELETE FROM workflow_transitions WHERE version_id = $1",
        "DELETE FROM workflow_steps WHERE version_id = $1",
        "INSERT INTO workflow_steps (id, tenant_id, version_id, key, name, type) SELECT gen_random_uuid(), tenant_id, id, 'extra', 'Extra', 'delay' FROM workflow_versions WHERE id = $1",
        "UPDATE workflow_transitions SET is_default = true WHERE version_id = $1",
        "UPDATE workflow_versions SET spec = 'changed' WHERE id = $1",
        "UPDATE workflow_versions SET status = 'draft', published_at = NULL WHERE id = $1",
    ];
    for sql in writes {
        let tx = as_app(&pool, Some(owner.tenant_uuid()), Some(owner.user_uuid())).await;
        let err = tx
            .execute(stmt(sql, [version_uuid.into()]))
            .await
            .expect_err(sql);
        let code = trellis_core::error::database_error(&err)
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("23000"), "{sql}: {err}");
        tx.rollback().await.unwrap();
    }
    // Archiving is the one change a published version accepts.
    let tx = as_app(&pool, Some(owner.tenant_uuid()), Some(owner.user_uuid())).await;
    let archived = tx
        .execute(stmt(
            "UPDATE workflow_versions SET status = 'archived' WHERE id = $1",
            [version_uuid.into()],
        ))
        .await
        .unwrap();
    assert_eq!(archived.rows_affected(), 1);
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn of_two_concurrent_publishes_one_wins_and_the_other_is_a_conflict() {
    let app = TestApp::new().await;
    let owner = app.owner("wf-race").await;
    let (workflow_id, first) = workflow(&app, &owner, "race").await;
    let mut versions = vec![first];
    for _ in 0..3 {
        let data = app
            .ok(
                Some(&owner.token),
                "mutation($w: ID!) { createDraftVersion(input: {workflowId: $w}) { version { id } } }",
                json!({ "w": workflow_id }),
            )
            .await;
        versions.push(
            data["createDraftVersion"]["version"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for version in &versions {
        save(
            &app,
            &owner,
            version,
            json!([delay("a"), delay("b")]),
            json!([edge("a", "b")]),
        )
        .await;
        let vars = json!({ "id": version });
        let (left, right) = tokio::join!(
            app.ok(Some(&owner.token), PUBLISH, vars.clone()),
            app.ok(Some(&owner.token), PUBLISH, vars.clone()),
        );
        let outcomes: Vec<&Value> = [&left, &right]
            .iter()
            .map(|d| &d["publishVersion"])
            .collect();
        let won = outcomes
            .iter()
            .filter(|o| o["version"]["status"] == "PUBLISHED")
            .count();
        let conflicts = outcomes
            .iter()
            .filter(|o| o["userErrors"][0]["code"] == "CONFLICT")
            .count();
        assert_eq!((won, conflicts), (1, 1), "{left} {right}");
    }
    // Exactly one publish event per version in the audit log.
    let data = app
        .ok(
            Some(&owner.token),
            "{ tenant { auditEvents(first: 100, filter: {action: \"workflow.version.publish\"}) { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["tenant"]["auditEvents"]["totalCount"], versions.len());
}

#[tokio::test]
async fn workflows_follow_their_life_cycle_and_roles() {
    let app = TestApp::new().await;
    let owner = app.owner("wf-life").await;
    let (workflow_id, version) = workflow(&app, &owner, "life").await;
    let status = |status: &'static str| {
        let token = owner.token.clone();
        let id = workflow_id.clone();
        let app = &app;
        async move {
            app.ok(
                Some(&token),
                "mutation($id: ID!, $s: WorkflowStatus!) { setWorkflowStatus(input: {id: $id, status: $s}) { workflow { status } userErrors { field code message } } }",
                json!({ "id": id, "s": status }),
            )
            .await["setWorkflowStatus"]
                .clone()
        }
    };
    // No active version yet.
    assert_eq!(status("ACTIVE").await["userErrors"][0]["code"], "CONFLICT");
    assert_eq!(
        status("INACTIVE").await["userErrors"][0]["code"],
        "CONFLICT"
    );
    save(&app, &owner, &version, json!([delay("a")]), json!([])).await;
    app.ok(Some(&owner.token), PUBLISH, json!({ "id": version }))
        .await;
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { activateVersion(input: {id: $id}) { workflow { id } } }",
        json!({ "id": version }),
    )
    .await;
    assert_eq!(status("INACTIVE").await["workflow"]["status"], "INACTIVE");
    assert_eq!(status("ACTIVE").await["workflow"]["status"], "ACTIVE");
    assert_eq!(
        status("ARCHIVED").await["userErrors"][0]["code"],
        "CONFLICT"
    );
    assert_eq!(status("DRAFT").await["userErrors"][0]["code"], "CONFLICT");
    assert_eq!(status("INACTIVE").await["workflow"]["status"], "INACTIVE");
    assert_eq!(status("ARCHIVED").await["workflow"]["status"], "ARCHIVED");
    assert_eq!(status("ACTIVE").await["userErrors"][0]["code"], "CONFLICT");

    // Keys are unique among live workflows; a deleted one frees its key and comes back
    // only while the key is free.
    let dup = app
        .ok(
            Some(&owner.token),
            "mutation { createWorkflow(input: {key: \"life\", name: \"Again\"}) { workflow { id } userErrors { field code } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        dup["createWorkflow"]["userErrors"],
        json!([{ "field": "key", "code": "CONFLICT" }])
    );
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { deleteWorkflow(input: {id: $id}) { workflow { deletedAt } } }",
        json!({ "id": workflow_id }),
    )
    .await;
    let list = app
        .ok(Some(&owner.token), "{ live: workflows { totalCount } deleted: workflows(filter: {deleted: true}) { nodes { key } } }", json!({}))
        .await;
    assert_eq!(list["live"]["totalCount"], 0);
    assert_eq!(list["deleted"]["nodes"][0]["key"], "life");
    let (_, _) = workflow(&app, &owner, "life").await;
    let restore = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { restoreWorkflow(input: {id: $id}) { workflow { id } userErrors { field code } } }",
            json!({ "id": workflow_id }),
        )
        .await;
    assert_eq!(
        restore["restoreWorkflow"]["userErrors"][0]["code"],
        "CONFLICT"
    );

    // Viewers read; operators cannot edit; builders can.
    let viewer = app.member(&owner, "viewer@wf-life.test", "VIEWER").await;
    let operator = app
        .member(&owner, "operator@wf-life.test", "OPERATOR")
        .await;
    let builder = app.member(&owner, "builder@wf-life.test", "BUILDER").await;
    let create = "mutation($k: String!) { createWorkflow(input: {key: $k, name: \"X\"}) { workflow { id } } }";
    assert_eq!(
        app.error_code(Some(&viewer.token), create, json!({ "k": "v-made" }))
            .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(Some(&operator.token), create, json!({ "k": "o-made" }))
            .await,
        "FORBIDDEN"
    );
    app.ok(Some(&builder.token), create, json!({ "k": "b-made" }))
        .await;
    let seen = app
        .ok(
            Some(&viewer.token),
            "{ workflows { nodes { key } } }",
            json!({}),
        )
        .await;
    assert_eq!(seen["workflows"]["nodes"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn clients_are_searched_filtered_and_deactivated() {
    let app = TestApp::new().await;
    let owner = app.owner("wf-clients").await;
    let create = "mutation($n: String!, $e: String, $c: String) { createClient(input: {name: $n, email: $e, company: $c}) { client { id } userErrors { field code } } }";
    let mut ids = vec![];
    for (name, email, company) in [
        ("Ada", "ada@one.test", "Analytical"),
        ("Grace", "grace@two.test", "Navy"),
        ("Linus", "linus@three.test", "Kernel"),
    ] {
        let data = app
            .ok(
                Some(&owner.token),
                create,
                json!({ "n": name, "e": email, "c": company }),
            )
            .await;
        ids.push(
            data["createClient"]["client"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let bad = app
        .ok(
            Some(&owner.token),
            create,
            json!({ "n": "Bad", "e": "not-an-email" }),
        )
        .await;
    assert_eq!(bad["createClient"]["userErrors"][0]["field"], "email");
    let bad = app
        .ok(Some(&owner.token), create, json!({ "n": " " }))
        .await;
    assert_eq!(bad["createClient"]["userErrors"][0]["field"], "name");
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { deactivateClient(input: {id: $id}) { client { isActive } } }",
        json!({ "id": ids[1] }),
    )
    .await;
    let names = |data: &Value, list: &str| -> Vec<String> {
        data[list]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let data = app
        .ok(
            Some(&owner.token),
            "{ navy: clients(filter: {search: \"NAVY\"}) { nodes { name } } byEmail: clients(filter: {search: \"three.test\"}) { nodes { name } } active: clients(filter: {active: true}, orderBy: CREATED_AT_ASC) { nodes { name } } inactive: clients(filter: {active: false}) { nodes { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(names(&data, "navy"), ["Grace"]);
    assert_eq!(names(&data, "byEmail"), ["Linus"]);
    assert_eq!(names(&data, "active"), ["Ada", "Linus"]);
    assert_eq!(names(&data, "inactive"), ["Grace"]);
}

#[tokio::test]
async fn the_workflow_list_costs_the_same_statements_for_any_page_size() {
    let app = TestApp::new().await;
    let owner = app.owner("wf-list").await;
    let client = app
        .ok(
            Some(&owner.token),
            "mutation { createClient(input: {name: \"C\"}) { client { id } } }",
            json!({}),
        )
        .await["createClient"]["client"]["id"]
        .clone();
    for i in 0..12 {
        let (id, version) = workflow(&app, &owner, &format!("flow-{i}")).await;
        app.ok(
            Some(&owner.token),
            "mutation($id: ID!, $c: ID!) { updateWorkflow(input: {id: $id, clientId: $c}) { workflow { id } } }",
            json!({ "id": id, "c": client }),
        )
        .await;
        let steps: Vec<Value> = (0..=i % 3).map(|s| delay(&format!("s{s}"))).collect();
        let transitions: Vec<Value> = (0..i % 3)
            .map(|s| edge(&format!("s{s}"), &format!("s{}", s + 1)))
            .collect();
        save(&app, &owner, &version, json!(steps), json!(transitions)).await;
        app.ok(
            Some(&owner.token),
            "mutation($w: ID!, $t: String!) { createTrigger(input: {workflowId: $w, key: $t, type: MANUAL}) { trigger { id } } }",
            json!({ "w": id, "t": format!("t-{i}") }),
        )
        .await;
    }
    let list = "query($n: Int!) { workflows(first: $n, filter: {status: [DRAFT]}) { totalCount edges { node { key status client { name } activeVersion { number } versions { number status stepCount } triggers { key type } } } } }";
    let mut counts = vec![];
    for n in [1, 5, 12] {
        for _ in 0..2 {
            let before = app.state.statements.load(Ordering::Relaxed);
            let data = app.ok(Some(&owner.token), list, json!({ "n": n })).await;
            counts.push(app.state.statements.load(Ordering::Relaxed) - before);
            let edges = data["workflows"]["edges"].as_array().unwrap();
            assert_eq!(edges.len(), n as usize);
            assert_eq!(data["workflows"]["totalCount"], 12);
            for edge in edges {
                let node = &edge["node"];
                let i: usize = node["key"].as_str().unwrap()[5..].parse().unwrap();
                assert_eq!(node["versions"][0]["stepCount"], (i % 3 + 1) as i64);
                assert_eq!(node["client"]["name"], "C");
                assert_eq!(node["triggers"][0]["key"], format!("t-{i}"));
            }
        }
    }
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "statements per request changed with the page: {counts:?}"
    );
}

#[tokio::test]
async fn saving_a_thousand_step_graph_is_one_transaction() {
    let app = TestApp::new().await;
    let owner = app.owner("wf-big").await;
    let (_, version) = workflow(&app, &owner, "big").await;
    let n = 1000;
    let steps: Vec<Value> = (0..n).map(|i| delay(&format!("s{i}"))).collect();
    // A layered DAG with about two transitions per step.
    let mut transitions = vec![];
    for i in 1..n {
        let parent = (i - 1) / 2;
        transitions.push(edge(&format!("s{parent}"), &format!("s{i}")));
        if i - 1 != parent {
            transitions.push(edge(&format!("s{}", i - 1), &format!("s{i}")));
        }
    }
    let saved = save(&app, &owner, &version, json!(steps), json!(transitions)).await;
    assert_eq!(saved["userErrors"], json!([]));
    assert_eq!(saved["version"]["stepCount"], n);
    let published = app
        .ok(Some(&owner.token), PUBLISH, json!({ "id": version }))
        .await;
    assert_eq!(
        published["publishVersion"]["version"]["status"],
        "PUBLISHED"
    );
    let admin = app.db.admin().await;
    let row = admin
        .query_one(stmt(
            "SELECT count(*) AS n FROM workflow_transitions WHERE version_id = $1",
            [uuid::Uuid::parse_str(&version[4..]).unwrap().into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let stored: i64 = row.try_get("", "n").unwrap();
    assert_eq!(stored as usize, transitions.len());
}
