//! The executor runs workflows by itself: it claims runs of versions made only of the
//! step types it runs (CONDITION, DELAY, HTTP and the http app's `request` action,
//! TRANSFORM, …), routes them through their graph,
//! resumes them after a crash or a timer, serves tenants fairly, and works in each
//! tenant's transaction under RLS. Runs with other steps stay with runner workers.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use trellis_core::engine::executor::{Executor, ExecutorConfig, Tick};
use trellis_core::scope::stmt;
use trellis_core::{Principal, RequestMeta, RequestScope};
use uuid::Uuid;

use crate::support::{Member, TestApp};

/// An active workflow of `steps` and `transitions` (GraphQL inputs); its id.
pub(crate) async fn workflow(
    app: &TestApp,
    owner: &Member,
    key: &str,
    steps: Value,
    transitions: Value,
) -> String {
    let created = app
        .ok(
            Some(&owner.token),
            "mutation($k: String!) { createWorkflow(input: {key: $k, name: $k}) { workflow { id versions { id } } } }",
            json!({ "k": key }),
        )
        .await;
    let workflow = created["createWorkflow"]["workflow"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let version = created["createWorkflow"]["workflow"]["versions"][0]["id"].clone();
    let saved = app
        .ok(
            Some(&owner.token),
            "mutation($v: ID!, $s: [WorkflowStepInput!]!, $t: [WorkflowTransitionInput!]!) { saveWorkflowGraph(input: {versionId: $v, steps: $s, transitions: $t}) { userErrors { field message } } }",
            json!({ "v": version, "s": steps, "t": transitions }),
        )
        .await;
    assert_eq!(
        saved["saveWorkflowGraph"]["userErrors"],
        json!([]),
        "{saved}"
    );
    for mutation in ["publishVersion", "activateVersion"] {
        let done = app
            .ok(
                Some(&owner.token),
                &format!("mutation($id: ID!) {{ {mutation}(input: {{id: $id}}) {{ userErrors {{ message }} }} }}"),
                json!({ "id": version }),
            )
            .await;
        assert_eq!(done[mutation]["userErrors"], json!([]), "{done}");
    }
    workflow
}

pub(crate) async fn start(app: &TestApp, owner: &Member, workflow: &str, input: Value) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!, $i: JSON) { startRun(input: {workflowId: $w, input: $i}) { run { id } userErrors { message } } }",
            json!({ "w": workflow, "i": input }),
        )
        .await;
    data["startRun"]["run"]["id"].as_str().unwrap().to_owned()
}

/// Starts a simulation of `workflow`; its run id.
pub(crate) async fn start_simulation(app: &TestApp, owner: &Member, workflow: &str) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!) { startRun(input: {workflowId: $w, simulation: true}) { run { id } } }",
            json!({ "w": workflow }),
        )
        .await;
    data["startRun"]["run"]["id"].as_str().unwrap().to_owned()
}

/// The run as the dashboard sees it.
async fn run(app: &TestApp, owner: &Member, id: &str) -> Value {
    app.ok(
        Some(&owner.token),
        "query($id: ID!) { node(id: $id) { ... on WorkflowRun { status output error stepRuns { stepKey status output error } } } }",
        json!({ "id": id }),
    )
    .await["node"]
        .clone()
}

fn step_status(run: &Value, key: &str) -> String {
    run["stepRuns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stepKey"] == key)
        .unwrap_or_else(|| panic!("no step {key}: {run}"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) fn executor(app: &TestApp, runs_per_tenant: u64) -> Executor {
    Executor::new(
        app.state.db.clone(),
        app.state.egress.clone(),
        app.state.vault.clone(),
        ExecutorConfig {
            runs_per_tenant,
            ..ExecutorConfig::default()
        },
    )
}

pub(crate) fn transform(key: &str, mapping: Value) -> Value {
    let mut config = serde_json::Map::new();
    config.insert("mapping".into(), mapping);
    json!({ "key": key, "name": key, "type": "TRANSFORM", "config": config })
}

/// prepare -> check; check -(total > 100)-> big; check -(default)-> small; both -> done.
fn branching_steps() -> (Value, Value) {
    let steps = json!([
        transform("prepare", json!({ "total": "{{ input.qty * input.price }}", "who": "{{ input.name }}" })),
        { "key": "check", "name": "check", "type": "CONDITION" },
        transform("big", json!({ "route": "big order of {{ steps.prepare.output.total }}" })),
        transform("small", json!({ "route": "small" })),
        transform("done", json!({ "for": "{{ steps.prepare.output.who }}" })),
    ]);
    let transitions = json!([
        { "from": "prepare", "to": "check" },
        { "from": "check", "to": "big", "condition": { "field": "steps.prepare.output.total", "operator": "greater_than", "value": 100 } },
        { "from": "check", "to": "small", "isDefault": true },
        { "from": "big", "to": "done" },
        { "from": "small", "to": "done" },
    ]);
    (steps, transitions)
}

#[tokio::test]
async fn a_branching_workflow_runs_to_the_end_by_itself() {
    let app = TestApp::new().await;
    let owner = app.owner("engine").await;
    let (steps, transitions) = branching_steps();
    let wf = workflow(&app, &owner, "orders", steps, transitions).await;
    let big = start(
        &app,
        &owner,
        &wf,
        json!({ "qty": 3, "price": 50, "name": "Ada" }),
    )
    .await;
    let small = start(
        &app,
        &owner,
        &wf,
        json!({ "qty": 1, "price": 10, "name": "Bo" }),
    )
    .await;

    let tick = executor(&app, 10).tick().await.unwrap();
    assert_eq!(
        tick,
        Tick {
            claimed: 2,
            finished: 2,
            waiting: 0
        }
    );
    let big = run(&app, &owner, &big).await;
    assert_eq!(big["status"], "SUCCEEDED", "{big}");
    assert_eq!(step_status(&big, "big"), "SUCCEEDED");
    assert_eq!(step_status(&big, "small"), "SKIPPED");
    let prepared = big["stepRuns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stepKey"] == "prepare")
        .unwrap();
    // A single expression keeps its type: the total is a number.
    assert_eq!(prepared["output"], json!({ "total": 150, "who": "Ada" }));
    assert_eq!(big["output"], json!({ "done": { "for": "Ada" } }));
    let small = run(&app, &owner, &small).await;
    assert_eq!(small["status"], "SUCCEEDED", "{small}");
    assert_eq!(step_status(&small, "big"), "SKIPPED");
    assert_eq!(step_status(&small, "small"), "SUCCEEDED");
    // Nothing is left to do.
    assert_eq!(executor(&app, 10).tick().await.unwrap(), Tick::default());
    // Operators see the executor's work in /metrics.
    let (_, metrics) = app
        .send(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    let metrics = metrics.as_str().unwrap();
    for counter in [
        "trellis_executor_runs_claimed_total ",
        "trellis_executor_runs_finished_total{status=\"succeeded\"}",
        "trellis_executor_steps_total{outcome=\"succeeded\"}",
    ] {
        assert!(metrics.contains(counter), "{counter} missing:\n{metrics}");
    }
}

#[tokio::test]
async fn a_step_that_fails_fails_the_run_with_its_error() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-fail").await;
    let steps = json!([
        transform("first", json!({ "x": "{{ input.missing.deeper }}" })),
        transform("second", json!({ "y": 1 })),
    ]);
    let wf = workflow(
        &app,
        &owner,
        "failing",
        steps,
        json!([{ "from": "first", "to": "second" }]),
    )
    .await;
    let id = start(&app, &owner, &wf, json!({})).await;
    executor(&app, 10).tick().await.unwrap();
    let failed = run(&app, &owner, &id).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(step_status(&failed, "first"), "FAILED");
    assert_eq!(step_status(&failed, "second"), "CANCELLED");
    assert_eq!(failed["error"]["step"], "first");
    let error = &failed["error"]["error"];
    assert_eq!(error["field"], "steps.first.config/mapping/x", "{error}");
    assert!(
        error["message"].as_str().unwrap().starts_with("template:"),
        "{error}"
    );
}

