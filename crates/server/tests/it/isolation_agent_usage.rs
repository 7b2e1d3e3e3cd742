//! Tenant isolation of agent usage, metrics and alerts (agent_usage, agent_metrics,
//! alerts). The threats: a runner key of one tenant that reports usage against another
//! tenant's agent or run (inflating its bill, tripping its budget); a member who reads,
//! acknowledges or resolves another tenant's alerts, or learns one exists through an
//! answer or a dedupe key; a tenant that sees or writes platform alerts.

use sea_orm::{ConnectionTrait, Value as SqlValue};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::agent_usage::{report, ACKNOWLEDGE, ALERTS, REPORT, RESOLVE};
use crate::agents::create_agent;
use crate::isolation_processes::{answer, attempt};
use crate::isolation_workflows::{count, made_up, sqlstate, uuid};
use crate::processes::text;
use crate::support::{is_rls_violation, Member, TestApp};

const TABLES: [&str; 3] = ["agent_usage", "agent_metrics", "alerts"];

/// A tenant with an agent that reported usage over its budget: rows in every table,
/// and an open budget alert.
struct Fixture {
    owner: Member,
    agent: String,
    run: String,
    alert: String,
}

async fn fixture(app: &TestApp, tenant: &str) -> Fixture {
    let owner = app.owner(tenant).await;
    let agent = create_agent(app, &owner, "billed").await;
    crate::agent_runs::limit_tokens(app, &owner, &agent, 10).await;
    let workflow = crate::runs::active_workflow(app, &owner, &format!("{tenant}-flow")).await;
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!) { startRun(input: {workflowId: $w}) { run { id } } }",
            json!({ "w": workflow }),
        )
        .await;
    let run = text(&data["startRun"]["run"]["id"]);
    let body = report(app, &owner.token, &agent, (20, 20), 5, 50, false).await;
    assert!(body.get("errors").is_none(), "{body:#}");
    let data = app
        .ok(Some(&owner.token), ALERTS, json!({ "open": true }))
        .await;
    let alert = text(&data["alerts"]["edges"][0]["node"]["id"]);
    Fixture {
        owner,
        agent,
        run,
        alert,
    }
}

