//! Triggers of agents: a SCHEDULE, WEBHOOK or EVENT trigger may start runs of an agent
//! instead of a workflow. Its runs are runs of the agent's active version, recorded
//! with the agent, the version, the trigger, its type and its payload, exactly as
//! `runAgent` records a manual run; a paused agent's firings start nothing, and an
//! agent over its budget refuses a webhook delivery with 429. Isolation: a trigger
//! never points at another tenant's agent, through GraphQL or in SQL as the app role.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{TimeZone, Utc};
use sea_orm::{ConnectionTrait, DbErr, Value as SqlValue};
use secrecy::SecretString;
use serde_json::{json, Value};
use tower::ServiceExt;
use trellis_core::engine::scheduler::Scheduler;
use trellis_core::scope::stmt;
use trellis_core::workflows::triggers::sign;

use crate::agent_runs::{agent_running, echo_steps, limit_tokens, published_flow};
use crate::isolation_processes::attempt;
use crate::isolation_workflows::{constraint, made_up, sqlstate, uuid};
use crate::processes::text;
use crate::support::{is_rls_violation, Member, TestApp};

const CREATE: &str = "mutation($a: ID, $w: ID, $k: String!, $t: TriggerType!, $c: JSON) { createTrigger(input: {agentId: $a, workflowId: $w, key: $k, type: $t, config: $c}) { trigger { id webhookPath workflow { id } agent { id slug } } signingSecret userErrors { code field message } } }";

/// A tenant's agent whose active version runs a one-step flow: (owner, agent, version).
async fn agent_with_flow(app: &TestApp, tenant: &str) -> (Member, String, String) {
    let owner = app.owner(tenant).await;
    let (steps, links) = echo_steps();
    let flow = published_flow(app, &owner, "agent-flow", steps, links).await;
    let (agent, version) = agent_running(app, &owner, "watcher", &flow, json!({})).await;
    (owner, agent, version)
}

/// Creates a trigger of `agent` that must be accepted: its `trigger` and `signingSecret`.
async fn agent_trigger(
    app: &TestApp,
    owner: &Member,
    agent: &str,
    key: &str,
    kind: &str,
    config: Value,
) -> Value {
    let data = app
        .ok(
            Some(&owner.token),
            CREATE,
            json!({ "a": agent, "k": key, "t": kind, "c": config }),
        )
        .await;
    let payload = &data["createTrigger"];
    assert_eq!(payload["userErrors"], json!([]), "{data}");
    assert_eq!(payload["trigger"]["agent"]["id"], agent);
    assert_eq!(payload["trigger"]["workflow"], Value::Null);
    payload.clone()
}

/// The agent's runs, newest first, with what started them.
async fn runs_of(app: &TestApp, owner: &Member, agent: &str) -> Vec<Value> {
    let data = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on Agent { runs { nodes { id triggerType triggerPayload input trigger { id } agent { id } agentVersion { id } toolPolicy } } triggers { id type } } } }",
            json!({ "id": agent }),
        )
        .await;
    data["node"]["runs"]["nodes"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_schedule_of_an_agent_starts_runs_of_its_active_version() {
    let app = TestApp::new().await;
    let (owner, agent, version) = agent_with_flow(&app, "agent-schedule").await;
    let created = agent_trigger(
        &app,
        &owner,
        &agent,
        "hourly",
        "SCHEDULE",
        json!({ "cron": "0 * * * *" }),
    )
    .await;
    let trigger = text(&created["trigger"]["id"]);
    let start = Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0).unwrap();
    let admin = app.db.admin().await;
    admin
        .execute(stmt(
            "UPDATE triggers SET next_fire_at = $2 WHERE id = $1",
            [uuid(&trigger).into(), start.into()],
        ))
        .await
        .unwrap();
    let scheduler = Scheduler::new(app.state.db.clone(), Default::default(), Default::default());
    assert_eq!(scheduler.tick_at(start).await.unwrap().fired, 1);

    let runs = runs_of(&app, &owner, &agent).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(run["triggerType"], "SCHEDULE");
    assert_eq!(run["trigger"]["id"], trigger.as_str());
    assert_eq!(run["agent"]["id"], agent.as_str());
    assert_eq!(run["agentVersion"]["id"], version.as_str());
    assert_eq!(run["triggerPayload"]["scheduledAt"], "2030-01-01T09:00:00Z");
    assert!(run["toolPolicy"].is_object(), "the policy is frozen: {run}");
    // The agent lists its trigger, and was marked active.
    let seen = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on Agent { triggers { id type agent { id } } lastActiveAt } } }",
            json!({ "id": agent }),
        )
        .await;
    assert_eq!(seen["node"]["triggers"][0]["id"], trigger.as_str());
    assert_eq!(seen["node"]["triggers"][0]["type"], "SCHEDULE");
    assert!(seen["node"]["lastActiveAt"].is_string(), "{seen}");

    // A paused agent's firing starts nothing, and the schedule moves on.
    let paused = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { updateAgent(input: {id: $id, status: PAUSED}) { userErrors { message } } }",
            json!({ "id": agent }),
        )
        .await;
    assert_eq!(paused["updateAgent"]["userErrors"], json!([]), "{paused}");
    let pass = scheduler
        .tick_at(start + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!((pass.fired, pass.skipped), (0, 1));
    assert_eq!(runs_of(&app, &owner, &agent).await.len(), 1);
}

