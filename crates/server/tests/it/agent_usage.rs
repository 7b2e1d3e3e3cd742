//! Agent usage, metrics, budgets and alerts. The guarantees: every usage report counts
//! once in its hour and its day, with p50/p95 exact for the bucket even when reports
//! arrive concurrently; only runner keys and operators report; a budget reached
//! refuses runs (RATE_LIMITED until the next month) and leaves exactly one open alert
//! however many callers are refused at once; alerts are acknowledged, resolved and
//! raised again, and delivered live; a page of agents reads its metrics, budgets and
//! alerts in constant statements.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Datelike, Duration, DurationRound, Utc};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use trellis_core::scope::stmt;
use trellis_core::{AppDb, RequestScope};

use crate::agents::create_agent;
use crate::isolation_workflows::{count, uuid};
use crate::processes::{payload, text};
use crate::subscriptions::{serve, Subscriber};
use crate::support::{scope_of, Member, TestApp};

pub(crate) const REPORT: &str = "mutation($a: ID!, $r: ID, $i: Int!, $o: Int!, $c: Int!, $l: Int!, $e: Boolean) { reportUsage(input: {agentId: $a, runId: $r, inputTokens: $i, outputTokens: $o, costMicros: $c, latencyMs: $l, error: $e}) { usage { id at } agent { id budgetStatus { monthlyTokens exceeded } } userErrors { field message code } } }";

const METRICS: &str = "query($slug: String!, $p: MetricsPeriod!, $from: DateTime!, $to: DateTime!) { agent(slug: $slug) { metrics(period: $p, from: $from, to: $to) { periodStart runs errors inputTokens outputTokens cost costMicros averageLatencyMs p50LatencyMs p95LatencyMs } } }";

const BUDGET: &str = "mutation($id: ID!, $c: Float, $t: Int) { updateAgent(input: {id: $id, budget: {monthlyCostLimit: $c, monthlyTokenLimit: $t}}) { agent { budgetStatus { monthlyCost monthlyTokens monthlyCostLimit monthlyTokenLimit exceeded } } userErrors { field message } } }";

pub(crate) const ALERTS: &str = "query($open: Boolean) { alerts(filter: {open: $open}) { totalCount edges { node { id severity source message dedupeKey open platform agent { id } acknowledgedAt acknowledgedBy { email } resolvedAt resolvedBy { email } details } } } }";

pub(crate) const ACKNOWLEDGE: &str = "mutation($id: ID!) { acknowledgeAlert(input: {id: $id}) { alert { id open acknowledgedAt acknowledgedBy { email } } userErrors { field message } } }";
pub(crate) const RESOLVE: &str = "mutation($id: ID!) { resolveAlert(input: {id: $id}) { alert { id open resolvedAt resolvedBy { email } acknowledgedAt } userErrors { field message } } }";

/// Reports one run's usage with `token` (a runner key or a member's token); the
/// response body.
pub(crate) async fn report(
    app: &TestApp,
    token: &str,
    agent: &str,
    tokens: (i64, i64),
    cost_micros: i64,
    latency_ms: i64,
    error: bool,
) -> Value {
    let (_, body) = app
        .post(
            Some(token),
            REPORT,
            json!({ "a": agent, "i": tokens.0, "o": tokens.1, "c": cost_micros, "l": latency_ms, "e": error }),
        )
        .await;
    body
}

/// The nearest-rank percentile `q` of `values` (what `percentile_disc` computes).
fn nearest_rank(values: &[i64], q: f64) -> i64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank - 1]
}

fn at(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .to_utc()
}

