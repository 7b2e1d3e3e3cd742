//! Tenant isolation of alert rules (`alert_rules`, `alerts.rule_id`). The threats: a
//! member who reads, changes or deletes another tenant's rules, or learns one exists
//! (through an answer, a name clash or a count); a rule that points at another
//! tenant's agent (to measure it: its error rate, spending or health), or an alert
//! that points at another tenant's rule; and an evaluation of one tenant's rules that
//! raises alerts in, or measures the agents of, another.

use sea_orm::{ConnectionTrait, Value as SqlValue};
use serde_json::json;
use uuid::Uuid;

use crate::agents::create_agent;
use crate::alert_rules::{health, rule, runs, CREATE_RULE, OPEN_ALERTS};
use crate::isolation_processes::{answer, attempt};
use crate::isolation_workflows::{count, made_up, sqlstate, uuid};
use crate::support::{is_rls_violation, Member, TestApp};

/// A tenant with an agent that fails every run and is UNHEALTHY, and a rule on it.
struct Fixture {
    owner: Member,
    agent: String,
    rule: String,
}

async fn fixture(app: &TestApp, tenant: &str) -> Fixture {
    let owner = app.owner(tenant).await;
    let agent = create_agent(app, &owner, "watched").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    runs(app, &runner, &agent, 5, 5, 1_000).await;
    health(app, &runner, &agent, "UNHEALTHY", 30).await;
    let rule = rule(
        app,
        &owner,
        json!({ "a": agent, "n": "Failing", "k": "ERROR_RATE", "t": 0.5 }),
    )
    .await;
    Fixture { owner, agent, rule }
}

