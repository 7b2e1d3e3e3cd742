//! Runs through the API: the state machines, idempotent starts under concurrency,
//! cancel and retry, runner leases (expiry, re-claim, retried calls), signed webhook
//! deliveries, list filters and the dashboard's statement count.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use serde_json::{json, Value};
use trellis_core::scope::stmt;
use trellis_core::workflows::triggers::sign;

use crate::support::{Member, TestApp};

pub(crate) const START: &str = "mutation($w: ID!, $input: JSON, $key: String, $sim: Boolean) { startRun(input: {workflowId: $w, input: $input, idempotencyKey: $key, simulation: $sim}) { run { id status stepRuns { stepKey status } } deduplicated userErrors { field code message } } }";
const CLAIM: &str = "mutation($n: Int!, $s: Int!) { claimRuns(input: {limit: $n, leaseSeconds: $s}) { leases { token expiresAt run { id status } } userErrors { field code } } }";

/// A workflow with a published, active three-step chain a → b → c.
pub(crate) async fn active_workflow(app: &TestApp, owner: &Member, key: &str) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($k: String!) { createWorkflow(input: {key: $k, name: $k}) { workflow { id versions { id } } } }",
            json!({ "k": key }),
        )
        .await;
    let workflow = data["createWorkflow"]["workflow"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let version = data["createWorkflow"]["workflow"]["versions"][0]["id"].clone();
    let steps: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|k| json!({ "key": k, "name": k, "type": "DELAY", "config": { "seconds": 1 } }))
        .collect();
    let saved = app
        .ok(
            Some(&owner.token),
            "mutation($v: ID!, $s: [WorkflowStepInput!]!) { saveWorkflowGraph(input: {versionId: $v, steps: $s, transitions: [{from: \"a\", to: \"b\"}, {from: \"b\", to: \"c\"}]}) { userErrors { field message } } }",
            json!({ "v": version, "s": steps }),
        )
        .await;
    assert_eq!(saved["saveWorkflowGraph"]["userErrors"], json!([]));
    for mutation in ["publishVersion", "activateVersion"] {
        app.ok(
            Some(&owner.token),
            &format!("mutation($id: ID!) {{ {mutation}(input: {{id: $id}}) {{ userErrors {{ message }} }} }}"),
            json!({ "id": version }),
        )
        .await;
    }
    workflow
}

pub(crate) async fn start(
    app: &TestApp,
    token: &str,
    workflow: &str,
    input: Value,
    key: Option<&str>,
) -> Value {
    app.ok(
        Some(token),
        START,
        json!({ "w": workflow, "input": input, "key": key }),
    )
    .await["startRun"]
        .clone()
}

