//! Events start runs. The guarantees: a run that ends emits `run.succeeded`,
//! `run.failed` or `run.cancelled`, which start the runs of the tenant's EVENT
//! triggers that name it (limited to one workflow's runs by `workflowId`); `emitEvent`
//! emits custom events to operators and above, and a trigger's filter decides on the
//! payload; a workflow that triggers itself stops after `MAX_EVENT_DEPTH` runs; and a
//! tenant's event never starts, nor reveals, another tenant's workflows.

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{json, Value};
use trellis_core::engine::events::MAX_EVENT_DEPTH;
use trellis_core::engine::executor::{Executor, ExecutorConfig};
use trellis_core::scope::stmt;

use crate::scheduler::{active_workflow, trigger, uuid, CREATE_TRIGGER};
use crate::support::{as_app, Member, TestApp};

const EMIT: &str = "mutation($n: String!, $p: JSON, $e: String) { emitEvent(input: {name: $n, payload: $p, eventId: $e}) { runs { id input triggerType triggerPayload workflow { id } } userErrors { code field message } } }";

fn executor(app: &TestApp) -> Executor {
    Executor::new(
        app.state.db.clone(),
        app.state.egress.clone(),
        app.state.vault.clone(),
        ExecutorConfig::default(),
    )
}

/// Ticks the executor until nothing is left to claim.
async fn drain(app: &TestApp) {
    for _ in 0..50 {
        if executor(app).tick().await.unwrap().claimed == 0 {
            return;
        }
    }
    panic!("the executor never ran out of work");
}

async fn start(app: &TestApp, owner: &Member, workflow: &str) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!) { startRun(input: {workflowId: $w, input: {n: 1}}) { run { id } } }",
            json!({ "w": workflow }),
        )
        .await;
    data["startRun"]["run"]["id"].as_str().unwrap().to_owned()
}

/// A workflow's runs as its tenant sees them, oldest first.
async fn runs(app: &TestApp, member: &Member, workflow: &str) -> Vec<Value> {
    let data = app
        .ok(
            Some(&member.token),
            "query($id: ID!) { node(id: $id) { ... on Workflow { runs(first: 100, orderBy: CREATED_AT_ASC) { nodes { id status input triggerType triggerPayload } } } } }",
            json!({ "id": workflow }),
        )
        .await;
    data["node"]["runs"]["nodes"].as_array().unwrap().clone()
}