async fn metrics(
    app: &TestApp,
    owner: &Member,
    slug: &str,
    period: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Value> {
    let data = app
        .ok(
            Some(&owner.token),
            METRICS,
            json!({ "slug": slug, "p": period, "from": from, "to": to }),
        )
        .await;
    data["agent"]["metrics"].as_array().unwrap().clone()
}

#[tokio::test]
async fn usage_rolls_into_hourly_and_daily_metrics_with_exact_percentiles() {
    let app = TestApp::new().await;
    let owner = app.owner("usage-metrics").await;
    let agent = create_agent(&app, &owner, "reporter").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    // Twelve runs reported at once: every report must count, and the percentiles of
    // each bucket must be those of all twelve, whichever transaction commits last.
    let latencies: Vec<i64> = vec![120, 80, 300, 50, 1000, 75, 200, 60, 90, 500, 40, 110];
    let reports = latencies.iter().enumerate().map(|(i, latency)| {
        let (app, runner, agent) = (&app, &runner, &agent);
        async move {
            let body = report(
                app,
                runner,
                agent,
                (100 + i as i64, 10),
                2_500,
                *latency,
                i % 4 == 0,
            )
            .await;
            assert!(body.get("errors").is_none(), "{body:#}");
            let usage = &body["data"]["reportUsage"]["usage"];
            assert!(text(&usage["id"]).starts_with("agu_"));
            (at(&usage["at"]), *latency, i)
        }
    });
    let reported = futures::future::join_all(reports).await;

    // Expected figures per hour and per day, from when each report was recorded.
    for (period, length) in [("HOUR", Duration::hours(1)), ("DAY", Duration::days(1))] {
        let first = reported.iter().map(|r| r.0).min().unwrap();
        let from = first.duration_trunc(length).unwrap() - length;
        let to = Utc::now() + length;
        let buckets = metrics(&app, &owner, "reporter", period, from, to).await;
        // Every bucket of the range, empty ones too.
        let mut starts = vec![];
        let mut start = from;
        while start < to {
            starts.push(start);
            start += length;
        }
        let got: Vec<DateTime<Utc>> = buckets.iter().map(|b| at(&b["periodStart"])).collect();
        assert_eq!(got, starts, "{period}");
        // The bucket before the first report is empty.
        assert_eq!(buckets[0]["runs"], 0);
        assert_eq!(buckets[0]["p50LatencyMs"], Value::Null);
        let mut seen = 0;
        for bucket in &buckets {
            let start = at(&bucket["periodStart"]);
            let inside: Vec<&(DateTime<Utc>, i64, usize)> = reported
                .iter()
                .filter(|r| r.0 >= start && r.0 < start + length)
                .collect();
            assert_eq!(bucket["runs"], inside.len(), "{period} {bucket:#}");
            seen += inside.len();
            if inside.is_empty() {
                continue;
            }
            let lat: Vec<i64> = inside.iter().map(|r| r.1).collect();
            let errors = inside.iter().filter(|r| r.2 % 4 == 0).count();
            let input: i64 = inside.iter().map(|r| 100 + r.2 as i64).sum();
            assert_eq!(bucket["errors"], errors);
            assert_eq!(bucket["inputTokens"], input);
            assert_eq!(bucket["outputTokens"], 10 * inside.len());
            assert_eq!(bucket["costMicros"], 2_500 * inside.len());
            assert_eq!(bucket["cost"], 0.0025 * inside.len() as f64);
            assert_eq!(bucket["p50LatencyMs"], nearest_rank(&lat, 0.5), "{period}");
            assert_eq!(bucket["p95LatencyMs"], nearest_rank(&lat, 0.95), "{period}");
            let mean = lat.iter().sum::<i64>() as f64 / lat.len() as f64;
            assert_eq!(bucket["averageLatencyMs"], mean);
        }
        assert_eq!(seen, latencies.len(), "{period}");
    }
    // All twelve in one bucket (the usual case): p50 is the 6th smallest, p95 the
    // largest.
    assert_eq!(nearest_rank(&latencies, 0.5), 90);
    assert_eq!(nearest_rank(&latencies, 0.95), 1000);

    // The rollup rows hold what the facts add up to.
    let admin = app.db.admin().await;
    let tenant = owner.tenant_uuid();
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM agent_usage WHERE tenant_id = $1",
            vec![tenant.into()]
        )
        .await,
        12
    );
    assert_eq!(
        count(
            &admin,
            "SELECT sum(runs)::int8 FROM agent_metrics WHERE tenant_id = $1 AND period = 'day'",
            vec![tenant.into()]
        )
        .await,
        12
    );

    // A range that is empty or too long is the field's BAD_USER_INPUT.
    let now = Utc::now();
    let (_, body) = app
        .post(
            Some(&owner.token),
            METRICS,
            json!({ "slug": "reporter", "p": "HOUR", "from": now - Duration::days(40), "to": now }),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "from");
}

