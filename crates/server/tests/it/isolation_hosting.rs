//! Tenant isolation of hosting (agent_channels, agent_activities, container_health,
//! container_health_hourly). The threats: a resolver or job that forgets its tenant and
//! reads or changes another customer's channels, feed or health; a row of one tenant
//! that points at another's agent or connection (its credentials); an answer that tells
//! another tenant's ID apart from one never issued.

use sea_orm::{ConnectionTrait, Value as SqlValue};
use serde_json::json;
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::agent_hosting::{
    channel, record, report, CREATE_CHANNEL, DELETE_CHANNEL, RECORD, REPORT, UPDATE_CHANNEL,
};
use crate::agents::create_agent;
use crate::connections::http_connection;
use crate::isolation_processes::{answer, attempt};
use crate::isolation_workflows::{count, made_up, sqlstate, uuid};
use crate::processes::text;
use crate::support::{as_app, is_rls_violation, Member, TestApp};

const HOSTING_TABLES: [&str; 4] = [
    "agent_channels",
    "agent_activities",
    "container_health",
    "container_health_hourly",
];

/// One tenant with an agent that has a Slack channel on a connection, an activity, a
/// health sample and an hourly aggregate: a row in every hosting table.
struct Fixture {
    owner: Member,
    runner: String,
    agent: String,
    connection: String,
    channel: String,
    activity: String,
    health: String,
}

async fn fixture(app: &TestApp, tenant: &str) -> Fixture {
    let owner = app.owner(tenant).await;
    let agent = create_agent(app, &owner, "ops").await;
    let connection = http_connection(app, &owner, "bot", "https://slack.example.com", None).await;
    let made = channel(
        app,
        &owner,
        json!({ "a": agent, "t": "SLACK", "c": { "channel": "#ops" }, "con": connection }),
    )
    .await;
    let channel = text(&made["channel"]["id"]);
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let activity = record(app, &runner, &agent, "TASK", "did things").await;
    let health = report(app, &runner, Some(&agent), "HEALTHY", 12.0).await;
    let admin = app.db.admin().await;
    admin
        .execute(stmt(
            "INSERT INTO container_health_hourly (id, tenant_id, agent_id, hour, samples, healthy, degraded, unhealthy, cpu_sum, cpu_max, memory_sum, memory_max) \
             VALUES (gen_random_uuid(), $1, $2, date_trunc('hour', now() - interval '5 hours', 'UTC'), 1, 1, 0, 0, 1, 1, 1, 1)",
            [owner.tenant_uuid().into(), uuid(&agent).into()],
        ))
        .await
        .unwrap();
    admin.close().await.unwrap();
    Fixture {
        owner,
        runner,
        agent,
        connection,
        channel,
        activity,
        health,
    }
}

/// Every row of a tenant in the hosting tables, as the owner role sees them.
async fn snapshot(app: &TestApp, tenant: Uuid) -> serde_json::Value {
    let admin = app.db.admin().await;
    let mut all = serde_json::Map::new();
    for table in HOSTING_TABLES {
        let row = admin
            .query_one(stmt(
                &format!("SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY to_jsonb(x)::text), '[]') AS rows FROM {table} x WHERE tenant_id = $1"),
                [tenant.into()],
            ))
            .await
            .unwrap()
            .unwrap();
        let rows: serde_json::Value = row.try_get("", "rows").unwrap();
        assert!(!rows.as_array().unwrap().is_empty(), "{table} has no rows");
        all.insert(table.to_owned(), rows);
    }
    admin.close().await.unwrap();
    serde_json::Value::Object(all)
}

