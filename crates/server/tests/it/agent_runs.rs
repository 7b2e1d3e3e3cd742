//! Runs of agents: `runAgent` picks the version (named, a label's, the active one),
//! refuses what cannot run with a clear code, and starts a run of the version's flow on
//! the run tables, which the engine executes. The agent's tool policy is frozen on the
//! run and enforced by the engine: a denied tool fails its step (audited), an asked one
//! waits for a member's decision, and a change to the agent after the start does not
//! reach the run. One idempotency key makes one run, even from 20 concurrent calls, and
//! `agent.runs` costs the same statements whatever its page size.

use std::sync::atomic::Ordering;

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use trellis_core::scope::stmt;

use crate::agents::{activate, create_agent, MOVE};
use crate::engine::{executor, orders_api, run_to_end, transform};
use crate::isolation_workflows::uuid;
use crate::processes::{payload, text};
use crate::support::{as_app, Member, TestApp};

pub const RUN_AGENT: &str = "mutation($a: ID!, $v: ID, $l: String, $i: JSON, $k: String) { runAgent(input: {agentId: $a, versionId: $v, label: $l, input: $i, idempotencyKey: $k}) { run { id status triggerType toolPolicy agent { id } agentVersion { id number } version { id } } deduplicated userErrors { code field message } } }";

/// A published workflow version of `steps` and `transitions`: the flow's ID (`wfv_…`).
pub async fn published_flow(
    app: &TestApp,
    owner: &Member,
    key: &str,
    steps: Value,
    transitions: Value,
) -> String {
    let t = Some(owner.token.as_str());
    let created = app
        .ok(
            t,
            "mutation($k: String!) { createWorkflow(input: {key: $k, name: $k}) { workflow { versions { id } } } }",
            json!({ "k": key }),
        )
        .await;
    let version = text(&created["createWorkflow"]["workflow"]["versions"][0]["id"]);
    let saved = app
        .ok(
            t,
            "mutation($v: ID!, $s: [WorkflowStepInput!]!, $t: [WorkflowTransitionInput!]!) { saveWorkflowGraph(input: {versionId: $v, steps: $s, transitions: $t}) { userErrors { field message } } }",
            json!({ "v": version, "s": steps, "t": transitions }),
        )
        .await;
    assert_eq!(
        saved["saveWorkflowGraph"]["userErrors"],
        json!([]),
        "{saved}"
    );
    let published = app
        .ok(
            t,
            "mutation($id: ID!) { publishVersion(input: {id: $id}) { userErrors { message } } }",
            json!({ "id": version }),
        )
        .await;
    assert_eq!(published["publishVersion"]["userErrors"], json!([]));
    version
}

/// A draft version of `agent` running `flow` (none when `None`); its ID.
pub async fn version_with(
    app: &TestApp,
    owner: &Member,
    agent: &str,
    flow: Option<&str>,
) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            crate::agents::CREATE_VERSION,
            json!({ "a": agent, "flow": flow }),
        )
        .await;
    text(&payload(&data, "createAgentVersion")["version"]["id"])
}

/// An agent with `policy` whose active version 1 runs `flow`: (agent, version).
pub async fn agent_running(
    app: &TestApp,
    owner: &Member,
    slug: &str,
    flow: &str,
    policy: Value,
) -> (String, String) {
    let agent = create_agent(app, owner, slug).await;
    set_policy(app, owner, &agent, policy).await;
    let version = version_with(app, owner, &agent, Some(flow)).await;
    activate(app, owner, &version).await;
    (agent, version)
}

async fn set_policy(app: &TestApp, owner: &Member, agent: &str, policy: Value) {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!, $p: JSON) { updateAgent(input: {id: $id, toolPolicy: $p}) { userErrors { field message } } }",
            json!({ "id": agent, "p": policy }),
        )
        .await;
    assert_eq!(data["updateAgent"]["userErrors"], json!([]), "{data}");
}

/// Sets `agent`'s monthly token limit (its budget's only limit).
pub async fn limit_tokens(app: &TestApp, owner: &Member, agent: &str, limit: i64) {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!, $n: Int!) { updateAgent(input: {id: $id, budget: {monthlyTokenLimit: $n}}) { userErrors { field message } } }",
            json!({ "id": agent, "n": limit }),
        )
        .await;
    assert_eq!(data["updateAgent"]["userErrors"], json!([]), "{data}");
}