#[tokio::test]
async fn runs_with_steps_the_engine_does_not_run_or_marked_external_are_left_for_runners() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-external").await;
    let steps = json!([
        { "key": "call", "name": "call", "type": "CODE", "config": { "language": "python", "source": "print(1)" } },
        transform("after", json!({})),
    ]);
    let wf = workflow(
        &app,
        &owner,
        "external",
        steps,
        json!([{ "from": "call", "to": "after" }]),
    )
    .await;
    let id = start(&app, &owner, &wf, json!({})).await;
    assert_eq!(executor(&app, 10).tick().await.unwrap(), Tick::default());
    assert_eq!(run(&app, &owner, &id).await["status"], "PENDING");
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let claimed = app
        .ok(
            Some(&runner),
            "mutation { claimRuns(input: {limit: 5, leaseSeconds: 30}) { leases { run { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(claimed["claimRuns"]["leases"][0]["run"]["id"], id.as_str());

    // A step of a type the engine runs, marked external, is left to runners too.
    let steps = json!([
        { "key": "mine", "name": "mine", "type": "TRANSFORM", "config": { "mapping": {}, "external": true } },
        transform("after", json!({})),
    ]);
    let wf = workflow(
        &app,
        &owner,
        "marked",
        steps,
        json!([{ "from": "mine", "to": "after" }]),
    )
    .await;
    let marked = start(&app, &owner, &wf, json!({})).await;
    assert_eq!(executor(&app, 10).tick().await.unwrap(), Tick::default());
    assert_eq!(run(&app, &owner, &marked).await["status"], "PENDING");
}

#[tokio::test]
async fn a_delay_holds_no_worker_and_a_dead_workers_run_is_taken_over() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-delay").await;
    let steps = json!([
        { "key": "wait", "name": "wait", "type": "DELAY", "config": { "seconds": 1 } },
        transform("after", json!({ "waited": "{{ steps.wait.output.waitedSeconds }}" })),
    ]);
    let wf = workflow(
        &app,
        &owner,
        "delayed",
        steps,
        json!([{ "from": "wait", "to": "after" }]),
    )
    .await;
    let id = start(&app, &owner, &wf, json!({})).await;
    let tick = executor(&app, 10).tick().await.unwrap();
    assert_eq!((tick.claimed, tick.waiting), (1, 1));
    let waiting = run(&app, &owner, &id).await;
    assert_eq!(waiting["status"], "RUNNING");
    assert_eq!(step_status(&waiting, "wait"), "RUNNING");
    // Not due yet: a tick finds nothing.
    assert_eq!(executor(&app, 10).tick().await.unwrap().claimed, 0);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let tick = executor(&app, 10).tick().await.unwrap();
    assert_eq!(tick.finished, 1);
    let done = run(&app, &owner, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["output"], json!({ "after": { "waited": 1 } }));

    // A worker claims a run and dies: once its lease has run out, the executor takes
    // the run over and finishes it, once.
    let orphan = start(&app, &owner, &wf, json!({})).await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    app.ok(
        Some(&runner),
        "mutation { claimRuns(input: {limit: 5, leaseSeconds: 30}) { leases { run { id } } } }",
        json!({}),
    )
    .await;
    assert_eq!(executor(&app, 10).tick().await.unwrap().claimed, 0);
    app.db
        .admin()
        .await
        .execute_unprepared("UPDATE workflow_runs SET lease_expires_at = now() - interval '1 second' WHERE status = 'running'")
        .await
        .unwrap();
    let tick = executor(&app, 10).tick().await.unwrap();
    assert_eq!((tick.claimed, tick.waiting), (1, 1));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    executor(&app, 10).tick().await.unwrap();
    let done = run(&app, &owner, &orphan).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
}