#[tokio::test]
async fn foreign_hosting_rows_are_invisible_unchangeable_and_undeletable_in_sql() {
    let app = TestApp::new().await;
    let a = fixture(&app, "host-alpha").await;
    let b = fixture(&app, "host-bravo").await;
    let (ta, tb) = (a.owner.tenant_uuid(), b.owner.tenant_uuid());
    let before = snapshot(&app, ta).await;
    let pool = app.db.app_pool(1).await;
    let admin = app.db.admin().await;
    for table in HOSTING_TABLES {
        let filtered = format!("SELECT count(*) FROM {table} WHERE tenant_id = $1");
        let a_rows = count(&admin, &filtered, vec![ta.into()]).await;
        let b_rows = count(&admin, &filtered, vec![tb.into()]).await;
        assert!(a_rows > 0 && b_rows > 0, "{table}: {a_rows} / {b_rows}");
        let tx = as_app(&pool, Some(ta), Some(a.owner.user_uuid())).await;
        assert_eq!(
            count(&tx, &filtered, vec![ta.into()]).await,
            a_rows,
            "{table}"
        );
        tx.rollback().await.unwrap();
        let tx = as_app(&pool, Some(tb), Some(b.owner.user_uuid())).await;
        assert_eq!(
            count(&tx, &filtered, vec![ta.into()]).await,
            0,
            "{table}: tenant B sees tenant A's rows"
        );
        assert_eq!(
            count(&tx, &format!("SELECT count(*) FROM {table}"), vec![]).await,
            b_rows,
            "{table}: tenant B sees rows that are not its own"
        );
        tx.rollback().await.unwrap();
    }
    for (table, id) in [
        ("agent_channels", &a.channel),
        ("agent_activities", &a.activity),
        ("container_health", &a.health),
    ] {
        let sql = format!("SELECT count(*) FROM {table} WHERE id = $1");
        let tx = as_app(&pool, Some(tb), Some(b.owner.user_uuid())).await;
        assert_eq!(count(&tx, &sql, vec![uuid(id).into()]).await, 0, "{id}");
        tx.rollback().await.unwrap();
    }
    let writes = [
        "UPDATE agent_channels SET is_active = false, config = '{\"channel\": \"#pwned\"}' WHERE tenant_id = $1",
        "UPDATE agent_activities SET summary = 'pwned' WHERE tenant_id = $1",
        "UPDATE container_health SET aggregated_at = now() WHERE tenant_id = $1",
        "UPDATE container_health_hourly SET samples = samples + 1, healthy = healthy + 1 WHERE tenant_id = $1",
        "DELETE FROM agent_channels WHERE tenant_id = $1",
        "DELETE FROM agent_activities WHERE tenant_id = $1",
        "DELETE FROM container_health WHERE tenant_id = $1",
        "DELETE FROM container_health_hourly WHERE tenant_id = $1",
    ];
    for sql in writes {
        let own = attempt(&pool, &a.owner, sql, vec![ta.into()], false).await;
        let foreign = attempt(&pool, &b.owner, sql, vec![ta.into()], true).await;
        match own {
            Ok(n) => {
                assert!(n > 0, "{sql}: tenant A's own rows are not matched");
                assert_eq!(
                    foreign.unwrap_or_else(|e| panic!("{sql}: {e}")),
                    0,
                    "{sql}: tenant B changed tenant A's rows"
                );
            }
            Err(own) => {
                // The feed is append-only: no UPDATE or DELETE for anybody.
                assert_eq!(sqlstate(&own).as_deref(), Some("42501"), "{sql}: {own}");
                assert_eq!(
                    sqlstate(&foreign.expect_err(sql)).as_deref(),
                    Some("42501"),
                    "{sql}"
                );
                assert!(
                    sql.contains("agent_activities"),
                    "{sql}: refused to tenant A itself: {own}"
                );
            }
        }
    }
    admin.close().await.unwrap();
    assert_eq!(snapshot(&app, ta).await, before, "tenant A's rows changed");
}