/// `runAgent`'s payload.
pub async fn run_agent(app: &TestApp, who: &Member, vars: Value) -> Value {
    app.ok(Some(&who.token), RUN_AGENT, vars).await["runAgent"].clone()
}

/// Starts a run of `agent`'s active version that must start; the run's ID.
pub async fn started(app: &TestApp, who: &Member, agent: &str, input: Value) -> String {
    let data = run_agent(app, who, json!({ "a": agent, "i": input })).await;
    assert_eq!(data["userErrors"], json!([]), "{data}");
    text(&data["run"]["id"])
}

/// The (code, field) of the first user error.
fn refusal(data: &Value) -> (String, Value) {
    let error = &data["userErrors"][0];
    assert!(error.is_object(), "no userErrors in {data}");
    (text(&error["code"]), error["field"].clone())
}

/// One TRANSFORM step: a flow the engine finishes in one move.
pub(crate) fn echo_steps() -> (Value, Value) {
    (
        json!([transform("echo", json!({ "said": "{{ input.say }}" }))]),
        json!([]),
    )
}

/// fetch (HTTP GET `{api}/orders/7`) -> done (TRANSFORM).
fn fetch_steps(api: &str) -> (Value, Value) {
    (
        json!([
            { "key": "fetch", "name": "fetch", "type": "HTTP", "config": { "url": format!("{api}/orders/7"), "retry": { "maxAttempts": 1 } } },
            transform("done", json!({ "total": "{{ steps.fetch.output.body.total }}" })),
        ]),
        json!([{ "from": "fetch", "to": "done" }]),
    )
}

/// The run with its steps, as the dashboard reads it.
async fn run_of(app: &TestApp, who: &Member, id: &str) -> Value {
    app.ok(
        Some(&who.token),
        "query($id: ID!) { node(id: $id) { ... on WorkflowRun { id status error agent { id lastActiveAt } agentVersion { number } toolPolicy stepRuns { id stepKey status output error step { type } } } } }",
        json!({ "id": id }),
    )
    .await["node"]
        .clone()
}

fn step<'a>(run: &'a Value, key: &str) -> &'a Value {
    run["stepRuns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stepKey"] == key)
        .unwrap_or_else(|| panic!("no step {key}: {run}"))
}