pub(crate) async fn claim(app: &TestApp, runner: &str, n: i64) -> Vec<Value> {
    let data = app
        .ok(Some(runner), CLAIM, json!({ "n": n, "s": 60 }))
        .await;
    data["claimRuns"]["leases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A runner call on a step: `op` is startStep, completeStep, failStep or skipStep.
pub(crate) async fn step(
    app: &TestApp,
    runner: &str,
    op: &str,
    run: &str,
    token: &str,
    key: &str,
    payload: Value,
) -> Value {
    app.ok(
        Some(runner),
        &format!("mutation($r: ID!, $t: ID!, $k: String!, $p: JSON) {{ {op}(input: {{runId: $r, token: $t, stepKey: $k, payload: $p}}) {{ stepRun {{ stepKey status attempt output }} userErrors {{ field code message }} }} }}"),
        json!({ "r": run, "t": token, "k": key, "p": payload }),
    )
    .await[op]
        .clone()
}

pub(crate) async fn end_run(
    app: &TestApp,
    runner: &str,
    op: &str,
    run: &str,
    token: &str,
    payload: Value,
) -> Value {
    app.ok(
        Some(runner),
        &format!("mutation($r: ID!, $t: ID!, $p: JSON!) {{ {op}(input: {{runId: $r, token: $t, payload: $p}}) {{ run {{ status output error finishedAt stepRuns {{ stepKey status }} }} userErrors {{ field code message }} }} }}"),
        json!({ "r": run, "t": token, "p": payload }),
    )
    .await[op]
        .clone()
}

fn statuses(run: &Value) -> Vec<(String, String)> {
    run["stepRuns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stepKey"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_run_moves_through_its_states_and_retried_calls_change_nothing() {
    let app = TestApp::new().await;
    let owner = app.owner("runs-life").await;
    let workflow = active_workflow(&app, &owner, "life").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let started = start(&app, &owner.token, &workflow, json!({ "order": 7 }), None).await;
    let run = started["run"]["id"].as_str().unwrap().to_owned();
    assert_eq!(started["run"]["status"], "PENDING");
    assert_eq!(started["deduplicated"], false);
    assert_eq!(
        statuses(&started["run"]),
        [
            ("a".into(), "PENDING".into()),
            ("b".into(), "PENDING".into()),
            ("c".into(), "PENDING".into())
        ]
    );

    let leases = claim(&app, &runner, 10).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["run"]["status"], "RUNNING");
    let token = leases[0]["token"].as_str().unwrap().to_owned();
    assert!(
        claim(&app, &runner, 10).await.is_empty(),
        "a leased run is not claimed twice"
    );

    // A pending step cannot complete; started, it can, and repeating is harmless.
    let early = step(
        &app,
        &runner,
        "completeStep",
        &run,
        &token,
        "a",
        json!({ "x": 1 }),
    )
    .await;
    assert_eq!(early["userErrors"][0]["code"], "CONFLICT");
    let started_a = step(
        &app,
        &runner,
        "startStep",
        &run,
        &token,
        "a",
        json!({ "in": 1 }),
    )
    .await;
    assert_eq!(started_a["stepRun"]["status"], "RUNNING");
    assert_eq!(started_a["stepRun"]["attempt"], 1);
    let again = step(
        &app,
        &runner,
        "startStep",
        &run,
        &token,
        "a",
        json!({ "in": 1 }),
    )
    .await;
    assert_eq!(
        again["stepRun"]["attempt"], 1,
        "a retried start is not a second attempt"
    );
    let done = step(
        &app,
        &runner,
        "completeStep",
        &run,
        &token,
        "a",
        json!({ "out": 1 }),
    )
    .await;
    assert_eq!(done["stepRun"]["status"], "SUCCEEDED");
    let same = step(
        &app,
        &runner,
        "completeStep",
        &run,
        &token,
        "a",
        json!({ "out": 1 }),
    )
    .await;
    assert_eq!(same["stepRun"]["output"], json!({ "out": 1 }));
    let other = step(
        &app,
        &runner,
        "completeStep",
        &run,
        &token,
        "a",
        json!({ "out": 2 }),
    )
    .await;
    assert_eq!(other["userErrors"][0]["code"], "CONFLICT");
    let skipped = step(&app, &runner, "skipStep", &run, &token, "b", Value::Null).await;
    assert_eq!(skipped["stepRun"]["status"], "SKIPPED");
    let unknown = step(&app, &runner, "startStep", &run, &token, "zzz", Value::Null).await;
    assert_eq!(unknown["userErrors"][0]["field"], "stepKey");

    // Completing the run skips what is still pending; the same end again is harmless.
    let finished = end_run(
        &app,
        &runner,
        "completeRun",
        &run,
        &token,
        json!({ "total": 3 }),
    )
    .await;
    assert_eq!(finished["run"]["status"], "SUCCEEDED");
    assert_eq!(
        statuses(&finished["run"]),
        [
            ("a".into(), "SUCCEEDED".into()),
            ("b".into(), "SKIPPED".into()),
            ("c".into(), "SKIPPED".into())
        ]
    );
    let repeat = end_run(
        &app,
        &runner,
        "completeRun",
        &run,
        &token,
        json!({ "total": 3 }),
    )
    .await;
    assert_eq!(repeat["run"]["finishedAt"], finished["run"]["finishedAt"]);
    let contradict = end_run(
        &app,
        &runner,
        "failRun",
        &run,
        &token,
        json!({ "why": "x" }),
    )
    .await;
    assert_eq!(contradict["userErrors"][0]["code"], "CONFLICT");
    let cancel = app
        .ok(Some(&owner.token), "mutation($id: ID!) { cancelRun(input: {id: $id}) { run { status } userErrors { code } } }", json!({ "id": run }))
        .await;
    assert_eq!(cancel["cancelRun"]["userErrors"][0]["code"], "CONFLICT");

    // Only runner keys claim; viewers do not start runs; operators do.
    let (reader, _) = app.api_key(&owner, "READ").await;
    assert_eq!(
        app.error_code(Some(&reader), CLAIM, json!({ "n": 1, "s": 60 }))
            .await,
        "FORBIDDEN"
    );
    let viewer = app.member(&owner, "viewer@runs-life.test", "VIEWER").await;
    assert_eq!(
        app.error_code(Some(&viewer.token), START, json!({ "w": workflow }))
            .await,
        "FORBIDDEN"
    );
    let operator = app
        .member(&owner, "operator@runs-life.test", "OPERATOR")
        .await;
    let by_operator = start(&app, &operator.token, &workflow, json!({}), None).await;
    assert_eq!(by_operator["run"]["status"], "PENDING");
}

#[tokio::test]
async fn cancelling_cancels_open_steps_and_retrying_links_a_new_run() {
    let app = TestApp::new().await;
    let owner = app.owner("runs-cancel").await;
    let workflow = active_workflow(&app, &owner, "cancel").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let run = start(&app, &owner.token, &workflow, json!({ "n": 1 }), None).await["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lease = claim(&app, &runner, 1).await;
    let token = lease[0]["token"].as_str().unwrap().to_owned();
    step(&app, &runner, "startStep", &run, &token, "a", json!({})).await;
    step(&app, &runner, "completeStep", &run, &token, "a", json!({})).await;
    step(&app, &runner, "startStep", &run, &token, "b", json!({})).await;
    let cancelled = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { cancelRun(input: {id: $id}) { run { status cancelledAt stepRuns { stepKey status } } } }",
            json!({ "id": run }),
        )
        .await;
    let cancelled = &cancelled["cancelRun"]["run"];
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(
        statuses(cancelled),
        [
            ("a".into(), "SUCCEEDED".into()),
            ("b".into(), "CANCELLED".into()),
            ("c".into(), "CANCELLED".into())
        ]
    );
    // The worker's next call finds the run cancelled.
    let late = step(&app, &runner, "completeStep", &run, &token, "b", json!({})).await;
    assert_eq!(late["userErrors"][0]["code"], "CONFLICT");
    let retried = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { retryRun(input: {id: $id}) { run { id status input retryOf { id } } userErrors { code } } }",
            json!({ "id": run }),
        )
        .await;
    let retried = &retried["retryRun"]["run"];
    assert_eq!(retried["status"], "PENDING");
    assert_eq!(retried["retryOf"]["id"], run);
    assert_eq!(retried["input"], json!({ "n": 1 }));
    let open = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { retryRun(input: {id: $id}) { userErrors { code } } }",
            json!({ "id": retried["id"] }),
        )
        .await;
    assert_eq!(
        open["retryRun"]["userErrors"][0]["code"], "CONFLICT",
        "an open run is not retried"
    );
}

#[tokio::test]
async fn twenty_concurrent_starts_with_one_key_make_one_run() {
    let app = TestApp::new().await;
    let owner = app.owner("runs-idem").await;
    let workflow = active_workflow(&app, &owner, "idem").await;
    let calls = (0..20).map(|_| {
        start(
            &app,
            &owner.token,
            &workflow,
            json!({ "b": 2, "a": 1 }),
            Some("order-42"),
        )
    });
    let results = futures::future::join_all(calls).await;
    let ids: std::collections::HashSet<&str> = results
        .iter()
        .map(|r| r["run"]["id"].as_str().unwrap_or_else(|| panic!("{r}")))
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(
        results
            .iter()
            .filter(|r| r["deduplicated"] == false)
            .count(),
        1
    );
    let admin = app.db.admin().await;
    let count = |sql: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(stmt(sql, []))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index::<i64>(0)
                .unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) FROM workflow_runs").await, 1);
    assert_eq!(count("SELECT count(*) FROM step_runs").await, 3);

    // Same key, same input (keys in another order): the same run.
    let again = start(
        &app,
        &owner.token,
        &workflow,
        json!({ "a": 1, "b": 2 }),
        Some("order-42"),
    )
    .await;
    assert_eq!(again["deduplicated"], true);
    // Same key, another input: CONFLICT.
    let other = start(
        &app,
        &owner.token,
        &workflow,
        json!({ "a": 2 }),
        Some("order-42"),
    )
    .await;
    assert_eq!(other["userErrors"][0]["code"], "CONFLICT");
    assert_eq!(other["userErrors"][0]["field"], "idempotencyKey");
    // Once the key expired, it names a new run.
    admin
        .execute(stmt(
            "UPDATE run_idempotency_keys SET expires_at = now() - interval '1 second'",
            [],
        ))
        .await
        .unwrap();
    let fresh = start(
        &app,
        &owner.token,
        &workflow,
        json!({ "a": 9 }),
        Some("order-42"),
    )
    .await;
    assert_eq!(fresh["deduplicated"], false);
    assert!(!ids.contains(fresh["run"]["id"].as_str().unwrap()));
    assert_eq!(count("SELECT count(*) FROM workflow_runs").await, 2);
}