#[tokio::test]
async fn hosting_rows_cannot_be_written_into_another_tenant_nor_reference_its_agent_or_connection()
{
    let app = TestApp::new().await;
    let a = fixture(&app, "host-charlie").await;
    let b = fixture(&app, "host-delta").await;
    let (ta, tb) = (a.owner.tenant_uuid(), b.owner.tenant_uuid());
    let before = snapshot(&app, ta).await;
    let pool = app.db.app_pool(1).await;
    let new = || SqlValue::from(Uuid::now_v7());
    let (b_agent, b_connection) = (uuid(&b.agent), uuid(&b.connection));
    // Rows claiming tenant A: RLS refuses them to tenant B.
    let into_a: Vec<(&str, Vec<SqlValue>)> = vec![
        ("INSERT INTO agent_channels (id, tenant_id, agent_id, type, config, is_active) VALUES ($1, $2, $3, 'webhook', '{\"url\": \"https://x.example\"}', false)", vec![new(), ta.into(), uuid(&a.agent).into()]),
        ("INSERT INTO agent_activities (id, tenant_id, agent_id, type, summary) VALUES ($1, $2, $3, 'task', 'forged')", vec![new(), ta.into(), uuid(&a.agent).into()]),
        ("INSERT INTO container_health (id, tenant_id, agent_id, status, cpu, memory_bytes) VALUES ($1, $2, $3, 'unhealthy', 0, 0)", vec![new(), ta.into(), uuid(&a.agent).into()]),
        ("INSERT INTO container_health_hourly (id, tenant_id, hour, samples, healthy, degraded, unhealthy, cpu_sum, cpu_max, memory_sum, memory_max) VALUES ($1, $2, date_trunc('hour', now(), 'UTC'), 1, 0, 0, 1, 0, 0, 0, 0)", vec![new(), ta.into()]),
        ("UPDATE agent_channels SET tenant_id = $1 WHERE tenant_id = $2", vec![ta.into(), tb.into()]),
        ("UPDATE container_health SET tenant_id = $1 WHERE tenant_id = $2", vec![ta.into(), tb.into()]),
    ];
    for (sql, values) in into_a {
        let err = attempt(&pool, &b.owner, sql, values, true)
            .await
            .expect_err(sql);
        assert!(
            is_rls_violation(&err) || sqlstate(&err).as_deref() == Some("42501"),
            "{sql}: {err}"
        );
    }
    // Tenant A's own rows pointing at tenant B's agent or connection: refused exactly as
    // for an agent or connection that does not exist, so nothing is learnt.
    let probes: Vec<(&str, SqlValue)> = vec![
        ("INSERT INTO agent_channels (id, tenant_id, agent_id, type, config, is_active) VALUES (gen_random_uuid(), $1, $2, 'webhook', '{\"url\": \"https://x.example\"}', false)", b_agent.into()),
        ("INSERT INTO agent_activities (id, tenant_id, agent_id, type, summary) VALUES (gen_random_uuid(), $1, $2, 'task', 'forged')", b_agent.into()),
        ("INSERT INTO container_health (id, tenant_id, agent_id, status, cpu, memory_bytes) VALUES (gen_random_uuid(), $1, $2, 'healthy', 0, 0)", b_agent.into()),
        ("INSERT INTO container_health_hourly (id, tenant_id, agent_id, hour, samples, healthy, degraded, unhealthy, cpu_sum, cpu_max, memory_sum, memory_max) VALUES (gen_random_uuid(), $1, $2, date_trunc('hour', now(), 'UTC'), 1, 1, 0, 0, 0, 0, 0, 0)", b_agent.into()),
    ];
    for (sql, foreign) in probes {
        let theirs = attempt(&pool, &a.owner, sql, vec![ta.into(), foreign], false)
            .await
            .expect_err(sql);
        let nobody = attempt(
            &pool,
            &a.owner,
            sql,
            vec![ta.into(), Uuid::now_v7().into()],
            false,
        )
        .await
        .expect_err(sql);
        assert_eq!(
            sqlstate(&theirs).as_deref(),
            Some("23503"),
            "{sql}: {theirs}"
        );
        assert_eq!(
            crate::isolation_workflows::constraint(&theirs),
            crate::isolation_workflows::constraint(&nobody),
            "{sql}"
        );
    }
    let channel_sql = "INSERT INTO agent_channels (id, tenant_id, agent_id, type, config, connection_id, is_active) VALUES (gen_random_uuid(), $1, $2, 'slack', '{\"channel\": \"#x\"}', $3, false)";
    let a_agent = SqlValue::from(uuid(&a.agent));
    let theirs = attempt(
        &pool,
        &a.owner,
        channel_sql,
        vec![ta.into(), a_agent.clone(), b_connection.into()],
        false,
    )
    .await
    .unwrap_err();
    let nobody = attempt(
        &pool,
        &a.owner,
        channel_sql,
        vec![ta.into(), a_agent.clone(), Uuid::now_v7().into()],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&theirs).as_deref(), Some("23503"), "{theirs}");
    assert_eq!(
        crate::isolation_workflows::constraint(&theirs).as_deref(),
        Some("agent_channels_connection_fkey")
    );
    assert_eq!(
        crate::isolation_workflows::constraint(&theirs),
        crate::isolation_workflows::constraint(&nobody)
    );
    // Its own connection is accepted (rolled back): the foreign key is what refused.
    attempt(
        &pool,
        &a.owner,
        channel_sql,
        vec![ta.into(), a_agent, uuid(&a.connection).into()],
        false,
    )
    .await
    .unwrap();
    assert_eq!(snapshot(&app, ta).await, before, "tenant A's rows changed");
}