/// The `agent.tool.deny` audit events of the owner's tenant: (actor type, details).
async fn denials(app: &TestApp, owner: &Member) -> Vec<(String, Value)> {
    let tx = as_app(&app.db.app_pool(1).await, Some(owner.tenant_uuid()), None).await;
    let rows = tx
        .query_all(stmt(
            "SELECT actor_type, details FROM audit_events WHERE action = 'agent.tool.deny' ORDER BY created_at",
            [],
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get::<String>("", "actor_type").unwrap(),
                r.try_get::<Value>("", "details").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn run_agent_runs_the_named_version_the_labels_or_the_active_one() {
    let app = TestApp::new().await;
    let owner = app.owner("agent-runs-pick").await;
    let (steps, links) = echo_steps();
    let flow = published_flow(&app, &owner, "echo-flow", steps, links).await;
    let (agent, v1) = agent_running(&app, &owner, "picker", &flow, json!({})).await;
    let v2 = version_with(&app, &owner, &agent, Some(&flow)).await;
    activate(&app, &owner, &v2).await;
    // v1 is archived now, and `production` points at it.
    let moved = app
        .ok(
            Some(&owner.token),
            MOVE,
            json!({ "v": v1, "l": "production" }),
        )
        .await;
    payload(&moved, "moveAgentLabel");

    let by_default = run_agent(&app, &owner, json!({ "a": agent, "i": { "say": "hi" } })).await;
    assert_eq!(by_default["userErrors"], json!([]), "{by_default}");
    let run = &by_default["run"];
    assert_eq!(run["status"], "PENDING");
    assert_eq!(run["triggerType"], "MANUAL");
    assert_eq!(run["agent"]["id"], agent.as_str());
    assert_eq!(run["agentVersion"]["number"], 2);
    assert_eq!(run["version"]["id"], flow.as_str());
    assert_eq!(run["toolPolicy"], json!({ "tools": {}, "default": "ASK" }));
    assert_eq!(by_default["deduplicated"], false);

    let by_label = run_agent(&app, &owner, json!({ "a": agent, "l": "production" })).await;
    assert_eq!(by_label["run"]["agentVersion"]["number"], 1, "{by_label}");
    let by_version = run_agent(&app, &owner, json!({ "a": agent, "v": v1 })).await;
    assert_eq!(
        by_version["run"]["agentVersion"]["number"], 1,
        "{by_version}"
    );
    let by_active = run_agent(&app, &owner, json!({ "a": agent, "v": v2 })).await;
    assert_eq!(by_active["run"]["agentVersion"]["number"], 2, "{by_active}");

    // The agent was active just now.
    let seen = run_of(&app, &owner, &text(&by_default["run"]["id"])).await;
    assert!(seen["agent"]["lastActiveAt"].is_string(), "{seen}");

    // A draft does not run; nor does an archived version no label points at.
    let draft = version_with(&app, &owner, &agent, Some(&flow)).await;
    let refused = run_agent(&app, &owner, json!({ "a": agent, "v": draft })).await;
    assert_eq!(refusal(&refused), ("CONFLICT".into(), json!("versionId")));
    let v4 = version_with(&app, &owner, &agent, Some(&flow)).await;
    activate(&app, &owner, &v4).await;
    activate(&app, &owner, &v2).await; // v4 archived, unlabelled
    let refused = run_agent(&app, &owner, json!({ "a": agent, "v": v4 })).await;
    assert_eq!(refusal(&refused), ("CONFLICT".into(), json!("versionId")));
    // A label the agent does not have, and both a version and a label.
    let refused = run_agent(&app, &owner, json!({ "a": agent, "l": "staging" })).await;
    assert_eq!(refusal(&refused), ("BAD_USER_INPUT".into(), json!("label")));
    let refused = run_agent(
        &app,
        &owner,
        json!({ "a": agent, "v": v1, "l": "production" }),
    )
    .await;
    assert_eq!(refusal(&refused), ("BAD_USER_INPUT".into(), json!("label")));

    // No active version; an active version without a flow.
    let idle = create_agent(&app, &owner, "idle").await;
    let refused = run_agent(&app, &owner, json!({ "a": idle })).await;
    assert_eq!(refusal(&refused), ("CONFLICT".into(), json!("agentId")));
    let flowless = version_with(&app, &owner, &idle, None).await;
    activate(&app, &owner, &flowless).await;
    let refused = run_agent(&app, &owner, json!({ "a": idle })).await;
    assert_eq!(refusal(&refused), ("CONFLICT".into(), json!("agentId")));

    // A deleted agent; one never issued; a viewer.
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { deleteAgent(input: {id: $id}) { userErrors { message } } }",
        json!({ "id": agent }),
    )
    .await;
    let refused = run_agent(&app, &owner, json!({ "a": agent })).await;
    assert_eq!(refusal(&refused), ("CONFLICT".into(), json!("agentId")));
    let made_up = crate::isolation_workflows::made_up(&agent);
    let refused = app
        .error_code(Some(&owner.token), RUN_AGENT, json!({ "a": made_up }))
        .await;
    assert_eq!(refused, "NOT_FOUND");
    let viewer = app
        .member(&owner, "viewer@agent-runs-pick.test", "VIEWER")
        .await;
    let refused = app
        .error_code(Some(&viewer.token), RUN_AGENT, json!({ "a": idle }))
        .await;
    assert_eq!(refused, "FORBIDDEN");

    // Each start is the audited `run.start`, naming the agent.
    let tx = as_app(&app.db.app_pool(1).await, Some(owner.tenant_uuid()), None).await;
    let row = tx
        .query_one(stmt(
            "SELECT count(*) AS n FROM audit_events WHERE action = 'run.start' AND details->>'agent' = $1",
            [uuid(&agent).to_string().into()],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 4);
}

#[tokio::test]
async fn the_engine_runs_an_agent_run_to_the_end_and_agent_runs_lists_it() {
    let app = TestApp::new().await;
    let owner = app.owner("agent-runs-engine").await;
    let (steps, links) = echo_steps();
    let flow = published_flow(&app, &owner, "echo-flow", steps, links).await;
    let (agent, _) = agent_running(&app, &owner, "echo", &flow, json!({})).await;
    let run = started(&app, &owner, &agent, json!({ "say": "hello" })).await;
    let _pending = started(&app, &owner, &agent, json!({ "say": "later" })).await;
    let ended = run_to_end(&app, &owner, &executor(&app, 1), &run).await;
    assert_eq!(ended["status"], "SUCCEEDED", "{ended}");
    let seen = run_of(&app, &owner, &run).await;
    let echo = step(&seen, "echo");
    assert_eq!(echo["status"], "SUCCEEDED");
    assert_eq!(echo["output"], json!({ "said": "hello" }));
    assert_eq!(echo["step"]["type"], "TRANSFORM");

    let listed = app
        .ok(
            Some(&owner.token),
            "query($s: String!) { agent(slug: $s) { runs(filter: {status: [SUCCEEDED]}) { totalCount nodes { id agent { id } } } all: runs(orderBy: CREATED_AT_ASC) { totalCount nodes { id } } } }",
            json!({ "s": "echo" }),
        )
        .await;
    let agent_node = &listed["agent"];
    assert_eq!(agent_node["runs"]["totalCount"], 1, "{listed}");
    assert_eq!(agent_node["runs"]["nodes"][0]["id"], run.as_str());
    assert_eq!(
        agent_node["runs"]["nodes"][0]["agent"]["id"],
        agent.as_str()
    );
    assert_eq!(agent_node["all"]["totalCount"], 2);
    assert_eq!(agent_node["all"]["nodes"][0]["id"], run.as_str());

    // The run's end is a TASK in the agent's activity feed; the pending run has none.
    let feed = app
        .ok(
            Some(&owner.token),
            "query($s: String!) { agent(slug: $s) { activities { edges { node { type summary details runId recordedBy { id } } } } } }",
            json!({ "s": "echo" }),
        )
        .await;
    assert_eq!(
        feed["agent"]["activities"]["edges"],
        json!([{ "node": {
            "type": "TASK",
            "summary": "Run succeeded",
            "details": { "status": "succeeded" },
            "runId": run,
            "recordedBy": null,
        } }]),
        "{feed}"
    );
}

#[tokio::test]
async fn one_idempotency_key_makes_one_run_even_from_20_concurrent_calls() {
    let app = TestApp::new().await;
    let owner = app.owner("agent-runs-key").await;
    let (steps, links) = echo_steps();
    let flow = published_flow(&app, &owner, "echo-flow", steps, links).await;
    let (agent, _) = agent_running(&app, &owner, "keyed", &flow, json!({})).await;
    let (other, _) = agent_running(&app, &owner, "other", &flow, json!({})).await;

    let vars = json!({ "a": agent, "i": { "say": "once" }, "k": "order-1" });
    let first = run_agent(&app, &owner, vars.clone()).await;
    let again = run_agent(&app, &owner, vars).await;
    assert_eq!(again["deduplicated"], true, "{again}");
    assert_eq!(again["run"]["id"], first["run"]["id"]);
    let changed = run_agent(
        &app,
        &owner,
        json!({ "a": agent, "i": { "say": "twice" }, "k": "order-1" }),
    )
    .await;
    assert_eq!(
        refusal(&changed),
        ("CONFLICT".into(), json!("idempotencyKey"))
    );
    // The same key and input for another agent on the same flow is not its run.
    let elsewhere = run_agent(
        &app,
        &owner,
        json!({ "a": other, "i": { "say": "once" }, "k": "order-1" }),
    )
    .await;
    assert_eq!(
        refusal(&elsewhere),
        ("CONFLICT".into(), json!("idempotencyKey"))
    );

    let calls = (0..20).map(|_| {
        run_agent(
            &app,
            &owner,
            json!({ "a": agent, "i": { "n": 20 }, "k": "burst" }),
        )
    });
    let answers = futures::future::join_all(calls).await;
    let mut ids: Vec<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a["userErrors"], json!([]), "{a}");
            text(&a["run"]["id"])
        })
        .collect();
    assert_eq!(
        answers
            .iter()
            .filter(|a| a["deduplicated"] == false)
            .count(),
        1
    );
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let tx = as_app(&app.db.app_pool(1).await, Some(owner.tenant_uuid()), None).await;
    let row = tx
        .query_one(stmt(
            "SELECT count(*) AS n FROM workflow_runs WHERE idempotency_key = 'burst'",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 1);
}

#[tokio::test]
async fn a_denied_tool_fails_its_step_is_audited_and_calls_nothing() {
    let app = TestApp::new().await;
    let owner = app.owner("agent-runs-deny").await;
    let (api, seen) = orders_api().await;
    let (steps, links) = fetch_steps(&api);
    let flow = published_flow(&app, &owner, "fetch-flow", steps, links).await;
    let policy = json!({ "tools": { "http": "DENY" }, "default": "ALLOW" });
    let (agent, _) = agent_running(&app, &owner, "denied", &flow, policy).await;
    let run = started(&app, &owner, &agent, json!({})).await;
    let ended = run_to_end(&app, &owner, &executor(&app, 10), &run).await;
    assert_eq!(ended["status"], "FAILED", "{ended}");
    assert!(seen.lock().unwrap().is_empty(), "a denied tool was called");
    let seen_run = run_of(&app, &owner, &run).await;
    let fetch = step(&seen_run, "fetch");
    assert_eq!(fetch["status"], "FAILED");
    assert_eq!(fetch["error"]["code"], "TOOL_DENIED", "{fetch}");
    assert_eq!(fetch["error"]["tool"], "http");
    assert_eq!(step(&seen_run, "done")["status"], "CANCELLED");
    assert_eq!(seen_run["error"]["error"]["code"], "TOOL_DENIED");
    let denials = denials(&app, &owner).await;
    assert_eq!(denials.len(), 1, "{denials:?}");
    let (actor, details) = &denials[0];
    assert_eq!(actor, "system", "the engine writes it");
    assert_eq!(details["tool"], "http");
    assert_eq!(details["decision"], "DENIED");
    assert_eq!(details["agent"], uuid(&agent).to_string());

    // A run of the same workflow that is not an agent's is not the policy's business.
    let workflow = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on WorkflowVersion { workflow { id } } } }",
            json!({ "id": flow }),
        )
        .await["node"]["workflow"]["id"]
        .clone();
    let plain = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!, $v: ID) { startRun(input: {workflowId: $w, versionId: $v}) { run { id toolPolicy agent { id } } userErrors { message } } }",
            json!({ "w": workflow, "v": flow }),
        )
        .await["startRun"]["run"]
        .clone();
    assert_eq!(plain["toolPolicy"], Value::Null);
    assert_eq!(plain["agent"], Value::Null);
    let ended = run_to_end(&app, &owner, &executor(&app, 10), &text(&plain["id"])).await;
    assert_eq!(ended["status"], "SUCCEEDED", "{ended}");
    assert_eq!(seen.lock().unwrap().as_slice(), ["GET /orders/7"]);
}

