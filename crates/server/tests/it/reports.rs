//! Reports: `Workflow.stats` and the `runStats` series against figures computed by
//! hand from known timings; the rollup job (closed periods only, once their runs have
//! finished, idempotent, batched) and the proof that stats read closed periods from
//! its rows while the open period comes from raw runs; input limits; and that neither
//! stats nor rollups ever cross tenants.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Duration, Utc};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use trellis_core::runs::reports::{self, write_reports, Period, ReportJob, ReportPass};
use trellis_core::scope::stmt;
use trellis_core::{AppDb, Principal, RequestMeta, RequestScope};
use uuid::Uuid;

use crate::isolation_workflows::{made_up, uuid};
use crate::runs::{active_workflow, claim, end_run};
use crate::support::{Member, TestApp};

const START: &str = "mutation($w: ID!, $sim: Boolean) { startRun(input: {workflowId: $w, simulation: $sim}) { run { id } userErrors { code message } } }";
const CANCEL: &str =
    "mutation($id: ID!) { cancelRun(input: {id: $id}) { run { status } userErrors { code } } }";
const STATS: &str = "query($id: ID!, $p: ReportPeriod!, $from: DateTime!, $to: DateTime!) { node(id: $id) { ... on Workflow { stats(period: $p, from: $from, to: $to) { periodStart total succeeded failed cancelled averageDurationMs p95DurationMs } } } }";
const RUN_STATS: &str = "query($p: ReportPeriod!, $from: DateTime!, $to: DateTime!, $w: ID) { runStats(period: $p, from: $from, to: $to, workflow: $w) { periodStart pending running succeeded failed cancelled } }";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
    /// Cancelled after a runner claimed it: it has a duration.
    CancelledRunning,
    /// Cancelled before anyone claimed it: no duration.
    CancelledPending,
    Pending,
    Running,
}

impl Outcome {
    fn claimed(self) -> bool {
        !matches!(self, Outcome::CancelledPending | Outcome::Pending)
    }
    fn status(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::CancelledRunning | Outcome::CancelledPending => "cancelled",
            Outcome::Pending => "pending",
            Outcome::Running => "running",
        }
    }
}

/// One run to make: which workflow (0 or 1), when it was created, how it ended and
/// how long it ran.
#[derive(Clone, Debug)]
struct Planned {
    workflow: usize,
    created: DateTime<Utc>,
    outcome: Outcome,
    duration_ms: i64,
    simulation: bool,
}

fn planned(workflow: usize, created: DateTime<Utc>, outcome: Outcome, duration_ms: i64) -> Planned {
    Planned {
        workflow,
        created,
        outcome,
        duration_ms,
        simulation: false,
    }
}

/// The runs every test starts from. Workflow 0: the week of Monday 2025-03-03 has
/// runs lasting 1 s to 20 s (10 on Monday, 10 on Wednesday; 4 failed, 2 cancelled
/// while running, and a simulation that reports leave out); Wednesday 2025-03-12 has
/// runs of 30, 60 and 90 s and one cancelled while pending; 2025-04-02 has a 5 s run
/// and one still pending (so April cannot be rolled up); today has a 2 s run and one
/// still running. Workflow 1: one failed 4 s run on 2025-03-03.
fn plan(now: DateTime<Utc>) -> Vec<Planned> {
    let mut plan = Vec::new();
    for i in 1..=20i64 {
        let day = if i <= 10 {
            at("2025-03-03T08:00:00Z")
        } else {
            at("2025-03-05T08:00:00Z")
        };
        let outcome = match i {
            3 | 7 | 15 | 19 => Outcome::Failed,
            5 | 12 => Outcome::CancelledRunning,
            _ => Outcome::Succeeded,
        };
        plan.push(planned(0, day + Duration::minutes(i), outcome, i * 1000));
    }
    plan.push(Planned {
        simulation: true,
        ..planned(0, at("2025-03-03T12:00:00Z"), Outcome::Succeeded, 1_000_000)
    });
    for (k, seconds) in [30, 60, 90].into_iter().enumerate() {
        plan.push(planned(
            0,
            at("2025-03-12T10:00:00Z") + Duration::minutes(k as i64),
            Outcome::Succeeded,
            seconds * 1000,
        ));
    }
    plan.push(planned(
        0,
        at("2025-03-12T11:00:00Z"),
        Outcome::CancelledPending,
        0,
    ));
    plan.push(planned(
        0,
        at("2025-04-02T09:00:00Z"),
        Outcome::Succeeded,
        5000,
    ));
    plan.push(planned(0, at("2025-04-02T10:00:00Z"), Outcome::Pending, 0));
    plan.push(planned(0, now, Outcome::Succeeded, 2000));
    plan.push(planned(0, now, Outcome::Running, 0));
    plan.push(planned(
        1,
        at("2025-03-03T09:00:00Z"),
        Outcome::Failed,
        4000,
    ));
    plan
}