#[tokio::test]
async fn another_tenants_hosting_ids_are_not_found_like_made_up_ones() {
    let app = TestApp::new().await;
    let a = fixture(&app, "host-echo").await;
    let b = fixture(&app, "host-foxtrot").await;
    let before = snapshot(&app, a.owner.tenant_uuid()).await;
    let (owner_b, runner_b) = (Some(b.owner.token.as_str()), Some(b.runner.as_str()));
    // Each probe: who asks, the query, and variables naming tenant A's row and a made-up
    // one; both answers must be the same.
    let node = "query($id: ID!) { node(id: $id) { id } }";
    let probes: Vec<(Option<&str>, &str, serde_json::Value, serde_json::Value)> = vec![
        (owner_b, node, json!({ "id": a.channel }), json!({ "id": made_up(&a.channel) })),
        (owner_b, node, json!({ "id": a.activity }), json!({ "id": made_up(&a.activity) })),
        (owner_b, node, json!({ "id": a.health }), json!({ "id": made_up(&a.health) })),
        (owner_b, UPDATE_CHANNEL, json!({ "id": a.channel, "active": false }), json!({ "id": made_up(&a.channel), "active": false })),
        (owner_b, DELETE_CHANNEL, json!({ "id": a.channel }), json!({ "id": made_up(&a.channel) })),
        (
            owner_b,
            CREATE_CHANNEL,
            json!({ "a": a.agent, "t": "WEBHOOK", "c": { "url": "https://x.example" } }),
            json!({ "a": made_up(&a.agent), "t": "WEBHOOK", "c": { "url": "https://x.example" } }),
        ),
        (
            owner_b,
            CREATE_CHANNEL,
            json!({ "a": b.agent, "t": "SLACK", "c": { "channel": "#x" }, "con": a.connection, "active": false }),
            json!({ "a": b.agent, "t": "SLACK", "c": { "channel": "#x" }, "con": made_up(&a.connection), "active": false }),
        ),
        (runner_b, RECORD, json!({ "a": a.agent, "t": "TASK", "s": "x" }), json!({ "a": made_up(&a.agent), "t": "TASK", "s": "x" })),
        (runner_b, REPORT, json!({ "a": a.agent, "s": "HEALTHY", "cpu": 1.0, "m": 1 }), json!({ "a": made_up(&a.agent), "s": "HEALTHY", "cpu": 1.0, "m": 1 })),
        (
            owner_b,
            "query($a: ID!) { tenant { health(from: \"2020-01-01T00:00:00Z\", to: \"2020-01-02T00:00:00Z\", agentId: $a) { samples } } }",
            json!({ "a": a.agent }),
            json!({ "a": made_up(&a.agent) }),
        ),
    ];
    for (token, query, foreign, nobody) in probes {
        let (_, theirs) = app.post(token, query, foreign.clone()).await;
        let (_, never) = app.post(token, query, nobody).await;
        assert_eq!(answer(&theirs), answer(&never), "{query} {foreign}");
        let code = theirs["errors"][0]["extensions"]["code"]
            .as_str()
            .map(str::to_owned);
        let user_error = theirs["data"]
            .as_object()
            .and_then(|d| d.values().next())
            .map(|p| p["userErrors"][0]["code"].clone());
        assert!(
            code.as_deref() == Some("NOT_FOUND")
                || user_error == Some(json!("BAD_USER_INPUT"))
                || theirs["data"]["node"].is_null() && query == node
                || theirs["data"]["tenant"]["health"] == json!([]),
            "{query}: {theirs:#}"
        );
    }
    // Tenant B's lists never show tenant A's rows.
    let data = app
        .ok(owner_b, "query { agents { nodes { channels { id } activities { nodes { id } } health { id } } } }", json!({}))
        .await;
    let text = data.to_string();
    for id in [&a.channel, &a.activity, &a.health] {
        assert!(!text.contains(id.as_str()), "{id} leaked: {text}");
    }
    assert_eq!(
        snapshot(&app, a.owner.tenant_uuid()).await,
        before,
        "tenant A's rows changed"
    );
}