#[tokio::test]
async fn foreign_usage_metrics_and_alerts_are_invisible_and_unwritable_in_sql() {
    let app = TestApp::new().await;
    let a = fixture(&app, "use-alpha").await;
    let b = fixture(&app, "use-bravo").await;
    let (ta, tb) = (a.owner.tenant_uuid(), b.owner.tenant_uuid());
    let pool = app.db.app_pool(1).await;
    let admin = app.db.admin().await;
    for table in TABLES {
        let filtered = format!("SELECT count(*) FROM {table} WHERE tenant_id = $1");
        assert!(
            count(&admin, &filtered, vec![ta.into()]).await > 0,
            "{table}"
        );
        // As B: none of A's rows, whatever the filter says.
        let tx = crate::support::as_app(&pool, Some(tb), Some(b.owner.user_uuid())).await;
        assert_eq!(count(&tx, &filtered, vec![ta.into()]).await, 0, "{table}");
        let all = format!("SELECT count(*) FROM {table}");
        assert_eq!(
            count(&tx, &all, vec![]).await,
            count(&admin, &filtered, vec![tb.into()]).await,
            "{table}"
        );
        tx.rollback().await.unwrap();
    }

    // B cannot write rows into A, change A's rows, or report against A's agent or run.
    let (agent_a, run_a, alert_a) = (uuid(&a.agent), uuid(&a.run), uuid(&a.alert));
    let insert_usage = "INSERT INTO agent_usage (id, tenant_id, agent_id, run_id, input_tokens, \
        output_tokens, cost_micros, latency_ms) VALUES ($1, $2, $3, $4, 1, 1, 1, 1)";
    let into_a = attempt(
        &pool,
        &b.owner,
        insert_usage,
        vec![
            Uuid::now_v7().into(),
            ta.into(),
            agent_a.into(),
            SqlValue::Uuid(None),
        ],
        false,
    )
    .await
    .unwrap_err();
    assert!(is_rls_violation(&into_a), "{into_a}");
    for (agent, run) in [(agent_a, None), (uuid(&b.agent), Some(run_a))] {
        let err = attempt(
            &pool,
            &b.owner,
            insert_usage,
            vec![Uuid::now_v7().into(), tb.into(), agent.into(), run.into()],
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("23503"), "{err}");
    }
    let metrics_into_a = attempt(
        &pool,
        &b.owner,
        "INSERT INTO agent_metrics (tenant_id, agent_id, period, period_start, runs) \
         VALUES ($1, $2, 'day', date_trunc('day', now(), 'UTC'), 1)",
        vec![tb.into(), agent_a.into()],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&metrics_into_a).as_deref(), Some("23503"));
    let insert_alert =
        "INSERT INTO alerts (id, tenant_id, agent_id, severity, source, message, dedupe_key) \
        VALUES ($1, $2, $3, 'critical', 'budget', 'forged', $4)";
    let alert_into_a = attempt(
        &pool,
        &b.owner,
        insert_alert,
        vec![
            Uuid::now_v7().into(),
            ta.into(),
            SqlValue::Uuid(None),
            "forged".into(),
        ],
        false,
    )
    .await
    .unwrap_err();
    assert!(is_rls_violation(&alert_into_a));
    let about_a = attempt(
        &pool,
        &b.owner,
        insert_alert,
        vec![
            Uuid::now_v7().into(),
            tb.into(),
            agent_a.into(),
            "forged".into(),
        ],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&about_a).as_deref(), Some("23503"));
    // A platform alert is written only on the platform-administration path.
    let platform = attempt(
        &pool,
        &b.owner,
        insert_alert,
        vec![
            Uuid::now_v7().into(),
            SqlValue::Uuid(None),
            SqlValue::Uuid(None),
            "forged".into(),
        ],
        false,
    )
    .await
    .unwrap_err();
    assert!(is_rls_violation(&platform));
    // A's open dedupe key tells B nothing: B's own alert with the same key goes in.
    let key: String = admin
        .query_one(trellis_core::scope::stmt(
            "SELECT dedupe_key FROM alerts WHERE id = $1",
            [alert_a.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "dedupe_key")
        .unwrap();
    let same_key = attempt(
        &pool,
        &b.owner,
        insert_alert,
        vec![
            Uuid::now_v7().into(),
            tb.into(),
            SqlValue::Uuid(None),
            key.into(),
        ],
        false,
    )
    .await
    .unwrap();
    assert_eq!(same_key, 1);
    for sql in [
        "UPDATE alerts SET resolved_at = now() WHERE id = $1",
        "UPDATE agent_metrics SET runs = 0 WHERE agent_id = $1",
    ] {
        let target = if sql.contains("alerts") {
            alert_a
        } else {
            agent_a
        };
        assert_eq!(
            attempt(&pool, &b.owner, sql, vec![target.into()], true)
                .await
                .unwrap(),
            0,
            "{sql}"
        );
    }
    // Usage is append-only, even for its own tenant.
    for sql in [
        "UPDATE agent_usage SET cost_micros = 0 WHERE tenant_id = $1",
        "DELETE FROM agent_usage WHERE tenant_id = $1",
        "DELETE FROM alerts WHERE tenant_id = $1",
    ] {
        let err = attempt(&pool, &a.owner, sql, vec![ta.into()], true)
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{sql}: {err}");
    }
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM alerts WHERE id = $1 AND resolved_at IS NULL",
            vec![alert_a.into()]
        )
        .await,
        1
    );
}

