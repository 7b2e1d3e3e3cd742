//! Plans' `monthlyRuns`, enforced (`run_counts`, migration 000037): a tenant starts at
//! most that many real runs per calendar month, exactly under concurrent starts;
//! simulations, idempotent repeats and plans without the limit are not counted; a
//! webhook past the limit is refused with 429; and one tenant's count is neither
//! readable nor writable by another.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Datelike, TimeZone, Utc};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::isolation_processes::attempt;
use crate::isolation_workflows::count;
use crate::runs::{active_workflow, deliver, signed, START};
use crate::skills::platform_admin;
use crate::support::{is_rls_violation, retry_after, Member, TestApp};

const RUNS_THIS_MONTH: &str = "{ tenant { runsThisMonth plan { key } } }";

/// The seconds from now until the next calendar month begins (UTC), computed here
/// apart from the server's arithmetic.
fn seconds_to_next_month() -> i64 {
    let now = Utc::now();
    let (year, month) = match now.month() {
        12 => (now.year() + 1, 1),
        m => (now.year(), m + 1),
    };
    let next = Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).unwrap();
    (next - now).num_seconds()
}

/// Puts `owner`'s tenant on a new plan `key` that allows `runs` runs a month.
async fn plan_with_runs(app: &TestApp, root: &Member, owner: &Member, key: &str, runs: u64) {
    let saved = app
        .ok(
            Some(&root.token),
            "mutation($k: String!, $l: PlanLimitsInput!) { savePlan(input: {key: $k, name: $k, limits: $l}) { userErrors { field message } } }",
            json!({ "k": key, "l": { "monthlyRuns": runs } }),
        )
        .await;
    assert_eq!(saved["savePlan"]["userErrors"], json!([]), "{saved}");
    let set = app
        .ok(
            Some(&root.token),
            "mutation($t: ID!, $p: String!) { setTenantPlan(input: {tenantId: $t, plan: $p}) { userErrors { field message } } }",
            json!({ "t": owner.tenant_id, "p": key }),
        )
        .await;
    assert_eq!(set["setTenantPlan"]["userErrors"], json!([]), "{set}");
}

/// Starts a run of `workflow` that must be accepted; returns the `startRun` payload.
async fn started(app: &TestApp, owner: &Member, variables: Value) -> Value {
    let data = app.ok(Some(&owner.token), START, variables).await;
    assert_eq!(data["startRun"]["userErrors"], json!([]), "{data}");
    data["startRun"].clone()
}

/// The code and field a refused start answered with, from its userErrors or its errors.
fn refusal(answer: &Value) -> Option<(String, String)> {
    let error = answer["data"]["startRun"]["userErrors"]
        .get(0)
        .or_else(|| answer["errors"].get(0).map(|e| &e["extensions"]))?;
    Some((
        error["code"].as_str()?.to_owned(),
        error["field"].as_str().unwrap_or_default().to_owned(),
    ))
}