#[tokio::test]
async fn an_asked_tool_waits_for_a_member_and_runs_or_fails_as_decided() {
    let app = TestApp::new().await;
    let owner = app.owner("agent-runs-ask").await;
    let operator = app
        .member(&owner, "operator@agent-runs-ask.test", "OPERATOR")
        .await;
    let viewer = app
        .member(&owner, "viewer@agent-runs-ask.test", "VIEWER")
        .await;
    let (api, seen) = orders_api().await;
    let (steps, links) = fetch_steps(&api);
    let flow = published_flow(&app, &owner, "fetch-flow", steps, links).await;
    // `http` is not named: the default asks.
    let policy = json!({ "tools": { "slack": "DENY" }, "default": "ASK" });
    let (agent, _) = agent_running(&app, &owner, "careful", &flow, policy).await;
    let approved = started(&app, &operator, &agent, json!({})).await;
    let rejected = started(&app, &operator, &agent, json!({})).await;
    let engine = executor(&app, 10);
    engine.tick().await.unwrap();
    engine.tick().await.unwrap();
    assert!(
        seen.lock().unwrap().is_empty(),
        "an asked tool ran before approval"
    );
    for id in [&approved, &rejected] {
        let run = run_of(&app, &owner, id).await;
        assert_eq!(run["status"], "RUNNING", "{run}");
        assert_eq!(step(&run, "fetch")["status"], "WAITING", "{run}");
    }
    // Members who may decide see them waiting; viewers may not decide.
    let listed = app
        .ok(
            Some(&owner.token),
            "{ approvalsPending { stepRun { id } run { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["approvalsPending"].as_array().unwrap().len(),
        2,
        "{listed}"
    );
    let decide = "mutation($s: ID!, $d: Decision!) { decideApproval(input: {stepRunId: $s, decision: $d}) { stepRun { status } userErrors { code field message } } }";
    let step_of = |run: &Value| step(run, "fetch")["id"].clone();
    let approved_run = run_of(&app, &owner, &approved).await;
    let rejected_run = run_of(&app, &owner, &rejected).await;
    let refused = app
        .error_code(
            Some(&viewer.token),
            decide,
            json!({ "s": step_of(&approved_run), "d": "APPROVE" }),
        )
        .await;
    assert_eq!(refused, "FORBIDDEN");
    // The operator who started the run may approve the agent's call.
    let decided = app
        .ok(
            Some(&operator.token),
            decide,
            json!({ "s": step_of(&approved_run), "d": "APPROVE" }),
        )
        .await;
    assert_eq!(
        decided["decideApproval"]["userErrors"],
        json!([]),
        "{decided}"
    );
    let decided = app
        .ok(
            Some(&owner.token),
            decide,
            json!({ "s": step_of(&rejected_run), "d": "REJECT" }),
        )
        .await;
    assert_eq!(
        decided["decideApproval"]["userErrors"],
        json!([]),
        "{decided}"
    );

    let ended = run_to_end(&app, &owner, &engine, &approved).await;
    assert_eq!(ended["status"], "SUCCEEDED", "{ended}");
    assert_eq!(seen.lock().unwrap().as_slice(), ["GET /orders/7"]);
    let run = run_of(&app, &owner, &approved).await;
    assert_eq!(step(&run, "fetch")["output"]["body"]["total"], 700, "{run}");

    let ended = run_to_end(&app, &owner, &engine, &rejected).await;
    assert_eq!(ended["status"], "FAILED", "{ended}");
    let run = run_of(&app, &owner, &rejected).await;
    assert_eq!(step(&run, "fetch")["error"]["code"], "TOOL_DENIED", "{run}");
    assert_eq!(step(&run, "fetch")["error"]["decision"], "REJECTED");
    assert_eq!(seen.lock().unwrap().len(), 1, "a rejected tool was called");
    let denials = denials(&app, &owner).await;
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!(denials[0].1["decision"], "REJECTED");
}

