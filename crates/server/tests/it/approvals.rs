//! Approval steps: a run waits on people (step WAITING, run RUNNING, no worker held)
//! until enough approvers decide; a decision wakes the run at once. N of M, rejection,
//! timeouts, no self-approval, idempotent and audited decisions, the list of what a
//! person may decide on, and simulations that decide by themselves.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use trellis_core::scope::stmt;

use crate::engine::{executor, start, transform, workflow};
use crate::support::{Member, TestApp};

fn approval(key: &str, config: Value) -> Value {
    let mut step = json!({ "key": key, "name": key, "type": "APPROVAL" });
    step["config"] = config;
    step
}

/// The run as an approver's dashboard sees it.
async fn seen(app: &TestApp, who: &Member, id: &str) -> Value {
    app.ok(
        Some(&who.token),
        "query($id: ID!) { node(id: $id) { ... on WorkflowRun { status output error \
           currentSteps { id stepKey status } \
           stepRuns { id stepKey status output error decisions { decision comment decidedBy { email } } } } } }",
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

const DECIDE: &str = "mutation($s: ID!, $d: Decision!, $c: String) { decideApproval(input: {stepRunId: $s, decision: $d, comment: $c}) { stepRun { status } decision { decision comment } userErrors { code field message } } }";

async fn decide(app: &TestApp, who: &Member, step_run: &Value, decision: &str) -> Value {
    app.ok(
        Some(&who.token),
        DECIDE,
        json!({ "s": step_run, "d": decision, "c": format!("{decision} by {}", who.email) }),
    )
    .await["decideApproval"]
        .clone()
}

async fn pending(app: &TestApp, who: &Member) -> Value {
    app.ok(
        Some(&who.token),
        "{ approvalsPending { message required expiresAt stepRun { id } run { id } decisions { decision } } }",
        json!({}),
    )
    .await["approvalsPending"]
        .clone()
}

#[tokio::test]
async fn two_of_three_admins_approve_and_a_decision_wakes_the_run() {
    let app = TestApp::new().await;
    let owner = app.owner("approvals").await;
    let first = app.member(&owner, "first@approvals.test", "ADMIN").await;
    let second = app.member(&owner, "second@approvals.test", "ADMIN").await;
    let viewer = app.member(&owner, "viewer@approvals.test", "VIEWER").await;
    let steps = json!([
        approval(
            "approve",
            json!({ "approvers": ["ADMIN"], "required": 2,
                                    "message": "Ship order {{ input.id }}?" })
        ),
        transform("ship", json!({ "shipped": "{{ input.id }}" })),
    ]);
    let wf = workflow(
        &app,
        &owner,
        "shipping",
        steps,
        json!([{ "from": "approve", "to": "ship" }]),
    )
    .await;
    let id = start(&app, &owner, &wf, json!({ "id": 42 })).await;
    let executor = executor(&app, 10);

    // The step waits; the run is handed back, holding no worker.
    let tick = executor.tick().await.unwrap();
    assert_eq!((tick.claimed, tick.waiting), (1, 1));
    let run = seen(&app, &first, &id).await;
    assert_eq!(run["status"], "RUNNING");
    assert_eq!(step(&run, "approve")["status"], "WAITING");
    assert_eq!(run["currentSteps"][0]["stepKey"], "approve");
    let step_run = step(&run, "approve")["id"].clone();
    assert_eq!(executor.tick().await.unwrap().claimed, 0);

    // Admins see it with its rendered message; the owner started the run, so it is not
    // theirs to decide, and a viewer is no approver.
    let listed = pending(&app, &first).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["message"], "Ship order 42?");
    assert_eq!(listed[0]["required"], 2);
    assert_eq!(listed[0]["stepRun"]["id"], step_run);
    assert_eq!(pending(&app, &owner).await, json!([]));
    assert_eq!(pending(&app, &viewer).await, json!([]));
    let vars = json!({ "s": step_run, "d": "APPROVE" });
    assert_eq!(
        app.error_code(Some(&owner.token), DECIDE, vars.clone())
            .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(Some(&viewer.token), DECIDE, vars).await,
        "FORBIDDEN"
    );

    // One approval of two: still waiting. Repeating it changes nothing; changing it is
    // refused.
    let decided = decide(&app, &first, &step_run, "APPROVE").await;
    assert_eq!(decided["userErrors"], json!([]), "{decided}");
    assert_eq!(
        decided["decision"]["comment"],
        "APPROVE by first@approvals.test"
    );
    let again = decide(&app, &first, &step_run, "APPROVE").await;
    assert_eq!(again["userErrors"], json!([]));
    let changed = decide(&app, &first, &step_run, "REJECT").await;
    assert_eq!(changed["userErrors"][0]["code"], "CONFLICT", "{changed}");
    executor.tick().await.unwrap();
    assert_eq!(
        step(&seen(&app, &first, &id).await, "approve")["status"],
        "WAITING"
    );
    assert_eq!(pending(&app, &first).await, json!([]), "decided already");

    // The second approval wakes the run: the next tick finishes it.
    decide(&app, &second, &step_run, "APPROVE").await;
    let tick = executor.tick().await.unwrap();
    assert_eq!(tick.finished, 1, "{tick:?}");
    let run = seen(&app, &first, &id).await;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    let approved = step(&run, "approve");
    assert_eq!(approved["output"]["approved"], true);
    assert_eq!(approved["output"]["decision"], "APPROVED");
    assert_eq!(approved["decisions"].as_array().unwrap().len(), 2);
    assert_eq!(
        approved["decisions"][0]["decidedBy"]["email"],
        "first@approvals.test"
    );
    assert_eq!(run["output"], json!({ "ship": { "shipped": 42 } }));

    // Decided steps take no more decisions; every decision is in the audit log.
    let late = decide(&app, &owner, &step_run, "APPROVE").await;
    assert_eq!(late["userErrors"][0]["code"], "CONFLICT", "{late}");
    let admin = app.db.admin().await;
    let audited: i64 = admin
        .query_one(stmt(
            "SELECT count(*) AS n FROM audit_events WHERE action = 'approval.decide'",
            [],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    assert_eq!(audited, 2);
}

#[tokio::test]
async fn a_rejection_fails_the_step_or_routes_when_the_step_says_continue() {
    let app = TestApp::new().await;
    let owner = app.owner("rejections").await;
    let admin = app.member(&owner, "admin@rejections.test", "ADMIN").await;
    let executor = executor(&app, 10);

    let wf = workflow(
        &app,
        &owner,
        "strict",
        json!([approval("approve", json!({}))]),
        json!([]),
    )
    .await;
    let id = start(&app, &owner, &wf, json!({})).await;
    executor.tick().await.unwrap();
    let step_run = step(&seen(&app, &admin, &id).await, "approve")["id"].clone();
    decide(&app, &admin, &step_run, "REJECT").await;
    executor.tick().await.unwrap();
    let run = seen(&app, &admin, &id).await;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert_eq!(run["error"]["error"]["code"], "REJECTED");

    // With onReject CONTINUE the step succeeds with approved: false, and a condition
    // routes on it (the seed's `approved equals true`).
    let steps = json!([
        approval("approve", json!({ "onReject": "CONTINUE" })),
        transform("go", json!({ "went": true })),
        transform("stop", json!({ "stopped": true })),
    ]);
    let transitions = json!([
        { "from": "approve", "to": "go", "condition": { "field": "approved", "operator": "equals", "value": true } },
        { "from": "approve", "to": "stop", "isDefault": true },
    ]);
    let wf = workflow(&app, &owner, "routed", steps, transitions).await;
    let id = start(&app, &owner, &wf, json!({})).await;
    executor.tick().await.unwrap();
    let step_run = step(&seen(&app, &admin, &id).await, "approve")["id"].clone();
    decide(&app, &admin, &step_run, "REJECT").await;
    executor.tick().await.unwrap();
    let run = seen(&app, &admin, &id).await;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(run["output"], json!({ "stop": { "stopped": true } }));
    assert_eq!(step(&run, "go")["status"], "SKIPPED");
}

#[tokio::test]
async fn an_approval_times_out_as_its_step_says() {
    let app = TestApp::new().await;
    let owner = app.owner("timeouts").await;
    let executor = executor(&app, 10);
    // 0.0002 h is 0.72 s.
    let approve = workflow(
        &app,
        &owner,
        "lenient",
        json!([approval(
            "approve",
            json!({ "timeoutHours": 0.0002, "onTimeout": "APPROVE" })
        )]),
        json!([]),
    )
    .await;
    let fail = workflow(
        &app,
        &owner,
        "strict",
        json!([approval("approve", json!({ "timeoutHours": 0.0002 }))]),
        json!([]),
    )
    .await;
    let approved = start(&app, &owner, &approve, json!({})).await;
    let failed = start(&app, &owner, &fail, json!({})).await;
    executor.tick().await.unwrap();
    let listed = app
        .ok(
            Some(&owner.token),
            "{ approvalsPending { expiresAt } }",
            json!({}),
        )
        .await;
    // The owner started both runs, so neither is theirs to decide.
    assert_eq!(listed["approvalsPending"], json!([]));
    tokio::time::sleep(Duration::from_millis(900)).await;
    let tick = executor.tick().await.unwrap();
    assert_eq!(tick.finished, 2, "the deadline wakes the run: {tick:?}");
    let run = seen(&app, &owner, &approved).await;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(step(&run, "approve")["output"]["decision"], "TIMED_OUT");
    let run = seen(&app, &owner, &failed).await;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert_eq!(run["error"]["error"]["code"], "TIMEOUT");
}

#[tokio::test]
async fn self_approval_only_when_allowed_and_cancelling_ends_the_wait() {
    let app = TestApp::new().await;
    let owner = app.owner("self").await;
    let executor = executor(&app, 10);
    let wf = workflow(
        &app,
        &owner,
        "own",
        json!([approval("approve", json!({ "allowSelfApproval": true }))]),
        json!([]),
    )
    .await;
    let id = start(&app, &owner, &wf, json!({})).await;
    executor.tick().await.unwrap();
    let listed = pending(&app, &owner).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    decide(&app, &owner, &listed[0]["stepRun"]["id"], "APPROVE").await;
    executor.tick().await.unwrap();
    assert_eq!(seen(&app, &owner, &id).await["status"], "SUCCEEDED");

    // Cancelling a waiting run cancels the step; a decision then is refused.
    let id = start(&app, &owner, &wf, json!({})).await;
    executor.tick().await.unwrap();
    let step_run = step(&seen(&app, &owner, &id).await, "approve")["id"].clone();
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { cancelRun(input: {id: $id}) { run { status } } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(
        step(&seen(&app, &owner, &id).await, "approve")["status"],
        "CANCELLED"
    );
    let late = decide(&app, &owner, &step_run, "APPROVE").await;
    assert_eq!(late["userErrors"][0]["code"], "CONFLICT", "{late}");
}

#[tokio::test]
async fn a_simulation_decides_by_itself() {
    let app = TestApp::new().await;
    let owner = app.owner("simulated").await;
    let steps = json!([
        approval(
            "approve",
            json!({ "onReject": "CONTINUE", "simulatedDecision": "REJECT" })
        ),
        transform("go", json!({ "went": true })),
        transform("stop", json!({ "stopped": true })),
    ]);
    let transitions = json!([
        { "from": "approve", "to": "go", "condition": { "field": "approved", "operator": "eq", "value": true } },
        { "from": "approve", "to": "stop", "isDefault": true },
    ]);
    let wf = workflow(&app, &owner, "rehearsal", steps, transitions).await;
    let id = crate::engine::start_simulation(&app, &owner, &wf).await;
    executor(&app, 10).tick().await.unwrap();
    let run = seen(&app, &owner, &id).await;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(run["output"], json!({ "stop": { "stopped": true } }));
}

#[tokio::test]
async fn approver_entries_that_name_nobody_are_refused_on_save() {
    let app = TestApp::new().await;
    let owner = app.owner("approver-check").await;
    let created = app
        .ok(
            Some(&owner.token),
            "mutation { createWorkflow(input: {key: \"bad\", name: \"bad\"}) { workflow { versions { id } } } }",
            json!({}),
        )
        .await;
    let version = created["createWorkflow"]["workflow"]["versions"][0]["id"].clone();
    let saved = app
        .ok(
            Some(&owner.token),
            "mutation($v: ID!, $s: [WorkflowStepInput!]!) { saveWorkflowGraph(input: {versionId: $v, steps: $s, transitions: []}) { userErrors { field message } } }",
            json!({ "v": version, "s": [approval("approve", json!({ "approvers": ["the boss"], "onTimeout": "MAYBE" }))] }),
        )
        .await;
    let fields: Vec<&str> = saved["saveWorkflowGraph"]["userErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.iter().any(|f| f.contains("approvers")), "{saved}");
    assert!(fields.iter().any(|f| f.contains("onTimeout")), "{saved}");
}