#[tokio::test]
async fn the_plans_monthly_runs_hold_under_concurrent_starts() {
    let app = TestApp::new().await;
    let root = platform_admin(&app, "root@run-quota.test").await;
    let owner = app.owner("run-quota").await;
    let workflow = active_workflow(&app, &owner, "counted").await;
    plan_with_runs(&app, &root, &owner, "five-runs", 5).await;

    // One start with an idempotency key, then a simulation (never counted).
    let keyed = started(
        &app,
        &owner,
        json!({ "w": workflow, "input": { "n": 0 }, "key": "first" }),
    )
    .await;
    started(&app, &owner, json!({ "w": workflow, "sim": true })).await;

    // Ten at once for the four places left: four runs, six refusals naming the limit.
    let starts = (1..=10).map(|n| {
        let (app, token, workflow) = (&app, owner.token.clone(), workflow.clone());
        async move {
            app.post(
                Some(&token),
                START,
                json!({ "w": workflow, "input": { "n": n } }),
            )
            .await
            .1
        }
    });
    let answers = futures::future::join_all(starts).await;
    let made = answers
        .iter()
        .filter(|a| a["data"]["startRun"]["run"]["id"].is_string())
        .count();
    let refused: Vec<_> = answers.iter().filter_map(refusal).collect();
    assert_eq!(made, 4, "{answers:#?}");
    assert_eq!(
        refused,
        vec![
            (
                "LIMIT_REACHED".to_owned(),
                "plan.limits.monthlyRuns".to_owned()
            );
            6
        ],
        "{answers:#?}"
    );
    let data = app.ok(Some(&owner.token), RUNS_THIS_MONTH, json!({})).await;
    assert_eq!(data["tenant"]["runsThisMonth"], 5, "{data}");
    // The refused starts left nothing behind: five real runs and the simulation.
    let admin = app.db.admin().await;
    let runs = count(
        &admin,
        "SELECT count(*) FROM workflow_runs WHERE tenant_id = $1",
        vec![owner.tenant_uuid().into()],
    )
    .await;
    assert_eq!(runs, 6);

    // Past the limit, the keyed start's repeat is still its run (nothing new is
    // made), a simulation still runs, and a webhook delivery is refused with 429.
    let again = started(
        &app,
        &owner,
        json!({ "w": workflow, "input": { "n": 0 }, "key": "first" }),
    )
    .await;
    assert_eq!(again["deduplicated"], true, "{again}");
    assert_eq!(again["run"]["id"], keyed["run"]["id"], "{again}");
    started(&app, &owner, json!({ "w": workflow, "sim": true })).await;
    let hook = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!) { createTrigger(input: {workflowId: $w, key: \"inbound\", type: WEBHOOK}) { trigger { webhookPath } signingSecret } }",
            json!({ "w": workflow }),
        )
        .await;
    let path = hook["createTrigger"]["trigger"]["webhookPath"]
        .as_str()
        .unwrap();
    let secret = hook["createTrigger"]["signingSecret"].as_str().unwrap();
    let body = r#"{"order": 1}"#.to_owned();
    let now = chrono::Utc::now().timestamp();
    let request = Request::post(path)
        .header("content-type", "application/json")
        .header("x-trellis-signature", signed(secret, now, &body))
        .header("x-trellis-delivery", "d-1")
        .body(Body::from(body.clone()))
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Retry when the next month (UTC) begins.
    let retry_after = retry_after(&response);
    let next_month = seconds_to_next_month();
    assert!(
        (next_month - 5..=next_month + 5).contains(&retry_after),
        "Retry-After {retry_after}, the next month in {next_month} s"
    );
    let answer: Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        answer["error"], "the plan's runs for this month are used",
        "{answer}"
    );
    let data = app.ok(Some(&owner.token), RUNS_THIS_MONTH, json!({})).await;
    assert_eq!(data["tenant"]["runsThisMonth"], 5, "{data}");

    // A bigger plan admits the next start at once.
    plan_with_runs(&app, &root, &owner, "six-runs", 6).await;
    let (status, answer) = deliver(
        &app,
        path,
        Some(&signed(secret, now, &body)),
        Some("d-2"),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let data = app.ok(Some(&owner.token), RUNS_THIS_MONTH, json!({})).await;
    assert_eq!(data["tenant"]["runsThisMonth"], 6, "{data}");
    let refused = app
        .post(Some(&owner.token), START, json!({ "w": workflow }))
        .await
        .1;
    assert_eq!(
        refusal(&refused),
        Some(("LIMIT_REACHED".into(), "plan.limits.monthlyRuns".into())),
        "{refused}"
    );

    // A plan without the limit starts runs and counts none (its starts never queue on
    // the count's row); the count stays as it was.
    let set = app
        .ok(
            Some(&root.token),
            "mutation($t: ID!) { setTenantPlan(input: {tenantId: $t, plan: \"enterprise\"}) { userErrors { field } } }",
            json!({ "t": owner.tenant_id }),
        )
        .await;
    assert_eq!(set["setTenantPlan"]["userErrors"], json!([]), "{set}");
    started(&app, &owner, json!({ "w": workflow })).await;
    let data = app.ok(Some(&owner.token), RUNS_THIS_MONTH, json!({})).await;
    assert_eq!(data["tenant"]["runsThisMonth"], Value::Null, "{data}");
    let counted = count(
        &admin,
        "SELECT runs FROM run_counts WHERE tenant_id = $1",
        vec![owner.tenant_uuid().into()],
    )
    .await;
    assert_eq!(counted, 6);
}

#[tokio::test]
async fn another_tenants_run_count_is_unreadable_and_unwritable() {
    let app = TestApp::new().await;
    let a = app.owner("count-alpha").await;
    let b = app.owner("count-bravo").await;
    let workflow = active_workflow(&app, &a, "counted").await;
    started(&app, &a, json!({ "w": workflow })).await;
    let (ta, tb) = (a.tenant_uuid(), b.tenant_uuid());

    // Through GraphQL: B's tenant counts nothing, and A's tenant shows B no count.
    let data = app.ok(Some(&b.token), RUNS_THIS_MONTH, json!({})).await;
    assert_eq!(data["tenant"]["runsThisMonth"], 0, "{data}");
    let code = app
        .error_code(
            Some(&b.token),
            "query($id: ID!) { node(id: $id) { ... on Tenant { runsThisMonth } } }",
            json!({ "id": a.tenant_id }),
        )
        .await;
    assert_eq!(code, "NOT_FOUND");

    // Through SQL as the app role, B sees no row of A's and can write none.
    let pool = app.db.app_pool(1).await;
    let admin = app.db.admin().await;
    let of_a = "SELECT count(*) FROM run_counts WHERE tenant_id = $1";
    assert_eq!(count(&admin, of_a, vec![ta.into()]).await, 1);
    let tx = crate::support::as_app(&pool, Some(tb), Some(b.user_uuid())).await;
    assert_eq!(count(&tx, of_a, vec![ta.into()]).await, 0);
    assert_eq!(
        count(&tx, "SELECT count(*) FROM run_counts", vec![]).await,
        0
    );
    tx.rollback().await.unwrap();
    let forged = attempt(
        &pool,
        &b,
        "INSERT INTO run_counts (tenant_id, month, runs) \
         VALUES ($1, date_trunc('month', now(), 'UTC'), 0)",
        vec![ta.into()],
        false,
    )
    .await
    .unwrap_err();
    assert!(is_rls_violation(&forged), "{forged}");
    for sql in [
        "UPDATE run_counts SET runs = 0 WHERE tenant_id = $1",
        "UPDATE run_counts SET run_limit = NULL WHERE tenant_id = $1",
    ] {
        let changed = attempt(&pool, &b, sql, vec![ta.into()], true)
            .await
            .unwrap();
        assert_eq!(changed, 0, "{sql}");
    }
    // Its own count cannot be moved into A either.
    let own = attempt(
        &pool,
        &b,
        "INSERT INTO run_counts (tenant_id, month, runs) \
         VALUES ($1, date_trunc('month', now(), 'UTC'), 0)",
        vec![tb.into()],
        true,
    )
    .await
    .unwrap();
    assert_eq!(own, 1);
    let moved = attempt(
        &pool,
        &b,
        "UPDATE run_counts SET tenant_id = $1 WHERE tenant_id = $2",
        vec![ta.into(), tb.into()],
        false,
    )
    .await
    .unwrap_err();
    assert!(is_rls_violation(&moved), "{moved}");
    // The app role cannot delete a count (none of its own either).
    let deleted = attempt(
        &pool,
        &b,
        "DELETE FROM run_counts WHERE tenant_id = $1",
        vec![tb.into()],
        false,
    )
    .await
    .unwrap_err();
    assert!(
        deleted.to_string().contains("permission denied"),
        "{deleted}"
    );
    let a_count = count(
        &admin,
        "SELECT runs FROM run_counts WHERE tenant_id = $1",
        vec![ta.into()],
    )
    .await;
    assert_eq!(a_count, 1);
}