#[tokio::test]
async fn the_policy_is_frozen_when_the_run_starts() {
    let app = TestApp::new().await;
    let owner = app.owner("agent-runs-frozen").await;
    let (api, seen) = orders_api().await;
    let (steps, links) = fetch_steps(&api);
    let flow = published_flow(&app, &owner, "fetch-flow", steps, links).await;
    let allow = json!({ "tools": { "http": "ALLOW" }, "default": "DENY" });
    let (agent, _) = agent_running(&app, &owner, "frozen", &flow, allow.clone()).await;
    let early = started(&app, &owner, &agent, json!({})).await;
    // Denied after the first run started: the first runs under ALLOW, the next under DENY.
    set_policy(
        &app,
        &owner,
        &agent,
        json!({ "tools": { "http": "DENY" }, "default": "DENY" }),
    )
    .await;
    let late = started(&app, &owner, &agent, json!({})).await;
    let engine = executor(&app, 10);
    let ended = run_to_end(&app, &owner, &engine, &early).await;
    assert_eq!(ended["status"], "SUCCEEDED", "{ended}");
    assert_eq!(run_of(&app, &owner, &early).await["toolPolicy"], allow);
    let ended = run_to_end(&app, &owner, &engine, &late).await;
    assert_eq!(ended["status"], "FAILED", "{ended}");
    assert_eq!(seen.lock().unwrap().len(), 1);

    // Nor can the application change a run's frozen policy, agent or version.
    let pool = app.db.app_pool(1).await;
    for set in [
        "tool_policy = '{\"tools\": {}, \"default\": \"ALLOW\"}'",
        "agent_version_id = gen_random_uuid()",
        "agent_id = gen_random_uuid()",
    ] {
        let tx = as_app(&pool, Some(owner.tenant_uuid()), Some(owner.user_uuid())).await;
        let err = tx
            .execute(stmt(
                &format!("UPDATE workflow_runs SET {set} WHERE id = $1"),
                [uuid(&late).into()],
            ))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("never change"), "{set}: {err}");
    }
}

