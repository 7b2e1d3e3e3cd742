//! Alert rules as data (issue 18 §5). The guarantees: rules are created, changed and
//! deleted by operators and above, audited, with every bad setting named by its field;
//! evaluation raises exactly one alert per rule and agent whose condition holds (error
//! rate over a window with a minimum of runs, cost today, UNHEALTHY for a while), none
//! while that alert is open, a new one once it is resolved and the condition still
//! holds, and none for inactive rules, deleted agents or conditions that do not hold.

use sea_orm::{ConnectionTrait, Value as SqlValue};
use serde_json::{json, Value};
use trellis_core::scope::stmt;

use crate::agents::create_agent;
use crate::isolation_workflows::uuid;
use crate::processes::{payload, text};
use crate::support::{Member, TestApp};

pub(crate) const RULE_FIELDS: &str = "id name kind threshold windowMinutes minRuns severity isActive agent { id } createdBy { email } createdAt updatedAt lastEvaluatedAt";

pub(crate) const CREATE_RULE: &str = "mutation($a: ID, $n: String!, $k: AlertRuleKind!, $t: Float, $w: Int, $m: Int, $s: AlertSeverity, $active: Boolean! = true) { createAlertRule(input: {agentId: $a, name: $n, kind: $k, threshold: $t, windowMinutes: $w, minRuns: $m, severity: $s, isActive: $active}) { alertRule { id name kind threshold windowMinutes minRuns severity isActive agent { id } createdBy { email } createdAt updatedAt lastEvaluatedAt } userErrors { field message code } } }";

pub(crate) const OPEN_ALERTS: &str = "query { alerts(filter: {open: true}) { totalCount edges { node { id severity source message dedupeKey open agent { id } rule { id name } details } } } }";

/// `createAlertRule` with these variables; its payload (userErrors not checked).
pub(crate) async fn create_rule(app: &TestApp, who: &Member, variables: Value) -> Value {
    let data = app.ok(Some(&who.token), CREATE_RULE, variables).await;
    data["createAlertRule"].clone()
}

/// Creates a rule that must be accepted; its ID.
pub(crate) async fn rule(app: &TestApp, who: &Member, variables: Value) -> String {
    let created = create_rule(app, who, variables).await;
    assert_eq!(created["userErrors"], json!([]), "{created:#}");
    text(&created["alertRule"]["id"])
}

/// `updateAlertRule` with these input fields (GraphQL syntax); its payload.
async fn update_rule(app: &TestApp, who: &Member, id: &str, fields: &str) -> Value {
    let query = format!(
        "mutation($id: ID!) {{ updateAlertRule(input: {{id: $id, {fields}}}) {{ alertRule {{ {RULE_FIELDS} }} userErrors {{ field message code }} }} }}"
    );
    let data = app.ok(Some(&who.token), &query, json!({ "id": id })).await;
    data["updateAlertRule"].clone()
}