#[tokio::test]
async fn foreign_alert_rules_are_invisible_and_unwritable_in_sql() {
    let app = TestApp::new().await;
    let a = fixture(&app, "rules-alpha").await;
    let b = fixture(&app, "rules-bravo").await;
    let (ta, tb) = (a.owner.tenant_uuid(), b.owner.tenant_uuid());
    let (rule_a, agent_a) = (uuid(&a.rule), uuid(&a.agent));
    let pool = app.db.app_pool(1).await;
    let admin = app.db.admin().await;

    // As B: none of A's rules, whatever the filter says.
    let filtered = "SELECT count(*) FROM alert_rules WHERE tenant_id = $1";
    assert_eq!(count(&admin, filtered, vec![ta.into()]).await, 1);
    let tx = crate::support::as_app(&pool, Some(tb), Some(b.owner.user_uuid())).await;
    assert_eq!(count(&tx, filtered, vec![ta.into()]).await, 0);
    assert_eq!(
        count(
            &tx,
            "SELECT count(*) FROM alert_rules WHERE id = $1",
            vec![rule_a.into()]
        )
        .await,
        0
    );
    assert_eq!(
        count(&tx, "SELECT count(*) FROM alert_rules", vec![]).await,
        1
    );
    tx.rollback().await.unwrap();

    // B cannot write a rule into A, nor a rule of its own about A's agent.
    let insert = "INSERT INTO alert_rules (id, tenant_id, agent_id, name, kind, window_minutes) \
        VALUES ($1, $2, $3, $4, 'unhealthy_for', 5)";
    let into_a = attempt(
        &pool,
        &b.owner,
        insert,
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
    assert!(is_rls_violation(&into_a), "{into_a}");
    let about_a = attempt(
        &pool,
        &b.owner,
        insert,
        vec![
            Uuid::now_v7().into(),
            tb.into(),
            agent_a.into(),
            "spy".into(),
        ],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&about_a).as_deref(), Some("23503"), "{about_a}");
    // Nor an alert of its own that names A's rule.
    let alert_of_a = attempt(
        &pool,
        &b.owner,
        "INSERT INTO alerts (id, tenant_id, severity, source, message, dedupe_key, rule_id) \
         VALUES ($1, $2, 'info', 'rule', 'forged', 'forged', $3)",
        vec![Uuid::now_v7().into(), tb.into(), rule_a.into()],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(
        sqlstate(&alert_of_a).as_deref(),
        Some("23503"),
        "{alert_of_a}"
    );
    // Moving its own rule into A or onto A's agent fails; changing or deleting A's
    // touches nothing.
    let moved = attempt(
        &pool,
        &b.owner,
        "UPDATE alert_rules SET agent_id = $1 WHERE tenant_id = $2",
        vec![agent_a.into(), tb.into()],
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&moved).as_deref(), Some("23503"), "{moved}");
    for sql in [
        "UPDATE alert_rules SET is_active = false WHERE id = $1",
        "UPDATE alert_rules SET last_evaluated_at = now() WHERE id = $1",
        "DELETE FROM alert_rules WHERE id = $1",
    ] {
        assert_eq!(
            attempt(&pool, &b.owner, sql, vec![rule_a.into()], true)
                .await
                .unwrap(),
            0,
            "{sql}"
        );
    }
    // The tenant column and the kind are not the application's to change.
    for sql in [
        "UPDATE alert_rules SET tenant_id = $1 WHERE tenant_id = $1",
        "UPDATE alert_rules SET kind = 'cost_today' WHERE tenant_id = $1",
    ] {
        let err = attempt(&pool, &b.owner, sql, vec![tb.into()], false)
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{sql}: {err}");
    }
    // A's rule names tell B nothing: B's own rule has the same name as A's.
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM alert_rules WHERE name = 'Failing' AND is_active",
            vec![]
        )
        .await,
        2
    );
    // The definer function hands out tenant ids only, and only to the application
    // role's maintenance: its rows are ids.
    let tx = crate::support::as_app(&pool, Some(tb), Some(b.owner.user_uuid())).await;
    let rows = tx
        .query_all(trellis_core::scope::stmt(
            "SELECT * FROM app.tenants_with_alert_rules(10)",
            [],
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn another_tenants_rules_and_agents_are_not_found_like_made_up_ones() {
    let app = TestApp::new().await;
    let a = fixture(&app, "rules-charlie").await;
    let b = fixture(&app, "rules-delta").await;
    let token = Some(b.owner.token.as_str());

    // A rule about A's agent: exactly as for an agent never created, and nothing stored.
    let about = |agent: &str| json!({ "a": agent, "n": "Spy", "k": "COST_TODAY", "t": 0.0 });
    let (_, theirs) = app.post(token, CREATE_RULE, about(&a.agent)).await;
    let (_, never) = app
        .post(token, CREATE_RULE, about(&made_up(&a.agent)))
        .await;
    assert_eq!(
        theirs["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{theirs:#}"
    );
    assert_eq!(answer(&theirs), answer(&never));
    // Moving B's rule onto A's agent, or changing, deleting or reading A's rule.
    let update_agent = "mutation($id: ID!, $a: ID) { updateAlertRule(input: {id: $id, agentId: $a}) { alertRule { id } } }";
    let (_, theirs) = app
        .post(token, update_agent, json!({ "id": b.rule, "a": a.agent }))
        .await;
    let (_, never) = app
        .post(
            token,
            update_agent,
            json!({ "id": b.rule, "a": made_up(&a.agent) }),
        )
        .await;
    assert_eq!(
        theirs["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{theirs:#}"
    );
    assert_eq!(answer(&theirs), answer(&never));
    for query in [
        "query($id: ID!) { node(id: $id) { id } }",
        "mutation($id: ID!) { updateAlertRule(input: {id: $id, isActive: false}) { alertRule { id } } }",
        "mutation($id: ID!) { deleteAlertRule(input: {id: $id}) { alertRule { id } } }",
    ] {
        let (_, theirs) = app.post(token, query, json!({ "id": a.rule })).await;
        let (_, never) = app.post(token, query, json!({ "id": made_up(&a.rule) })).await;
        assert_eq!(theirs["errors"][0]["extensions"]["code"], "NOT_FOUND", "{theirs:#}");
        assert_eq!(answer(&theirs), answer(&never), "{query}");
    }
    // B's list holds B's rule only; filtering by A's agent finds nothing.
    let list =
        "query($a: ID) { alertRules(filter: {agentId: $a}) { totalCount edges { node { id } } } }";
    let data = app.ok(token, list, json!({ "a": null })).await;
    assert_eq!(data["alertRules"]["totalCount"], 1);
    assert_eq!(
        data["alertRules"]["edges"][0]["node"]["id"],
        b.rule.as_str()
    );
    let data = app.ok(token, list, json!({ "a": a.agent })).await;
    assert_eq!(data["alertRules"]["totalCount"], 0);
    // A's rule is untouched.
    let data = app
        .ok(
            Some(&a.owner.token),
            "query($id: ID!) { node(id: $id) { ... on AlertRule { isActive agent { id } } } }",
            json!({ "id": a.rule }),
        )
        .await;
    assert_eq!(data["node"]["isActive"], true);
    assert_eq!(data["node"]["agent"]["id"], a.agent.as_str());
}

#[tokio::test]
async fn one_tenants_evaluation_never_raises_in_or_measures_another() {
    let app = TestApp::new().await;
    let a = fixture(&app, "rules-echo").await;
    // B has a failing, UNHEALTHY agent of its own, and tenant-wide rules that would
    // hold for A's agent; its own agent is healthy and quiet.
    let b_owner = app.owner("rules-foxtrot").await;
    create_agent(&app, &b_owner, "quiet").await;
    for variables in [
        json!({ "n": "Any error", "k": "ERROR_RATE", "t": 0.0, "m": 1 }),
        json!({ "n": "Any spend", "k": "COST_TODAY", "t": 0.0 }),
        json!({ "n": "Any outage", "k": "UNHEALTHY_FOR", "w": 1 }),
    ] {
        rule(&app, &b_owner, variables).await;
    }
    // C has a failing agent but no rules: nothing evaluates it.
    let c = app.owner("rules-golf").await;
    let c_agent = create_agent(&app, &c, "unwatched").await;
    let (c_runner, _) = app.api_key(&c, "RUNNER").await;
    runs(&app, &c_runner, &c_agent, 5, 5, 0).await;

    let db = &app.state.db;
    // B's tenant-wide rules measure B's one agent only, and nothing holds there.
    let pass_b = trellis_core::alert_rules::evaluate_tenant(db, b_owner.tenant_uuid())
        .await
        .unwrap();
    assert_eq!(
        (pass_b.measured, pass_b.held, pass_b.raised),
        (3, 0, 0),
        "{pass_b:?}"
    );
    // A's pass raises A's alert, in A only.
    let pass = trellis_core::alert_rules::evaluate_pass(db, 100)
        .await
        .unwrap();
    assert_eq!(
        (pass.tenants, pass.failed, pass.raised),
        (2, 0, 1),
        "{pass:?}"
    );
    let data = app.ok(Some(&a.owner.token), OPEN_ALERTS, json!({})).await;
    assert_eq!(data["alerts"]["totalCount"], 1);
    let alert = &data["alerts"]["edges"][0]["node"];
    assert_eq!(alert["rule"]["id"], a.rule.as_str());
    assert_eq!(alert["agent"]["id"], a.agent.as_str());
    for member in [&b_owner, &c] {
        let data = app.ok(Some(&member.token), OPEN_ALERTS, json!({})).await;
        assert_eq!(data["alerts"]["totalCount"], 0, "{}", member.email);
    }
    let admin = app.db.admin().await;
    for (tenant, expected) in [
        (a.owner.tenant_uuid(), 1),
        (b_owner.tenant_uuid(), 0),
        (c.tenant_uuid(), 0),
    ] {
        assert_eq!(
            count(
                &admin,
                "SELECT count(*) FROM alerts WHERE tenant_id = $1",
                vec![tenant.into()]
            )
            .await,
            expected
        );
    }
    // Only tenants with active rules are evaluated, and a suspended one is not.
    let ids = |rows: Vec<sea_orm::QueryResult>| -> Vec<Uuid> {
        rows.iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .collect()
    };
    let listed = ids(admin
        .query_all(trellis_core::scope::stmt(
            "SELECT * FROM app.tenants_with_alert_rules(10)",
            [],
        ))
        .await
        .unwrap());
    assert!(!listed.contains(&c.tenant_uuid()));
    assert_eq!(listed.len(), 2);
    admin
        .execute(trellis_core::scope::stmt(
            "UPDATE tenants SET status = 'suspended' WHERE id = $1",
            [a.owner.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    let listed = ids(admin
        .query_all(trellis_core::scope::stmt(
            "SELECT * FROM app.tenants_with_alert_rules(10)",
            [],
        ))
        .await
        .unwrap());
    assert_eq!(listed, [b_owner.tenant_uuid()]);
}