#[tokio::test]
async fn agent_runs_cost_the_same_statements_at_5_and_20_runs() {
    let app = TestApp::new().await;
    let owner = app.owner("agent-runs-cost").await;
    let (steps, links) = echo_steps();
    let flow = published_flow(&app, &owner, "echo-flow", steps, links).await;
    let (agent, _) = agent_running(&app, &owner, "busy", &flow, json!({})).await;
    for n in 0..20 {
        started(&app, &owner, &agent, json!({ "n": n })).await;
    }
    let query = "query($n: Int!) { agent(slug: \"busy\") { runs(first: $n) { nodes { id status agent { id } agentVersion { number } } } } }";
    let mut counts = vec![];
    for n in [5, 20] {
        for _ in 0..2 {
            let before = app.state.statements.load(Ordering::Relaxed);
            let data = app.ok(Some(&owner.token), query, json!({ "n": n })).await;
            counts.push(app.state.statements.load(Ordering::Relaxed) - before);
            let nodes = data["agent"]["runs"]["nodes"].as_array().unwrap();
            assert_eq!(nodes.len(), n as usize);
            assert_eq!(nodes[0]["agent"]["id"], agent.as_str());
            assert_eq!(nodes[0]["agentVersion"]["number"], 1);
        }
    }
    eprintln!("agent.runs: SQL statements per request at 5 and 20 runs: {counts:?}");
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "statements per request changed with the page: {counts:?}"
    );
}