/// The `(field, code)` of each userError of a payload.
fn problems(payload: &Value) -> Vec<(String, String)> {
    payload["userErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (text(&e["field"]), text(&e["code"])))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(f, c)| ((*f).to_owned(), (*c).to_owned()))
        .collect()
}

async fn admin_exec(app: &TestApp, sql: &str, values: Vec<SqlValue>) {
    let admin = app.db.admin().await;
    admin.execute(stmt(sql, values)).await.unwrap();
    admin.close().await.unwrap();
}

/// Reports `runs` runs of `agent`, the first `errors` of them failed, each costing
/// `cost_micros`.
pub(crate) async fn runs(
    app: &TestApp,
    runner: &str,
    agent: &str,
    runs: usize,
    errors: usize,
    cost_micros: i64,
) {
    for i in 0..runs {
        let body =
            crate::agent_usage::report(app, runner, agent, (10, 10), cost_micros, 20, i < errors)
                .await;
        assert!(body.get("errors").is_none(), "{body:#}");
    }
}

/// Reports a health sample of `agent` and moves it `minutes_ago` into the past.
pub(crate) async fn health(
    app: &TestApp,
    runner: &str,
    agent: &str,
    status: &str,
    minutes_ago: i32,
) {
    let id = crate::agent_hosting::report(app, runner, Some(agent), status, 10.0).await;
    admin_exec(
        app,
        "UPDATE container_health SET recorded_at = now() - make_interval(mins => $2) WHERE id = $1",
        vec![uuid(&id).into(), minutes_ago.into()],
    )
    .await;
}

async fn open_alerts(app: &TestApp, who: &Member) -> Vec<Value> {
    let data = app.ok(Some(&who.token), OPEN_ALERTS, json!({})).await;
    data["alerts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

#[tokio::test]
async fn rules_are_created_changed_and_deleted_with_every_bad_setting_named() {
    let app = TestApp::new().await;
    let owner = app.owner("rules-crud").await;
    let operator = app.member(&owner, "op@rules-crud.test", "OPERATOR").await;
    let viewer = app.member(&owner, "viewer@rules-crud.test", "VIEWER").await;
    let agent = create_agent(&app, &owner, "watched").await;
    let other = create_agent(&app, &owner, "unwatched").await;

    // An operator creates an ERROR_RATE rule for one agent: the defaults fill in.
    let created = create_rule(
        &app,
        &operator,
        json!({ "a": agent, "n": "  Failing  ", "k": "ERROR_RATE", "t": 0.25 }),
    )
    .await;
    assert_eq!(created["userErrors"], json!([]), "{created:#}");
    let failing = &created["alertRule"];
    let failing_id = text(&failing["id"]);
    assert!(failing_id.starts_with("alrr_"), "{failing_id}");
    assert_eq!(failing["name"], "Failing");
    assert_eq!(failing["kind"], "ERROR_RATE");
    assert_eq!(failing["threshold"], 0.25);
    assert_eq!(failing["windowMinutes"], 15);
    assert_eq!(failing["minRuns"], 5);
    assert_eq!(failing["severity"], "WARNING");
    assert_eq!(failing["isActive"], true);
    assert_eq!(failing["agent"]["id"], agent.as_str());
    assert_eq!(failing["createdBy"]["email"], operator.email.as_str());
    assert_eq!(failing["lastEvaluatedAt"], Value::Null);
    // A tenant-wide COST_TODAY rule and an UNHEALTHY_FOR one with its default.
    let cost = rule(
        &app,
        &owner,
        json!({ "n": "Spend", "k": "COST_TODAY", "t": 2_000_000.0, "s": "CRITICAL" }),
    )
    .await;
    let down = create_rule(&app, &owner, json!({ "n": "Down", "k": "UNHEALTHY_FOR" })).await;
    assert_eq!(down["userErrors"], json!([]), "{down:#}");
    assert_eq!(down["alertRule"]["windowMinutes"], 5);
    assert_eq!(down["alertRule"]["threshold"], Value::Null);
    assert_eq!(down["alertRule"]["minRuns"], Value::Null);
    assert_eq!(down["alertRule"]["agent"], Value::Null);
    let down_id = text(&down["alertRule"]["id"]);

    // Each bad setting is a userError naming its field, all of them at once.
    for (variables, expected) in [
        (
            json!({ "n": "x", "k": "ERROR_RATE", "t": 1.0, "w": 0, "m": 0 }),
            vec![
                ("threshold", "BAD_USER_INPUT"),
                ("windowMinutes", "BAD_USER_INPUT"),
                ("minRuns", "BAD_USER_INPUT"),
            ],
        ),
        (
            json!({ "n": "x", "k": "ERROR_RATE", "w": 1441 }),
            vec![
                ("threshold", "BAD_USER_INPUT"),
                ("windowMinutes", "BAD_USER_INPUT"),
            ],
        ),
        (
            json!({ "n": "x", "k": "ERROR_RATE", "t": -0.1 }),
            vec![("threshold", "BAD_USER_INPUT")],
        ),
        (
            json!({ "n": "x", "k": "COST_TODAY", "t": 1.5, "w": 10, "m": 3 }),
            vec![
                ("threshold", "BAD_USER_INPUT"),
                ("windowMinutes", "BAD_USER_INPUT"),
                ("minRuns", "BAD_USER_INPUT"),
            ],
        ),
        (
            json!({ "n": "x", "k": "COST_TODAY" }),
            vec![("threshold", "BAD_USER_INPUT")],
        ),
        (
            json!({ "n": "x", "k": "UNHEALTHY_FOR", "t": 3.0 }),
            vec![("threshold", "BAD_USER_INPUT")],
        ),
        (
            json!({ "n": "   ", "k": "UNHEALTHY_FOR", "w": 0 }),
            vec![
                ("name", "BAD_USER_INPUT"),
                ("windowMinutes", "BAD_USER_INPUT"),
            ],
        ),
        (
            json!({ "n": "Spend", "k": "UNHEALTHY_FOR" }),
            vec![("name", "CONFLICT")],
        ),
    ] {
        let refused = create_rule(&app, &owner, variables.clone()).await;
        assert_eq!(refused["alertRule"], Value::Null, "{variables}");
        assert_eq!(
            problems(&refused),
            pairs(&expected),
            "{variables}: {refused:#}"
        );
    }
    // A viewer may read rules, not write them; a made-up agent is NOT_FOUND.
    assert_eq!(
        app.error_code(
            Some(&viewer.token),
            CREATE_RULE,
            json!({ "n": "mine", "k": "UNHEALTHY_FOR" })
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(
            Some(&owner.token),
            CREATE_RULE,
            json!({ "a": crate::isolation_workflows::made_up(&agent), "n": "ghost", "k": "UNHEALTHY_FOR" })
        )
        .await,
        "NOT_FOUND"
    );

    // Listed newest first, filtered by agent, kind and activity; readable by a viewer.
    let list = "query($f: AlertRuleFilter) { alertRules(filter: $f) { totalCount edges { node { id name } } } }";
    for (filter, expected) in [
        (
            json!(null),
            vec![down_id.as_str(), cost.as_str(), failing_id.as_str()],
        ),
        (json!({ "agentId": agent }), vec![failing_id.as_str()]),
        (json!({ "agentId": other }), vec![]),
        (json!({ "kind": "COST_TODAY" }), vec![cost.as_str()]),
        (json!({ "isActive": false }), vec![]),
    ] {
        let data = app
            .ok(Some(&viewer.token), list, json!({ "f": filter }))
            .await;
        let ids: Vec<&str> = data["alertRules"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, expected, "{filter}");
        assert_eq!(data["alertRules"]["totalCount"], expected.len(), "{filter}");
    }
    // An agent's rules: its own and the tenant's; a rule is a node.
    let of_agent = "query($s: String!) { agent(slug: $s) { alertRules { id } } }";
    for (slug, expected) in [
        (
            "watched",
            vec![failing_id.as_str(), cost.as_str(), down_id.as_str()],
        ),
        ("unwatched", vec![cost.as_str(), down_id.as_str()]),
    ] {
        let data = app
            .ok(Some(&viewer.token), of_agent, json!({ "s": slug }))
            .await;
        let ids: Vec<&str> = data["agent"]["alertRules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, expected, "{slug}");
    }
    let node = app
        .ok(
            Some(&viewer.token),
            "query($id: ID!) { node(id: $id) { id ... on AlertRule { name kind } } }",
            json!({ "id": failing_id }),
        )
        .await;
    assert_eq!(node["node"]["kind"], "ERROR_RATE");

    // Changes: checked against the kind as on creation; nothing changed is no change.
    let changed = update_rule(
        &app,
        &operator,
        &failing_id,
        "threshold: 0.5, windowMinutes: 30, severity: CRITICAL, agentId: null, isActive: false",
    )
    .await;
    assert_eq!(changed["userErrors"], json!([]), "{changed:#}");
    let rule_now = &changed["alertRule"];
    assert_eq!(
        (
            &rule_now["threshold"],
            &rule_now["windowMinutes"],
            &rule_now["minRuns"],
            &rule_now["severity"],
            &rule_now["agent"],
            &rule_now["isActive"],
        ),
        (
            &json!(0.5),
            &json!(30),
            &json!(5),
            &json!("CRITICAL"),
            &Value::Null,
            &json!(false)
        )
    );
    assert!(rule_now["updatedAt"].as_str() > failing["updatedAt"].as_str());
    for (fields, expected) in [
        (
            "threshold: 2.0, minRuns: 0",
            vec![
                ("threshold", "BAD_USER_INPUT"),
                ("minRuns", "BAD_USER_INPUT"),
            ],
        ),
        (
            "windowMinutes: 5000",
            vec![("windowMinutes", "BAD_USER_INPUT")],
        ),
        ("name: \"\"", vec![("name", "BAD_USER_INPUT")]),
        ("name: \"Spend\"", vec![("name", "CONFLICT")]),
    ] {
        let refused = update_rule(&app, &owner, &failing_id, fields).await;
        assert_eq!(
            problems(&refused),
            pairs(&expected),
            "{fields}: {refused:#}"
        );
    }
    let refused = update_rule(&app, &owner, &down_id, "threshold: 1.0").await;
    assert_eq!(
        problems(&refused),
        pairs(&[("threshold", "BAD_USER_INPUT")])
    );
    let refused = update_rule(&app, &owner, &cost, "windowMinutes: 10").await;
    assert_eq!(
        problems(&refused),
        pairs(&[("windowMinutes", "BAD_USER_INPUT")])
    );
    let same = update_rule(&app, &owner, &failing_id, "threshold: 0.5").await;
    assert_eq!(same["alertRule"]["updatedAt"], rule_now["updatedAt"]);
    let (_, body) = app
        .post(
            Some(&viewer.token),
            "mutation($id: ID!) { updateAlertRule(input: {id: $id, isActive: true}) { alertRule { id } } }",
            json!({ "id": failing_id }),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body:#}"
    );

    // Deleted: gone from the list and as a node; every change is audited.
    let delete = "mutation($id: ID!) { deleteAlertRule(input: {id: $id}) { alertRule { id name } userErrors { field message code } } }";
    let data = app
        .ok(Some(&operator.token), delete, json!({ "id": failing_id }))
        .await;
    assert_eq!(
        payload(&data, "deleteAlertRule")["alertRule"]["name"],
        "Failing"
    );
    assert_eq!(
        app.error_code(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": failing_id })
        )
        .await,
        "NOT_FOUND"
    );
    assert_eq!(
        app.error_code(Some(&owner.token), delete, json!({ "id": failing_id }))
            .await,
        "NOT_FOUND"
    );
    let admin = app.db.admin().await;
    let actions: Vec<String> = admin
        .query_all(stmt(
            "SELECT action FROM audit_events WHERE target_id = $1 ORDER BY created_at, id",
            [uuid(&failing_id).into()],
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("", "action").unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "alert_rule.create",
            "alert_rule.update",
            "alert_rule.delete"
        ]
    );
}

#[tokio::test]
async fn evaluation_raises_one_alert_per_rule_and_agent_and_again_only_after_resolve() {
    let app = TestApp::new().await;
    let owner = app.owner("rules-eval").await;
    let tenant = owner.tenant_uuid();
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let mut agents = std::collections::HashMap::new();
    for slug in ["alpha", "bravo", "charlie", "delta", "echo"] {
        agents.insert(slug, create_agent(&app, &owner, slug).await);
    }
    let agent = |slug: &str| agents[slug].clone();

    // Usage: alpha fails 6 of 10 runs, bravo 2 of 10 (and spends 10000 micros today),
    // charlie 2 of 2 (too few runs), delta 6 of 6 but 20 minutes ago, echo 5 of 5 and
    // is then deleted.
    runs(&app, &runner, &agent("alpha"), 10, 6, 100).await;
    runs(&app, &runner, &agent("bravo"), 10, 2, 1_000).await;
    runs(&app, &runner, &agent("charlie"), 2, 2, 0).await;
    runs(&app, &runner, &agent("delta"), 6, 6, 0).await;
    runs(&app, &runner, &agent("echo"), 5, 5, 0).await;
    admin_exec(
        &app,
        "UPDATE agent_usage SET at = now() - interval '20 minutes' WHERE agent_id = $1",
        vec![uuid(&agent("delta")).into()],
    )
    .await;
    // Health: alpha UNHEALTHY for 10 minutes; bravo was, and is HEALTHY again; charlie
    // UNHEALTHY for 2 minutes only; delta DEGRADED then UNHEALTHY for 3 minutes.
    health(&app, &runner, &agent("alpha"), "UNHEALTHY", 10).await;
    health(&app, &runner, &agent("alpha"), "UNHEALTHY", 1).await;
    health(&app, &runner, &agent("bravo"), "UNHEALTHY", 10).await;
    health(&app, &runner, &agent("bravo"), "HEALTHY", 1).await;
    health(&app, &runner, &agent("charlie"), "UNHEALTHY", 2).await;
    health(&app, &runner, &agent("delta"), "DEGRADED", 20).await;
    health(&app, &runner, &agent("delta"), "UNHEALTHY", 3).await;
    health(&app, &runner, &agent("echo"), "UNHEALTHY", 30).await;
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { deleteAgent(input: {id: $id}) { agent { id } } }",
        json!({ "id": agent("echo") }),
    )
    .await;

    let errors = rule(
        &app,
        &owner,
        json!({ "n": "Errors", "k": "ERROR_RATE", "t": 0.5, "s": "CRITICAL" }),
    )
    .await;
    let spend_bravo = rule(
        &app,
        &owner,
        json!({ "a": agent("bravo"), "n": "Bravo spend", "k": "COST_TODAY", "t": 5_000.0 }),
    )
    .await;
    let spend_alpha = rule(
        &app,
        &owner,
        json!({ "a": agent("alpha"), "n": "Alpha spend", "k": "COST_TODAY", "t": 1_000_000.0 }),
    )
    .await;
    let down = rule(
        &app,
        &owner,
        json!({ "n": "Down", "k": "UNHEALTHY_FOR", "w": 5, "s": "INFO" }),
    )
    .await;
    // Would hold for alpha, bravo and charlie, but it is not active.
    let idle = rule(
        &app,
        &owner,
        json!({ "n": "Idle", "k": "ERROR_RATE", "t": 0.0, "m": 1, "active": false }),
    )
    .await;

    let db = &app.state.db;
    let pass = trellis_core::alert_rules::evaluate_tenant(db, tenant)
        .await
        .unwrap();
    // Errors × 4 live agents, each spend rule × 1, Down × 4.
    assert_eq!(
        (pass.measured, pass.held, pass.raised),
        (10, 3, 3),
        "{pass:?}"
    );
    let open = open_alerts(&app, &owner).await;
    let mut raised: Vec<(String, String)> = open
        .iter()
        .map(|a| (text(&a["rule"]["id"]), text(&a["agent"]["id"])))
        .collect();
    raised.sort();
    let mut expected = vec![
        (errors.clone(), agent("alpha")),
        (spend_bravo.clone(), agent("bravo")),
        (down.clone(), agent("alpha")),
    ];
    expected.sort();
    assert_eq!(raised, expected, "{open:#?}");
    for alert in &open {
        assert_eq!(alert["source"], "rule");
        let rule_id = text(&alert["rule"]["id"]);
        assert_eq!(
            alert["dedupeKey"],
            format!(
                "rule:{}:{}",
                uuid(&rule_id),
                uuid(alert["agent"]["id"].as_str().unwrap())
            )
        );
        let details = &alert["details"];
        if rule_id == errors {
            assert_eq!(alert["severity"], "CRITICAL");
            assert_eq!(
                (&details["errorRate"], &details["runs"], &details["errors"]),
                (&json!(0.6), &json!(10), &json!(6))
            );
            assert_eq!(details["threshold"], 0.5);
            assert_eq!(details["kind"], "ERROR_RATE");
            assert!(text(&alert["message"]).contains("alpha"), "{alert}");
        } else if rule_id == spend_bravo {
            assert_eq!(alert["severity"], "WARNING");
            assert_eq!(details["costMicros"], 10_000);
            assert_eq!(details["threshold"], 5_000.0);
        } else {
            assert_eq!(alert["severity"], "INFO");
            assert_eq!(details["kind"], "UNHEALTHY_FOR");
            assert!(
                details["unhealthyMinutes"].as_i64().unwrap() >= 9,
                "{details}"
            );
        }
    }

    // Again while they are open: the conditions still hold, nothing new is raised.
    let again = trellis_core::alert_rules::evaluate_pass(db, 100)
        .await
        .unwrap();
    assert_eq!(
        (again.tenants, again.failed, again.held, again.raised),
        (1, 0, 3, 0),
        "{again:?}"
    );
    assert_eq!(open_alerts(&app, &owner).await.len(), 3);

    // Resolved, the key is free: the next pass raises the rule's alert again, once.
    let errors_alert = open
        .iter()
        .find(|a| a["rule"]["id"] == errors.as_str())
        .unwrap();
    app.ok(
        Some(&owner.token),
        crate::agent_usage::RESOLVE,
        json!({ "id": errors_alert["id"] }),
    )
    .await;
    let after = trellis_core::alert_rules::evaluate_tenant(db, tenant)
        .await
        .unwrap();
    assert_eq!(after.raised, 1, "{after:?}");
    let open = open_alerts(&app, &owner).await;
    assert_eq!(open.len(), 3);
    let new_alert = open
        .iter()
        .find(|a| a["rule"]["id"] == errors.as_str())
        .unwrap();
    assert_ne!(new_alert["id"], errors_alert["id"]);

    // Inactive, a rule raises nothing even once its alert is resolved.
    update_rule(&app, &owner, &down, "isActive: false").await;
    let down_alert = open
        .iter()
        .find(|a| a["rule"]["id"] == down.as_str())
        .unwrap();
    app.ok(
        Some(&owner.token),
        crate::agent_usage::RESOLVE,
        json!({ "id": down_alert["id"] }),
    )
    .await;
    let quiet = trellis_core::alert_rules::evaluate_tenant(db, tenant)
        .await
        .unwrap();
    assert_eq!((quiet.measured, quiet.raised), (6, 0), "{quiet:?}");
    assert_eq!(open_alerts(&app, &owner).await.len(), 2);

    // Evaluations stamp active rules without touching `updatedAt`; the idle rule was
    // never evaluated.
    let data = app
        .ok(
            Some(&owner.token),
            &format!("{{ alertRules {{ edges {{ node {{ {RULE_FIELDS} }} }} }} }}"),
            json!({}),
        )
        .await;
    for edge in data["alertRules"]["edges"].as_array().unwrap() {
        let node = &edge["node"];
        let id = text(&node["id"]);
        if id == idle {
            assert_eq!(node["lastEvaluatedAt"], Value::Null);
        } else {
            assert!(node["lastEvaluatedAt"].is_string(), "{node}");
        }
        if id != down {
            assert_eq!(node["updatedAt"], node["createdAt"], "{node}");
        }
    }

    // A deleted rule's alert stays open, without its rule.
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { deleteAlertRule(input: {id: $id}) { alertRule { id } } }",
        json!({ "id": spend_bravo }),
    )
    .await;
    let open = open_alerts(&app, &owner).await;
    assert_eq!(open.len(), 2);
    assert!(
        open.iter()
            .any(|a| a["rule"].is_null() && a["agent"]["id"] == agent("bravo").as_str()),
        "{open:#?}"
    );
    assert!(spend_alpha.starts_with("alrr_"));
}

#[tokio::test]
async fn the_maintenance_loop_evaluates_rules_every_pass() {
    let app = TestApp::with_args(&["--maintenance-interval", "1"]).await;
    let owner = app.owner("rules-loop").await;
    let agent = create_agent(&app, &owner, "flaky").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    runs(&app, &runner, &agent, 5, 5, 0).await;
    rule(
        &app,
        &owner,
        json!({ "n": "Failing", "k": "ERROR_RATE", "t": 0.5 }),
    )
    .await;
    // The process's recorder, installed before the loop counts.
    trellis_server::telemetry::exporter();
    let config = crate::support::test_config(&app.db.app_url, &["--maintenance-interval", "1"]);
    trellis_server::app::spawn_maintenance(&config, &app.state);
    let mut raised = vec![];
    for _ in 0..100 {
        raised = open_alerts(&app, &owner).await;
        if !raised.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(raised.len(), 1, "the loop raised the rule's alert");
    assert_eq!(raised[0]["source"], "rule");
    // Later passes find it open and raise nothing more.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(open_alerts(&app, &owner).await.len(), 1);
    let (_, metrics) = app
        .send(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    let metrics = metrics.as_str().unwrap().to_owned();
    let passes = metrics
        .lines()
        .find(|l| l.starts_with("trellis_maintenance_passes_total{job=\"alert_rules\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(passes >= 2.0, "{metrics}");
}