#[tokio::test]
async fn another_tenants_agents_runs_and_alerts_are_not_found_like_made_up_ones() {
    let app = TestApp::new().await;
    let a = fixture(&app, "use-charlie").await;
    let b = fixture(&app, "use-delta").await;
    let token = Some(b.owner.token.as_str());
    let (runner_b, _) = app.api_key(&b.owner, "RUNNER").await;

    // Reporting against A's agent, or B's agent with A's run: exactly as for IDs never
    // issued, and nothing is stored.
    let usage = |agent: &str, run: Option<&str>| json!({ "a": agent, "r": run, "i": 1_000_000, "o": 0, "c": 1, "l": 1 });
    for (foreign, made) in [
        (usage(&a.agent, None), usage(&made_up(&a.agent), None)),
        (
            usage(&b.agent, Some(&a.run)),
            usage(&b.agent, Some(&made_up(&a.run))),
        ),
    ] {
        let (_, theirs) = app.post(Some(&runner_b), REPORT, foreign).await;
        let (_, never) = app.post(Some(&runner_b), REPORT, made).await;
        assert_eq!(
            theirs["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{theirs:#}"
        );
        assert_eq!(answer(&theirs), answer(&never));
    }
    let admin = app.db.admin().await;
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM agent_usage WHERE tenant_id = $1",
            vec![a.owner.tenant_uuid().into()]
        )
        .await,
        1
    );

    // A's alert: not in B's list, not a node, not acknowledgeable nor resolvable.
    let data = app.ok(token, ALERTS, json!({ "open": null })).await;
    let ids: Vec<&str> = data["alerts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b.alert.as_str()]);
    let node = "query($id: ID!) { node(id: $id) { id } }";
    for query in [node, ACKNOWLEDGE, RESOLVE] {
        let (_, theirs) = app.post(token, query, json!({ "id": a.alert })).await;
        let (_, never) = app
            .post(token, query, json!({ "id": made_up(&a.alert) }))
            .await;
        assert_eq!(
            theirs["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{theirs:#}"
        );
        assert_eq!(answer(&theirs), answer(&never), "{query}");
    }
    // Filtering by A's agent finds nothing, like a made-up one.
    let by_agent = "query($a: ID!) { alerts(filter: {agentId: $a}) { edges { node { id } } } }";
    let data = app.ok(token, by_agent, json!({ "a": a.agent })).await;
    assert_eq!(data["alerts"]["edges"], json!([]));
    let data = app
        .ok(
            Some(&a.owner.token),
            "query { alerts(filter: {open: true}) { edges { node { id acknowledgedAt } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["alerts"]["edges"][0]["node"]["id"], a.alert.as_str());
    assert_eq!(
        data["alerts"]["edges"][0]["node"]["acknowledgedAt"],
        Value::Null
    );
}

#[tokio::test]
async fn platform_alerts_are_for_platform_admins_only() {
    let app = TestApp::new().await;
    let tenant = fixture(&app, "use-echo").await;
    let root = app.owner("use-root").await;
    let admin = app.db.admin().await;
    admin
        .execute_unprepared(&format!(
            "UPDATE users SET platform_role = 'platform_admin' WHERE email = '{}'",
            root.email
        ))
        .await
        .unwrap();
    let id = Uuid::now_v7();
    admin
        .execute(trellis_core::scope::stmt(
            "INSERT INTO alerts (id, tenant_id, severity, source, message, dedupe_key) \
             VALUES ($1, NULL, 'warning', 'platform', 'disk almost full', 'disk')",
            [id.into()],
        ))
        .await
        .unwrap();
    let gid = format!("alr_{}", id.simple());

    // A tenant's member: not listed, not a node, not changeable, no platform list.
    let token = Some(tenant.owner.token.as_str());
    let data = app.ok(token, ALERTS, json!({ "open": null })).await;
    assert_eq!(data["alerts"]["edges"].as_array().unwrap().len(), 1);
    for query in [
        "query($id: ID!) { node(id: $id) { id } }",
        ACKNOWLEDGE,
        RESOLVE,
    ] {
        let (_, theirs) = app.post(token, query, json!({ "id": gid })).await;
        let (_, never) = app.post(token, query, json!({ "id": made_up(&gid) })).await;
        assert_eq!(
            theirs["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{theirs:#}"
        );
        assert_eq!(answer(&theirs), answer(&never));
    }
    let platform = "query { platformAlerts { edges { node { id platform message acknowledgedBy { email } } } } }";
    assert_eq!(
        app.error_code(token, platform, json!({})).await,
        "FORBIDDEN"
    );
    let pool = app.db.app_pool(1).await;
    let tx = crate::support::as_app(
        &pool,
        Some(tenant.owner.tenant_uuid()),
        Some(tenant.owner.user_uuid()),
    )
    .await;
    assert_eq!(
        count(
            &tx,
            "SELECT count(*) FROM alerts WHERE tenant_id IS NULL",
            vec![]
        )
        .await,
        0
    );
    tx.rollback().await.unwrap();

    // A platform admin lists and acknowledges it; their own tenant's list still
    // shows only the tenant's.
    let data = app.ok(Some(&root.token), platform, json!({})).await;
    assert_eq!(
        data["platformAlerts"]["edges"][0]["node"]["id"],
        gid.as_str()
    );
    assert_eq!(data["platformAlerts"]["edges"][0]["node"]["platform"], true);
    let data = app
        .ok(Some(&root.token), ACKNOWLEDGE, json!({ "id": gid }))
        .await;
    assert_eq!(
        data["acknowledgeAlert"]["alert"]["acknowledgedBy"]["email"],
        root.email.as_str()
    );
    let data = app
        .ok(Some(&root.token), ALERTS, json!({ "open": null }))
        .await;
    assert_eq!(data["alerts"]["edges"], json!([]));
}