#[tokio::test]
async fn runner_workers_are_held_to_the_policy_too() {
    use crate::runs::{claim, step as runner_step};
    let app = TestApp::new().await;
    let owner = app.owner("agent-runs-runner").await;
    let data = app
        .ok(
            Some(&owner.token),
            "{ app(key: \"gmail\") { latestVersion { actions(kind: ACTION) { id key } } } }",
            json!({}),
        )
        .await;
    let action = data["app"]["latestVersion"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "searchMessages")
        .unwrap_or_else(|| panic!("{data}"))["id"]
        .clone();
    let steps = json!([
        { "key": "act", "name": "act", "type": "ACTION", "actionId": action, "config": { "maxResults": 5 } },
    ]);
    let flow = published_flow(&app, &owner, "gmail-flow", steps, json!([])).await;
    let deny = json!({ "tools": { "gmail": "DENY" }, "default": "ALLOW" });
    let (denied_agent, _) = agent_running(&app, &owner, "no-mail", &flow, deny).await;
    let ask =
        json!({ "tools": { "gmail": "DENY", "gmail.searchMessages": "ASK" }, "default": "ALLOW" });
    let (asking_agent, _) = agent_running(&app, &owner, "ask-mail", &flow, ask).await;
    let denied = started(&app, &owner, &denied_agent, json!({})).await;
    let asked = started(&app, &owner, &asking_agent, json!({})).await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let leases = claim(&app, &runner, 10).await;
    assert_eq!(leases.len(), 2, "{leases:?}");
    let token = |run: &str| {
        text(
            &leases
                .iter()
                .find(|l| l["run"]["id"] == run)
                .unwrap_or_else(|| panic!("{run} not claimed"))["token"],
        )
    };
    let (denied_token, asked_token) = (token(&denied), token(&asked));
    let call = |op: &'static str, run: String, token: String| {
        let (app, runner) = (&app, runner.clone());
        async move { runner_step(app, &runner, op, &run, &token, "act", json!({})).await }
    };

    let answer = call("startStep", denied.clone(), denied_token).await;
    assert_eq!(answer["stepRun"]["status"], "FAILED", "{answer}");
    let answer = call("startStep", asked.clone(), asked_token.clone()).await;
    assert_eq!(answer["stepRun"]["status"], "WAITING", "{answer}");
    let answer = call("completeStep", asked.clone(), asked_token.clone()).await;
    assert_eq!(answer["userErrors"][0]["code"], "CONFLICT", "{answer}");
    let answer = call("startStep", asked.clone(), asked_token.clone()).await;
    assert_eq!(answer["stepRun"]["status"], "WAITING", "{answer}");

    let waiting = run_of(&app, &owner, &asked).await;
    let decided = app
        .ok(
            Some(&owner.token),
            "mutation($s: ID!) { decideApproval(input: {stepRunId: $s, decision: APPROVE}) { userErrors { code message } } }",
            json!({ "s": step(&waiting, "act")["id"] }),
        )
        .await;
    assert_eq!(
        decided["decideApproval"]["userErrors"],
        json!([]),
        "{decided}"
    );
    let answer = call("startStep", asked.clone(), asked_token.clone()).await;
    assert_eq!(answer["stepRun"]["status"], "RUNNING", "{answer}");
    let answer = call("completeStep", asked.clone(), asked_token).await;
    assert_eq!(answer["stepRun"]["status"], "SUCCEEDED", "{answer}");

    let denials = denials(&app, &owner).await;
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!(denials[0].0, "api_key");
    assert_eq!(denials[0].1["tool"], "gmail.searchMessages");
}