#[tokio::test]
async fn expired_leases_are_claimed_again_and_lock_the_old_holder_out() {
    let app = TestApp::new().await;
    let owner = app.owner("runs-lease").await;
    let workflow = active_workflow(&app, &owner, "lease").await;
    let (first_worker, _) = app.api_key(&owner, "RUNNER").await;
    let (second_worker, _) = app.api_key(&owner, "RUNNER").await;
    for i in 0..6 {
        start(&app, &owner.token, &workflow, json!({ "i": i }), None).await;
    }
    // Two workers claiming at once never share a run.
    let (a, b) = tokio::join!(
        claim(&app, &first_worker, 4),
        claim(&app, &second_worker, 4)
    );
    let ids = |leases: &[Value]| -> Vec<String> {
        leases
            .iter()
            .map(|l| l["run"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (a_ids, b_ids) = (ids(&a), ids(&b));
    assert_eq!(a_ids.len() + b_ids.len(), 6, "{a_ids:?} {b_ids:?}");
    assert!(a_ids.iter().all(|id| !b_ids.contains(id)));

    // The first worker's lease on one run expires; the second worker takes it over.
    let (run, old_token) = match a.first() {
        Some(lease) => (
            lease["run"]["id"].as_str().unwrap().to_owned(),
            lease["token"].as_str().unwrap().to_owned(),
        ),
        None => (
            b[0]["run"]["id"].as_str().unwrap().to_owned(),
            b[0]["token"].as_str().unwrap().to_owned(),
        ),
    };
    assert!(claim(&app, &second_worker, 10).await.is_empty());
    let admin = app.db.admin().await;
    admin
        .execute(stmt(
            "UPDATE workflow_runs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
            [uuid::Uuid::parse_str(&run[4..]).unwrap().into()],
        ))
        .await
        .unwrap();
    let taken = claim(&app, &second_worker, 10).await;
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0]["run"]["id"], run);
    let new_token = taken[0]["token"].as_str().unwrap();
    assert_ne!(new_token, old_token);
    let stale = step(
        &app,
        &first_worker,
        "startStep",
        &run,
        &old_token,
        "a",
        json!({}),
    )
    .await;
    assert_eq!(stale["userErrors"][0]["field"], "leaseToken");
    let fresh = step(
        &app,
        &second_worker,
        "startStep",
        &run,
        new_token,
        "a",
        json!({}),
    )
    .await;
    assert_eq!(fresh["stepRun"]["status"], "RUNNING");
    let renewed = app
        .ok(
            Some(&second_worker),
            "mutation($r: ID!, $t: ID!) { renewLease(input: {runId: $r, token: $t, leaseSeconds: 120}) { run { leaseExpiresAt } userErrors { code } } }",
            json!({ "r": run, "t": new_token }),
        )
        .await;
    assert!(
        renewed["renewLease"]["run"]["leaseExpiresAt"].is_string(),
        "{renewed}"
    );
}

/// Signs `body` like a webhook sender at `at`.
pub(crate) fn signed(secret: &str, at: i64, body: &str) -> String {
    sign(&SecretString::from(secret.to_owned()), at, body.as_bytes())
}

pub(crate) async fn deliver(
    app: &TestApp,
    path: &str,
    signature: Option<&str>,
    delivery: Option<&str>,
    body: String,
) -> (StatusCode, Value) {
    let mut request = Request::post(path).header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("x-trellis-signature", signature);
    }
    if let Some(delivery) = delivery {
        request = request.header("x-trellis-delivery", delivery);
    }
    app.send(request.body(Body::from(body)).unwrap()).await
}