/// A signed delivery to a webhook path: (status, body, Retry-After).
async fn deliver(
    app: &TestApp,
    path: &str,
    secret: &str,
    delivery: &str,
    body: &str,
) -> (StatusCode, Value, Option<String>) {
    let now = Utc::now().timestamp();
    let signature = sign(&SecretString::from(secret.to_owned()), now, body.as_bytes());
    let request = Request::post(path)
        .header("content-type", "application/json")
        .header("x-trellis-signature", signature)
        .header("x-trellis-delivery", delivery)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value, retry_after)
}

#[tokio::test]
async fn a_webhook_of_an_agent_starts_a_run_with_its_payload_and_429s_over_budget() {
    let app = TestApp::new().await;
    let (owner, agent, version) = agent_with_flow(&app, "agent-webhook").await;
    let created = agent_trigger(&app, &owner, &agent, "inbound", "WEBHOOK", json!({})).await;
    let path = text(&created["trigger"]["webhookPath"]);
    let secret = text(&created["signingSecret"]);
    let body = r#"{"say": "hi"}"#;

    let (status, answer, _) = deliver(&app, &path, &secret, "d-1", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let runs = runs_of(&app, &owner, &agent).await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["id"], answer["runId"]);
    assert_eq!(run["triggerType"], "WEBHOOK");
    assert_eq!(run["triggerPayload"], json!({ "say": "hi" }));
    assert_eq!(run["input"], json!({ "say": "hi" }));
    assert_eq!(run["agentVersion"]["id"], version.as_str());
    // A redelivery is the same run.
    let (status, again, _) = deliver(&app, &path, &secret, "d-1", body).await;
    assert_eq!(
        (status, &again["runId"]),
        (StatusCode::ACCEPTED, &answer["runId"])
    );

    // Over its monthly budget: 429 with Retry-After, and no run.
    limit_tokens(&app, &owner, &agent, 100).await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    crate::agent_usage::report(&app, &runner, &agent, (80, 20), 0, 5, false).await;
    let (status, refused, retry_after) = deliver(&app, &path, &secret, "d-2", body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{refused}");
    assert!(retry_after.unwrap().parse::<u64>().unwrap() > 0);
    assert_eq!(runs_of(&app, &owner, &agent).await.len(), 1);
}

#[tokio::test]
async fn a_trigger_never_points_at_another_tenants_agent() {
    let app = TestApp::new().await;
    let (a, a_agent, _) = agent_with_flow(&app, "agent-trigger-alpha").await;
    let (b, b_agent, _) = agent_with_flow(&app, "agent-trigger-bravo").await;

    // GraphQL: A's agent is to B what an agent never issued is.
    for id in [a_agent.clone(), made_up(&a_agent)] {
        let code = app
            .error_code(
                Some(&b.token),
                CREATE,
                json!({ "a": id, "k": "stolen", "t": "SCHEDULE", "c": { "cron": "* * * * *" } }),
            )
            .await;
        assert_eq!(code, "NOT_FOUND", "{id}");
    }
    // One target, never both or neither.
    let workflow = crate::scheduler::active_workflow(&app, &b, "both", None).await;
    for vars in [
        json!({ "a": b_agent, "w": workflow, "k": "both", "t": "MANUAL" }),
        json!({ "k": "neither", "t": "MANUAL" }),
    ] {
        let (_, body) = app.post(Some(&b.token), CREATE, vars.clone()).await;
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{body}");
        assert_eq!(error["extensions"]["field"], "workflowId", "{body}");
    }
    // A's trigger list is not B's.
    agent_trigger(&app, &a, &a_agent, "mine", "MANUAL", json!({})).await;
    let seen = app
        .ok(Some(&b.token), "{ triggers { totalCount } }", json!({}))
        .await;
    assert_eq!(seen["triggers"]["totalCount"], 0, "{seen}");

    // SQL as the app role.
    let pool = app.db.app_pool(1).await;
    let insert = |tenant: uuid::Uuid, agent: &str, workflow: Option<&str>| {
        let values: Vec<SqlValue> =
            vec![tenant.into(), uuid(agent).into(), workflow.map(uuid).into()];
        values
    };
    let sql = "INSERT INTO triggers (id, tenant_id, key, agent_id, workflow_id, type) \
               VALUES (gen_random_uuid(), $1, 'probe', $2, $3, 'manual')";
    let own = attempt(
        &pool,
        &b,
        sql,
        insert(b.tenant_uuid(), &b_agent, None),
        false,
    )
    .await;
    assert_eq!(own.unwrap(), 1, "B's own agent: accepted (rolled back)");
    let err: DbErr = attempt(
        &pool,
        &b,
        sql,
        insert(b.tenant_uuid(), &a_agent, None),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("23503"), "{err}");
    assert_eq!(constraint(&err).as_deref(), Some("triggers_agent_fkey"));
    let err = attempt(
        &pool,
        &b,
        sql,
        insert(a.tenant_uuid(), &a_agent, None),
        false,
    )
    .await
    .unwrap_err();
    assert!(is_rls_violation(&err), "{err}");
    let err = attempt(
        &pool,
        &b,
        sql,
        insert(b.tenant_uuid(), &b_agent, Some(&workflow)),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(constraint(&err).as_deref(), Some("triggers_one_target"));
    // B cannot see (or count) A's agent triggers in SQL either.
    let tx = crate::support::as_app(&pool, Some(b.tenant_uuid()), Some(b.user_uuid())).await;
    let row = tx
        .query_one(stmt(
            "SELECT count(*) AS n FROM triggers WHERE agent_id = $1",
            [uuid(&a_agent).into()],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0);
    tx.rollback().await.unwrap();
}