#[tokio::test]
async fn report_usage_takes_runner_keys_and_operators_and_refuses_other_keys() {
    let app = TestApp::new().await;
    let owner = app.owner("usage-keys").await;
    let (steps, links) = crate::agent_runs::echo_steps();
    let flow = crate::agent_runs::published_flow(&app, &owner, "keyed-flow", steps, links).await;
    let (agent, _) =
        crate::agent_runs::agent_running(&app, &owner, "keyed", &flow, json!({})).await;
    let run = crate::agent_runs::started(&app, &owner, &agent, json!({ "say": "hi" })).await;
    // A run that is not the agent's: a plain run of a workflow.
    let workflow = crate::runs::active_workflow(&app, &owner, "plain-flow").await;
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!) { startRun(input: {workflowId: $w}) { run { id } } }",
            json!({ "w": workflow }),
        )
        .await;
    let plain_run = text(&data["startRun"]["run"]["id"]);
    let (runner, runner_id) = app.api_key(&owner, "RUNNER").await;
    let (writer, _) = app.api_key(&owner, "WRITE").await;
    let (reader, _) = app.api_key(&owner, "READ").await;
    let operator = app
        .member(&owner, "operator@usage-keys.test", "OPERATOR")
        .await;
    let viewer = app.member(&owner, "viewer@usage-keys.test", "VIEWER").await;

    let (_, body) = app
        .post(
            Some(&runner),
            REPORT,
            json!({ "a": agent, "r": run, "i": 5, "o": 6, "c": 7, "l": 8 }),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body:#}");
    let (_, body) = app
        .post(
            Some(&runner),
            REPORT,
            json!({ "a": agent, "r": plain_run, "i": 5, "o": 6, "c": 7, "l": 8 }),
        )
        .await;
    assert_eq!(
        body["data"]["reportUsage"]["userErrors"][0]["field"], "runId",
        "{body:#}"
    );
    let body = report(&app, &operator.token, &agent, (1, 1), 1, 1, false).await;
    assert!(body.get("errors").is_none(), "{body:#}");
    // A key without the runner scope is refused, however much else it may do, and so
    // is a member who may not run things.
    for token in [&writer, &reader, &viewer.token] {
        let body = report(&app, token, &agent, (1, 1), 1, 1, false).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{body:#}"
        );
    }
    // Bad input names its field, and nothing is stored.
    let body = report(&app, &runner, &agent, (-1, 1), 1, 1, false).await;
    assert_eq!(
        body["data"]["reportUsage"]["userErrors"][0]["field"],
        "inputTokens"
    );
    let body = report(&app, &runner, &agent, (1, 1), 1, -5, false).await;
    assert_eq!(
        body["data"]["reportUsage"]["userErrors"][0]["field"],
        "latencyMs"
    );
    let admin = app.db.admin().await;
    let rows = admin
        .query_all(stmt(
            "SELECT run_id, reported_by_key, reported_by, input_tokens FROM agent_usage \
             WHERE tenant_id = $1 ORDER BY at, id",
            [owner.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let run_id: Option<uuid::Uuid> = rows[0].try_get("", "run_id").unwrap();
    let key: Option<uuid::Uuid> = rows[0].try_get("", "reported_by_key").unwrap();
    assert_eq!(run_id, Some(uuid(&run)));
    assert_eq!(key, Some(uuid(&runner_id)));
    let by: Option<uuid::Uuid> = rows[1].try_get("", "reported_by").unwrap();
    assert_eq!(by, Some(operator.user_uuid()));
    // Each report is audited.
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'agent.usage.report'",
            vec![owner.tenant_uuid().into()]
        )
        .await,
        2
    );
}

/// `budget::admit` for `agent` in a scope of `member`, 20 times at once; the results.
async fn admit_20(db: &AppDb, member: &Member, agent: &str) -> Vec<trellis_core::Result<()>> {
    let agent = uuid(agent);
    let calls = (0..20).map(|_| async move {
        let scope = scope_of(db, member);
        let admitted =
            trellis_core::agents::budget::admit(&scope, member.tenant_uuid(), agent).await;
        // The caller's request fails: its transaction rolls back.
        RequestScope::finish_shared(scope, admitted.is_ok())
            .await
            .unwrap();
        admitted
    });
    futures::future::join_all(calls).await
}

async fn open_alerts(app: &TestApp, owner: &Member) -> Vec<Value> {
    let data = app
        .ok(Some(&owner.token), ALERTS, json!({ "open": true }))
        .await;
    data["alerts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

#[tokio::test]
async fn a_reached_budget_refuses_20_concurrent_runs_and_leaves_one_open_alert() {
    let app = TestApp::new().await;
    let owner = app.owner("usage-budget").await;
    let agent = create_agent(&app, &owner, "spender").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let data = app
        .ok(
            Some(&owner.token),
            BUDGET,
            json!({ "id": agent, "c": 5.0, "t": 1000 }),
        )
        .await;
    let status = &payload(&data, "updateAgent")["agent"]["budgetStatus"];
    assert_eq!(status["exceeded"], false);
    assert_eq!(status["monthlyTokenLimit"], 1000);
    // A pool large enough for 20 requests and their alert transactions at once.
    let db = AppDb::new(app.db.app_pool(45).await);

    let body = report(&app, &runner, &agent, (500, 100), 1_000_000, 10, false).await;
    assert_eq!(
        body["data"]["reportUsage"]["agent"]["budgetStatus"],
        json!({ "monthlyTokens": 600, "exceeded": false })
    );
    assert!(open_alerts(&app, &owner).await.is_empty());
    for admitted in admit_20(&db, &owner, &agent).await {
        admitted.unwrap();
    }

    // The report that reaches the token limit raises the alert, once.
    let body = report(&app, &runner, &agent, (300, 100), 1_000_000, 10, false).await;
    assert_eq!(
        body["data"]["reportUsage"]["agent"]["budgetStatus"],
        json!({ "monthlyTokens": 1000, "exceeded": true })
    );
    report(&app, &runner, &agent, (1, 1), 1, 10, false).await;
    let alerts = open_alerts(&app, &owner).await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert["severity"], "CRITICAL");
    assert_eq!(alert["source"], "budget");
    assert_eq!(alert["agent"]["id"], agent.as_str());
    assert_eq!(alert["platform"], false);
    assert_eq!(alert["details"]["monthlyTokens"], 1000);
    let month = Utc::now().format("%Y-%m").to_string();
    assert_eq!(
        text(&alert["dedupeKey"]),
        format!("budget:{}:{month}", uuid(&agent))
    );

    // Every concurrent caller is refused until the next month; still one alert.
    let now = Utc::now();
    let until_next_month = {
        let first = now.date_naive().with_day(1).unwrap();
        let next = first.checked_add_months(chrono::Months::new(1)).unwrap();
        (next.and_hms_opt(0, 0, 0).unwrap().and_utc() - now).num_seconds()
    };
    for admitted in admit_20(&db, &owner, &agent).await {
        match admitted {
            Err(trellis_core::Error::RateLimited {
                retry_after_seconds,
            }) => assert!(
                (i64::from(retry_after_seconds) - until_next_month).abs() <= 60,
                "{retry_after_seconds} vs {until_next_month}"
            ),
            other => panic!("expected RATE_LIMITED, got {other:?}"),
        }
    }
    assert_eq!(open_alerts(&app, &owner).await.len(), 1);

    // Resolved, the next refusals raise exactly one new alert, though each of the 20
    // refused requests rolls back.
    let data = app
        .ok(Some(&owner.token), RESOLVE, json!({ "id": alert["id"] }))
        .await;
    assert_eq!(payload(&data, "resolveAlert")["alert"]["open"], false);
    assert!(open_alerts(&app, &owner).await.is_empty());
    for admitted in admit_20(&db, &owner, &agent).await {
        assert!(matches!(
            admitted,
            Err(trellis_core::Error::RateLimited { .. })
        ));
    }
    let reopened = open_alerts(&app, &owner).await;
    assert_eq!(reopened.len(), 1, "{reopened:#?}");
    assert_ne!(reopened[0]["id"], alert["id"]);
    let data = app
        .ok(Some(&owner.token), ALERTS, json!({ "open": null }))
        .await;
    assert_eq!(data["alerts"]["totalCount"], 2);

    // Raising the limit admits runs again; an agent of another tenant, or none, is
    // NOT_FOUND.
    app.ok(
        Some(&owner.token),
        BUDGET,
        json!({ "id": agent, "c": 5.0, "t": 1_000_000 }),
    )
    .await;
    admit_20(&db, &owner, &agent)
        .await
        .into_iter()
        .for_each(|a| a.unwrap());
    let other = app.owner("usage-budget-other").await;
    let foreign = admit_20(&db, &other, &agent).await;
    assert!(foreign
        .iter()
        .all(|a| matches!(a, Err(trellis_core::Error::NotFound))));
}

#[tokio::test]
async fn alerts_are_acknowledged_resolved_and_raised_again() {
    let app = TestApp::new().await;
    let owner = app.owner("usage-ack").await;
    let viewer = app.member(&owner, "viewer@usage-ack.test", "VIEWER").await;
    let agent = create_agent(&app, &owner, "acked").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    app.ok(
        Some(&owner.token),
        BUDGET,
        json!({ "id": agent, "c": 0.5, "t": null }),
    )
    .await;
    report(&app, &runner, &agent, (1, 1), 600_000, 10, false).await;
    let alert = open_alerts(&app, &owner).await.remove(0);
    let id = text(&alert["id"]);
    assert!(id.starts_with("alr_"));
    assert_eq!(alert["acknowledgedAt"], Value::Null);

    // A viewer reads it but may not act on it.
    assert_eq!(open_alerts(&app, &viewer).await.len(), 1);
    assert_eq!(
        app.error_code(Some(&viewer.token), ACKNOWLEDGE, json!({ "id": id }))
            .await,
        "FORBIDDEN"
    );
    let data = app
        .ok(Some(&owner.token), ACKNOWLEDGE, json!({ "id": id }))
        .await;
    let acked = &payload(&data, "acknowledgeAlert")["alert"];
    assert_eq!(acked["open"], true);
    assert_eq!(acked["acknowledgedBy"]["email"], owner.email.as_str());
    let first_ack = acked["acknowledgedAt"].clone();
    // Again: nothing changes.
    let data = app
        .ok(Some(&owner.token), ACKNOWLEDGE, json!({ "id": id }))
        .await;
    assert_eq!(
        payload(&data, "acknowledgeAlert")["alert"]["acknowledgedAt"],
        first_ack
    );
    // Still open: more reports raise nothing new.
    report(&app, &runner, &agent, (1, 1), 1, 10, false).await;
    assert_eq!(open_alerts(&app, &owner).await.len(), 1);

    let data = app
        .ok(Some(&owner.token), RESOLVE, json!({ "id": id }))
        .await;
    let resolved = &payload(&data, "resolveAlert")["alert"];
    assert_eq!(resolved["open"], false);
    assert_eq!(resolved["resolvedBy"]["email"], owner.email.as_str());
    assert_eq!(resolved["acknowledgedAt"], first_ack);
    let admin = app.db.admin().await;
    let actions = admin
        .query_all(stmt(
            "SELECT action FROM audit_events WHERE target_id = $1 ORDER BY created_at, id",
            [uuid(&id).into()],
        ))
        .await
        .unwrap();
    let actions: Vec<String> = actions
        .iter()
        .map(|r| r.try_get("", "action").unwrap())
        .collect();
    assert_eq!(
        actions,
        ["alert.raise", "alert.acknowledge", "alert.resolve"]
    );

    // Resolved, the key is free: the next report over budget opens a new alert.
    report(&app, &runner, &agent, (1, 1), 1, 10, false).await;
    let open = open_alerts(&app, &owner).await;
    assert_eq!(open.len(), 1);
    assert_ne!(open[0]["id"], id.as_str());
    assert_eq!(open[0]["dedupeKey"], alert["dedupeKey"]);
    let data = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on Alert { id open resolvedBy { email } } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["node"]["open"], false);
}

#[tokio::test]
async fn alert_raised_reaches_its_tenants_subscribers_only() {
    let app = TestApp::new().await;
    let addr = serve(app.router.clone()).await;
    let owner = app.owner("usage-live").await;
    let other = app.owner("usage-live-other").await;
    let agent = create_agent(&app, &owner, "watched").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    app.ok(
        Some(&owner.token),
        BUDGET,
        json!({ "id": agent, "c": null, "t": 10 }),
    )
    .await;
    let query =
        "subscription($a: ID) { alertRaised(agentId: $a) { id severity source agent { slug } } }";
    let mut mine = Subscriber::open(addr, &owner.token, query, json!({ "a": agent })).await;
    let mut theirs = Subscriber::open(addr, &other.token, query, json!({})).await;
    // Another tenant's agent is NOT_FOUND.
    let mut foreign = Subscriber::open(addr, &other.token, query, json!({ "a": agent })).await;
    let refused = foreign
        .next_within(crate::subscriptions::ARRIVES)
        .await
        .unwrap();
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{refused:#}"
    );

    // The subscription may not be listening yet: raise until one arrives (resolving
    // each, so that the next report raises a new one).
    let mut delivered = None;
    for _ in 0..20 {
        report(&app, &runner, &agent, (10, 10), 1, 10, false).await;
        if let Some(message) = mine
            .next_within(std::time::Duration::from_millis(500))
            .await
        {
            delivered = Some(message);
            break;
        }
        for alert in open_alerts(&app, &owner).await {
            app.ok(Some(&owner.token), RESOLVE, json!({ "id": alert["id"] }))
                .await;
        }
    }
    let message = delivered.expect("alertRaised delivered");
    assert_eq!(message["type"], "next", "{message:#}");
    let raised = &message["payload"]["data"]["alertRaised"];
    assert_eq!(raised["source"], "budget");
    assert_eq!(raised["agent"]["slug"], "watched");
    assert_eq!(raised["id"], open_alerts(&app, &owner).await[0]["id"]);
    theirs.assert_quiet().await;
}

#[tokio::test]
async fn the_agents_page_reads_metrics_budgets_and_alerts_in_constant_statements() {
    let app = TestApp::new().await;
    let owner = app.owner("usage-dash").await;
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    for i in 0..20 {
        let agent = create_agent(&app, &owner, &format!("dash-{i:02}")).await;
        app.ok(
            Some(&owner.token),
            BUDGET,
            json!({ "id": agent, "c": null, "t": 100 }),
        )
        .await;
        report(&app, &runner, &agent, (60, 50), 1_000, 100 + i, i % 2 == 0).await;
        let alert = open_alerts(&app, &owner).await.remove(0);
        app.ok(
            Some(&owner.token),
            ACKNOWLEDGE,
            json!({ "id": alert["id"] }),
        )
        .await;
    }
    let now = Utc::now();
    let dashboard = "query($n: Int!, $from: DateTime!, $to: DateTime!, $later: DateTime!) { \
        agents(first: $n) { edges { node { slug \
        metrics(period: HOUR, from: $from, to: $to) { periodStart runs errors p50LatencyMs p95LatencyMs cost } \
        today: metrics(period: DAY, from: $to, to: $later) { runs } \
        budgetStatus { monthlyTokens exceeded } \
        alerts(first: 3, filter: {open: true}) { edges { node { id severity acknowledgedBy { email } agent { slug } } } } } } } }";
    let mut counts = vec![];
    for n in [5, 20] {
        for _ in 0..2 {
            let before = app.state.statements.load(Ordering::Relaxed);
            let data = app
                .ok(
                    Some(&owner.token),
                    dashboard,
                    json!({ "n": n, "from": now - Duration::hours(2), "to": now, "later": now + Duration::hours(1) }),
                )
                .await;
            counts.push(app.state.statements.load(Ordering::Relaxed) - before);
            let edges = data["agents"]["edges"].as_array().unwrap();
            assert_eq!(edges.len(), n as usize);
            for edge in edges {
                let node = &edge["node"];
                let runs: i64 = node["metrics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["runs"].as_i64().unwrap())
                    .sum();
                assert_eq!(runs, 1, "{node:#}");
                assert_eq!(node["today"][0]["runs"], 1);
                assert_eq!(node["budgetStatus"]["exceeded"], true);
                assert_eq!(node["alerts"]["edges"].as_array().unwrap().len(), 1);
                let alert = &node["alerts"]["edges"][0]["node"];
                assert_eq!(alert["acknowledgedBy"]["email"], owner.email.as_str());
                assert_eq!(alert["agent"]["slug"], node["slug"]);
            }
        }
    }
    eprintln!("agents usage dashboard: SQL statements per request at 5 and 20 agents: {counts:?}");
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "statements per request changed with the page: {counts:?}"
    );
}