#[tokio::test]
async fn webhook_deliveries_are_verified_deduplicated_and_refused_without_detail() {
    let app = TestApp::new().await;
    let owner = app.owner("runs-hook").await;
    let workflow = active_workflow(&app, &owner, "hook").await;
    let created = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!) { createTrigger(input: {workflowId: $w, key: \"inbound\", type: WEBHOOK}) { trigger { id webhookPath } signingSecret } }",
            json!({ "w": workflow }),
        )
        .await;
    let path = created["createTrigger"]["trigger"]["webhookPath"]
        .as_str()
        .unwrap()
        .to_owned();
    let trigger = created["createTrigger"]["trigger"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = created["createTrigger"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = chrono::Utc::now().timestamp();
    let body = r#"{"order": 1}"#.to_owned();

    let (status, answer) = deliver(
        &app,
        &path,
        Some(&signed(&secret, now, &body)),
        Some("d-1"),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let run = answer["runId"].as_str().unwrap().to_owned();
    assert_eq!(answer["deduplicated"], false);
    // A redelivery (same delivery id, same body, a fresh signature) is the same run.
    let (status, again) = deliver(
        &app,
        &path,
        Some(&signed(&secret, now + 1, &body)),
        Some("d-1"),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["runId"], run);
    assert_eq!(again["deduplicated"], true);
    let data = app
        .ok(Some(&owner.token), "query($id: ID!) { node(id: $id) { ... on WorkflowRun { triggerType triggerPayload input trigger { key } } } }", json!({ "id": run }))
        .await;
    assert_eq!(data["node"]["triggerType"], "WEBHOOK");
    assert_eq!(data["node"]["triggerPayload"], json!({ "order": 1 }));
    assert_eq!(data["node"]["trigger"]["key"], "inbound");

    // Refusals: bad, missing, stale and future signatures; wrong body; unknown path.
    // Stale and future are six minutes off: a second past the five-minute window
    // would pass once this test has run for a second, as it may on a loaded machine.
    let refusals = [
        (
            Some(signed("whsec_wrong", now, &body)),
            body.clone(),
            &path[..],
            StatusCode::UNAUTHORIZED,
        ),
        (None, body.clone(), &path[..], StatusCode::UNAUTHORIZED),
        (
            Some(signed(&secret, now - 360, &body)),
            body.clone(),
            &path[..],
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(signed(&secret, now + 360, &body)),
            body.clone(),
            &path[..],
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(signed(&secret, now, &body)),
            r#"{"order": 2}"#.to_owned(),
            &path[..],
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(signed(&secret, now, &body)),
            body.clone(),
            "/hooks/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            StatusCode::NOT_FOUND,
        ),
        (
            Some(signed(&secret, now, "not json")),
            "not json".to_owned(),
            &path[..],
            StatusCode::BAD_REQUEST,
        ),
        // PostgreSQL cannot store a NUL: bad input, not a 500 the sender retries.
        (
            Some(signed(&secret, now, r#"{"order": "a\u0000b"}"#)),
            r#"{"order": "a\u0000b"}"#.to_owned(),
            &path[..],
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (signature, payload, target, expected) in refusals {
        let (status, answer) = deliver(&app, target, signature.as_deref(), None, payload).await;
        assert_eq!(status, expected, "{answer}");
        assert!(answer.get("runId").is_none());
    }
    // The same signed request replayed without a delivery id (as a sniffer would, within
    // the signature window) finds the run it started, even with the header padded.
    let replayed = r#"{"order": 4}"#.to_owned();
    let signature = signed(&secret, now, &replayed);
    let (status, first) = deliver(&app, &path, Some(&signature), None, replayed.clone()).await;
    assert_eq!(
        (status, &first["deduplicated"]),
        (StatusCode::ACCEPTED, &json!(false))
    );
    let padded = format!("{signature},v1={}", "0".repeat(64));
    for header in [&signature, &padded] {
        let (status, again) = deliver(&app, &path, Some(header), None, replayed.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(again["runId"], first["runId"]);
        assert_eq!(again["deduplicated"], true);
    }
    // The same delivery id with another body is a conflict, not a second run.
    let other = r#"{"order": 3}"#.to_owned();
    let (status, _) = deliver(
        &app,
        &path,
        Some(&signed(&secret, now, &other)),
        Some("d-1"),
        other,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Oversized bodies are refused before anything is read.
    let huge = format!("{{\"x\": \"{}\"}}", "a".repeat(300 * 1024));
    let (status, _) = deliver(&app, &path, Some(&signed(&secret, now, &huge)), None, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // After a rotation both secrets work inside the window, only the new one after it.
    let rotated = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { rotateWebhookSecret(input: {id: $id}) { signingSecret } }",
            json!({ "id": trigger }),
        )
        .await;
    let new_secret = rotated["rotateWebhookSecret"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    for (secret, expected) in [
        (&secret, StatusCode::ACCEPTED),
        (&new_secret, StatusCode::ACCEPTED),
    ] {
        let (status, _) = deliver(
            &app,
            &path,
            Some(&signed(secret, now, &body)),
            None,
            body.clone(),
        )
        .await;
        assert_eq!(status, expected);
    }
    let admin = app.db.admin().await;
    admin
        .execute(stmt(
            "UPDATE triggers SET previous_secret_expires_at = now() - interval '1 second'",
            [],
        ))
        .await
        .unwrap();
    let (status, _) = deliver(
        &app,
        &path,
        Some(&signed(&secret, now, &body)),
        None,
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = deliver(
        &app,
        &path,
        Some(&signed(&new_secret, now, &body)),
        None,
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // An inactive trigger is not found; a suspended tenant is forbidden.
    app.ok(Some(&owner.token), "mutation($id: ID!) { updateTrigger(input: {id: $id, isActive: false}) { trigger { isActive } } }", json!({ "id": trigger }))
        .await;
    let (status, _) = deliver(
        &app,
        &path,
        Some(&signed(&new_secret, now, &body)),
        None,
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.ok(Some(&owner.token), "mutation($id: ID!) { updateTrigger(input: {id: $id, isActive: true}) { trigger { isActive } } }", json!({ "id": trigger }))
        .await;
    admin
        .execute(stmt("UPDATE tenants SET status = 'suspended'", []))
        .await
        .unwrap();
    let (status, _) = deliver(
        &app,
        &path,
        Some(&signed(&new_secret, now, &body)),
        None,
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn runs_are_filtered_and_the_dashboard_costs_the_same_at_any_size() {
    let app = TestApp::new().await;
    let owner = app.owner("runs-dash").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let mut workflows = vec![];
    for w in 0..4 {
        let id = active_workflow(&app, &owner, &format!("dash-{w}")).await;
        for i in 0..4 {
            start(&app, &owner.token, &id, json!({ "i": i }), None).await;
        }
        workflows.push(id);
    }
    let simulated = app
        .ok(
            Some(&owner.token),
            START,
            json!({ "w": workflows[0], "sim": true }),
        )
        .await;
    assert_eq!(simulated["startRun"]["userErrors"], json!([]));
    // Finish two runs: one succeeds, one fails.
    let leases = claim(&app, &runner, 2).await;
    let ends = [("completeRun", "SUCCEEDED"), ("failRun", "FAILED")];
    for (lease, (op, _)) in leases.iter().zip(ends) {
        let run = lease["run"]["id"].as_str().unwrap();
        let token = lease["token"].as_str().unwrap();
        end_run(&app, &runner, op, run, token, json!({ "done": true })).await;
    }
    let count = |filter: Value| {
        let app = &app;
        let token = owner.token.clone();
        async move {
            app.ok(
                Some(&token),
                "query($f: RunFilter) { runs(filter: $f) { totalCount } }",
                json!({ "f": filter }),
            )
            .await["runs"]["totalCount"]
                .as_i64()
                .unwrap()
        }
    };
    assert_eq!(count(json!({})).await, 17);
    let on_tenant = app
        .ok(
            Some(&owner.token),
            "{ tenant { runs(filter: {status: [PENDING]}) { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(on_tenant["tenant"]["runs"]["totalCount"], 15);
    assert_eq!(count(json!({ "status": ["SUCCEEDED"] })).await, 1);
    assert_eq!(count(json!({ "status": ["SUCCEEDED", "FAILED"] })).await, 2);
    assert_eq!(count(json!({ "status": ["PENDING"] })).await, 15);
    assert_eq!(count(json!({ "workflow": workflows[1] })).await, 4);
    assert_eq!(count(json!({ "simulation": true })).await, 1);
    assert_eq!(count(json!({ "triggerType": "MANUAL" })).await, 17);
    assert_eq!(count(json!({ "triggerType": "WEBHOOK" })).await, 0);
    assert_eq!(
        count(json!({ "createdAfter": "2100-01-01T00:00:00Z" })).await,
        0
    );
    assert_eq!(
        count(json!({ "createdBefore": "2100-01-01T00:00:00Z" })).await,
        17
    );
    let per_workflow = app
        .ok(Some(&owner.token), "query($w: ID!) { node(id: $w) { ... on Workflow { runs(filter: {status: [PENDING]}) { totalCount } } } }", json!({ "w": workflows[2] }))
        .await;
    assert_eq!(per_workflow["node"]["runs"]["totalCount"], 4);

    let dashboard = "query($w: Int!, $r: Int!) { workflows(first: $w) { edges { node { key runs(first: $r) { pageInfo { hasNextPage } edges { node { status createdAt stepRuns { stepKey status } } } } } } } }";
    let mut counts = vec![];
    for (w, r) in [(1, 1), (2, 2), (4, 3), (4, 5)] {
        let before = app.state.statements.load(Ordering::Relaxed);
        let data = app
            .ok(Some(&owner.token), dashboard, json!({ "w": w, "r": r }))
            .await;
        counts.push(app.state.statements.load(Ordering::Relaxed) - before);
        let edges = data["workflows"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), w as usize);
        for edge in edges {
            let runs = edge["node"]["runs"]["edges"].as_array().unwrap();
            let key = edge["node"]["key"].as_str().unwrap();
            let expected = if key == "dash-0" { 5 } else { 4 };
            assert_eq!(runs.len(), (r as usize).min(expected), "{key}");
            assert_eq!(
                edge["node"]["runs"]["pageInfo"]["hasNextPage"],
                (r as usize) < expected
            );
            for run in runs {
                assert_eq!(run["node"]["stepRuns"].as_array().unwrap().len(), 3);
            }
        }
    }
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "statements per request changed: {counts:?}"
    );
    assert!(
        counts[0] <= 6,
        "the dashboard takes {} statements",
        counts[0]
    );

    // Lists read the payload columns only when the selection asks for one. A request
    // with a lean and a full selection of the same runs gets the payloads in the full
    // one (the lean rows are cached under their own key).
    let both = app
        .ok(
            Some(&owner.token),
            "{ workflows(first: 4) { edges { node { lean: runs(first: 5) { edges { node { id status stepRuns { stepKey } } } } full: runs(first: 5) { edges { node { id status output error stepRuns { stepKey output } } } } } } } }",
            json!({}),
        )
        .await;
    let mut finished = vec![];
    for edge in both["workflows"]["edges"].as_array().unwrap() {
        let lean = edge["node"]["lean"]["edges"].as_array().unwrap();
        let full = edge["node"]["full"]["edges"].as_array().unwrap();
        assert_eq!(lean.len(), full.len());
        for (l, f) in lean.iter().zip(full) {
            assert_eq!(l["node"]["id"], f["node"]["id"]);
            assert_eq!(l["node"]["stepRuns"].as_array().unwrap().len(), 3);
            match f["node"]["status"].as_str().unwrap() {
                "SUCCEEDED" => finished.push(("output", f["node"]["output"].clone())),
                "FAILED" => finished.push(("error", f["node"]["error"].clone())),
                _ => assert_eq!(f["node"]["output"], Value::Null),
            }
        }
    }
    finished.sort_by_key(|(field, _)| *field);
    assert_eq!(
        finished,
        vec![
            ("error", json!({ "done": true })),
            ("output", json!({ "done": true }))
        ]
    );
}

/// Every field of a run and its step runs, as a page of runs lists them (decoded by
/// column position, resolved in place), as a fragment reads them (async-graphql's own
/// resolution) and as `node` loads one run (decoded by column name): all three agree.
#[tokio::test]
async fn listed_runs_read_the_same_as_fragments_and_single_runs() {
    let app = TestApp::new().await;
    let owner = app.owner("runs-fields").await;
    let workflow = active_workflow(&app, &owner, "fields").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let run = start(
        &app,
        &owner.token,
        &workflow,
        json!({ "n": 1 }),
        Some("k-1"),
    )
    .await["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = claim(&app, &runner, 1).await[0]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    step(
        &app,
        &runner,
        "startStep",
        &run,
        &token,
        "a",
        json!({ "in": 1 }),
    )
    .await;
    step(
        &app,
        &runner,
        "completeStep",
        &run,
        &token,
        "a",
        json!({ "out": [1, 2] }),
    )
    .await;
    step(&app, &runner, "startStep", &run, &token, "b", json!({})).await;
    step(
        &app,
        &runner,
        "failStep",
        &run,
        &token,
        "b",
        json!({ "why": "x" }),
    )
    .await;
    end_run(
        &app,
        &runner,
        "failRun",
        &run,
        &token,
        json!({ "why": "b" }),
    )
    .await;
    // A retry of it (a run with `retryOf`) and an open simulation, so that NULL
    // timestamps and payloads are compared too.
    let retried = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { retryRun(input: {id: $id}) { run { id } userErrors { code } } }",
            json!({ "id": run }),
        )
        .await;
    assert_eq!(retried["retryRun"]["userErrors"], json!([]), "{retried:#}");
    let simulated = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!) { startRun(input: {workflowId: $w, simulation: true}) { userErrors { code } } }",
            json!({ "w": workflow }),
        )
        .await;
    assert_eq!(simulated["startRun"]["userErrors"], json!([]));

    let step_field_list = [
        "__typename",
        "id",
        "stepKey",
        "status",
        "attempt",
        "input",
        "output",
        "error",
        "createdAt",
        "startedAt",
        "finishedAt",
        "step { key }",
        "run { id }",
    ];
    let run_field_list = [
        "__typename",
        "id",
        "status",
        "triggerType",
        "isSimulation",
        "idempotencyKey",
        "input",
        "output",
        "triggerPayload",
        "error",
        "createdAt",
        "updatedAt",
        "startedAt",
        "finishedAt",
        "cancelledAt",
        "durationMs",
        "leaseExpiresAt",
        "payloadsPurgedAt",
        "workflow { key }",
        "version { number }",
        "trigger { id }",
        "retryOf { id }",
    ];
    let step_fields = step_field_list.join(" ");
    let run_fields = format!(
        "{} again: status stepRuns {{ {step_fields} }}",
        run_field_list.join(" ")
    );
    let listed = app
        .ok(
            Some(&owner.token),
            &format!("{{ workflows(first: 1) {{ edges {{ node {{ plain: runs(first: 5) {{ edges {{ node {{ {run_fields} }} }} }} fragment: runs(first: 5) {{ edges {{ node {{ ... on WorkflowRun {{ {run_fields} }} }} }} }} }} }} }} }}"),
            json!({}),
        )
        .await;
    let node = &listed["workflows"]["edges"][0]["node"];
    let plain = node["plain"]["edges"].as_array().unwrap();
    assert_eq!(plain.len(), 3);
    assert_eq!(node["plain"], node["fragment"]);
    // Lists read only the columns their selection needs: each field selected alone
    // reads what the whole selection read.
    let alone = |selection: String| {
        let app = &app;
        let token = &owner.token;
        async move {
            let query = format!(
                "{{ workflows(first: 1) {{ edges {{ node {{ runs(first: 5) {{ edges {{ node {{ {selection} }} }} }} }} }} }} }}"
            );
            let data = app.ok(Some(token), &query, json!({})).await;
            data["workflows"]["edges"][0]["node"]["runs"]["edges"].clone()
        }
    };
    let key = |field: &str| field.split(' ').next().unwrap().to_owned();
    for field in run_field_list {
        let got = alone(field.to_owned()).await;
        for (i, edge) in plain.iter().enumerate() {
            assert_eq!(
                got[i]["node"][key(field)],
                edge["node"][key(field)],
                "{field}"
            );
        }
    }
    for field in step_field_list {
        let got = alone(format!("stepRuns {{ {field} }}")).await;
        for (i, edge) in plain.iter().enumerate() {
            let want: Vec<&Value> = edge["node"]["stepRuns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| &s[key(field)])
                .collect();
            let have: Vec<&Value> = got[i]["node"]["stepRuns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| &s[key(field)])
                .collect();
            assert_eq!(have, want, "stepRuns {field}");
        }
    }
    let failed = plain
        .iter()
        .map(|e| &e["node"])
        .find(|r| r["id"] == run)
        .unwrap();
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["error"], json!({ "why": "b" }));
    assert_eq!(failed["stepRuns"][0]["output"], json!({ "out": [1, 2] }));
    assert!(failed["stepRuns"][1]["finishedAt"].is_string());
    let single = app
        .ok(
            Some(&owner.token),
            &format!(
                "query($id: ID!) {{ node(id: $id) {{ ... on WorkflowRun {{ {run_fields} }} }} }}"
            ),
            json!({ "id": run }),
        )
        .await;
    assert_eq!(&single["node"], failed);
    let first_step = &failed["stepRuns"][0];
    let single_step = app
        .ok(
            Some(&owner.token),
            &format!(
                "query($id: ID!) {{ node(id: $id) {{ ... on StepRun {{ {step_fields} }} }} }}"
            ),
            json!({ "id": first_step["id"] }),
        )
        .await;
    assert_eq!(&single_step["node"], first_step);
    // `node` too reads only the columns its selection needs: each field alone, and the
    // same run selected lean and full in one request, read what the full selection did.
    for (id, fragment, fields, want) in [
        (run.as_str(), "WorkflowRun", &run_field_list[..], failed),
        (
            first_step["id"].as_str().unwrap(),
            "StepRun",
            &step_field_list[..],
            first_step,
        ),
    ] {
        for field in fields {
            let got = app
                .ok(
                    Some(&owner.token),
                    &format!(
                        "query($id: ID!) {{ node(id: $id) {{ ... on {fragment} {{ {field} }} }} }}"
                    ),
                    json!({ "id": id }),
                )
                .await;
            assert_eq!(got["node"][key(field)], want[key(field)], "node {field}");
        }
    }
    let both = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { lean: node(id: $id) { ... on WorkflowRun { status } } \
             full: node(id: $id) { ... on WorkflowRun { status error input } } }",
            json!({ "id": run }),
        )
        .await;
    assert_eq!(both["lean"], json!({ "status": "FAILED" }));
    assert_eq!(both["full"]["error"], json!({ "why": "b" }));
    assert_eq!(both["full"]["input"], failed["input"]);
}

#[tokio::test]
async fn retention_clears_old_payloads_and_never_touches_open_runs() {
    let app = TestApp::new().await;
    let owner = app.owner("runs-retention").await;
    let workflow = active_workflow(&app, &owner, "keep").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    for i in 0..3 {
        start(
            &app,
            &owner.token,
            &workflow,
            json!({ "secret-ish": i }),
            None,
        )
        .await;
    }
    let leases = claim(&app, &runner, 2).await;
    for lease in &leases {
        let (run, token) = (
            lease["run"]["id"].as_str().unwrap(),
            lease["token"].as_str().unwrap(),
        );
        step(
            &app,
            &runner,
            "startStep",
            run,
            token,
            "a",
            json!({ "in": 1 }),
        )
        .await;
        step(
            &app,
            &runner,
            "completeStep",
            run,
            token,
            "a",
            json!({ "out": 1 }),
        )
        .await;
        end_run(
            &app,
            &runner,
            "completeRun",
            run,
            token,
            json!({ "result": 1 }),
        )
        .await;
    }
    let admin = app.db.admin().await;
    // One finished run is 31 days old, the other a day; the open one is old too.
    let old = uuid::Uuid::parse_str(&leases[0]["run"]["id"].as_str().unwrap()[4..]).unwrap();
    admin
        .execute(stmt(
            "UPDATE workflow_runs SET finished_at = now() - interval '31 days' WHERE id = $1",
            [old.into()],
        ))
        .await
        .unwrap();
    admin
        .execute(stmt("UPDATE workflow_runs SET created_at = now() - interval '500 days' WHERE finished_at IS NULL", []))
        .await
        .unwrap();
    // The maintenance loop's pass: each tenant in its own transaction under RLS.
    let db = &app.state.db;
    let pass = trellis_core::upkeep::tenant_pass(db, 100, 1000)
        .await
        .unwrap();
    assert_eq!((pass.tenants, pass.failed), (1, 0));
    assert_eq!(pass.payloads_cleared, 1);
    assert_eq!(pass.runs_deleted, 0);
    let again = trellis_core::upkeep::tenant_pass(db, 100, 1000)
        .await
        .unwrap();
    assert_eq!(again, Default::default(), "a second pass finds nothing");
    let data = app
        .ok(Some(&owner.token), "query($id: ID!) { node(id: $id) { ... on WorkflowRun { status input output payloadsPurgedAt finishedAt stepRuns { status input output } } } }", json!({ "id": leases[0]["run"]["id"] }))
        .await;
    let run = &data["node"];
    assert_eq!(run["status"], "SUCCEEDED", "status and timings stay");
    assert!(run["input"].is_null() && run["output"].is_null());
    assert!(run["payloadsPurgedAt"].is_string());
    assert!(run["stepRuns"][0]["input"].is_null() && run["stepRuns"][0]["status"] == "SUCCEEDED");
    let kept = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on WorkflowRun { input } } }",
            json!({ "id": leases[1]["run"]["id"] }),
        )
        .await;
    assert!(
        !kept["node"]["input"].is_null(),
        "a recent run keeps its payloads"
    );
    // A bad value written past the mutation's check (by hand, or before it existed)
    // neither stalls the job (a cast error used to fail it for every tenant) nor,
    // negative, wipes the tenant's runs: the defaults apply.
    admin
        .execute(stmt(
            "UPDATE tenants SET settings = '{\"payloadRetentionDays\": \"abc\", \"runRetentionDays\": -5}'",
            [],
        ))
        .await
        .unwrap();
    let pass = trellis_core::upkeep::tenant_pass(db, 100, 1000)
        .await
        .unwrap();
    assert_eq!(pass.runs_deleted, 0);
    assert_eq!(pass.failed, 0);
    // Past the tenant's shorter run retention, finished runs go; the open one stays.
    admin
        .execute(stmt(
            "UPDATE tenants SET settings = '{\"runRetentionDays\": 20}'",
            [],
        ))
        .await
        .unwrap();
    // Suspended, the tenant's retention goes on (the engine would be refused).
    admin
        .execute(stmt("UPDATE tenants SET status = 'suspended'", []))
        .await
        .unwrap();
    let pass = trellis_core::upkeep::tenant_pass(db, 100, 1000)
        .await
        .unwrap();
    assert_eq!(pass.runs_deleted, 1);
    let left: i64 = admin
        .query_one(stmt(
            "SELECT count(*) FROM workflow_runs WHERE finished_at IS NULL",
            [],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(left, 1);
}

#[tokio::test]
async fn runner_logs_are_redacted_filtered_and_paged_per_run_and_step() {
    let app = TestApp::new().await;
    let owner = app.owner("runs-logs").await;
    // A workflow whose one step calls the http app through a connection holding a
    // secret: that secret's plaintext must never reach the log store.
    let marker = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let secret = app
        .ok(
            Some(&owner.token),
            "mutation($v: String!) { createSecret(input: {name: \"api-token\", value: $v}) { secret { id } } }",
            json!({ "v": format!("Bearer {marker}") }),
        )
        .await["createSecret"]["secret"]["id"]
        .clone();
    let http = app
        .ok(
            Some(&owner.token),
            "{ app(key: \"http\") { latestVersion { id actions { id key } } } }",
            json!({}),
        )
        .await;
    let version = &http["app"]["latestVersion"];
    let connection = app
        .ok(
            Some(&owner.token),
            "mutation($v: ID!, $s: ID!) { createConnection(input: {appVersionId: $v, name: \"api\", config: {baseUrl: \"https://api.example.com\"}, secrets: [{field: \"authorization\", secretId: $s}]}) { connection { id } userErrors { field message } } }",
            json!({ "v": version["id"], "s": secret }),
        )
        .await["createConnection"]["connection"]["id"]
        .clone();
    let created = app
        .ok(Some(&owner.token), "mutation { createWorkflow(input: {key: \"logged\", name: \"Logged\"}) { workflow { id versions { id } } } }", json!({}))
        .await;
    let workflow = created["createWorkflow"]["workflow"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let draft = created["createWorkflow"]["workflow"]["versions"][0]["id"].clone();
    let steps = json!([
        { "key": "call", "name": "Call", "type": "ACTION", "actionId": version["actions"][0]["id"], "connectionId": connection, "config": { "method": "GET", "path": "/users" } },
        { "key": "wait", "name": "Wait", "type": "DELAY", "config": { "seconds": 1 } }
    ]);
    let saved = app
        .ok(
            Some(&owner.token),
            "mutation($v: ID!, $s: [WorkflowStepInput!]!) { saveWorkflowGraph(input: {versionId: $v, steps: $s, transitions: [{from: \"call\", to: \"wait\"}]}) { userErrors { field message } } }",
            json!({ "v": draft, "s": steps }),
        )
        .await;
    assert_eq!(saved["saveWorkflowGraph"]["userErrors"], json!([]));
    for mutation in ["publishVersion", "activateVersion"] {
        app.ok(Some(&owner.token), &format!("mutation($id: ID!) {{ {mutation}(input: {{id: $id}}) {{ userErrors {{ message }} }} }}"), json!({ "id": draft }))
            .await;
    }
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let run = start(&app, &owner.token, &workflow, json!({}), None).await["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lease = claim(&app, &runner, 1).await;
    let token = lease[0]["token"].as_str().unwrap().to_owned();
    let append = "mutation($r: ID!, $t: ID!, $e: [LogLineInput!]!) { appendLogs(input: {runId: $r, token: $t, entries: $e}) { appended userErrors { field code message } } }";
    let entries = json!([
        { "level": "INFO", "message": "run started" },
        { "stepKey": "call", "level": "DEBUG", "message": format!("sending Authorization: Bearer {marker}"), "context": { "header": format!("Bearer {marker}"), "user": "ada@example.com" } },
        { "stepKey": "call", "level": "ERROR", "message": "upstream said 502 to ops@example.com" },
        { "stepKey": "wait", "level": "INFO", "message": "waiting 1 s" }
    ]);
    let appended = app
        .ok(
            Some(&runner),
            append,
            json!({ "r": run, "t": token, "e": entries }),
        )
        .await;
    assert_eq!(appended["appendLogs"]["appended"], 4, "{appended}");
    let bad_step = app
        .ok(Some(&runner), append, json!({ "r": run, "t": token, "e": [{ "stepKey": "nope", "level": "INFO", "message": "x" }] }))
        .await;
    assert_eq!(
        bad_step["appendLogs"]["userErrors"][0]["field"],
        "entries[0].stepKey"
    );
    let (reader, _) = app.api_key(&owner, "READ").await;
    assert_eq!(
        app.error_code(
            Some(&reader),
            append,
            json!({ "r": run, "t": token, "e": [] })
        )
        .await,
        "FORBIDDEN"
    );

    let read = "query($id: ID!, $f: LogLineFilter, $n: Int, $after: String) { node(id: $id) { ... on WorkflowRun { logs(first: $n, after: $after, filter: $f) { pageInfo { hasNextPage endCursor } edges { node { level message context stepRunId } } } stepRuns { stepKey logs { edges { node { message } } } } } } }";
    let all = app.ok(Some(&owner.token), read, json!({ "id": run })).await;
    let lines = all["node"]["logs"]["edges"].as_array().unwrap();
    assert_eq!(lines.len(), 4);
    let body = all.to_string();
    assert!(!body.contains(&marker), "a secret reached the log: {body}");
    assert!(lines[1]["node"]["message"]
        .as_str()
        .unwrap()
        .contains("[secret]"));
    assert!(
        !body.contains("ada@example.com") && !body.contains("ops@example.com"),
        "emails are masked: {body}"
    );
    let per_step: Vec<usize> = all["node"]["stepRuns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["logs"]["edges"].as_array().unwrap().len())
        .collect();
    assert_eq!(per_step, [2, 1]);
    let errors = app
        .ok(
            Some(&owner.token),
            read,
            json!({ "id": run, "f": { "levels": ["ERROR"] } }),
        )
        .await;
    assert_eq!(errors["node"]["logs"]["edges"].as_array().unwrap().len(), 1);
    let text = app
        .ok(
            Some(&owner.token),
            read,
            json!({ "id": run, "f": { "text": "WAITING" } }),
        )
        .await;
    assert_eq!(
        text["node"]["logs"]["edges"][0]["node"]["message"],
        "waiting 1 s"
    );
    let literal = app
        .ok(
            Some(&owner.token),
            read,
            json!({ "id": run, "f": { "text": "%" } }),
        )
        .await;
    assert_eq!(
        literal["node"]["logs"]["edges"].as_array().unwrap().len(),
        0
    );
    let first = app
        .ok(Some(&owner.token), read, json!({ "id": run, "n": 3 }))
        .await;
    assert_eq!(first["node"]["logs"]["pageInfo"]["hasNextPage"], true);
    let cursor = first["node"]["logs"]["pageInfo"]["endCursor"].clone();
    let rest = app
        .ok(
            Some(&owner.token),
            read,
            json!({ "id": run, "n": 3, "after": cursor }),
        )
        .await;
    assert_eq!(
        rest["node"]["logs"]["edges"][0]["node"]["message"],
        "waiting 1 s"
    );
    assert_eq!(rest["node"]["logs"]["pageInfo"]["hasNextPage"], false);

    // A line is a Node: its global ID reads it back, for its tenant only.
    let ids = app
        .ok(Some(&owner.token), "query($id: ID!) { node(id: $id) { ... on WorkflowRun { logs(filter: {levels: [ERROR]}) { edges { node { id runId } } } } } }", json!({ "id": run }))
        .await;
    let line = ids["node"]["logs"]["edges"][0]["node"].clone();
    assert!(line["id"].as_str().unwrap().starts_with("log_"), "{line}");
    assert_eq!(line["runId"], run.as_str());
    let by_id = "query($id: ID!) { node(id: $id) { __typename id ... on LogLine { level message runId } } }";
    let node = app
        .ok(Some(&owner.token), by_id, json!({ "id": line["id"] }))
        .await;
    assert_eq!(node["node"]["__typename"], "LogLine");
    assert_eq!(node["node"]["level"], "ERROR");
    assert_eq!(node["node"]["id"], line["id"]);
    let stranger = app.owner("log-stranger").await;
    assert_eq!(
        app.error_code(Some(&stranger.token), by_id, json!({ "id": line["id"] }))
            .await,
        "NOT_FOUND"
    );
    let made_up = format!("log_{}", uuid::Uuid::now_v7().simple());
    assert_eq!(
        app.error_code(Some(&owner.token), by_id, json!({ "id": made_up }))
            .await,
        "NOT_FOUND"
    );

    // The stored row holds no plaintext either.
    let admin = app.db.admin().await;
    let stored: i64 = admin
        .query_one(stmt(
            "SELECT count(*) FROM execution_logs WHERE message LIKE '%' || $1 || '%' OR context::text LIKE '%' || $1 || '%'",
            [marker.clone().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(stored, 0);
}

/// A start costs four statements with or without an idempotency key (issue 19's
/// budget: the data needs three, plus the tenant context): the tenant context, the
/// workflow with its version and steps, the key with the run and its step runs, and
/// the audit event with the NOTIFY. Reading the step runs back is a fifth. A repeated
/// key answers with the first run, a different input under it is a CONFLICT.
#[tokio::test]
async fn a_start_costs_four_statements_and_reading_it_back_one() {
    use std::sync::atomic::Ordering;
    let app = TestApp::new().await;
    let owner = app.owner("runs-cost").await;
    let workflow = active_workflow(&app, &owner, "cost").await;
    for (i, key) in [None, Some("k-1"), Some("k-2")].into_iter().enumerate() {
        let before = app.state.statements.load(Ordering::Relaxed);
        let started = start(&app, &owner.token, &workflow, json!({ "i": i }), key).await;
        let spent = app.state.statements.load(Ordering::Relaxed) - before;
        assert_eq!(started["userErrors"], json!([]), "{started:#}");
        assert_eq!(started["run"]["stepRuns"].as_array().unwrap().len(), 3);
        assert_eq!(spent, 5, "{key:?}");
    }
    let again = start(
        &app,
        &owner.token,
        &workflow,
        json!({ "i": 1 }),
        Some("k-1"),
    )
    .await;
    assert_eq!(again["deduplicated"], true, "{again:#}");
    let clash = start(
        &app,
        &owner.token,
        &workflow,
        json!({ "i": 9 }),
        Some("k-1"),
    )
    .await;
    assert_eq!(
        clash["userErrors"][0]["field"], "idempotencyKey",
        "{clash:#}"
    );
}