/// A tenant whose runs follow [`plan`].
struct Seeded {
    owner: Member,
    workflows: [String; 2],
    plan: Vec<Planned>,
    runs: Vec<String>,
}

async fn start_run(app: &TestApp, owner: &Member, workflow: &str, simulation: bool) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            START,
            json!({ "w": workflow, "sim": simulation }),
        )
        .await;
    assert_eq!(data["startRun"]["userErrors"], json!([]), "{data:#}");
    data["startRun"]["run"]["id"].as_str().unwrap().to_owned()
}

async fn cancel(app: &TestApp, owner: &Member, run: &str) {
    let data = app
        .ok(Some(&owner.token), CANCEL, json!({ "id": run }))
        .await;
    assert_eq!(data["cancelRun"]["run"]["status"], "CANCELLED", "{data:#}");
}

/// Makes the planned runs through the API (start, claim, complete, fail, cancel), then
/// gives them their planned timings with admin SQL.
async fn seed(app: &TestApp, slug: &str, now: DateTime<Utc>) -> Seeded {
    let owner = app.owner(slug).await;
    let workflows = [
        active_workflow(app, &owner, "orders").await,
        active_workflow(app, &owner, "invoices").await,
    ];
    let (runner, _) = app.api_key(&owner, "RUNNER").await;
    let plan = plan(now);
    let mut runs = vec![String::new(); plan.len()];
    // Runs a runner claims are started first: a claim takes the oldest pending runs.
    for (i, p) in plan.iter().enumerate().filter(|(_, p)| p.outcome.claimed()) {
        runs[i] = start_run(app, &owner, &workflows[p.workflow], p.simulation).await;
    }
    let claimed = plan.iter().filter(|p| p.outcome.claimed()).count();
    let leases = claim(app, &runner, claimed as i64).await;
    assert_eq!(leases.len(), claimed);
    let tokens: HashMap<String, String> = leases
        .iter()
        .map(|l| {
            (
                l["run"]["id"].as_str().unwrap().to_owned(),
                l["token"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (i, p) in plan.iter().enumerate() {
        let run = &runs[i];
        match p.outcome {
            Outcome::Succeeded | Outcome::Failed => {
                let op = if p.outcome == Outcome::Succeeded {
                    "completeRun"
                } else {
                    "failRun"
                };
                let ended = end_run(app, &runner, op, run, &tokens[run], json!({ "i": i })).await;
                assert_eq!(ended["userErrors"], json!([]), "{ended:#}");
            }
            Outcome::CancelledRunning => cancel(app, &owner, run).await,
            _ => {}
        }
    }
    for (i, p) in plan
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.outcome.claimed())
    {
        runs[i] = start_run(app, &owner, &workflows[p.workflow], p.simulation).await;
        if p.outcome == Outcome::CancelledPending {
            cancel(app, &owner, &runs[i]).await;
        }
    }
    let admin = app.db.admin().await;
    for (p, run) in plan.iter().zip(&runs) {
        let started = p.created + Duration::seconds(1);
        let (started, finished) = match p.outcome {
            Outcome::Pending => (None, None),
            Outcome::Running => (Some(started), None),
            Outcome::CancelledPending => (None, Some(started)),
            _ => (
                Some(started),
                Some(started + Duration::milliseconds(p.duration_ms)),
            ),
        };
        let row = admin
            .query_one(stmt(
                "UPDATE workflow_runs SET created_at = $2, started_at = $3, finished_at = $4 \
                 WHERE id = $1 RETURNING status",
                [
                    uuid(run).into(),
                    p.created.into(),
                    started.into(),
                    finished.into(),
                ],
            ))
            .await
            .unwrap()
            .unwrap();
        let status: String = row.try_get("", "status").unwrap();
        assert_eq!(status, p.outcome.status(), "run {run}");
    }
    admin.close().await.unwrap();
    Seeded {
        owner,
        workflows,
        plan,
        runs,
    }
}

/// `percentile_cont(p)` over sorted values.
fn percentile_cont(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let position = p * last as f64;
    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo as f64))
}

/// A workflow bucket computed by hand from the plan.
#[derive(Debug)]
struct Expected {
    total: i64,
    succeeded: i64,
    failed: i64,
    cancelled: i64,
    average: Option<f64>,
    p95: Option<f64>,
}

fn expected(
    plan: &[Planned],
    workflow: usize,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Expected {
    let runs: Vec<&Planned> = plan
        .iter()
        .filter(|p| p.workflow == workflow && !p.simulation)
        .filter(|p| p.created >= start && p.created < end)
        .collect();
    let count = |status: &str| runs.iter().filter(|p| p.outcome.status() == status).count() as i64;
    let mut durations: Vec<f64> = runs
        .iter()
        .filter(|p| {
            matches!(
                p.outcome,
                Outcome::Succeeded | Outcome::Failed | Outcome::CancelledRunning
            )
        })
        .map(|p| p.duration_ms as f64)
        .collect();
    durations.sort_by(f64::total_cmp);
    Expected {
        total: runs.len() as i64,
        succeeded: count("succeeded"),
        failed: count("failed"),
        cancelled: count("cancelled"),
        average: (!durations.is_empty())
            .then(|| durations.iter().sum::<f64>() / durations.len() as f64),
        p95: percentile_cont(&durations, 0.95),
    }
}

fn close(actual: &Value, expected: Option<f64>, what: &str) {
    match expected {
        None => assert!(actual.is_null(), "{what}: expected null, got {actual}"),
        Some(e) => {
            let a = actual
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: expected {e}, got {actual}"));
            assert!((a - e).abs() < 1e-6, "{what}: expected {e}, got {a}");
        }
    }
}

fn check_bucket(actual: &Value, want: &Expected, what: &str) {
    for (field, value) in [
        ("total", want.total),
        ("succeeded", want.succeeded),
        ("failed", want.failed),
        ("cancelled", want.cancelled),
    ] {
        assert_eq!(actual[field], value, "{what} {field}: {actual:#}");
    }
    close(
        &actual["averageDurationMs"],
        want.average,
        &format!("{what} average"),
    );
    close(&actual["p95DurationMs"], want.p95, &format!("{what} p95"));
}

fn period_start(bucket: &Value) -> DateTime<Utc> {
    at(bucket["periodStart"].as_str().unwrap())
}

async fn stats(
    app: &TestApp,
    token: &str,
    workflow: &str,
    period: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Value> {
    let data = app
        .ok(
            Some(token),
            STATS,
            json!({ "id": workflow, "p": period, "from": from, "to": to }),
        )
        .await;
    data["node"]["stats"].as_array().unwrap().clone()
}

async fn run_stats(
    app: &TestApp,
    token: &str,
    period: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    workflow: Option<&str>,
) -> Vec<Value> {
    let data = app
        .ok(
            Some(token),
            RUN_STATS,
            json!({ "p": period, "from": from, "to": to, "w": workflow }),
        )
        .await;
    data["runStats"].as_array().unwrap().clone()
}

/// Checks a stats answer bucket by bucket against the plan, and that the buckets are
/// exactly the periods `starts`.
fn check_stats(seeded: &Seeded, workflow: usize, period: Period, got: &[Value], starts: &[&str]) {
    let got_starts: Vec<DateTime<Utc>> = got.iter().map(period_start).collect();
    let want_starts: Vec<DateTime<Utc>> = starts.iter().map(|s| at(s)).collect();
    assert_eq!(got_starts, want_starts, "{period:?} buckets");
    for bucket in got {
        let start = period_start(bucket);
        let end = period.next(start).unwrap();
        let want = expected(&seeded.plan, workflow, start, end);
        check_bucket(bucket, &want, &format!("{period:?} {start}"));
    }
}

/// Every rollup row of a tenant, as the owner sees them.
async fn rollups(app: &TestApp, tenant: Uuid) -> Value {
    let admin = app.db.admin().await;
    let row = admin
        .query_one(stmt(
            "SELECT coalesce(jsonb_agg(to_jsonb(w) ORDER BY w.workflow_id, w.period, w.period_start), '[]') AS rows \
             FROM workflow_reports w WHERE tenant_id = $1",
            [tenant.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    admin.close().await.unwrap();
    row.try_get("", "rows").unwrap()
}

fn job(tenant: Option<Uuid>, batch: u64, recompute: bool) -> ReportJob {
    ReportJob {
        tenant_id: tenant,
        since: None,
        batch,
        recompute,
    }
}

#[tokio::test]
async fn stats_match_figures_computed_by_hand() {
    let app = TestApp::new().await;
    let now = Utc::now();
    let seeded = seed(&app, "reports-figures", now).await;
    let (token, w) = (seeded.owner.token.as_str(), seeded.workflows[0].as_str());

    // Days, from the middle of 2025-03-03: empty days are present with zeros.
    let days = stats(
        &app,
        token,
        w,
        "DAY",
        at("2025-03-03T12:00:00Z"),
        at("2025-03-13T00:00:00Z"),
    )
    .await;
    let starts: Vec<String> = (3..=12)
        .map(|d| format!("2025-03-{d:02}T00:00:00Z"))
        .collect();
    check_stats(
        &seeded,
        0,
        Period::Day,
        &days,
        &starts.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(days[1]["total"], 0);
    assert!(days[1]["averageDurationMs"].is_null() && days[1]["p95DurationMs"].is_null());
    // Monday: 1 s to 10 s, the simulation left out. p95 = 9 + 0.55 s.
    assert_eq!(days[0]["total"], 10);
    close(
        &days[0]["averageDurationMs"],
        Some(5500.0),
        "Monday average",
    );
    close(&days[0]["p95DurationMs"], Some(9550.0), "Monday p95");

    // Weeks: 1 s to 20 s gives an average of 10.5 s and a p95 of 19.05 s.
    let weeks = stats(
        &app,
        token,
        w,
        "WEEK",
        at("2025-03-03T00:00:00Z"),
        at("2025-03-17T00:00:00Z"),
    )
    .await;
    check_stats(
        &seeded,
        0,
        Period::Week,
        &weeks,
        &["2025-03-03T00:00:00Z", "2025-03-10T00:00:00Z"],
    );
    assert_eq!(
        (
            &weeks[0]["total"],
            &weeks[0]["succeeded"],
            &weeks[0]["failed"],
            &weeks[0]["cancelled"]
        ),
        (&json!(20), &json!(14), &json!(4), &json!(2))
    );
    close(
        &weeks[0]["averageDurationMs"],
        Some(10_500.0),
        "week average",
    );
    close(&weeks[0]["p95DurationMs"], Some(19_050.0), "week p95");
    // 30, 60 and 90 s, and a run cancelled before it started (counted, no duration).
    assert_eq!(
        (&weeks[1]["total"], &weeks[1]["cancelled"]),
        (&json!(4), &json!(1))
    );
    close(
        &weeks[1]["averageDurationMs"],
        Some(60_000.0),
        "second week average",
    );
    close(
        &weeks[1]["p95DurationMs"],
        Some(87_000.0),
        "second week p95",
    );

    // Months: March has everything above; April a 5 s run and a pending one.
    let months = stats(
        &app,
        token,
        w,
        "MONTH",
        at("2025-03-15T00:00:00Z"),
        at("2025-05-01T00:00:00Z"),
    )
    .await;
    check_stats(
        &seeded,
        0,
        Period::Month,
        &months,
        &["2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z"],
    );
    assert_eq!(
        (&months[0]["total"], &months[1]["total"]),
        (&json!(24), &json!(2))
    );

    // The open period: today's finished 2 s run and the one still running.
    let today = Period::Day.start_of(now);
    let open = stats(&app, token, w, "DAY", now, now + Duration::seconds(1)).await;
    assert_eq!(open.len(), 1);
    assert_eq!(period_start(&open[0]), today);
    assert_eq!(
        (&open[0]["total"], &open[0]["succeeded"]),
        (&json!(2), &json!(1))
    );
    close(&open[0]["p95DurationMs"], Some(2000.0), "today p95");

    // The other workflow has its own figures.
    let other = stats(
        &app,
        token,
        &seeded.workflows[1],
        "WEEK",
        at("2025-03-03T00:00:00Z"),
        at("2025-03-10T00:00:00Z"),
    )
    .await;
    check_stats(&seeded, 1, Period::Week, &other, &["2025-03-03T00:00:00Z"]);
    assert_eq!(
        (&other[0]["total"], &other[0]["failed"]),
        (&json!(1), &json!(1))
    );

    // The dashboard series: the whole tenant by status, or one workflow.
    let series = run_stats(
        &app,
        token,
        "DAY",
        at("2025-03-03T00:00:00Z"),
        at("2025-03-06T00:00:00Z"),
        None,
    )
    .await;
    assert_eq!(
        series,
        [
            json!({ "periodStart": "2025-03-03T00:00:00+00:00", "pending": 0, "running": 0, "succeeded": 7, "failed": 3, "cancelled": 1 }),
            json!({ "periodStart": "2025-03-04T00:00:00+00:00", "pending": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0 }),
            json!({ "periodStart": "2025-03-05T00:00:00+00:00", "pending": 0, "running": 0, "succeeded": 7, "failed": 2, "cancelled": 1 }),
        ]
    );
    let only = run_stats(
        &app,
        token,
        "DAY",
        at("2025-03-03T00:00:00Z"),
        at("2025-03-04T00:00:00Z"),
        Some(&seeded.workflows[1]),
    )
    .await;
    assert_eq!(
        (&only[0]["failed"], &only[0]["succeeded"]),
        (&json!(1), &json!(0))
    );
    let months = run_stats(
        &app,
        token,
        "MONTH",
        at("2025-03-01T00:00:00Z"),
        at("2025-05-01T00:00:00Z"),
        None,
    )
    .await;
    assert_eq!(
        (
            &months[0]["succeeded"],
            &months[0]["failed"],
            &months[0]["cancelled"]
        ),
        (&json!(17), &json!(5), &json!(3))
    );
    assert_eq!(
        (&months[1]["pending"], &months[1]["succeeded"]),
        (&json!(1), &json!(1))
    );
    let open = run_stats(&app, token, "WEEK", now, now + Duration::seconds(1), None).await;
    assert_eq!(period_start(&open[0]), Period::Week.start_of(now));
    assert_eq!(
        (&open[0]["running"], &open[0]["succeeded"]),
        (&json!(1), &json!(1))
    );
}

#[tokio::test]
async fn closed_periods_come_from_rollups_and_the_open_one_from_raw_runs() {
    let app = TestApp::new().await;
    let now = Utc::now();
    let seeded = seed(&app, "reports-rollups", now).await;
    let tenant = seeded.owner.tenant_uuid();
    let (token, w) = (seeded.owner.token.as_str(), seeded.workflows[0].as_str());
    let before = stats(
        &app,
        token,
        w,
        "WEEK",
        at("2025-03-03T00:00:00Z"),
        at("2025-03-17T00:00:00Z"),
    )
    .await;

    // Only periods that ended by `now` are written: on 2025-03-06 that is two days of
    // workflow 0 and one of workflow 1, and no week or month. Two rows a statement.
    let pass = write_reports(
        &app.state.db,
        at("2025-03-06T00:00:00Z"),
        &job(None, 2, false),
    )
    .await
    .unwrap();
    assert_eq!(
        pass,
        ReportPass {
            written: 3,
            batches: 2,
            failed: 0
        }
    );
    // Today: the rest of the closed periods, except those of April (a run is still
    // pending) and the open day, week and month.
    let pass = write_reports(&app.state.db, Utc::now(), &job(None, 2, false))
        .await
        .unwrap();
    assert_eq!(
        pass,
        ReportPass {
            written: 6,
            batches: 4,
            failed: 0
        }
    );
    let written = rollups(&app, tenant).await;
    let keys: Vec<(String, String)> = written
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["period"].as_str().unwrap().to_owned(),
                at(r["period_start"].as_str().unwrap())
                    .format("%F")
                    .to_string(),
            )
        })
        .collect();
    let mut want: Vec<(String, String)> = [
        ("day", "2025-03-03"),
        ("day", "2025-03-05"),
        ("day", "2025-03-12"),
        ("week", "2025-03-03"),
        ("week", "2025-03-10"),
        ("month", "2025-03-01"),
        ("day", "2025-03-03"),
        ("week", "2025-03-03"),
        ("month", "2025-03-01"),
    ]
    .iter()
    .map(|(p, d)| ((*p).to_owned(), (*d).to_owned()))
    .collect();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    want.sort();
    assert_eq!(keys_sorted, want);
    let week = written
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["workflow_id"] == json!(uuid(w))
                && r["period"] == "week"
                && at(r["period_start"].as_str().unwrap()) == at("2025-03-03T00:00:00Z")
        })
        .unwrap();
    assert_eq!(
        (
            &week["total"],
            &week["succeeded"],
            &week["failed"],
            &week["cancelled"]
        ),
        (&json!(20), &json!(14), &json!(4), &json!(2))
    );
    close(&week["avg_duration_ms"], Some(10_500.0), "rollup average");
    close(&week["p95_duration_ms"], Some(19_050.0), "rollup p95");
    // Stats read the same figures either way.
    assert_eq!(
        stats(
            &app,
            token,
            w,
            "WEEK",
            at("2025-03-03T00:00:00Z"),
            at("2025-03-17T00:00:00Z")
        )
        .await,
        before
    );

    // A second run changes nothing.
    let again = write_reports(&app.state.db, Utc::now(), &job(None, 2, false))
        .await
        .unwrap();
    assert_eq!(again.written, 0);
    assert_eq!(rollups(&app, tenant).await, written);

    // Proof that closed periods come from the rollup: tamper with one.
    let admin = app.db.admin().await;
    admin
        .execute(stmt(
            "UPDATE workflow_reports SET total = 999, p95_duration_ms = 1 \
             WHERE workflow_id = $1 AND period = 'week' AND period_start = '2025-03-03T00:00:00Z'",
            [uuid(w).into()],
        ))
        .await
        .unwrap();
    // And that the open period never does: a (bogus) rollup of the current week.
    let open_week = Period::Week.start_of(now);
    admin
        .execute(stmt(
            "INSERT INTO workflow_reports (tenant_id, workflow_id, period, period_start, total) \
             VALUES ($1, $2, 'week', $3, 777)",
            [tenant.into(), uuid(w).into(), open_week.into()],
        ))
        .await
        .unwrap();
    let tampered = stats(
        &app,
        token,
        w,
        "WEEK",
        at("2025-03-03T00:00:00Z"),
        at("2025-03-17T00:00:00Z"),
    )
    .await;
    assert_eq!(tampered[0]["total"], 999, "{tampered:#?}");
    close(&tampered[0]["p95DurationMs"], Some(1.0), "tampered p95");
    assert_eq!(tampered[1], before[1]);
    let open = stats(&app, token, w, "WEEK", now, now + Duration::seconds(1)).await;
    assert_eq!(period_start(&open[0]), open_week);
    assert_eq!(
        (&open[0]["total"], &open[0]["succeeded"]),
        (&json!(2), &json!(1))
    );

    // A closed period without a rollup (April: a run is pending) is computed from raw
    // runs, so it moves as its runs do; once they have all finished the job rolls it up.
    let april = |s: &[Value]| (s[0]["total"].clone(), s[0]["cancelled"].clone());
    let month = stats(
        &app,
        token,
        w,
        "MONTH",
        at("2025-04-01T00:00:00Z"),
        at("2025-05-01T00:00:00Z"),
    )
    .await;
    assert_eq!(april(&month), (json!(2), json!(0)));
    let pending = seeded
        .plan
        .iter()
        .position(|p| p.outcome == Outcome::Pending)
        .unwrap();
    cancel(&app, &seeded.owner, &seeded.runs[pending]).await;
    let month = stats(
        &app,
        token,
        w,
        "MONTH",
        at("2025-04-01T00:00:00Z"),
        at("2025-05-01T00:00:00Z"),
    )
    .await;
    assert_eq!(april(&month), (json!(2), json!(1)));
    let pass = write_reports(&app.state.db, Utc::now(), &job(Some(tenant), 100, false))
        .await
        .unwrap();
    assert_eq!(
        pass,
        ReportPass {
            written: 3,
            batches: 3,
            failed: 0
        },
        "April's day, week and month"
    );
    assert_eq!(
        stats(
            &app,
            token,
            w,
            "MONTH",
            at("2025-04-01T00:00:00Z"),
            at("2025-05-01T00:00:00Z")
        )
        .await,
        month
    );

    // Recomputing rewrites every closed rollup from raw runs, repairing the tampered
    // one; the open week's row is not the job's and stays ignored.
    let pass = write_reports(&app.state.db, Utc::now(), &job(None, 500, true))
        .await
        .unwrap();
    assert_eq!(pass.written, 12);
    assert_eq!(
        stats(
            &app,
            token,
            w,
            "WEEK",
            at("2025-03-03T00:00:00Z"),
            at("2025-03-17T00:00:00Z")
        )
        .await,
        before
    );
    admin.close().await.unwrap();
}

#[tokio::test]
async fn report_ranges_are_validated() {
    let app = TestApp::new().await;
    let owner = app.owner("reports-limits").await;
    let workflow = active_workflow(&app, &owner, "limits").await;
    let from = at("2024-01-01T00:00:00Z");
    let cases = [
        ("DAY", from, from, "to"),
        ("DAY", from, from - Duration::days(1), "to"),
        ("DAY", from, from + Duration::days(401), "from"),
        ("WEEK", from, from + Duration::weeks(401), "from"),
        (
            "MONTH",
            at("1990-01-01T00:00:00Z"),
            at("2030-01-01T00:00:00Z"),
            "from",
        ),
    ];
    for (period, from, to, field) in cases {
        for (query, variables) in [
            (
                STATS,
                json!({ "id": workflow, "p": period, "from": from, "to": to }),
            ),
            (RUN_STATS, json!({ "p": period, "from": from, "to": to })),
        ] {
            let (_, body) = app.post(Some(&owner.token), query, variables).await;
            let error = &body["errors"][0]["extensions"];
            assert_eq!(
                error["code"], "BAD_USER_INPUT",
                "{period} {from}..{to}: {body:#}"
            );
            assert_eq!(error["field"], field, "{period} {from}..{to}: {body:#}");
        }
    }
    // 400 buckets is the limit, inclusive.
    let most = stats(
        &app,
        &owner.token,
        &workflow,
        "DAY",
        from,
        from + Duration::days(400),
    )
    .await;
    assert_eq!(most.len(), 400);
    assert!(most.iter().all(|b| b["total"] == 0));
    let most = run_stats(
        &app,
        &owner.token,
        "MONTH",
        from,
        at("2057-05-01T00:00:00Z"),
        None,
    )
    .await;
    assert_eq!(most.len(), 400);
    // A viewer may read reports.
    let viewer = app
        .member(&owner, "viewer@reports-limits.test", "VIEWER")
        .await;
    assert_eq!(
        stats(
            &app,
            &viewer.token,
            &workflow,
            "DAY",
            from,
            from + Duration::days(1)
        )
        .await
        .len(),
        1
    );
}

#[tokio::test]
async fn stats_and_rollups_never_cross_tenants() {
    let app = TestApp::new().await;
    let now = Utc::now();
    let a = seed(&app, "reports-alpha", now).await;
    let b = seed(&app, "reports-bravo", now).await;
    let (ta, tb) = (a.owner.tenant_uuid(), b.owner.tenant_uuid());

    // A job for one tenant writes only that tenant's rollups.
    let pass = write_reports(&app.state.db, Utc::now(), &job(Some(ta), 100, false))
        .await
        .unwrap();
    assert_eq!(pass.written, 9);
    assert_eq!(rollups(&app, tb).await, json!([]));
    let pass = write_reports(&app.state.db, Utc::now(), &job(None, 100, false))
        .await
        .unwrap();
    assert_eq!(pass.written, 9, "tenant B's own rollups");
    // Tenant B's rollups would stand out if they leaked into A's stats.
    let admin = app.db.admin().await;
    admin
        .execute(stmt(
            "UPDATE workflow_reports SET total = total + 1000 WHERE tenant_id = $1",
            [tb.into()],
        ))
        .await
        .unwrap();
    admin.close().await.unwrap();

    let token = a.owner.token.as_str();
    let weeks = stats(
        &app,
        token,
        &a.workflows[0],
        "WEEK",
        at("2025-03-03T00:00:00Z"),
        at("2025-03-17T00:00:00Z"),
    )
    .await;
    check_stats(
        &a,
        0,
        Period::Week,
        &weeks,
        &["2025-03-03T00:00:00Z", "2025-03-10T00:00:00Z"],
    );
    // Tenant A's series counts its own runs once: B made the same ones.
    let series = run_stats(
        &app,
        token,
        "MONTH",
        at("2025-03-01T00:00:00Z"),
        at("2025-04-01T00:00:00Z"),
        None,
    )
    .await;
    assert_eq!(
        (
            &series[0]["succeeded"],
            &series[0]["failed"],
            &series[0]["cancelled"]
        ),
        (&json!(17), &json!(5), &json!(3))
    );
    let open = run_stats(&app, token, "DAY", now, now + Duration::seconds(1), None).await;
    assert_eq!(
        (&open[0]["running"], &open[0]["succeeded"]),
        (&json!(1), &json!(1))
    );

    // Tenant B's workflow is not found, like a made-up one; as a filter it has no runs.
    for id in [b.workflows[0].clone(), made_up(&b.workflows[0])] {
        let (_, body) = app
            .post(
                Some(token),
                STATS,
                json!({ "id": id, "p": "WEEK", "from": at("2025-03-03T00:00:00Z"), "to": at("2025-03-10T00:00:00Z") }),
            )
            .await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{body:#}"
        );
        assert_eq!(body["data"], Value::Null);
    }
    let range = (at("2025-03-01T00:00:00Z"), at("2025-05-01T00:00:00Z"));
    let foreign = run_stats(
        &app,
        token,
        "MONTH",
        range.0,
        range.1,
        Some(&b.workflows[0]),
    )
    .await;
    let missing = run_stats(
        &app,
        token,
        "MONTH",
        range.0,
        range.1,
        Some(&made_up(&b.workflows[0])),
    )
    .await;
    assert_eq!(foreign, missing);
    assert!(foreign.iter().all(
        |s| ["pending", "running", "succeeded", "failed", "cancelled"]
            .iter()
            .all(|k| s[*k] == 0)
    ));
    let own = run_stats(
        &app,
        &b.owner.token,
        "MONTH",
        range.0,
        range.1,
        Some(&b.workflows[0]),
    )
    .await;
    assert_eq!(own[0]["succeeded"], 17, "tenant B does see its runs");

    // Below the API: tenant A's scope asking for B's workflow by its uuid gets empty
    // buckets, though B has runs and rollups there.
    let scope = RequestScope::new(
        AppDb::new(app.db.app_pool(1).await),
        Principal::User {
            user_id: a.owner.user_uuid(),
            tenant_id: Some(ta),
            session_id: None,
        },
        RequestMeta::default(),
    );
    let foreign = uuid(&b.workflows[0]);
    let stats = reports::workflows_stats(&scope, &[foreign], Period::Month, range.0, range.1)
        .await
        .unwrap();
    let buckets = &stats[&foreign];
    assert_eq!(buckets.len(), 2);
    assert!(buckets
        .iter()
        .all(|x| x.total == 0 && x.p95_duration_ms.is_none()));
    let series = reports::run_stats(
        &scope,
        Some(uuid(&b.workflows[0])),
        Period::Month,
        range.0,
        range.1,
    )
    .await
    .unwrap();
    assert!(series.iter().all(|x| x.succeeded == 0 && x.pending == 0));
}

#[tokio::test]
async fn a_page_of_workflows_reads_its_stats_in_constant_statements() {
    let app = TestApp::new().await;
    let seeded = seed(&app, "reports-page", Utc::now()).await;
    let token = seeded.owner.token.as_str();
    const FIGURES: &str =
        "periodStart total succeeded failed cancelled averageDurationMs p95DurationMs";
    let page = format!(
        "query($n: Int!, $from: DateTime!, $to: DateTime!) {{ workflows(first: $n) {{ edges {{ node {{ id \
           weeks: stats(period: WEEK, from: $from, to: $to) {{ {FIGURES} }} \
           months: stats(period: MONTH, from: $from, to: $to) {{ {FIGURES} }} }} }} }} }}"
    );
    let (from, to) = (at("2025-03-03T00:00:00Z"), at("2025-05-01T00:00:00Z"));
    // Before the rollup job and after it: every workflow of the page reads what it
    // reads alone, which is what was seeded, and the page costs the same at any size.
    for rolled_up in [false, true] {
        if rolled_up {
            write_reports(&app.state.db, Utc::now(), &job(None, 100, false))
                .await
                .unwrap();
        }
        let mut counts = vec![];
        for n in [1, 2] {
            let before = app.state.statements.load(Ordering::Relaxed);
            let data = app
                .ok(
                    Some(token),
                    &page,
                    json!({ "n": n, "from": from, "to": to }),
                )
                .await;
            counts.push(app.state.statements.load(Ordering::Relaxed) - before);
            let edges = data["workflows"]["edges"].as_array().unwrap();
            assert_eq!(edges.len(), n);
            for edge in edges {
                let id = edge["node"]["id"].as_str().unwrap();
                let index = seeded.workflows.iter().position(|w| w == id).unwrap();
                for (alias, period, name) in [
                    ("weeks", Period::Week, "WEEK"),
                    ("months", Period::Month, "MONTH"),
                ] {
                    let got = edge["node"][alias].as_array().unwrap();
                    assert_eq!(*got, stats(&app, token, id, name, from, to).await);
                    let mut starts = vec![];
                    let mut start = period.start_of(from);
                    while start < to {
                        starts.push(start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                        start = period.next(start).unwrap();
                    }
                    let starts: Vec<&str> = starts.iter().map(String::as_str).collect();
                    check_stats(&seeded, index, period, got, &starts);
                }
            }
        }
        assert_eq!(
            counts[0], counts[1],
            "statements per page changed (rolled up: {rolled_up})"
        );
    }
}

/// A job with a window finds the tenants with runs in the earliest period it covers:
/// a week that began before `since` is rolled up although its tenant's only run is
/// older than `since`.
#[tokio::test]
async fn a_windowed_job_covers_the_whole_first_period_of_its_window() {
    let app = TestApp::new().await;
    let owner = app.owner("reports-window").await;
    let workflow = active_workflow(&app, &owner, "window").await;
    let run = start_run(&app, &owner, &workflow, false).await;
    cancel(&app, &owner, &run).await;
    app.db
        .admin()
        .await
        .execute(stmt(
            "UPDATE workflow_runs SET created_at = '2025-03-03T08:00:00Z' WHERE id = $1",
            [uuid(&run).into()],
        ))
        .await
        .unwrap();
    // On 2025-03-20 with a window from Wednesday 2025-03-05: the week of Monday
    // 2025-03-03 is closed and in the window; March is still open; 2025-03-03 as a
    // day is before the window.
    let job = ReportJob {
        since: Some(at("2025-03-05T00:00:00Z")),
        ..job(None, 100, false)
    };
    let pass = write_reports(&app.state.db, at("2025-03-20T00:00:00Z"), &job)
        .await
        .unwrap();
    assert_eq!((pass.written, pass.failed), (1, 0), "{pass:?}");
    let written = rollups(&app, owner.tenant_uuid()).await;
    assert_eq!(written[0]["period"], "week", "{written}");
    assert_eq!(
        at(written[0]["period_start"].as_str().unwrap()),
        at("2025-03-03T00:00:00Z")
    );
    assert_eq!(written[0]["cancelled"], 1);
}
