//! Hosting (issue 18 §4/§5): agent channels (credentials only through a connection,
//! one active channel per type), the activity feed and its subscription, container
//! health with its hourly aggregation and retention, and plans as data with their agent
//! limit. Each test names the guarantee it defends; isolation is in
//! `isolation_hosting.rs`.

use std::sync::atomic::Ordering;

use chrono::{Duration, DurationRound, Utc};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use trellis_core::scope::stmt;

use crate::agents::create_agent;
use crate::connections::http_connection;
use crate::processes::{payload, text};
use crate::skills::platform_admin;
use crate::subscriptions::{post, Pair, Subscriber, ARRIVES};
use crate::support::{Member, TestApp};

pub const CREATE_CHANNEL: &str = "mutation($a: ID!, $t: ChannelType!, $c: JSON!, $con: ID, $active: Boolean! = true) { createAgentChannel(input: {agentId: $a, type: $t, config: $c, connectionId: $con, isActive: $active}) { channel { id type config isActive connection { id } agent { id } } userErrors { field message code } } }";
pub const UPDATE_CHANNEL: &str = "mutation($id: ID!, $c: JSON, $active: Boolean) { updateAgentChannel(input: {id: $id, config: $c, isActive: $active}) { channel { id config isActive } userErrors { field message code } } }";
pub const DELETE_CHANNEL: &str = "mutation($id: ID!) { deleteAgentChannel(input: {id: $id}) { channel { id } userErrors { field message code } } }";
pub const RECORD: &str = "mutation($a: ID!, $t: ActivityType!, $s: String!, $d: JSON) { recordAgentActivity(input: {agentId: $a, type: $t, summary: $s, details: $d}) { activity { id type summary details at agent { id } recordedBy { email } recordedByKey { id } } userErrors { field message code } } }";
pub const REPORT: &str = "mutation($a: ID, $s: HealthStatus!, $cpu: Float!, $m: Int!) { reportHealth(input: {agentId: $a, status: $s, cpu: $cpu, memoryBytes: $m}) { health { id status cpu memoryBytes agent { id } } userErrors { field message code } } }";

/// Adds a channel; the payload.
pub async fn channel(app: &TestApp, who: &Member, variables: Value) -> Value {
    let data = app.ok(Some(&who.token), CREATE_CHANNEL, variables).await;
    data["createAgentChannel"].clone()
}

/// Records an activity with `token` (a member's or a key's); the new activity's ID.
pub async fn record(app: &TestApp, token: &str, agent: &str, kind: &str, summary: &str) -> String {
    let data = app
        .ok(
            Some(token),
            RECORD,
            json!({ "a": agent, "t": kind, "s": summary, "d": { "n": summary } }),
        )
        .await;
    text(&payload(&data, "recordAgentActivity")["activity"]["id"])
}

/// Reports health with a runner key; the new sample's ID.
pub async fn report(
    app: &TestApp,
    key: &str,
    agent: Option<&str>,
    status: &str,
    cpu: f64,
) -> String {
    let data = app
        .ok(
            Some(key),
            REPORT,
            json!({ "a": agent, "s": status, "cpu": cpu, "m": 512 * 1024 * 1024 }),
        )
        .await;
    text(&payload(&data, "reportHealth")["health"]["id"])
}

async fn admin_exec(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) -> u64 {
    let admin = app.db.admin().await;
    let done = admin.execute(stmt(sql, values)).await.unwrap();
    admin.close().await.unwrap();
    done.rows_affected()
}

async fn admin_count(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) -> i64 {
    let admin = app.db.admin().await;
    let row = admin.query_one(stmt(sql, values)).await.unwrap().unwrap();
    admin.close().await.unwrap();
    row.try_get_by_index(0).unwrap()
}

fn user_error(data: &Value, field: &str) -> (String, String) {
    let errors = &data[field]["userErrors"];
    assert!(data[field][errors_subject(field)].is_null(), "{data:#}");
    (
        errors[0]["field"].as_str().unwrap_or_default().to_owned(),
        errors[0]["code"].as_str().unwrap_or_default().to_owned(),
    )
}

fn errors_subject(field: &str) -> &'static str {
    match field {
        "recordAgentActivity" => "activity",
        "reportHealth" => "health",
        _ => "channel",
    }
}