/// A tenant with 1,000 queued runs delays another tenant's single run by no more than
/// one claim cycle: every tick serves every tenant with due work.
#[tokio::test]
async fn a_tenants_backlog_does_not_hold_another_tenants_run_back() {
    let app = TestApp::new().await;
    let busy = app.owner("engine-busy").await;
    let quiet = app.owner("engine-quiet").await;
    let steps = json!([transform("only", json!({ "n": "{{ input.n }}" }))]);
    let busy_wf = workflow(&app, &busy, "bulk", steps.clone(), json!([])).await;
    // A thousand queued runs: one started, copied 999 times with its step run.
    let first = start(&app, &busy, &busy_wf, json!({ "n": 0 })).await;
    let admin = app.db.admin().await;
    admin
        .execute(stmt(
            "WITH copies AS (SELECT gen_random_uuid() AS id FROM generate_series(1, 999)), \
             runs AS (INSERT INTO workflow_runs SELECT (jsonb_populate_record(NULL::workflow_runs, \
               to_jsonb(r) || jsonb_build_object('id', c.id))).* \
               FROM workflow_runs r, copies c WHERE r.id = $1 RETURNING id) \
             INSERT INTO step_runs SELECT (jsonb_populate_record(NULL::step_runs, \
               to_jsonb(s) || jsonb_build_object('id', gen_random_uuid(), 'run_id', runs.id))).* \
             FROM step_runs s, runs WHERE s.run_id = $1",
            [Uuid::parse_str(&first[4..]).unwrap().into()],
        ))
        .await
        .unwrap();
    let queued: i64 = admin
        .query_one(stmt(
            "SELECT count(*) AS n FROM workflow_runs WHERE tenant_id = $1 AND status = 'pending'",
            [busy.tenant_uuid().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    assert_eq!(queued, 1000);
    let quiet_wf = workflow(&app, &quiet, "single", steps, json!([])).await;
    let single = start(&app, &quiet, &quiet_wf, json!({ "n": -1 })).await;
    // One tick serves every tenant with due work, at most 5 runs each.
    let tick = executor(&app, 5).tick().await.unwrap();
    assert_eq!(tick.claimed, 6);
    let single = run(&app, &quiet, &single).await;
    assert_eq!(single["status"], "SUCCEEDED");
    assert_eq!(single["output"], json!({ "only": { "n": -1 } }));
}

/// The executor's transaction for one tenant is that tenant's: RLS shows it that
/// tenant's runs only, it cannot write another's, and a suspended tenant's runs wait.
#[tokio::test]
async fn the_executor_works_inside_one_tenant_at_a_time() {
    let app = TestApp::new().await;
    let a = app.owner("engine-a").await;
    let b = app.owner("engine-b").await;
    let steps = json!([transform("only", json!({ "tenant": "{{ input.t }}" }))]);
    let wf_a = workflow(&app, &a, "mine", steps.clone(), json!([])).await;
    let wf_b = workflow(&app, &b, "mine", steps, json!([])).await;
    let run_a = start(&app, &a, &wf_a, json!({ "t": "a" })).await;
    let run_b = start(&app, &b, &wf_b, json!({ "t": "b" })).await;

    let scope = RequestScope::new(
        app.state.db.clone(),
        Principal::Engine {
            tenant_id: a.tenant_uuid(),
        },
        RequestMeta::default(),
    );
    let tx = scope.tx().await.unwrap();
    let seen: Vec<Uuid> = tx
        .query_all(stmt("SELECT id FROM workflow_runs", []))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("", "id").unwrap())
        .collect();
    assert_eq!(seen, [Uuid::parse_str(&run_a[4..]).unwrap()]);
    let changed = tx
        .execute(stmt(
            "UPDATE workflow_runs SET status = 'failed' WHERE id = $1",
            [Uuid::parse_str(&run_b[4..]).unwrap().into()],
        ))
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 0);
    RequestScope::finish_shared(scope, false).await.unwrap();

    // B is suspended: its run waits, A's runs.
    app.db
        .admin()
        .await
        .execute(stmt(
            "UPDATE tenants SET status = 'suspended' WHERE id = $1",
            [b.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    let tick = executor(&app, 10).tick().await.unwrap();
    assert_eq!(tick.claimed, 1);
    assert_eq!(
        run(&app, &a, &run_a).await["output"],
        json!({ "only": { "tenant": "a" } })
    );
    let admin = app.db.admin().await;
    let status: String = admin
        .query_one(stmt(
            "SELECT status FROM workflow_runs WHERE id = $1",
            [Uuid::parse_str(&run_b[4..]).unwrap().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "status")
        .unwrap();
    assert_eq!(status, "pending");
}

/// A loopback HTTP server: `/orders/{id}` answers `{"id", "total"}`, anything else 404;
/// every request's method and path is kept.
pub(crate) async fn orders_api() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::extract::{Path, State};
    use axum::routing::get;
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;
    let seen: Seen = Default::default();
    let app = axum::Router::new()
        .route(
            "/orders/{id}",
            get(|State(seen): State<Seen>, Path(id): Path<u64>| async move {
                seen.lock().unwrap().push(format!("GET /orders/{id}"));
                axum::Json(json!({ "id": id, "total": id * 100 }))
            }),
        )
        .fallback(
            |State(seen): State<Seen>, uri: axum::http::Uri| async move {
                seen.lock().unwrap().push(format!("? {uri}"));
                (axum::http::StatusCode::NOT_FOUND, "no such thing")
            },
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// fetch (HTTP, templated URL) -> check; big order -> big; else -> small.
fn http_steps(api: &str, path: &str) -> (Value, Value) {
    let steps = json!([
        { "key": "fetch", "name": "fetch", "type": "HTTP", "config": {
            "url": format!("{api}{path}"),
            "sampleOutput": { "status": 200, "body": { "total": 1 } } } },
        { "key": "check", "name": "check", "type": "CONDITION" },
        transform("big", json!({ "total": "{{ steps.fetch.output.body.total }}" })),
        transform("small", json!({ "total": "{{ steps.fetch.output.body.total }}" })),
    ]);
    let transitions = json!([
        { "from": "fetch", "to": "check" },
        { "from": "check", "to": "big", "condition": { "field": "steps.fetch.output.body.total", "operator": "gte", "value": 500 } },
        { "from": "check", "to": "small", "isDefault": true },
    ]);
    (steps, transitions)
}

#[tokio::test]
async fn http_steps_call_out_through_the_egress_guard_and_route_on_the_answer() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-http").await;
    let (api, seen) = orders_api().await;
    let (steps, transitions) = http_steps(&api, "/orders/{{ input.id }}");
    let wf = workflow(&app, &owner, "fetching", steps, transitions).await;
    let big = start(&app, &owner, &wf, json!({ "id": 7 })).await;
    let small = start(&app, &owner, &wf, json!({ "id": 2 })).await;
    let tick = executor(&app, 10).tick().await.unwrap();
    assert_eq!(tick.finished, 2);
    let mut calls = seen.lock().unwrap().clone();
    calls.sort();
    assert_eq!(calls, ["GET /orders/2", "GET /orders/7"]);
    let big = run(&app, &owner, &big).await;
    assert_eq!(big["status"], "SUCCEEDED", "{big}");
    assert_eq!(big["output"], json!({ "big": { "total": 700 } }));
    let fetched = big["stepRuns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stepKey"] == "fetch")
        .unwrap();
    assert_eq!(fetched["output"]["status"], 200);
    assert_eq!(fetched["output"]["body"], json!({ "id": 7, "total": 700 }));
    let small = run(&app, &owner, &small).await;
    assert_eq!(small["output"], json!({ "small": { "total": 200 } }));
}

#[tokio::test]
async fn http_failures_fail_the_run_and_the_guard_refuses_private_addresses() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-http-fail").await;
    let (api, seen) = orders_api().await;
    let (steps, transitions) = http_steps(&api, "/nothing-here");
    let wf = workflow(&app, &owner, "missing", steps, transitions).await;
    let missing = start(&app, &owner, &wf, json!({})).await;
    // Tests admit only 127.0.0.1: a private address is refused before any connection.
    let (steps, transitions) = http_steps("http://10.255.255.1", "/orders/1");
    let wf = workflow(&app, &owner, "private", steps, transitions).await;
    let private = start(&app, &owner, &wf, json!({})).await;
    executor(&app, 10).tick().await.unwrap();

    let missing = run(&app, &owner, &missing).await;
    assert_eq!(missing["status"], "FAILED", "{missing}");
    assert_eq!(missing["error"]["step"], "fetch");
    assert_eq!(missing["error"]["error"]["status"], 404);
    assert_eq!(seen.lock().unwrap().as_slice(), ["? /nothing-here"]);
    let private = run(&app, &owner, &private).await;
    assert_eq!(private["status"], "FAILED", "{private}");
    let message = private["error"]["error"]["message"].as_str().unwrap();
    assert!(message.contains("egress guard refused"), "{message}");
}

/// A simulation walks the same graph but reaches nothing: the HTTP step answers with
/// its `sampleOutput`, and the server receives no request.
#[tokio::test]
async fn a_simulation_reaches_nothing_outside() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-sim").await;
    let (api, seen) = orders_api().await;
    let (steps, transitions) = http_steps(&api, "/orders/{{ input.id }}");
    let wf = workflow(&app, &owner, "simulated", steps, transitions).await;
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!) { startRun(input: {workflowId: $w, input: {id: 9}, simulation: true}) { run { id } } }",
            json!({ "w": wf }),
        )
        .await;
    let id = data["startRun"]["run"]["id"].as_str().unwrap().to_owned();
    executor(&app, 10).tick().await.unwrap();
    let simulated = run(&app, &owner, &id).await;
    assert_eq!(simulated["status"], "SUCCEEDED", "{simulated}");
    assert_eq!(simulated["output"], json!({ "small": { "total": 1 } }));
    assert!(seen.lock().unwrap().is_empty());
}

/// A tenant's cap on concurrent runs (`maxConcurrentRuns`, or its plan's default) holds
/// back new runs, never the resumption of running ones, and a bad cap is refused.
#[tokio::test]
async fn a_tenants_cap_on_concurrent_runs_holds_new_runs_back() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-cap").await;
    let refused = app
        .ok(
            Some(&owner.token),
            "mutation { updateTenant(input: {settings: {maxConcurrentRuns: 0}}) { userErrors { field code } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        refused["updateTenant"]["userErrors"][0]["field"],
        "settings.maxConcurrentRuns"
    );
    let set = app
        .ok(
            Some(&owner.token),
            "mutation { updateTenant(input: {settings: {maxConcurrentRuns: 2}}) { userErrors { field code } } }",
            json!({}),
        )
        .await;
    assert_eq!(set["updateTenant"]["userErrors"], json!([]));
    let steps = json!([
        { "key": "wait", "name": "wait", "type": "DELAY", "config": { "seconds": 1 } },
    ]);
    let wf = workflow(&app, &owner, "capped", steps, json!([])).await;
    for _ in 0..5 {
        start(&app, &owner, &wf, json!({})).await;
    }
    let tick = executor(&app, 10).tick().await.unwrap();
    assert_eq!((tick.claimed, tick.waiting), (2, 2));
    // Two are running (waiting on their timers): no room for a third.
    assert_eq!(executor(&app, 10).tick().await.unwrap().claimed, 0);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // The two resume and finish; only then is there room again.
    let tick = executor(&app, 10).tick().await.unwrap();
    assert_eq!((tick.claimed, tick.finished), (2, 2));
    let tick = executor(&app, 10).tick().await.unwrap();
    assert_eq!((tick.claimed, tick.waiting), (2, 2));
}