#[tokio::test]
async fn a_page_of_agents_reads_their_latest_runs_in_one_statement() {
    let app = TestApp::new().await;
    let owner = app.owner("agent-runs-page").await;
    let (steps, links) = echo_steps();
    let flow = published_flow(&app, &owner, "echo-flow", steps, links).await;
    for i in 0..20 {
        let (agent, _) =
            agent_running(&app, &owner, &format!("agent-{i:02}"), &flow, json!({})).await;
        for n in 0..3 {
            started(&app, &owner, &agent, json!({ "n": n })).await;
        }
    }
    let counted = app
        .ok(
            Some(&owner.token),
            "{ agents(first: 2) { nodes { runs(first: 2) { totalCount } } } }",
            json!({}),
        )
        .await;
    assert_eq!(counted["agents"]["nodes"][1]["runs"]["totalCount"], 3);
    let query = "query($n: Int!) { agents(first: $n) { nodes { slug runs(first: 2) { pageInfo { hasNextPage } nodes { id input agent { slug } } } } } }";
    let mut counts = vec![];
    for n in [5, 20] {
        for _ in 0..2 {
            let before = app.state.statements.load(Ordering::Relaxed);
            let data = app.ok(Some(&owner.token), query, json!({ "n": n })).await;
            counts.push(app.state.statements.load(Ordering::Relaxed) - before);
            let agents = data["agents"]["nodes"].as_array().unwrap();
            assert_eq!(agents.len(), n as usize);
            for agent in agents {
                let runs = &agent["runs"];
                assert_eq!(runs["nodes"].as_array().unwrap().len(), 2, "{agent}");
                assert_eq!(runs["pageInfo"]["hasNextPage"], true);
                // Newest first, and each agent's own.
                assert_eq!(runs["nodes"][0]["input"], json!({ "n": 2 }));
                assert_eq!(runs["nodes"][0]["agent"]["slug"], agent["slug"]);
            }
        }
    }
    eprintln!("agents with their runs: SQL statements per request at 5 and 20 agents: {counts:?}");
    // The runs and their agents are one statement each for the whole page.
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "runs of a page of agents cost statements per agent: {counts:?}"
    );
}

/// A run that would start over the agent's monthly budget is refused with
/// RATE_LIMITED (retry next month) and raises one budget alert, however many callers
/// try at once; under budget the same call starts a run.
#[tokio::test]
async fn run_agent_is_refused_over_budget_and_raises_one_alert() {
    let app = TestApp::new().await;
    let owner = app.owner("agent-runs-budget").await;
    let (steps, links) = echo_steps();
    let flow = published_flow(&app, &owner, "budget-flow", steps, links).await;
    let (agent, _) = agent_running(&app, &owner, "spender", &flow, json!({})).await;
    limit_tokens(&app, &owner, &agent, 100).await;
    started(&app, &owner, &agent, json!({ "say": "under" })).await;

    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    crate::agent_usage::report(&app, &runner, &agent, (80, 20), 0, 5, false).await;
    let calls = (0..20).map(|i| {
        app.post(
            Some(&owner.token),
            RUN_AGENT,
            json!({ "a": agent, "i": { "say": i } }),
        )
    });
    for (_, body) in futures::future::join_all(calls).await {
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "RATE_LIMITED", "{body}");
        assert!(
            error["extensions"]["retryAfterSeconds"].as_i64().unwrap() > 0,
            "{body}"
        );
    }
    let alerts = app
        .ok(
            Some(&owner.token),
            crate::agent_usage::ALERTS,
            json!({ "open": true }),
        )
        .await;
    assert_eq!(alerts["alerts"]["totalCount"], 1, "{alerts}");
    assert_eq!(alerts["alerts"]["edges"][0]["node"]["source"], "budget");
    let runs = app
        .ok(
            Some(&owner.token),
            "query { runs { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(runs["runs"]["totalCount"], 1, "no run started over budget");
}