async fn count_runs(admin: &DatabaseConnection, workflow: &str) -> i64 {
    admin
        .query_one(stmt(
            "SELECT count(*) AS n FROM workflow_runs WHERE workflow_id = $1",
            [uuid(workflow).into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap()
}

fn failing_steps() -> Value {
    json!([{ "key": "boom", "name": "boom", "type": "TRANSFORM", "config": { "mapping": { "x": "{{ input.missing.deeper }}" } } }])
}

#[tokio::test]
async fn runs_that_end_start_the_runs_of_their_event_triggers() {
    let app = TestApp::new().await;
    let owner = app.owner("ends").await;
    let source = active_workflow(&app, &owner, "source", None).await;
    let broken = active_workflow(&app, &owner, "broken", Some(failing_steps())).await;
    let on_success = active_workflow(&app, &owner, "on-success", None).await;
    let on_failure = active_workflow(&app, &owner, "on-failure", None).await;
    let on_cancel = active_workflow(&app, &owner, "on-cancel", None).await;
    trigger(
        &app,
        &owner,
        &on_success,
        "after-source",
        "EVENT",
        json!({ "event": "run.succeeded", "workflowId": source }),
    )
    .await;
    trigger(
        &app,
        &owner,
        &on_failure,
        "after-failure",
        "EVENT",
        json!({ "event": "run.failed" }),
    )
    .await;
    trigger(
        &app,
        &owner,
        &on_cancel,
        "after-cancel",
        "EVENT",
        json!({ "event": "run.cancelled", "workflowId": source }),
    )
    .await;

    let ok = start(&app, &owner, &source).await;
    let failed = start(&app, &owner, &broken).await;
    executor(&app).tick().await.unwrap();

    let started = runs(&app, &owner, &on_success).await;
    assert_eq!(started.len(), 1, "{started:#?}");
    let run = &started[0];
    assert_eq!(run["triggerType"], "EVENT");
    assert_eq!(run["status"], "PENDING");
    assert_eq!(run["input"]["runId"], ok);
    assert_eq!(run["input"]["workflowId"], source);
    assert_eq!(run["input"]["status"], "SUCCEEDED");
    assert_eq!(run["input"]["output"], json!({ "echo": { "ok": true } }));
    assert_eq!(run["triggerPayload"]["event"], "run.succeeded");
    assert_eq!(run["triggerPayload"]["depth"], 1);

    let started = runs(&app, &owner, &on_failure).await;
    assert_eq!(started.len(), 1, "{started:#?}");
    assert_eq!(started[0]["input"]["runId"], failed);
    assert_eq!(started[0]["input"]["status"], "FAILED");
    assert_eq!(started[0]["input"]["error"]["step"], "boom");

    // The started runs run too; their own successes match no trigger (workflowId
    // names the source only), so nothing more starts.
    drain(&app).await;
    assert_eq!(runs(&app, &owner, &on_success).await.len(), 1);
    assert_eq!(runs(&app, &owner, &on_failure).await.len(), 1);

    // Cancelling a run emits run.cancelled.
    let cancelled = start(&app, &owner, &source).await;
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { cancelRun(input: {id: $id}) { run { status } } }",
        json!({ "id": cancelled }),
    )
    .await;
    let started = runs(&app, &owner, &on_cancel).await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["input"]["runId"], cancelled);
    assert_eq!(started[0]["input"]["status"], "CANCELLED");
    // A simulation's end emits nothing.
    let before = runs(&app, &owner, &on_success).await.len();
    app.ok(
        Some(&owner.token),
        "mutation($w: ID!) { startRun(input: {workflowId: $w, simulation: true}) { run { id } } }",
        json!({ "w": source }),
    )
    .await;
    executor(&app).tick().await.unwrap();
    assert_eq!(runs(&app, &owner, &on_success).await.len(), before);
}

#[tokio::test]
async fn emitted_events_start_the_runs_whose_filter_holds() {
    let app = TestApp::new().await;
    let owner = app.owner("emit").await;
    let big = active_workflow(&app, &owner, "big-orders", None).await;
    let every = active_workflow(&app, &owner, "every-order", None).await;
    let other = active_workflow(&app, &owner, "other-event", None).await;
    trigger(&app, &owner, &big, "big", "EVENT", json!({ "event": "order.created", "filter": { "field": "payload.total", "operator": "gt", "value": 100 } })).await;
    trigger(
        &app,
        &owner,
        &every,
        "every",
        "EVENT",
        json!({ "event": "order.created" }),
    )
    .await;
    trigger(
        &app,
        &owner,
        &other,
        "other",
        "EVENT",
        json!({ "event": "order.paid" }),
    )
    .await;
    // An inactive trigger starts nothing.
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!) { createTrigger(input: {workflowId: $w, key: \"off\", type: EVENT, config: {event: \"order.created\"}, isActive: false}) { userErrors { message } } }",
            json!({ "w": other }),
        )
        .await;
    assert_eq!(data["createTrigger"]["userErrors"], json!([]));

    let data = app
        .ok(
            Some(&owner.token),
            EMIT,
            json!({ "n": "order.created", "p": { "total": 500 } }),
        )
        .await;
    let mut started: Vec<String> = data["emitEvent"]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["input"], json!({ "total": 500 }));
            assert_eq!(r["triggerType"], "EVENT");
            assert_eq!(r["triggerPayload"]["payload"], json!({ "total": 500 }));
            r["workflow"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    started.sort();
    let mut expected = vec![big.clone(), every.clone()];
    expected.sort();
    assert_eq!(started, expected);

    // A small order matches only the unfiltered trigger.
    let data = app
        .ok(
            Some(&owner.token),
            EMIT,
            json!({ "n": "order.created", "p": { "total": 5 } }),
        )
        .await;
    let runs_now = data["emitEvent"]["runs"].as_array().unwrap();
    assert_eq!(runs_now.len(), 1);
    assert_eq!(runs_now[0]["workflow"]["id"], every);
    // An event no trigger names starts nothing.
    let data = app
        .ok(Some(&owner.token), EMIT, json!({ "n": "nothing.here" }))
        .await;
    assert_eq!(data["emitEvent"]["runs"], json!([]));

    // The same event id starts no second run; with another payload it is a conflict.
    let first = app
        .ok(
            Some(&owner.token),
            EMIT,
            json!({ "n": "order.paid", "p": { "id": 1 }, "e": "pay-1" }),
        )
        .await;
    let again = app
        .ok(
            Some(&owner.token),
            EMIT,
            json!({ "n": "order.paid", "p": { "id": 1 }, "e": "pay-1" }),
        )
        .await;
    assert_eq!(
        first["emitEvent"]["runs"][0]["id"],
        again["emitEvent"]["runs"][0]["id"]
    );
    let admin = app.db.admin().await;
    assert_eq!(count_runs(&admin, &other).await, 1);
    let clash = app
        .ok(
            Some(&owner.token),
            EMIT,
            json!({ "n": "order.paid", "p": { "id": 2 }, "e": "pay-1" }),
        )
        .await;
    assert_eq!(clash["emitEvent"]["userErrors"][0]["code"], "CONFLICT");
    assert_eq!(clash["emitEvent"]["userErrors"][0]["field"], "eventId");

    // Bad input names its field; run.* names are the engine's.
    for (name, field) in [("Order Created", "name"), ("run.succeeded", "name")] {
        let data = app.ok(Some(&owner.token), EMIT, json!({ "n": name })).await;
        let error = &data["emitEvent"]["userErrors"][0];
        assert_eq!(
            (error["code"].as_str(), error["field"].as_str()),
            (Some("BAD_USER_INPUT"), Some(field)),
            "{data}"
        );
        assert_eq!(data["emitEvent"]["runs"], Value::Null);
    }
    // A filter that does not parse is refused when the trigger is saved.
    let data = app
        .ok(
            Some(&owner.token),
            CREATE_TRIGGER,
            json!({ "w": big, "k": "bad-filter", "t": "EVENT", "c": { "event": "a.b", "filter": { "field": "payload.x", "operator": "between", "value": 1 } } }),
        )
        .await;
    assert_eq!(
        data["createTrigger"]["userErrors"][0]["field"], "config.filter/operator",
        "{data}"
    );

    // Every emission is audited, with the runs it started.
    let data = app
        .ok(
            Some(&owner.token),
            "{ tenant { auditEvents(first: 1) { edges { node { action details } } } } }",
            json!({}),
        )
        .await;
    let last = &data["tenant"]["auditEvents"]["edges"][0]["node"];
    assert_eq!(last["action"], "event.emit", "{data}");
    assert_eq!(last["details"]["name"], "order.paid");

    // Operators emit; viewers may not.
    let operator = app.member(&owner, "op@emit.test", "OPERATOR").await;
    let data = app
        .ok(
            Some(&operator.token),
            EMIT,
            json!({ "n": "order.paid", "p": {} }),
        )
        .await;
    assert_eq!(data["emitEvent"]["userErrors"], json!([]));
    let viewer = app.member(&owner, "viewer@emit.test", "VIEWER").await;
    let code = app
        .error_code(Some(&viewer.token), EMIT, json!({ "n": "order.paid" }))
        .await;
    assert_eq!(code, "FORBIDDEN");
}

#[tokio::test]
async fn a_workflow_that_triggers_itself_stops_at_the_depth_limit() {
    let app = TestApp::new().await;
    let owner = app.owner("loop").await;
    let wf = active_workflow(&app, &owner, "again", None).await;
    trigger(
        &app,
        &owner,
        &wf,
        "again",
        "EVENT",
        json!({ "event": "run.succeeded", "workflowId": wf }),
    )
    .await;
    start(&app, &owner, &wf).await;
    drain(&app).await;
    let all = runs(&app, &owner, &wf).await;
    // The run started by hand, then one per level of depth.
    assert_eq!(all.len() as i64, 1 + MAX_EVENT_DEPTH, "{all:#?}");
    assert_eq!(all[0]["triggerType"], "MANUAL");
    for (i, run) in all.iter().enumerate().skip(1) {
        assert_eq!(run["triggerType"], "EVENT");
        assert_eq!(run["triggerPayload"]["depth"], i as i64);
        assert_eq!(run["status"], "SUCCEEDED");
    }
}

#[tokio::test]
async fn a_tenants_events_never_reach_another_tenants_workflows() {
    let app = TestApp::new().await;
    let a = app.owner("events-a").await;
    let b = app.owner("events-b").await;
    let wf_a = active_workflow(&app, &a, "orders", None).await;
    let wf_b = active_workflow(&app, &b, "orders", None).await;
    trigger(
        &app,
        &a,
        &wf_a,
        "created",
        "EVENT",
        json!({ "event": "order.created" }),
    )
    .await;
    trigger(
        &app,
        &b,
        &wf_b,
        "created",
        "EVENT",
        json!({ "event": "order.created" }),
    )
    .await;
    trigger(
        &app,
        &b,
        &wf_b,
        "any-failure",
        "EVENT",
        json!({ "event": "run.failed" }),
    )
    .await;
    trigger(
        &app,
        &b,
        &wf_b,
        "any-success",
        "EVENT",
        json!({ "event": "run.succeeded" }),
    )
    .await;

    // A's event starts A's run only.
    let data = app
        .ok(
            Some(&a.token),
            EMIT,
            json!({ "n": "order.created", "p": { "x": 1 } }),
        )
        .await;
    let started = data["emitEvent"]["runs"].as_array().unwrap();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["workflow"]["id"], wf_a);
    // A's runs ending start nothing in B.
    drain(&app).await;
    let admin = app.db.admin().await;
    assert_eq!(count_runs(&admin, &wf_b).await, 0);
    assert_eq!(runs(&app, &b, &wf_b).await, Vec::<Value>::new());
    // B's workflow cannot be named by A's trigger: it is not found, as a made-up one.
    for id in [
        wf_b.clone(),
        "wf_0123456789abcdef0123456789abcdef".to_owned(),
    ] {
        let data = app
            .ok(Some(&a.token), CREATE_TRIGGER, json!({ "w": wf_a, "k": "spy", "t": "EVENT", "c": { "event": "run.failed", "workflowId": id } }))
            .await;
        let error = &data["createTrigger"]["userErrors"][0];
        assert_eq!(error["code"], "BAD_USER_INPUT", "{data}");
        assert_eq!(error["field"], "config.workflowId");
    }
    // Nor attached to: a trigger on B's workflow is NOT_FOUND for A.
    let code = app
        .error_code(
            Some(&a.token),
            CREATE_TRIGGER,
            json!({ "w": wf_b, "k": "spy", "t": "EVENT", "c": { "event": "order.created" } }),
        )
        .await;
    assert_eq!(code, "NOT_FOUND");
    // B's event trigger reads B's event only: in A's transaction the application role
    // sees A's event triggers and none of B's.
    let pool = app.db.app_pool(1).await;
    let tx = as_app(&pool, Some(a.tenant_uuid()), None).await;
    let rows = tx
        .query_all(stmt(
            "SELECT workflow_id FROM triggers WHERE type = 'event' AND config->>'event' = 'order.created'",
            [],
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].try_get::<uuid::Uuid>("", "workflow_id").unwrap(),
        uuid(&wf_a)
    );
}