/// While an HTTP step's call is in flight, the run's lease outlasts the call's timeout
/// (up to 300 s), so no other worker takes the run over and calls again. The loopback
/// endpoint reads the lease from the database while it answers.
#[tokio::test]
async fn a_calls_lease_outlasts_its_timeout() {
    use axum::routing::get;
    let app = TestApp::new().await;
    let owner = app.owner("engine-lease").await;
    let admin = std::sync::Arc::new(app.db.admin().await);
    let api = axum::Router::new().route(
        "/lease",
        get(move || {
            let admin = admin.clone();
            async move {
                let row = admin
                    .query_one(stmt(
                        "SELECT extract(epoch FROM lease_expires_at - now())::float8 AS left \
                         FROM workflow_runs WHERE status = 'running'",
                        [],
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                let left: f64 = row.try_get("", "left").unwrap();
                axum::Json(json!({ "leaseSecondsLeft": left }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/lease", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    let steps = json!([{ "key": "call", "name": "call", "type": "HTTP",
                         "config": { "url": url, "timeoutMs": 240_000 } }]);
    let wf = workflow(&app, &owner, "slow", steps, json!([])).await;
    let id = start(&app, &owner, &wf, json!({})).await;
    executor(&app, 10).tick().await.unwrap();
    let done = run(&app, &owner, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let left = done["output"]["call"]["body"]["leaseSecondsLeft"]
        .as_f64()
        .unwrap();
    // The claim's lease is 60 s; during the call it covers the 240 s timeout.
    assert!(left > 240.0, "{left}");
}

/// `trellis worker`, the real binary on the test database, runs only the executor: a
/// run started through the API finishes with no server of its own running one.
#[tokio::test]
async fn the_worker_command_runs_workflows() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-worker").await;
    let steps = json!([transform("only", json!({ "by": "worker {{ input.n }}" }))]);
    let wf = workflow(&app, &owner, "worked", steps, json!([])).await;
    let id = start(&app, &owner, &wf, json!({ "n": 1 })).await;
    let mut worker = crate::support::worker_command(&app).spawn().unwrap();
    let started = std::time::Instant::now();
    let finished = loop {
        let now = run(&app, &owner, &id).await;
        if now["status"] == "SUCCEEDED" {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker did not finish the run: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(finished["output"], json!({ "only": { "by": "worker 1" } }));
    worker.kill().await.unwrap();
}

/// A loopback server whose `/flaky` answers 503 to its first `failures` requests and
/// 200 after, whose `/slow` answers after two seconds and `/hang` after a minute; it
/// counts requests to `/flaky`.
pub(crate) async fn flaky_api(
    failures: usize,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = axum::Router::new()
        .route(
            "/flaky",
            get(move || {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < failures {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "try later")
                    } else {
                        (axum::http::StatusCode::OK, "fine")
                    }
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "late"
            }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "much too late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count)
}

/// Ticks until the run ends (or 10 s pass); the run as the dashboard sees it, with
/// each step's attempts.
pub(crate) async fn run_to_end(
    app: &TestApp,
    owner: &Member,
    executor: &Executor,
    id: &str,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        executor.tick().await.unwrap();
        let seen = attempts_of(app, owner, id).await;
        let open = ["PENDING", "RUNNING"].contains(&seen["status"].as_str().unwrap());
        if !open || std::time::Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn attempts_of(app: &TestApp, owner: &Member, id: &str) -> Value {
    app.ok(
        Some(&owner.token),
        "query($id: ID!) { node(id: $id) { ... on WorkflowRun { status error nextRetryAt \
           currentSteps { stepKey } \
           stepRuns { stepKey status attempt nextAttemptAt \
             attempts { attempt status error startedAt finishedAt } } } } }",
        json!({ "id": id }),
    )
    .await["node"]
        .clone()
}

fn millis(at: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(at.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// A failing step is tried again after its backoff; each attempt is kept with its
/// error and times, and the dashboard sees the retry coming.
#[tokio::test]
async fn a_failing_step_is_retried_with_backoff_and_each_attempt_is_kept() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-retry").await;
    let (api, count) = flaky_api(2).await;
    let steps = json!([{ "key": "call", "name": "call", "type": "HTTP", "config": {
        "url": format!("{api}/flaky"),
        "retry": { "maxAttempts": 3, "backoff": { "initialSeconds": 0.3, "factor": 2 }, "jitter": false } } }]);
    let wf = workflow(&app, &owner, "flaky", steps, json!([])).await;
    let id = start(&app, &owner, &wf, json!({})).await;
    let executor = executor(&app, 10);

    // The first attempt fails: the run stays open, a retry is due in 0.3 s.
    let tick = executor.tick().await.unwrap();
    assert_eq!((tick.claimed, tick.finished), (1, 0));
    let waiting = attempts_of(&app, &owner, &id).await;
    assert_eq!(waiting["status"], "RUNNING", "{waiting}");
    assert_eq!(waiting["currentSteps"], json!([{ "stepKey": "call" }]));
    let step = &waiting["stepRuns"][0];
    assert_eq!(
        (step["status"].as_str(), step["attempt"].as_i64()),
        (Some("RUNNING"), Some(2))
    );
    assert_eq!(step["nextAttemptAt"], waiting["nextRetryAt"]);
    assert_eq!(step["attempts"].as_array().unwrap().len(), 1, "{step}");
    assert_eq!(step["attempts"][0]["error"]["status"], 503);
    // Not due yet: a tick now does not try again.
    executor.tick().await.unwrap();
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);

    let done = run_to_end(&app, &owner, &executor, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
    let step = &done["stepRuns"][0];
    let attempts = step["attempts"].as_array().unwrap();
    let summary: Vec<_> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, [(1, "FAILED"), (2, "FAILED"), (3, "SUCCEEDED")]);
    assert_eq!(step["nextAttemptAt"], Value::Null);
    assert_eq!(done["nextRetryAt"], Value::Null);
    // Backoff: 0.3 s before the second attempt, 0.6 s before the third.
    let gap = |i: usize| millis(&attempts[i + 1]["startedAt"]) - millis(&attempts[i]["finishedAt"]);
    assert!((300..1_000).contains(&gap(0)), "{}", gap(0));
    assert!((600..1_300).contains(&gap(1)), "{}", gap(1));
}

/// A step that keeps failing fails the run once its attempts are used up; a client
/// error (4xx) is not retried at all.
#[tokio::test]
async fn retries_end_when_attempts_are_used_up_and_client_errors_are_not_retried() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-retry-out").await;
    let (api, count) = flaky_api(usize::MAX).await;
    let retry = json!({ "maxAttempts": 2, "backoff": { "initialSeconds": 0.05 }, "jitter": false });
    let steps = json!([{ "key": "call", "name": "call", "type": "HTTP",
                         "config": { "url": format!("{api}/flaky"), "retry": retry } }]);
    let wf = workflow(&app, &owner, "always-down", steps, json!([])).await;
    let id = start(&app, &owner, &wf, json!({})).await;
    let executor = executor(&app, 10);
    let done = run_to_end(&app, &owner, &executor, &id).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error"]["error"]["status"], 503);
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(done["stepRuns"][0]["attempts"].as_array().unwrap().len(), 2);

    let (orders, seen) = orders_api().await;
    let steps = json!([{ "key": "call", "name": "call", "type": "HTTP",
                         "config": { "url": format!("{orders}/missing"), "retry": retry } }]);
    let wf = workflow(&app, &owner, "not-found", steps, json!([])).await;
    let id = start(&app, &owner, &wf, json!({})).await;
    let done = run_to_end(&app, &owner, &executor, &id).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// An attempt that runs past `timeoutSeconds` fails with TIMEOUT, at the timeout and
/// not when the far end answers.
#[tokio::test]
async fn a_step_past_its_timeout_fails_with_timeout() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-timeout").await;
    let (api, _) = flaky_api(0).await;
    let steps = json!([{ "key": "call", "name": "call", "type": "HTTP",
                         "config": { "url": format!("{api}/slow"), "timeoutSeconds": 0.3,
                                     "retry": { "maxAttempts": 1 } } }]);
    let wf = workflow(&app, &owner, "slow", steps, json!([])).await;
    let id = start(&app, &owner, &wf, json!({})).await;
    let began = std::time::Instant::now();
    let done = run_to_end(&app, &owner, &executor(&app, 10), &id).await;
    assert!(
        began.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error"]["error"]["code"], "TIMEOUT", "{done}");
}

/// Cancelling a run stops the HTTP call it has in flight: the executor lets go of it
/// within a second, not when the far end answers.
#[tokio::test]
async fn cancelling_a_run_aborts_its_call_in_flight() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-cancel").await;
    let (api, _) = flaky_api(0).await;
    let steps = json!([{ "key": "call", "name": "call", "type": "HTTP",
                         "config": { "url": format!("{api}/hang"), "timeoutSeconds": 120 } }]);
    let wf = workflow(&app, &owner, "hanging", steps, json!([])).await;
    let id = start(&app, &owner, &wf, json!({})).await;
    let executor = executor(&app, 10);
    let ticking = tokio::spawn(async move { executor.tick().await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let cancelled = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { cancelRun(input: {id: $id}) { run { status } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(cancelled["cancelRun"]["run"]["status"], "CANCELLED");
    let began = std::time::Instant::now();
    let tick = tokio::time::timeout(Duration::from_secs(5), ticking)
        .await
        .expect("the executor let go of the call")
        .unwrap()
        .unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    assert_eq!((tick.claimed, tick.finished), (1, 0));
    let seen = run(&app, &owner, &id).await;
    assert_eq!(seen["status"], "CANCELLED", "{seen}");
    assert_eq!(step_status(&seen, "call"), "CANCELLED");
}

/// A simulation may replay a real run: its HTTP step answers with what the server
/// answered in that run (so it routes the same way), and the server hears nothing new.
/// Only simulations replay, and only finished real runs of the same workflow.
#[tokio::test]
async fn a_simulation_replays_a_real_runs_outputs() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-replay").await;
    let (api, seen) = orders_api().await;
    let (steps, transitions) = http_steps(&api, "/orders/{{ input.id }}");
    let wf = workflow(&app, &owner, "replayed", steps, transitions).await;
    let real = start(&app, &owner, &wf, json!({ "id": 7 })).await;
    executor(&app, 10).tick().await.unwrap();
    assert_eq!(
        run(&app, &owner, &real).await["output"],
        json!({ "big": { "total": 700 } })
    );
    assert_eq!(seen.lock().unwrap().len(), 1);

    let replay = "mutation($w: ID!, $r: ID, $s: Boolean) { startRun(input: {workflowId: $w, input: {id: 7}, simulation: $s, replayFromRunId: $r}) { run { id replayOf { id } } userErrors { field message } } }";
    let data = app
        .ok(
            Some(&owner.token),
            replay,
            json!({ "w": wf, "r": real, "s": true }),
        )
        .await;
    let started = &data["startRun"]["run"];
    assert_eq!(started["replayOf"]["id"], real.as_str());
    let id = started["id"].as_str().unwrap().to_owned();
    executor(&app, 10).tick().await.unwrap();
    let replayed = run(&app, &owner, &id).await;
    assert_eq!(replayed["status"], "SUCCEEDED", "{replayed}");
    // Without the replay the sample (total 1) would have routed to `small`.
    assert_eq!(replayed["output"], json!({ "big": { "total": 700 } }));
    assert_eq!(seen.lock().unwrap().len(), 1, "the replay called nobody");

    // A real run cannot replay, nor can a simulation replay a simulation.
    let data = app
        .ok(
            Some(&owner.token),
            replay,
            json!({ "w": wf, "r": real, "s": false }),
        )
        .await;
    assert_eq!(
        data["startRun"]["userErrors"][0]["field"], "replayFromRunId",
        "{data}"
    );
    let data = app
        .ok(
            Some(&owner.token),
            replay,
            json!({ "w": wf, "r": id, "s": true }),
        )
        .await;
    assert_eq!(
        data["startRun"]["userErrors"][0]["field"], "replayFromRunId",
        "{data}"
    );

    // Another tenant naming this run gets the answer a made-up id gets.
    let other = app.owner("engine-replay-b").await;
    let (steps, transitions) = http_steps(&api, "/orders/1");
    let theirs = workflow(&app, &other, "replayed", steps, transitions).await;
    let mut answers = Vec::new();
    for target in [real.clone(), format!("run_{}", Uuid::now_v7().simple())] {
        let data = app
            .ok(
                Some(&other.token),
                replay,
                json!({ "w": theirs, "r": target, "s": true }),
            )
            .await;
        answers.push(data["startRun"]["userErrors"].clone());
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][0]["field"], "replayFromRunId");
}

/// DESIGN §6's budget for the engine: at most 10 SQL statements per step, claims,
/// transactions and live events included, on a 5-step workflow and on one-step runs
/// (the pure queue, where all of a run's own costs fall on its one step).
#[tokio::test]
async fn a_step_costs_at_most_ten_statements() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-cost").await;
    let chain = json!([
        transform("a", json!({ "n": "{{ input.n }}" })),
        { "key": "b", "name": "b", "type": "CONDITION" },
        transform("c", json!({ "n": "{{ steps.a.output.n }}" })),
        transform("d", json!({ "n": "{{ steps.c.output.n }}" })),
        transform("e", json!({ "n": "{{ steps.d.output.n }}" })),
    ]);
    let links = json!([
        { "from": "a", "to": "b" }, { "from": "b", "to": "c" },
        { "from": "c", "to": "d" }, { "from": "d", "to": "e" },
    ]);
    let chain = workflow(&app, &owner, "chain", chain, links).await;
    let noop = json!([transform("noop", json!({ "ok": true }))]);
    let noop = workflow(&app, &owner, "noop", noop, json!([])).await;
    for (shape, workflow, steps) in [("5-step", chain, 5), ("one-step", noop, 1)] {
        let per_step = statements_per_step(&app, &owner, &workflow, steps).await;
        eprintln!("engine, {shape} runs: {per_step:.2} SQL statements per step");
        assert!(
            per_step <= 10.0,
            "{shape}: {per_step:.1} statements per step"
        );
    }
}

/// The statements the executor spends per step running 20 runs of `workflow` (of
/// `steps` steps) to the end.
async fn statements_per_step(app: &TestApp, owner: &Member, workflow: &str, steps: usize) -> f64 {
    use std::sync::atomic::Ordering;
    let runs = 20;
    for n in 0..runs {
        start(app, owner, workflow, json!({ "n": n })).await;
    }
    let executor = executor(app, 10);
    let before = app.state.statements.load(Ordering::Relaxed);
    let mut finished = 0;
    while finished < runs {
        let tick = executor.tick().await.unwrap();
        assert!(tick.claimed > 0, "runs left unfinished");
        finished += tick.finished;
    }
    let spent = app.state.statements.load(Ordering::Relaxed) - before;
    spent as f64 / (runs * steps) as f64
}

/// A run's first move is made in its claim's transaction, with the tenant's other
/// claimed runs. When one of them cannot move (here its step run is gone), the others
/// are claimed again on their own and finish in the same tick.
#[tokio::test]
async fn a_run_that_cannot_move_holds_back_none_of_its_tenants_others() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-broken").await;
    let steps = json!([transform("only", json!({ "n": "{{ input.n }}" }))]);
    let wf = workflow(&app, &owner, "one", steps, json!([])).await;
    let mut runs = Vec::new();
    for n in 0..3 {
        runs.push(start(&app, &owner, &wf, json!({ "n": n })).await);
    }
    let broken = Uuid::parse_str(&runs[1][4..]).unwrap();
    app.db
        .admin()
        .await
        .execute(stmt(
            "DELETE FROM step_runs WHERE run_id = $1",
            [broken.into()],
        ))
        .await
        .unwrap();
    let tick = executor(&app, 10).tick().await.unwrap();
    assert_eq!((tick.claimed, tick.finished), (3, 2), "{tick:?}");
    for (i, id) in runs.iter().enumerate() {
        let status = &run(&app, &owner, id).await["status"];
        let expected = if i == 1 { "RUNNING" } else { "SUCCEEDED" };
        assert_eq!(status, expected, "run {i}");
    }
}

/// What cannot be kept fails its step with a clear error instead of wedging the run:
/// a response whose output passes the 1 MiB a run's payloads may have, and a config
/// whose templates render larger than that.
#[tokio::test]
async fn outputs_and_configs_too_large_to_keep_fail_their_step() {
    use axum::routing::get;
    let app = TestApp::new().await;
    let owner = app.owner("engine-large").await;
    // 1 MiB of quotes, which JSON escapes to 2 MiB.
    let api = axum::Router::new().route("/big", get(|| async { "\"".repeat(1 << 20) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/big", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    let steps =
        json!([{ "key": "fetch", "name": "fetch", "type": "HTTP", "config": { "url": url } }]);
    let fetching = workflow(&app, &owner, "fetch-big", steps, json!([])).await;
    let fetched = start(&app, &owner, &fetching, json!({})).await;
    let copy = "{{ input.text }}";
    let steps = json!([transform(
        "copy",
        json!({ "a": copy, "b": copy, "c": copy })
    )]);
    let copying = workflow(&app, &owner, "copy-big", steps, json!([])).await;
    let copied = start(
        &app,
        &owner,
        &copying,
        json!({ "text": "x".repeat(400_000) }),
    )
    .await;

    let tick = executor(&app, 10).tick().await.unwrap();
    assert_eq!(tick.finished, 2, "{tick:?}");
    let fetched = run(&app, &owner, &fetched).await;
    assert_eq!(fetched["status"], "FAILED", "{fetched}");
    assert_eq!(fetched["error"]["error"]["code"], "TOO_LARGE");
    let copied = run(&app, &owner, &copied).await;
    assert_eq!(copied["status"], "FAILED");
    assert_eq!(copied["error"]["error"]["field"], "steps.copy.config");
    let message = copied["error"]["error"]["message"].as_str().unwrap();
    assert!(message.contains("more than 1048576 bytes"), "{message}");
}

/// An executor with nothing to do rests, but a new run wakes it at once: the run's
/// NOTIFY reaches it through the process's live-update listener, so a run started
/// during a 30 s rest still finishes within seconds.
#[tokio::test]
async fn a_resting_executor_wakes_when_a_run_starts() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-wake").await;
    let steps = json!([transform("only", json!({ "n": "{{ input.n }}" }))]);
    let wf = workflow(&app, &owner, "woken", steps, json!([])).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let resting = executor(&app, 10).run(
        Duration::from_secs(30),
        app.state.live.subscribe(),
        async move {
            let _ = stopped.await;
        },
    );
    let worker = tokio::spawn(resting);
    // Its first pass finds nothing; then it rests.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = start(&app, &owner, &wf, json!({ "n": 1 })).await;
    let mut status = Value::Null;
    for _ in 0..50 {
        status = run(&app, &owner, &id).await["status"].clone();
        if status == "SUCCEEDED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "SUCCEEDED");
    stop.send(()).unwrap();
    worker.await.unwrap();
}

/// One request the echo server received.
#[derive(Clone, Debug)]
pub(crate) struct Heard {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

/// A loopback server that records every request and answers 200 with
/// `{"heard": <path>}` as JSON.
pub(crate) async fn echo_api() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Heard>>>) {
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<Heard>>>;
    let seen: Seen = Default::default();
    let record = seen.clone();
    let handler = move |method: axum::http::Method,
                        uri: axum::http::Uri,
                        headers: axum::http::HeaderMap,
                        body: String| {
        let record = record.clone();
        async move {
            let path = uri.path().to_owned();
            record.lock().unwrap().push(Heard {
                method: method.to_string(),
                uri: uri.to_string(),
                headers,
                body,
            });
            axum::Json(json!({ "heard": path }))
        }
    };
    let router = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, seen)
}

/// A connection of the built-in http app: `baseUrl`, two default headers, a 5 s
/// timeout and the secret `authorization` when given; its id.
async fn api_connection(
    app: &TestApp,
    owner: &Member,
    base_url: &str,
    authorization: Option<&str>,
) -> String {
    use crate::connections::{connect, create_secret, latest_version};
    let version = latest_version(app, owner, "http").await;
    let secrets = match authorization {
        Some(value) => {
            let secret = create_secret(app, owner, "api-token", value).await;
            json!([{ "field": "authorization", "secretId": secret }])
        }
        None => json!([]),
    };
    let payload = connect(
        app,
        owner,
        &version,
        "api",
        json!({ "baseUrl": base_url, "timeoutMs": 5000,
                "defaultHeaders": { "x-default": "from-connection", "x-team": "connection" } }),
        secrets,
    )
    .await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    payload["connection"]["id"].as_str().unwrap().to_owned()
}

/// The id of the built-in http app's `request` action.
async fn http_request_action(app: &TestApp, owner: &Member) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            "{ app(key: \"http\") { latestVersion { actions(kind: ACTION) { id key } } } }",
            json!({}),
        )
        .await;
    let actions = data["app"]["latestVersion"]["actions"].as_array().unwrap();
    let request = actions.iter().find(|a| a["key"] == "request").unwrap();
    request["id"].as_str().unwrap().to_owned()
}

/// Everything stored about a run that the dashboard can read, as one string.
async fn everything_about(app: &TestApp, owner: &Member, id: &str) -> String {
    app.ok(
        Some(&owner.token),
        "query($id: ID!) { node(id: $id) { ... on WorkflowRun { input output error \
           stepRuns { input output error attempts { error } } } } }",
        json!({ "id": id }),
    )
    .await
    .to_string()
}

/// An HTTP step with a connection of the http app: its relative URL is appended to the
/// connection's baseUrl, the connection's default headers are sent with the step's own
/// overriding them, and its authorization secret is the Authorization header, which
/// appears nowhere in the run's record.
#[tokio::test]
async fn http_steps_call_through_their_connection_with_its_headers_and_secret() {
    const SECRET: &str = "Bearer conn-secret-7f3a";
    let app = TestApp::new().await;
    let owner = app.owner("engine-http-conn").await;
    let (api, heard) = echo_api().await;
    let connection = api_connection(&app, &owner, &format!("{api}/v1/"), Some(SECRET)).await;
    let steps = json!([
        { "key": "post", "name": "post", "type": "HTTP", "connectionId": connection, "config": {
            "method": "POST", "url": "/orders/{{ input.id }}",
            "headers": { "X-Team": "step" }, "body": { "id": "{{ input.id }}" } } },
    ]);
    let wf = workflow(&app, &owner, "through", steps, json!([])).await;
    let id = start(&app, &owner, &wf, json!({ "id": 7 })).await;
    executor(&app, 10).tick().await.unwrap();
    let done = run(&app, &owner, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["output"]["post"]["status"], 200);
    assert_eq!(
        done["output"]["post"]["body"],
        json!({ "heard": "/v1/orders/7" })
    );

    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 1, "{heard:?}");
    let request = &heard[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.uri, "/v1/orders/7");
    assert_eq!(request.headers["x-default"], "from-connection");
    let teams: Vec<_> = request.headers.get_all("x-team").iter().collect();
    assert_eq!(teams, ["step"], "the step's header replaces the default");
    assert_eq!(request.headers["authorization"], SECRET);
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(request.body, r#"{"id":7}"#);

    let stored = everything_about(&app, &owner, &id).await;
    assert!(!stored.contains("conn-secret"), "{stored}");
    // Nor in any row of the database, however stored.
    let admin = app.db.admin().await;
    for table in [
        "workflow_runs",
        "step_runs",
        "step_attempts",
        "audit_events",
    ] {
        let found = admin
            .query_one(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT count(*) AS n FROM {table} t WHERE t::text LIKE '%conn-secret%'"),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(found, 0, "{table} holds the secret");
    }
}

/// An ACTION step bound to the built-in http app's `request` action runs in the engine
/// as an HTTP call through its connection: query parameters (a list repeats), a form
/// body, the same `{status, headers, body}` output; the run succeeds. Other ACTION
/// steps stay with runners.
#[tokio::test]
async fn http_request_action_steps_run_in_the_engine() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-http-action").await;
    let (api, heard) = echo_api().await;
    let connection = api_connection(&app, &owner, &api, Some("Basic YWxhZGRpbjpzZXNhbWU=")).await;
    let action = http_request_action(&app, &owner).await;
    let steps = json!([
        { "key": "search", "name": "search", "type": "ACTION", "actionId": action,
          "connectionId": connection, "config": {
            "method": "POST", "path": "/search",
            "query": { "tag": ["a", "b c"], "page": "{{ input.page }}" },
            "headers": { "x-team": "action" },
            "bodyType": "form", "body": { "q": "{{ input.q }}", "limit": 5 } } },
        { "key": "fetch", "name": "fetch", "type": "ACTION", "actionId": action, "config": {
            "method": "PUT", "path": format!("{api}/items/{{{{ steps.search.output.status }}}}"),
            "body": { "seen": "{{ steps.search.output.body.heard }}" } } },
    ]);
    let wf = workflow(
        &app,
        &owner,
        "acting",
        steps,
        json!([{ "from": "search", "to": "fetch" }]),
    )
    .await;
    let id = start(&app, &owner, &wf, json!({ "page": 2, "q": "red shoes" })).await;
    let executor = executor(&app, 10);
    let done = run_to_end(&app, &owner, &executor, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let done = run(&app, &owner, &id).await;
    assert_eq!(done["output"]["fetch"]["status"], 200, "{done}");
    assert_eq!(
        done["output"]["fetch"]["body"],
        json!({ "heard": "/items/200" })
    );
    assert!(done["output"]["fetch"]["headers"]["content-type"]
        .as_str()
        .unwrap()
        .contains("json"));

    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 2, "{heard:?}");
    let search = &heard[0];
    assert_eq!(search.method, "POST");
    // Parameters in any order (the stored config is JSONB), a list repeated.
    let sorted = |pairs: &str| {
        let mut pairs: Vec<&str> = pairs.split('&').collect();
        pairs.sort_unstable();
        pairs.join("&")
    };
    let (path, query) = search.uri.split_once('?').unwrap();
    assert_eq!(path, "/search");
    assert_eq!(sorted(query), "page=2&tag=a&tag=b+c");
    assert_eq!(
        search.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(sorted(&search.body), "limit=5&q=red+shoes");
    assert_eq!(search.headers["x-team"], "action");
    assert_eq!(search.headers["x-default"], "from-connection");
    assert_eq!(
        search.headers["authorization"],
        "Basic YWxhZGRpbjpzZXNhbWU="
    );
    let fetch = &heard[1];
    assert_eq!(fetch.method, "PUT");
    assert_eq!(fetch.uri, "/items/200");
    assert_eq!(fetch.headers["content-type"], "application/json");
    assert_eq!(fetch.body, r#"{"seen":"/search"}"#);
    assert!(fetch.headers.get("authorization").is_none());
    let stored = everything_about(&app, &owner, &id).await;
    assert!(!stored.contains("YWxhZGRpbjpzZXNhbWU"), "{stored}");
}

/// Only ACTION steps of the http app's `request` action are the engine's: a version
/// with another app's action is left to runners.
#[tokio::test]
async fn other_action_steps_are_left_for_runners() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-other-action").await;
    let data = app
        .ok(
            Some(&owner.token),
            "{ app(key: \"gmail\") { latestVersion { actions(kind: ACTION) { id key } } } }",
            json!({}),
        )
        .await;
    let actions = data["app"]["latestVersion"]["actions"].as_array().unwrap();
    let other = actions
        .iter()
        .find(|a| a["key"] == "searchMessages")
        .unwrap_or_else(|| panic!("{data}"));
    let steps = json!([
        { "key": "act", "name": "act", "type": "ACTION", "actionId": other["id"], "config": { "maxResults": 5 } },
    ]);
    let wf = workflow(&app, &owner, "elsewhere", steps, json!([])).await;
    let id = start(&app, &owner, &wf, json!({})).await;
    assert_eq!(executor(&app, 10).tick().await.unwrap(), Tick::default());
    assert_eq!(run(&app, &owner, &id).await["status"], "PENDING");
}

/// A simulation of an ACTION step of the http app's `request` action sends nothing:
/// the step answers with its `sampleOutput`.
#[tokio::test]
async fn a_simulated_http_request_action_sends_nothing() {
    let app = TestApp::new().await;
    let owner = app.owner("engine-http-action-sim").await;
    let (api, heard) = echo_api().await;
    let connection = api_connection(&app, &owner, &api, Some("Bearer sim-secret")).await;
    let action = http_request_action(&app, &owner).await;
    let steps = json!([
        { "key": "call", "name": "call", "type": "ACTION", "actionId": action,
          "connectionId": connection, "config": {
            "method": "POST", "path": "/orders", "body": { "n": 1 },
            "sampleOutput": { "status": 201, "headers": {}, "body": { "id": 5 } } } },
        transform("after", json!({ "id": "{{ steps.call.output.body.id }}" })),
    ]);
    let wf = workflow(
        &app,
        &owner,
        "simulated-action",
        steps,
        json!([{ "from": "call", "to": "after" }]),
    )
    .await;
    let id = start_simulation(&app, &owner, &wf).await;
    let executor = executor(&app, 10);
    let done = run_to_end(&app, &owner, &executor, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(
        run(&app, &owner, &id).await["output"],
        json!({ "after": { "id": 5 } })
    );
    assert!(heard.lock().unwrap().is_empty(), "a simulation called out");
}

/// An HTTP step takes a connection of the http app only; the problem names the field.
#[tokio::test]
async fn an_http_step_refuses_a_connection_of_another_app() {
    use crate::connections::{connect, create_secret, latest_version};
    let app = TestApp::new().await;
    let owner = app.owner("engine-http-wrong").await;
    let version = latest_version(&app, &owner, "email").await;
    let password = create_secret(&app, &owner, "smtp", "pw").await;
    let mail = connect(
        &app,
        &owner,
        &version,
        "mail",
        json!({ "host": "mail.example.com", "port": 587, "security": "starttls",
                "fromAddress": "flows@acme.test" }),
        json!([{ "field": "password", "secretId": password }]),
    )
    .await;
    assert_eq!(mail["userErrors"], json!([]), "{mail}");
    let mail = mail["connection"]["id"].as_str().unwrap();
    let created = app
        .ok(
            Some(&owner.token),
            "mutation { createWorkflow(input: {key: \"wrong\", name: \"wrong\"}) { workflow { versions { id } } } }",
            json!({}),
        )
        .await;
    let version = created["createWorkflow"]["workflow"]["versions"][0]["id"].clone();
    let step = json!({ "key": "call", "name": "call", "type": "HTTP", "connectionId": mail,
                       "config": { "url": "https://api.example.com/x" } });
    let saved = app
        .ok(
            Some(&owner.token),
            "mutation($v: ID!, $s: [WorkflowStepInput!]!) { saveWorkflowGraph(input: {versionId: $v, steps: $s, transitions: []}) { userErrors { field message } } }",
            json!({ "v": version, "s": [step] }),
        )
        .await;
    let errors = &saved["saveWorkflowGraph"]["userErrors"];
    assert_eq!(errors.as_array().unwrap().len(), 1, "{saved}");
    assert_eq!(errors[0]["field"], "steps.call.connectionId", "{saved}");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("http app"),
        "{saved}"
    );
}

/// A `trellis worker` killed mid-step: its run is taken over once the lease runs out,
/// resumes at the step that was running (the call is made again: calls are at least
/// once) and completes exactly once.
#[tokio::test]
async fn a_worker_killed_mid_step_leaves_a_run_that_completes_exactly_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let app = TestApp::new().await;
    let owner = app.owner("engine-killed").await;
    // The first call never answers; later ones answer at once.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let api = axum::Router::new().route(
        "/slow",
        axum::routing::get(move || {
            let seen = seen.clone();
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    std::future::pending::<()>().await;
                }
                axum::Json(json!({ "ok": true }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    let steps = json!([
        { "key": "fetch", "name": "fetch", "type": "HTTP", "config": { "url": url, "timeoutMs": 60000 } },
        transform("after", json!({ "ok": "{{ steps.fetch.output.body.ok }}" })),
    ]);
    let links = json!([{ "from": "fetch", "to": "after" }]);
    let wf = workflow(&app, &owner, "killed", steps, links).await;
    let id = start(&app, &owner, &wf, json!({})).await;

    let mut worker = crate::support::worker_command(&app).spawn().unwrap();
    let started = std::time::Instant::now();
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker never called"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Mid-call: SIGKILL, no chance to clean up.
    worker.kill().await.unwrap();
    let running = run(&app, &owner, &id).await;
    assert_eq!(running["status"], "RUNNING");
    assert_eq!(step_status(&running, "fetch"), "RUNNING");
    // Its lease outlasts the call's timeout; nobody takes the run over before then.
    assert_eq!(executor(&app, 10).tick().await.unwrap().claimed, 0);
    let admin = app.db.admin().await;
    let run_id = Uuid::parse_str(&id[4..]).unwrap();
    admin
        .execute(stmt(
            "UPDATE workflow_runs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
            [run_id.into()],
        ))
        .await
        .unwrap();
    let tick = executor(&app, 10).tick().await.unwrap();
    assert_eq!((tick.claimed, tick.finished), (1, 1), "{tick:?}");
    assert_eq!(executor(&app, 10).tick().await.unwrap().claimed, 0);
    let done = run(&app, &owner, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["output"], json!({ "after": { "ok": true } }));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let count = |sql: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(stmt(sql, [run_id.into()]))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap()
        }
    };
    let ended = count(
        "SELECT count(*) AS n FROM audit_events WHERE action = 'run.succeed' AND target_id = $1",
    )
    .await;
    assert_eq!(ended, 1, "the run ended once");
    let steps =
        count("SELECT count(*) AS n FROM step_runs WHERE run_id = $1 AND status = 'succeeded'")
            .await;
    assert_eq!(steps, 2);
}