#[tokio::test]
async fn an_agent_has_one_active_channel_per_type_and_channels_are_audited() {
    let app = TestApp::new().await;
    let owner = app.owner("chan-one").await;
    let agent = create_agent(&app, &owner, "notifier").await;
    let slack_con =
        http_connection(&app, &owner, "slack-bot", "https://slack.example.com", None).await;

    // SLACK needs a connection for its token.
    let data = app
        .ok(
            Some(&owner.token),
            CREATE_CHANNEL,
            json!({ "a": agent, "t": "SLACK", "c": { "channel": "#ops" } }),
        )
        .await;
    assert_eq!(
        user_error(&data, "createAgentChannel"),
        ("connectionId".into(), "BAD_USER_INPUT".into())
    );
    let first = channel(
        &app,
        &owner,
        json!({ "a": agent, "t": "SLACK", "c": { "channel": "#ops" }, "con": slack_con }),
    )
    .await;
    assert_eq!(first["userErrors"], json!([]), "{first:#}");
    let first_id = text(&first["channel"]["id"]);
    assert!(first_id.starts_with("chn_"));
    assert_eq!(first["channel"]["connection"]["id"], slack_con.as_str());

    // A second active SLACK channel is a CONFLICT on `type`; an inactive one is fine,
    // and activating it is the same CONFLICT.
    let second = channel(
        &app,
        &owner,
        json!({ "a": agent, "t": "SLACK", "c": { "channel": "#dev" }, "con": slack_con }),
    )
    .await;
    assert_eq!(second["userErrors"][0]["field"], "type", "{second:#}");
    assert_eq!(second["userErrors"][0]["code"], "CONFLICT");
    let spare = channel(&app, &owner, json!({ "a": agent, "t": "SLACK", "c": { "channel": "#dev" }, "con": slack_con, "active": false })).await;
    let spare_id = text(&spare["channel"]["id"]);
    let data = app
        .ok(
            Some(&owner.token),
            UPDATE_CHANNEL,
            json!({ "id": spare_id, "active": true }),
        )
        .await;
    assert_eq!(
        data["updateAgentChannel"]["userErrors"][0]["code"], "CONFLICT",
        "{data:#}"
    );
    // Other types are independent.
    let email = channel(
        &app,
        &owner,
        json!({ "a": agent, "t": "EMAIL", "c": { "to": ["ops@example.com"] } }),
    )
    .await;
    assert_eq!(email["userErrors"], json!([]), "{email:#}");
    let hook = channel(
        &app,
        &owner,
        json!({ "a": agent, "t": "WEBHOOK", "c": { "url": "https://example.com/hook" } }),
    )
    .await;
    assert_eq!(hook["userErrors"], json!([]), "{hook:#}");

    // Deactivate the first, activate the spare; delete the first.
    app.ok(
        Some(&owner.token),
        UPDATE_CHANNEL,
        json!({ "id": first_id, "active": false }),
    )
    .await;
    let data = app
        .ok(
            Some(&owner.token),
            UPDATE_CHANNEL,
            json!({ "id": spare_id, "active": true }),
        )
        .await;
    assert_eq!(
        data["updateAgentChannel"]["channel"]["isActive"], true,
        "{data:#}"
    );
    let data = app
        .ok(
            Some(&owner.token),
            DELETE_CHANNEL,
            json!({ "id": first_id }),
        )
        .await;
    assert_eq!(
        data["deleteAgentChannel"]["channel"]["id"],
        first_id.as_str()
    );

    let data = app
        .ok(
            Some(&owner.token),
            "query { agents { nodes { channels { type isActive config } } } }",
            json!({}),
        )
        .await;
    let channels = data["agents"]["nodes"][0]["channels"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(channels.len(), 3, "{data:#}");
    assert_eq!(channels.iter().filter(|c| c["isActive"] == true).count(), 3);

    // The database holds the rule too, whoever writes.
    let admin = app.db.admin().await;
    let err = admin
        .execute(stmt(
            "INSERT INTO agent_channels (id, tenant_id, agent_id, type, config, is_active) \
             SELECT gen_random_uuid(), tenant_id, agent_id, type, config, true FROM agent_channels WHERE type = 'slack'",
            [],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        crate::isolation_workflows::sqlstate(&err).as_deref(),
        Some("23505"),
        "{err}"
    );
    admin.close().await.unwrap();

    // Every change was audited.
    let audited = admin_count(
        &app,
        "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action LIKE 'agent.channel.%'",
        vec![owner.tenant_uuid().into()],
    )
    .await;
    assert_eq!(
        audited, 7,
        "4 creates, 2 updates and a delete; refused ones left nothing"
    );
}

#[tokio::test]
async fn secrets_never_reach_a_channels_config() {
    let app = TestApp::new().await;
    let owner = app.owner("chan-secret").await;
    let agent = create_agent(&app, &owner, "notifier").await;
    let con = http_connection(&app, &owner, "bot", "https://slack.example.com", None).await;
    for (kind, config, field) in [
        (
            "SLACK",
            json!({ "channel": "#ops", "token": "xoxb-1-2" }),
            "config.token",
        ),
        (
            "SLACK",
            json!({ "channel": "xoxb-1234-5678" }),
            "config.channel",
        ),
        (
            "WEBHOOK",
            json!({ "url": "https://hooks.slack.com/services/T0/B0/XYZ" }),
            "config.url",
        ),
        (
            "WEBHOOK",
            json!({ "url": "https://bot:hunter2@example.com/hook" }),
            "config.url",
        ),
        (
            "WEBHOOK",
            json!({ "url": "https://example.com/hook?api_key=abc" }),
            "config.url",
        ),
        (
            "WEBHOOK",
            json!({ "url": "https://example.com/hook", "secret": "abc" }),
            "config.secret",
        ),
        (
            "EMAIL",
            json!({ "to": ["a@example.com"], "smtpPassword": "abc" }),
            "config.smtpPassword",
        ),
    ] {
        let data = app
            .ok(
                Some(&owner.token),
                CREATE_CHANNEL,
                json!({ "a": agent, "t": kind, "c": config, "con": con }),
            )
            .await;
        let errors = &data["createAgentChannel"]["userErrors"];
        assert_eq!(errors[0]["field"], field, "{data:#}");
        assert!(
            errors[0]["message"]
                .as_str()
                .unwrap()
                .contains("connection"),
            "{data:#}"
        );
    }
    assert_eq!(
        admin_count(&app, "SELECT count(*) FROM agent_channels", vec![]).await,
        0
    );
    // Written around the API, a secret key is still refused by the table's CHECK.
    let pool = app.db.app_pool(1).await;
    let tx =
        crate::support::as_app(&pool, Some(owner.tenant_uuid()), Some(owner.user_uuid())).await;
    let err = tx
        .execute(stmt(
            "INSERT INTO agent_channels (id, tenant_id, agent_id, type, config) VALUES (gen_random_uuid(), $1, $2, 'webhook', '{\"url\": \"https://x\", \"token\": \"t\"}')",
            [owner.tenant_uuid().into(), crate::isolation_workflows::uuid(&agent).into()],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        crate::isolation_workflows::sqlstate(&err).as_deref(),
        Some("23514"),
        "{err}"
    );
}

#[tokio::test]
async fn activities_are_recorded_by_runners_and_operators_and_listed_newest_first() {
    let app = TestApp::new().await;
    let owner = app.owner("feed").await;
    let viewer = app.member(&owner, "viewer@feed.test", "VIEWER").await;
    let operator = app.member(&owner, "operator@feed.test", "OPERATOR").await;
    let agent = create_agent(&app, &owner, "writer").await;
    let (runner, runner_id) = app.api_key(&owner, "RUNNER").await;
    let (writer, _) = app.api_key(&owner, "WRITE").await;
    let variables = json!({ "a": agent, "t": "TASK", "s": "nope" });
    assert_eq!(
        app.error_code(Some(&viewer.token), RECORD, variables.clone())
            .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(Some(&writer), RECORD, variables.clone())
            .await,
        "FORBIDDEN"
    );

    let data = app
        .ok(
            Some(&runner),
            RECORD,
            json!({ "a": agent, "t": "MESSAGE", "s": "hello", "d": { "channel": "#ops" } }),
        )
        .await;
    let first = &payload(&data, "recordAgentActivity")["activity"];
    assert!(text(&first["id"]).starts_with("acv_"));
    assert_eq!(first["recordedByKey"]["id"], runner_id.as_str());
    assert_eq!(first["details"], json!({ "channel": "#ops" }));
    record(&app, &operator.token, &agent, "TASK", "triaged 3 issues").await;
    record(&app, &runner, &agent, "ALERT", "disk almost full").await;
    record(&app, &runner, &agent, "TASK", "closed 1 issue").await;

    // Bad input names its field.
    let data = app
        .ok(
            Some(&runner),
            RECORD,
            json!({ "a": agent, "t": "TASK", "s": "  " }),
        )
        .await;
    assert_eq!(
        data["recordAgentActivity"]["userErrors"][0]["field"],
        "summary"
    );
    let data = app
        .ok(
            Some(&runner),
            RECORD,
            json!({ "a": agent, "t": "TASK", "s": "x", "d": [1] }),
        )
        .await;
    assert_eq!(
        data["recordAgentActivity"]["userErrors"][0]["field"],
        "details"
    );

    let query = "query($f: AgentActivityFilter, $first: Int, $after: String) { agents { nodes { activities(first: $first, after: $after, filter: $f) { totalCount pageInfo { hasNextPage endCursor } nodes { type summary recordedBy { email } } } } } }";
    let data = app
        .ok(Some(&viewer.token), query, json!({ "first": 2 }))
        .await;
    let page = &data["agents"]["nodes"][0]["activities"];
    assert_eq!(page["totalCount"], 4);
    let summaries: Vec<&str> = page["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["summary"].as_str().unwrap())
        .collect();
    assert_eq!(summaries, ["closed 1 issue", "disk almost full"]);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let data = app
        .ok(
            Some(&viewer.token),
            query,
            json!({ "first": 2, "after": page["pageInfo"]["endCursor"] }),
        )
        .await;
    let rest = &data["agents"]["nodes"][0]["activities"]["nodes"];
    assert_eq!(rest[0]["summary"], "triaged 3 issues");
    assert_eq!(rest[0]["recordedBy"]["email"], "operator@feed.test");
    assert_eq!(rest[1]["summary"], "hello");
    let data = app
        .ok(
            Some(&viewer.token),
            query,
            json!({ "f": { "type": ["TASK"] } }),
        )
        .await;
    let tasks = &data["agents"]["nodes"][0]["activities"];
    assert_eq!(tasks["totalCount"], 2);
    assert_eq!(tasks["nodes"][0]["summary"], "closed 1 issue");
    assert_eq!(tasks["nodes"][1]["summary"], "triaged 3 issues");

    // A page reads only the columns its selection needs; two selections in one request
    // are two loads, and neither answers the other with the columns it left out.
    let data = app
        .ok(
            Some(&viewer.token),
            "{ agents { nodes { bare: activities(first: 10) { nodes { summary } } full: activities(first: 10) { nodes { summary details runId recordedByKey { id } } } } } }",
            json!({}),
        )
        .await;
    let node = &data["agents"]["nodes"][0];
    assert_eq!(node["bare"]["nodes"][3], json!({ "summary": "hello" }));
    assert_eq!(
        node["full"]["nodes"][3]["details"],
        json!({ "channel": "#ops" })
    );
    assert_eq!(
        node["full"]["nodes"][3]["recordedByKey"]["id"],
        runner_id.as_str()
    );
    assert_eq!(node["full"]["nodes"][0]["summary"], "closed 1 issue");

    let audited = admin_count(
        &app,
        "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'agent.activity.record'",
        vec![owner.tenant_uuid().into()],
    )
    .await;
    assert_eq!(audited, 4);
}

#[tokio::test]
async fn an_activity_recorded_on_one_server_reaches_the_subscription_on_the_other() {
    let pair = Pair::new().await;
    let app = &pair.app;
    let one = app.owner("act-one").await;
    let two = app.owner("act-two").await;
    let agent_one = create_agent(app, &one, "pm").await;
    let agent_two = create_agent(app, &two, "pm").await;
    let (runner_one, _) = app.api_key(&one, "RUNNER").await;
    let (runner_two, _) = app.api_key(&two, "RUNNER").await;
    let query =
        "subscription($a: ID!) { agentActivity(agentId: $a) { id type summary agent { slug } } }";

    // Another tenant's agent is NOT_FOUND, like one never issued.
    let mut foreign = Subscriber::open(pair.b, &two.token, query, json!({ "a": agent_one })).await;
    let message = foreign.next_within(ARRIVES).await.expect("an answer");
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{message:#}"
    );
    let made_up = crate::isolation_workflows::made_up(&agent_one);
    let mut never = Subscriber::open(pair.b, &two.token, query, json!({ "a": made_up })).await;
    let same = never.next_within(ARRIVES).await.expect("an answer");
    assert_eq!(
        message, same,
        "another tenant's agent is told apart from a made-up one"
    );

    let mut sub_one = Subscriber::open(pair.b, &one.token, query, json!({ "a": agent_one })).await;
    let mut sub_two = Subscriber::open(pair.b, &two.token, query, json!({ "a": agent_two })).await;
    // The subscriptions start listening asynchronously: record until one arrives.
    let mut delivered = None;
    for i in 0..20 {
        let summary = format!("warm-up {i}");
        post(
            pair.a,
            &runner_one,
            RECORD,
            json!({ "a": agent_one, "t": "MESSAGE", "s": summary }),
        )
        .await;
        if let Some(message) = sub_one
            .next_within(std::time::Duration::from_millis(500))
            .await
        {
            delivered = Some(message);
            break;
        }
    }
    let message = delivered.expect("the subscription never delivered");
    assert_eq!(
        message["payload"]["data"]["agentActivity"]["agent"]["slug"], "pm",
        "{message:#}"
    );
    while sub_one
        .next_within(std::time::Duration::from_millis(300))
        .await
        .is_some()
    {}

    let data = post(
        pair.a,
        &runner_one,
        RECORD,
        json!({ "a": agent_one, "t": "ALERT", "s": "on fire" }),
    )
    .await;
    let id = data["recordAgentActivity"]["activity"]["id"].clone();
    let got = sub_one.data().await;
    assert_eq!(got["agentActivity"]["id"], id);
    assert_eq!(got["agentActivity"]["type"], "ALERT");
    assert_eq!(got["agentActivity"]["summary"], "on fire");
    // Tenant two's subscription saw none of tenant one's activities.
    sub_two.assert_quiet().await;
    post(
        pair.a,
        &runner_two,
        RECORD,
        json!({ "a": agent_two, "t": "TASK", "s": "mine" }),
    )
    .await;
    assert_eq!(sub_two.data().await["agentActivity"]["summary"], "mine");
    sub_one.assert_quiet().await;
}

#[tokio::test]
async fn runners_report_health_and_a_hosted_tenant_leaves_provisioning() {
    let app = TestApp::new().await;
    let mut owner = app.sign_up("owner@hosted.test").await;
    let data = app
        .ok(Some(&owner.token), "mutation { createTenant(input: {slug: \"hosted\", name: \"Hosted\", plan: \"starter\", hosted: true}) { tenant { id status plan { key name limits { agents } } } } }", json!({}))
        .await;
    let tenant = &data["createTenant"]["tenant"];
    assert_eq!(tenant["status"], "PROVISIONING", "{data:#}");
    assert_eq!(tenant["plan"]["key"], "starter");
    assert_eq!(tenant["plan"]["limits"]["agents"], 50);
    let tenant_id = text(&tenant["id"]);
    app.switch(&mut owner, &tenant_id).await;
    let agent = create_agent(&app, &owner, "ops").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let (writer, _) = app.api_key(&owner, "WRITE").await;
    let variables = json!({ "a": agent, "s": "HEALTHY", "cpu": 1.0, "m": 1 });
    assert_eq!(
        app.error_code(Some(&writer), REPORT, variables.clone())
            .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(Some(&owner.token), REPORT, variables).await,
        "FORBIDDEN"
    );
    let data = app
        .ok(
            Some(&runner),
            REPORT,
            json!({ "s": "HEALTHY", "cpu": -1.0, "m": 1 }),
        )
        .await;
    assert_eq!(data["reportHealth"]["userErrors"][0]["field"], "cpu");

    report(&app, &runner, Some(&agent), "DEGRADED", 150.0).await;
    let tenant_status = || async {
        admin_count(&app, "SELECT CASE status WHEN 'provisioning' THEN 0 WHEN 'active' THEN 1 WHEN 'failed' THEN 2 ELSE 3 END::int8 FROM tenants WHERE slug = 'hosted'", vec![]).await
    };
    assert_eq!(tenant_status().await, 0, "DEGRADED leaves it provisioning");
    let latest = report(&app, &runner, Some(&agent), "HEALTHY", 42.5).await;
    assert_eq!(tenant_status().await, 1, "HEALTHY makes it active");
    report(&app, &runner, None, "UNHEALTHY", 0.0).await;
    assert_eq!(tenant_status().await, 1, "an active tenant stays active");

    let data = app
        .ok(
            Some(&owner.token),
            "query { agents { nodes { health { id status cpu memoryBytes agent { slug } } } } }",
            json!({}),
        )
        .await;
    let health = &data["agents"]["nodes"][0]["health"];
    assert_eq!(health["id"], latest.as_str(), "{data:#}");
    assert_eq!(health["status"], "HEALTHY");
    assert_eq!(health["cpu"], 42.5);
    assert_eq!(health["memoryBytes"], 512 * 1024 * 1024);

    // A hosted tenant whose runner first reports UNHEALTHY failed; HEALTHY recovers it.
    let mut other = app.sign_up("owner@failing.test").await;
    let data = app
        .ok(Some(&other.token), "mutation { createTenant(input: {slug: \"failing\", name: \"Failing\", hosted: true}) { tenant { id plan { key } } } }", json!({}))
        .await;
    assert_eq!(data["createTenant"]["tenant"]["plan"]["key"], "free");
    app.switch(
        &mut other,
        data["createTenant"]["tenant"]["id"].as_str().unwrap(),
    )
    .await;
    let (other_runner, _) = app.api_key(&other, "RUNNER").await;
    report(&app, &other_runner, None, "UNHEALTHY", 0.0).await;
    let failing = "SELECT count(*) FROM tenants WHERE slug = 'failing' AND status = 'failed'";
    assert_eq!(admin_count(&app, failing, vec![]).await, 1);
    let audited = "SELECT count(*) FROM audit_events WHERE action = 'tenant.provisioning_failed' AND severity = 'critical'";
    assert_eq!(admin_count(&app, audited, vec![]).await, 1);
    report(&app, &other_runner, None, "HEALTHY", 1.0).await;
    assert_eq!(admin_count(&app, failing, vec![]).await, 0);
    let reports = "SELECT count(*) FROM audit_events WHERE action = 'agent.health.report'";
    assert_eq!(admin_count(&app, reports, vec![]).await, 5);
}

#[tokio::test]
async fn the_health_job_folds_samples_into_hours_and_keeps_24_hours_and_30_days() {
    let app = TestApp::new().await;
    let owner = app.owner("health-job").await;
    let bystander = app.owner("health-bystander").await;
    let agent = create_agent(&app, &owner, "ops").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let (runner_b, _) = app.api_key(&bystander, "RUNNER").await;
    let tenant = owner.tenant_uuid();
    let hour = |ago: i64| {
        (Utc::now() - Duration::hours(ago))
            .duration_trunc(Duration::hours(1))
            .unwrap()
    };
    // Five samples two hours ago (one of them without an agent), two 30 hours ago, one
    // now; the bystander's one sample two hours ago is its own business.
    let mut ids = vec![];
    for (status, cpu) in [
        ("HEALTHY", 10.0),
        ("HEALTHY", 30.0),
        ("DEGRADED", 80.0),
        ("UNHEALTHY", 0.0),
    ] {
        ids.push(report(&app, &runner, Some(&agent), status, cpu).await);
    }
    let agentless = report(&app, &runner, None, "HEALTHY", 5.0).await;
    let old: Vec<String> = vec![
        report(&app, &runner, Some(&agent), "HEALTHY", 1.0).await,
        report(&app, &runner, Some(&agent), "HEALTHY", 3.0).await,
    ];
    report(&app, &runner, Some(&agent), "HEALTHY", 99.0).await;
    let theirs = report(&app, &runner_b, None, "HEALTHY", 7.0).await;
    let two_hours_ago = hour(2) + Duration::minutes(10);
    for id in ids.iter().chain([&agentless, &theirs]) {
        admin_exec(
            &app,
            "UPDATE container_health SET recorded_at = $1 WHERE id = $2",
            vec![
                two_hours_ago.into(),
                crate::isolation_workflows::uuid(id).into(),
            ],
        )
        .await;
    }
    for id in &old {
        admin_exec(
            &app,
            "UPDATE container_health SET recorded_at = $1 WHERE id = $2",
            vec![
                (hour(30) + Duration::minutes(5)).into(),
                crate::isolation_workflows::uuid(id).into(),
            ],
        )
        .await;
    }
    // An aggregate 40 days old, due for deletion.
    admin_exec(
        &app,
        "INSERT INTO container_health_hourly (id, tenant_id, agent_id, hour, samples, healthy, degraded, unhealthy, cpu_sum, cpu_max, memory_sum, memory_max) VALUES (gen_random_uuid(), $1, NULL, $2, 1, 1, 0, 0, 1, 1, 1, 1)",
        vec![tenant.into(), hour(40 * 24).into()],
    )
    .await;

    // Before the job, the series reads the raw samples.
    let series = "query($from: DateTime!, $to: DateTime!, $a: ID) { tenant { health(from: $from, to: $to, agentId: $a) { hour samples healthy degraded unhealthy cpuAvg cpuMax memoryMax } } }";
    let range = json!({ "from": hour(3).to_rfc3339(), "to": (Utc::now() + Duration::minutes(1)).to_rfc3339() });
    let before = app.ok(Some(&owner.token), series, range.clone()).await;

    // Batches of 2 until done.
    let pass = trellis_core::agents::health::health_pass(&app.state.db, 2, 100)
        .await
        .unwrap();
    assert_eq!(pass.failed, 0);
    assert_eq!(pass.tenants, 2, "{pass:?}");
    assert_eq!(pass.aggregated, 8, "{pass:?}");
    assert_eq!(
        pass.samples_deleted, 2,
        "the two samples of 30 hours ago: {pass:?}"
    );
    assert_eq!(pass.hours_deleted, 1, "{pass:?}");
    // Nothing is left to do, and nothing is counted twice.
    let again = trellis_core::agents::health::health_pass(&app.state.db, 2, 100)
        .await
        .unwrap();
    assert_eq!(again.rows(), 0, "{again:?}");

    let after = app.ok(Some(&owner.token), series, range.clone()).await;
    assert_eq!(
        before, after,
        "the series reads the same before and after the job"
    );
    let hours = after["tenant"]["health"].as_array().unwrap();
    assert_eq!(hours.len(), 2, "{after:#}");
    assert_eq!(hours[0]["samples"], 5);
    assert_eq!(hours[0]["healthy"], 3);
    assert_eq!(hours[0]["degraded"], 1);
    assert_eq!(hours[0]["unhealthy"], 1);
    assert_eq!(hours[0]["cpuAvg"], 25.0);
    assert_eq!(hours[0]["cpuMax"], 80.0);
    assert_eq!(hours[1]["samples"], 1);
    assert_eq!(hours[1]["cpuMax"], 99.0);
    // One agent's series leaves the agentless sample out.
    let mine = app
        .ok(
            Some(&owner.token),
            series,
            json!({ "from": range["from"], "to": range["to"], "a": agent }),
        )
        .await;
    assert_eq!(mine["tenant"]["health"][0]["samples"], 4);
    // The hour 30 hours ago survives as an aggregate after its samples went.
    let aggregated_old = admin_count(
        &app,
        "SELECT samples::int8 FROM container_health_hourly WHERE tenant_id = $1 AND hour = $2",
        vec![tenant.into(), hour(30).into()],
    )
    .await;
    assert_eq!(aggregated_old, 2);
    // The bystander's hour is its own row, in its own tenant.
    let theirs_hourly = admin_count(
        &app,
        "SELECT count(*) FROM container_health_hourly WHERE tenant_id = $1",
        vec![bystander.tenant_uuid().into()],
    )
    .await;
    assert_eq!(theirs_hourly, 1);
    let rows = admin_count(
        &app,
        "SELECT count(*) FROM container_health WHERE tenant_id = $1",
        vec![tenant.into()],
    )
    .await;
    assert_eq!(rows, 6, "samples younger than a day are kept");
    // A range over 31 days is refused.
    let data = app
        .post(
            Some(&owner.token),
            series,
            json!({ "from": hour(24 * 40).to_rfc3339(), "to": Utc::now().to_rfc3339() }),
        )
        .await
        .1;
    assert_eq!(
        data["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{data:#}"
    );
}

#[tokio::test]
async fn plans_are_data_and_their_agent_limit_holds() {
    let app = TestApp::new().await;
    let root = platform_admin(&app, "root@plans.test").await;
    let owner = app.owner("plans").await;
    let data = app
        .ok(Some(&owner.token), "query { plans { key name limits { agents monthlyRuns maxConcurrentRuns logRetentionDays auditRetentionDays } } tenant { agentCount plan { key name limits { agents logRetentionDays maxConcurrentRuns } } } }", json!({}))
        .await;
    let keys: Vec<&str> = data["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["free", "starter", "pro", "growth", "enterprise"]);
    let tenant = &data["tenant"];
    assert_eq!(tenant["plan"]["key"], "free");
    assert_eq!(
        tenant["plan"]["limits"],
        json!({ "agents": 25, "logRetentionDays": 7, "maxConcurrentRuns": 5 })
    );
    assert_eq!(tenant["agentCount"], 0);
    assert!(
        data["plans"][4]["limits"]["agents"].is_null(),
        "enterprise has no agent limit"
    );

    // Only platform admins write plans, and a tenant's plan.
    let save = "mutation($k: String!, $l: PlanLimitsInput!) { savePlan(input: {key: $k, name: \"Tiny\", limits: $l, position: 9}) { plan { key limits { agents } } userErrors { field message code } } }";
    let set = "mutation($t: ID!, $p: String!) { setTenantPlan(input: {tenantId: $t, plan: $p}) { tenant { plan { key } } userErrors { field message code } } }";
    assert_eq!(
        app.error_code(
            Some(&owner.token),
            save,
            json!({ "k": "tiny", "l": { "agents": 2 } })
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(
            Some(&owner.token),
            set,
            json!({ "t": owner.tenant_id, "p": "enterprise" })
        )
        .await,
        "FORBIDDEN"
    );
    let data = app
        .ok(
            Some(&root.token),
            save,
            json!({ "k": "tiny", "l": { "agents": 2, "monthlyRuns": -1 } }),
        )
        .await;
    assert_eq!(
        data["savePlan"]["userErrors"][0]["field"], "limits.monthlyRuns",
        "{data:#}"
    );
    let data = app
        .ok(
            Some(&root.token),
            save,
            json!({ "k": "tiny", "l": { "agents": 2 } }),
        )
        .await;
    assert_eq!(data["savePlan"]["plan"]["limits"]["agents"], 2, "{data:#}");
    let data = app
        .ok(
            Some(&root.token),
            set,
            json!({ "t": owner.tenant_id, "p": "nope" }),
        )
        .await;
    assert_eq!(
        data["setTenantPlan"]["userErrors"][0]["field"], "plan",
        "{data:#}"
    );
    let data = app
        .ok(
            Some(&root.token),
            set,
            json!({ "t": owner.tenant_id, "p": "tiny" }),
        )
        .await;
    assert_eq!(
        data["setTenantPlan"]["tenant"]["plan"]["key"], "tiny",
        "{data:#}"
    );

    // Two agents fit; the third is LIMIT_REACHED on the plan's limit, and so is a
    // restore that would pass it.
    let one = create_agent(&app, &owner, "one").await;
    create_agent(&app, &owner, "two").await;
    let create =
        "mutation($s: String!) { createAgent(input: {slug: $s, name: $s}) { agent { id } } }";
    let (_, body) = app
        .post(Some(&owner.token), create, json!({ "s": "three" }))
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "LIMIT_REACHED",
        "{body:#}"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["field"],
        "plan.limits.agents"
    );
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { deleteAgent(input: {id: $id}) { agent { id } } }",
        json!({ "id": one }),
    )
    .await;
    create_agent(&app, &owner, "three").await;
    let restore = "mutation($id: ID!) { restoreAgent(input: {id: $id}) { agent { id } } }";
    assert_eq!(
        app.error_code(Some(&owner.token), restore, json!({ "id": one }))
            .await,
        "LIMIT_REACHED"
    );
    let data = app
        .ok(
            Some(&owner.token),
            "query { tenant { agentCount } }",
            json!({}),
        )
        .await;
    assert_eq!(data["tenant"]["agentCount"], 2);

    // The tenant's own resourceLimits.maxAgents lowers the plan's limit.
    app.ok(
        Some(&root.token),
        set,
        json!({ "t": owner.tenant_id, "p": "growth" }),
    )
    .await;
    let update = "mutation($s: JSON!) { updateTenant(input: {settings: $s}) { tenant { id } userErrors { field message } } }";
    let data = app
        .ok(
            Some(&owner.token),
            update,
            json!({ "s": { "resourceLimits": { "maxAgents": 3 } } }),
        )
        .await;
    assert_eq!(data["updateTenant"]["userErrors"], json!([]), "{data:#}");
    create_agent(&app, &owner, "four").await;
    assert_eq!(
        app.error_code(Some(&owner.token), create, json!({ "s": "five" }))
            .await,
        "LIMIT_REACHED"
    );

    // A new tenant names its plan by key; an unknown key is refused on `plan`.
    let data = app
        .ok(Some(&owner.token), "mutation { createTenant(input: {slug: \"plans-two\", name: \"Two\", plan: \"warp\"}) { tenant { id } userErrors { field code } } }", json!({}))
        .await;
    assert_eq!(
        data["createTenant"]["userErrors"][0]["field"], "plan",
        "{data:#}"
    );
    // The database holds tenants to real plans, and plans to their platform admins.
    let pool = app.db.app_pool(1).await;
    let tx =
        crate::support::as_app(&pool, Some(owner.tenant_uuid()), Some(owner.user_uuid())).await;
    let err = tx
        .execute(stmt(
            "UPDATE tenants SET plan = 'warp' WHERE id = $1",
            [owner.tenant_uuid().into()],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        crate::isolation_workflows::sqlstate(&err).as_deref(),
        Some("23503"),
        "{err}"
    );
    tx.rollback().await.unwrap();
    let tx =
        crate::support::as_app(&pool, Some(owner.tenant_uuid()), Some(owner.user_uuid())).await;
    let err = tx
        .execute(stmt(
            "INSERT INTO plans (key, name) VALUES ('mine', 'Mine')",
            [],
        ))
        .await
        .unwrap_err();
    assert!(crate::support::is_rls_violation(&err), "{err}");
    tx.rollback().await.unwrap();
    let tx =
        crate::support::as_app(&pool, Some(owner.tenant_uuid()), Some(owner.user_uuid())).await;
    let changed = tx
        .execute(stmt(
            "UPDATE plans SET limits = '{}' WHERE key = 'growth'",
            [],
        ))
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 0, "a member changed a plan");
    tx.rollback().await.unwrap();
    let audited = admin_count(
        &app,
        "SELECT count(*) FROM audit_events WHERE action IN ('plan.save', 'tenant.plan')",
        vec![],
    )
    .await;
    assert_eq!(audited, 3);
}

#[tokio::test]
async fn the_agent_limit_holds_under_concurrent_creates() {
    let app = TestApp::new().await;
    let root = platform_admin(&app, "root@plans-race.test").await;
    let owner = app.owner("plans-race").await;
    app.ok(Some(&root.token), "mutation { savePlan(input: {key: \"three\", name: \"Three\", limits: {agents: 3}}) { plan { key } } }", json!({})).await;
    app.ok(Some(&root.token), "mutation($t: ID!) { setTenantPlan(input: {tenantId: $t, plan: \"three\"}) { tenant { id } } }", json!({ "t": owner.tenant_id })).await;
    let create =
        "mutation($s: String!) { createAgent(input: {slug: $s, name: $s}) { agent { id } } }";
    let attempts = (0..10).map(|i| {
        let (app, token) = (&app, owner.token.clone());
        async move {
            app.post(Some(&token), create, json!({ "s": format!("racer-{i}") }))
                .await
                .1
        }
    });
    let answers = futures::future::join_all(attempts).await;
    let made = answers
        .iter()
        .filter(|a| a["data"]["createAgent"]["agent"]["id"].is_string())
        .count();
    let refused = answers
        .iter()
        .filter(|a| a["errors"][0]["extensions"]["code"] == "LIMIT_REACHED")
        .count();
    assert_eq!((made, refused), (3, 7), "{answers:#?}");
}

#[tokio::test]
async fn tenant_settings_check_model_defaults_and_resource_limits_and_new_agents_use_them() {
    let app = TestApp::new().await;
    let owner = app.owner("settings-model").await;
    let update = "mutation($s: JSON!) { updateTenant(input: {settings: $s}) { tenant { settings } userErrors { field message } } }";
    let data = app
        .ok(Some(&owner.token), update, json!({ "s": { "modelDefaults": { "tier": "GPT", "temperature": 9 }, "resourceLimits": { "memoryMb": 1, "disk": 1 } } }))
        .await;
    let fields: Vec<&str> = data["updateTenant"]["userErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "settings.modelDefaults.tier",
            "settings.modelDefaults.temperature",
            "settings.resourceLimits.disk",
            "settings.resourceLimits.memoryMb"
        ],
        "{data:#}"
    );
    let data = app
        .ok(Some(&owner.token), update, json!({ "s": { "modelDefaults": { "tier": "OPUS", "thinking": "HIGH" }, "resourceLimits": { "cpu": 0.5, "memoryMb": 512 } } }))
        .await;
    assert_eq!(data["updateTenant"]["userErrors"], json!([]), "{data:#}");
    let data = app
        .ok(Some(&owner.token), "mutation { a: createAgent(input: {slug: \"deep\", name: \"Deep\"}) { agent { modelTier thinkingMode } } b: createAgent(input: {slug: \"quick\", name: \"Quick\", modelTier: HAIKU}) { agent { modelTier thinkingMode } } }", json!({}))
        .await;
    assert_eq!(
        data["a"]["agent"],
        json!({ "modelTier": "OPUS", "thinkingMode": "HIGH" })
    );
    assert_eq!(
        data["b"]["agent"],
        json!({ "modelTier": "HAIKU", "thinkingMode": "HIGH" })
    );
}

#[tokio::test]
async fn the_hosting_dashboard_costs_the_same_statements_at_5_and_20_agents() {
    let app = TestApp::new().await;
    let owner = app.owner("hosting-dash").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    for i in 0..20 {
        let agent = create_agent(&app, &owner, &format!("agent-{i:02}")).await;
        let made = channel(&app, &owner, json!({ "a": agent, "t": "WEBHOOK", "c": { "url": format!("https://example.com/{i}") } })).await;
        assert_eq!(made["userErrors"], json!([]), "{made:#}");
        for n in 0..2 {
            record(&app, &runner, &agent, "TASK", &format!("task {n} of {i}")).await;
        }
        report(&app, &runner, Some(&agent), "HEALTHY", i as f64).await;
    }
    let query = "query($n: Int!) { agents(first: $n) { nodes { slug channels { type config } activities(first: 10) { nodes { summary } } health { status cpu } } } }";
    let mut counts = vec![];
    for n in [5, 20] {
        for _ in 0..2 {
            let before = app.state.statements.load(Ordering::Relaxed);
            let data = app.ok(Some(&owner.token), query, json!({ "n": n })).await;
            counts.push(app.state.statements.load(Ordering::Relaxed) - before);
            let nodes = data["agents"]["nodes"].as_array().unwrap();
            assert_eq!(nodes.len(), n as usize);
            for node in nodes {
                assert_eq!(node["channels"].as_array().unwrap().len(), 1, "{node:#}");
                assert_eq!(
                    node["activities"]["nodes"].as_array().unwrap().len(),
                    2,
                    "{node:#}"
                );
                assert_eq!(node["health"]["status"], "HEALTHY", "{node:#}");
            }
        }
    }
    eprintln!("hosting dashboard: SQL statements per request at 5 and 20 agents: {counts:?}");
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "statements grew with the page: {counts:?}"
    );
}
