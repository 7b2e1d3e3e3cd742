//! The scheduler fires SCHEDULE triggers. The guarantees: each firing starts exactly
//! one run however many schedulers race for it; firings follow the wall time of the
//! trigger's zone through daylight-saving gaps and repeats; after downtime the
//! catch-up policy (NONE, LATEST, ALL) decides what is made up; a firing while the
//! previous run is open follows the overlap policy (SKIP, ALLOW, CANCEL_PREVIOUS);
//! `next_fire_at` follows the trigger's life; and a pass works in each tenant's
//! transaction under its RLS, never touching another tenant's triggers or workflows.
//! Time is simulated: the tests call `Scheduler::tick_at` with the instant they want.

use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{json, Value};
use trellis_core::engine::scheduler::{Pass, Scheduler, SchedulerConfig};
use trellis_core::scope::stmt;
use trellis_core::AppDb;
use trellis_entity::PrefixedId;
use uuid::Uuid;

use crate::support::{as_app, Member, TestApp};

pub const CREATE_TRIGGER: &str = "mutation($w: ID!, $k: String!, $t: TriggerType!, $c: JSON!) { createTrigger(input: {workflowId: $w, key: $k, type: $t, config: $c}) { trigger { id nextFireAt } userErrors { code field message } } }";

pub fn uuid(id: &str) -> Uuid {
    PrefixedId::parse(id)
        .unwrap_or_else(|| panic!("not an ID: {id}"))
        .uuid
}

/// An active workflow of one TRANSFORM step (or `steps`); its ID.
pub async fn active_workflow(
    app: &TestApp,
    owner: &Member,
    key: &str,
    steps: Option<Value>,
) -> String {
    let created = app
        .ok(
            Some(&owner.token),
            "mutation($k: String!) { createWorkflow(input: {key: $k, name: $k}) { workflow { id versions { id } } } }",
            json!({ "k": key }),
        )
        .await;
    let workflow = created["createWorkflow"]["workflow"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let version = created["createWorkflow"]["workflow"]["versions"][0]["id"].clone();
    let steps = steps.unwrap_or_else(|| {
        json!([{ "key": "echo", "name": "echo", "type": "TRANSFORM", "config": { "mapping": { "ok": true } } }])
    });
    let saved = app
        .ok(
            Some(&owner.token),
            "mutation($v: ID!, $s: [WorkflowStepInput!]!) { saveWorkflowGraph(input: {versionId: $v, steps: $s, transitions: []}) { userErrors { field message } } }",
            json!({ "v": version, "s": steps }),
        )
        .await;
    assert_eq!(
        saved["saveWorkflowGraph"]["userErrors"],
        json!([]),
        "{saved}"
    );
    for mutation in ["publishVersion", "activateVersion"] {
        let done = app
            .ok(
                Some(&owner.token),
                &format!("mutation($id: ID!) {{ {mutation}(input: {{id: $id}}) {{ userErrors {{ message }} }} }}"),
                json!({ "id": version }),
            )
            .await;
        assert_eq!(done[mutation]["userErrors"], json!([]), "{done}");
    }
    workflow
}

/// Creates a trigger that must be accepted; returns its ID.
pub async fn trigger(
    app: &TestApp,
    owner: &Member,
    workflow: &str,
    key: &str,
    kind: &str,
    config: Value,
) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            CREATE_TRIGGER,
            json!({ "w": workflow, "k": key, "t": kind, "c": config }),
        )
        .await;
    assert_eq!(data["createTrigger"]["userErrors"], json!([]), "{data}");
    data["createTrigger"]["trigger"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn scheduler(db: AppDb) -> Scheduler {
    Scheduler::new(db, Default::default(), SchedulerConfig::default())
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

/// Sets a trigger's next firing (as the owner role: tests pick their own clock).
async fn set_next(admin: &DatabaseConnection, trigger: &str, next: DateTime<Utc>) {
    admin
        .execute(stmt(
            "UPDATE triggers SET next_fire_at = $2 WHERE id = $1",
            [uuid(trigger).into(), next.into()],
        ))
        .await
        .unwrap();
}

async fn next_fire_at(admin: &DatabaseConnection, trigger: &str) -> Option<DateTime<Utc>> {
    admin
        .query_one(stmt(
            "SELECT next_fire_at FROM triggers WHERE id = $1",
            [uuid(trigger).into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "next_fire_at")
        .unwrap()
}

/// A trigger's runs, oldest first: (scheduledAt, status, idempotency key).
async fn runs_of(
    admin: &DatabaseConnection,
    trigger: &str,
) -> Vec<(String, String, Option<String>)> {
    admin
        .query_all(stmt(
            "SELECT trigger_payload->>'scheduledAt' AS at, status, idempotency_key, trigger_type \
             FROM workflow_runs WHERE trigger_id = $1 ORDER BY trigger_payload->>'scheduledAt', created_at",
            [uuid(trigger).into()],
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            assert_eq!(row.try_get::<String>("", "trigger_type").unwrap(), "schedule");
            (
                row.try_get("", "at").unwrap(),
                row.try_get("", "status").unwrap(),
                row.try_get("", "idempotency_key").unwrap(),
            )
        })
        .collect()
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn two_schedulers_fire_each_minute_of_an_hour_exactly_once() {
    let app = TestApp::new().await;
    let owner = app.owner("twice").await;
    let wf = active_workflow(&app, &owner, "minutely", None).await;
    let id = trigger(
        &app,
        &owner,
        &wf,
        "every-minute",
        "SCHEDULE",
        json!({ "cron": "* * * * *", "overlap": "ALLOW" }),
    )
    .await;
    let admin = app.db.admin().await;
    let start = at(2030, 1, 1, 0, 0);
    set_next(&admin, &id, start).await;
    // Two schedulers, each with its own pool, as two replicas would have.
    let a = scheduler(AppDb::new(app.db.app_pool(3).await));
    let b = scheduler(AppDb::new(app.db.app_pool(3).await));
    let mut total = Pass::default();
    // Every 15 simulated seconds for an hour, both at once.
    for step in 0..240 {
        let now = start + Duration::seconds(15 * step);
        let (x, y) = tokio::join!(a.tick_at(now), b.tick_at(now));
        for pass in [x.unwrap(), y.unwrap()] {
            total.fired += pass.fired;
            total.lost += pass.lost;
            total.skipped += pass.skipped;
        }
    }
    let runs = runs_of(&admin, &id).await;
    let expected: Vec<String> = (0..60).map(|i| rfc(start + Duration::minutes(i))).collect();
    let fired: Vec<String> = runs.iter().map(|r| r.0.clone()).collect();
    assert_eq!(fired, expected, "one run per minute, none twice");
    assert_eq!(total.fired, 60);
    assert_eq!(total.skipped, 0);
    let keys: std::collections::BTreeSet<_> = runs.iter().map(|r| r.2.clone()).collect();
    assert_eq!(keys.len(), 60);
    assert_eq!(runs[0].2, Some(format!("schedule:{id}:{}", rfc(start))));
    assert_eq!(
        next_fire_at(&admin, &id).await,
        Some(start + Duration::minutes(60))
    );
    // Runs are readable as any run, with their firing in the trigger payload.
    let data = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on Workflow { runs(first: 1) { nodes { triggerType triggerPayload trigger { id } } } } } }",
            json!({ "id": wf }),
        )
        .await;
    let run = &data["node"]["runs"]["nodes"][0];
    assert_eq!(run["triggerType"], "SCHEDULE");
    assert_eq!(run["trigger"]["id"], id, "{data}");
    assert!(run["triggerPayload"]["scheduledAt"].is_string(), "{run}");
    assert!(run["triggerPayload"]["firedAt"].is_string(), "{run}");
}

#[tokio::test]
async fn schedules_fire_once_through_daylight_saving_gaps_and_repeats() {
    let app = TestApp::new().await;
    let owner = app.owner("dst").await;
    let wf = active_workflow(&app, &owner, "nightly", None).await;
    let admin = app.db.admin().await;
    let s = scheduler(app.state.db.clone());
    // 02:30 in Berlin does not exist on 2026-03-29: fired at 03:00 CEST, once.
    let gap = trigger(
        &app,
        &owner,
        &wf,
        "gap",
        "SCHEDULE",
        json!({ "cron": "30 2 * * *", "timezone": "Europe/Berlin", "overlap": "ALLOW" }),
    )
    .await;
    // 01:30 in New York happens twice on 2026-11-01: fired at the first, once.
    let repeat = trigger(
        &app,
        &owner,
        &wf,
        "repeat",
        "SCHEDULE",
        json!({ "cron": "30 1 * * *", "timezone": "America/New_York", "overlap": "ALLOW" }),
    )
    .await;
    set_next(&admin, &gap, at(2026, 3, 28, 1, 30)).await;
    set_next(&admin, &repeat, at(2026, 10, 31, 5, 30)).await;
    let fired = |runs: Vec<(String, String, Option<String>)>| {
        runs.into_iter().map(|r| r.0).collect::<Vec<_>>()
    };
    let mut now = at(2026, 3, 28, 0, 0);
    while now <= at(2026, 3, 30, 12, 0) {
        s.tick_at(now).await.unwrap();
        now += Duration::minutes(10);
    }
    assert_eq!(
        fired(runs_of(&admin, &gap).await),
        vec![
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z"
        ]
    );
    let mut now = at(2026, 10, 31, 0, 0);
    while now <= at(2026, 11, 2, 12, 0) {
        s.tick_at(now).await.unwrap();
        now += Duration::minutes(10);
    }
    assert_eq!(
        fired(runs_of(&admin, &repeat).await),
        vec![
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z"
        ]
    );
}

#[tokio::test]
async fn missed_firings_follow_the_catch_up_policy() {
    let app = TestApp::new().await;
    let owner = app.owner("catchup").await;
    let wf = active_workflow(&app, &owner, "five", None).await;
    let admin = app.db.admin().await;
    let mut ids = vec![];
    for policy in ["NONE", "LATEST", "ALL"] {
        let key = policy.to_lowercase();
        let config = json!({ "cron": "*/5 * * * *", "catchUp": policy, "catchUpWindowSeconds": 1800, "overlap": "ALLOW" });
        ids.push(trigger(&app, &owner, &wf, &key, "SCHEDULE", config).await);
    }
    // The default is LATEST.
    let default = trigger(
        &app,
        &owner,
        &wf,
        "default",
        "SCHEDULE",
        json!({ "cron": "*/5 * * * *", "overlap": "ALLOW" }),
    )
    .await;
    ids.push(default);
    let start = at(2030, 1, 1, 0, 0);
    for id in &ids {
        set_next(&admin, id, start).await;
    }
    let s = scheduler(app.state.db.clone());
    // On time, every policy fires.
    assert_eq!(
        s.tick_at(start + Duration::seconds(1)).await.unwrap().fired,
        4
    );
    // Down for two hours: back at 02:01:30, so even 02:00 is missed (more than a
    // minute late).
    let back = at(2030, 1, 1, 2, 1) + Duration::seconds(30);
    let pass = s.tick_at(back).await.unwrap();
    let after: Vec<Vec<String>> = {
        let mut all = vec![];
        for id in &ids {
            all.push(runs_of(&admin, id).await.into_iter().map(|r| r.0).collect());
        }
        all
    };
    // NONE: nothing made up; next firing 02:05.
    assert_eq!(after[0], vec![rfc(start)]);
    // LATEST: one run, for 02:00.
    assert_eq!(
        after[1],
        vec![rfc(start), "2030-01-01T02:00:00Z".to_owned()]
    );
    // ALL: every firing of the 30-minute window (01:35 to 02:00), each its own run.
    let mut expected = vec![rfc(start)];
    expected.extend((7..=12).map(|i| rfc(at(2030, 1, 1, 1, 0) + Duration::minutes(5 * i))));
    assert_eq!(after[2], expected);
    assert_eq!(after[3], after[1], "LATEST is the default");
    assert_eq!(pass.fired, 1 + 6 + 1);
    assert!(pass.missed > 0);
    for id in &ids {
        assert_eq!(next_fire_at(&admin, id).await, Some(at(2030, 1, 1, 2, 5)));
    }
    // A second pass at the same instant makes nothing more.
    assert_eq!(s.tick_at(back).await.unwrap(), Pass::default());
}

async fn statuses(admin: &DatabaseConnection, trigger: &str) -> Vec<String> {
    runs_of(admin, trigger)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect()
}

#[tokio::test]
async fn a_firing_while_the_previous_run_is_open_follows_the_overlap_policy() {
    let app = TestApp::new().await;
    let owner = app.owner("overlap").await;
    let wf = active_workflow(&app, &owner, "slow", None).await;
    let admin = app.db.admin().await;
    let mut ids = vec![];
    for policy in ["SKIP", "ALLOW", "CANCEL_PREVIOUS"] {
        let key = policy.to_lowercase().replace('_', "-");
        ids.push(
            trigger(
                &app,
                &owner,
                &wf,
                &key,
                "SCHEDULE",
                json!({ "cron": "* * * * *", "overlap": policy }),
            )
            .await,
        );
    }
    // SKIP is the default.
    ids.push(
        trigger(
            &app,
            &owner,
            &wf,
            "default",
            "SCHEDULE",
            json!({ "cron": "* * * * *" }),
        )
        .await,
    );
    let start = at(2030, 1, 1, 0, 0);
    for id in &ids {
        set_next(&admin, id, start).await;
    }
    let s = scheduler(app.state.db.clone());
    assert_eq!(s.tick_at(start).await.unwrap().fired, 4);
    // No executor runs here: the first runs are still PENDING a minute later.
    let pass = s.tick_at(start + Duration::minutes(1)).await.unwrap();
    assert_eq!((pass.fired, pass.skipped), (2, 2));
    assert_eq!(statuses(&admin, &ids[0]).await, vec!["pending"]);
    assert_eq!(statuses(&admin, &ids[1]).await, vec!["pending", "pending"]);
    assert_eq!(
        statuses(&admin, &ids[2]).await,
        vec!["cancelled", "pending"]
    );
    assert_eq!(statuses(&admin, &ids[3]).await, vec!["pending"]);
    // A skipped firing still moves the schedule on.
    assert_eq!(
        next_fire_at(&admin, &ids[0]).await,
        Some(start + Duration::minutes(2))
    );
    // Once the open run ends, SKIP fires again.
    admin
        .execute(stmt(
            "UPDATE workflow_runs SET status = 'cancelled', finished_at = now(), cancelled_at = now() WHERE trigger_id = $1",
            [uuid(&ids[0]).into()],
        ))
        .await
        .unwrap();
    s.tick_at(start + Duration::minutes(2)).await.unwrap();
    assert_eq!(
        statuses(&admin, &ids[0]).await,
        vec!["cancelled", "pending"]
    );
    // Skips are counted for operators.
    let (_, metrics) = app
        .send(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    let metrics = metrics.as_str().unwrap();
    for counter in [
        "trellis_scheduler_fired_total ",
        "trellis_scheduler_skipped_total{reason=\"overlap\"}",
    ] {
        assert!(metrics.contains(counter), "{counter} missing:\n{metrics}");
    }
}

#[tokio::test]
async fn next_fire_at_follows_the_trigger_and_bad_policies_are_refused() {
    let app = TestApp::new().await;
    let owner = app.owner("lifecycle").await;
    let wf = active_workflow(&app, &owner, "daily", None).await;
    let admin = app.db.admin().await;
    let id = trigger(
        &app,
        &owner,
        &wf,
        "daily",
        "SCHEDULE",
        json!({ "cron": "0 9 * * *" }),
    )
    .await;
    // The next 09:00 (or 10:00) UTC after now, whatever the time of day.
    let next_at = |hour: u32, next: DateTime<Utc>| {
        let now = Utc::now();
        assert_eq!(
            (next.hour(), next.minute(), next.second()),
            (hour, 0, 0),
            "{next}"
        );
        assert!(
            next > now - Duration::seconds(5) && next - now <= Duration::days(1),
            "{next}"
        );
    };
    let first = next_fire_at(&admin, &id).await.unwrap();
    next_at(9, first);
    let update = "mutation($id: ID!, $c: JSON, $a: Boolean) { updateTrigger(input: {id: $id, config: $c, isActive: $a}) { trigger { nextFireAt } userErrors { code field } } }";
    app.ok(Some(&owner.token), update, json!({ "id": id, "a": false }))
        .await;
    assert_eq!(next_fire_at(&admin, &id).await, None);
    app.ok(Some(&owner.token), update, json!({ "id": id, "a": true }))
        .await;
    next_at(9, next_fire_at(&admin, &id).await.unwrap());
    let data = app
        .ok(
            Some(&owner.token),
            update,
            json!({ "id": id, "c": { "cron": "0 10 * * *" } }),
        )
        .await;
    let moved = next_fire_at(&admin, &id).await.unwrap();
    next_at(10, moved);
    assert_eq!(
        data["updateTrigger"]["trigger"]["nextFireAt"],
        json!(rfc(moved).replace('Z', "+00:00"))
    );
    // Other types have none.
    let event = trigger(
        &app,
        &owner,
        &wf,
        "on-event",
        "EVENT",
        json!({ "event": "x.y" }),
    )
    .await;
    assert_eq!(next_fire_at(&admin, &event).await, None);
    // A firing moves it on, and the API shows the stored value.
    set_next(&admin, &id, at(2030, 1, 1, 10, 0)).await;
    scheduler(app.state.db.clone())
        .tick_at(at(2030, 1, 1, 10, 0))
        .await
        .unwrap();
    let data = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on Trigger { nextFireAt } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["node"]["nextFireAt"], "2030-01-02T10:00:00+00:00");
    // Bad policies are refused on their field.
    for (config, field) in [
        (
            json!({ "cron": "* * * * *", "catchUp": "SOMETIMES" }),
            "config.catchUp",
        ),
        (
            json!({ "cron": "* * * * *", "overlap": "QUEUE" }),
            "config.overlap",
        ),
        (
            json!({ "cron": "* * * * *", "catchUpWindowSeconds": -5 }),
            "config.catchUpWindowSeconds",
        ),
    ] {
        let data = app
            .ok(
                Some(&owner.token),
                CREATE_TRIGGER,
                json!({ "w": wf, "k": "bad", "t": "SCHEDULE", "c": config }),
            )
            .await;
        let errors = &data["createTrigger"]["userErrors"];
        assert_eq!(errors[0]["code"], "BAD_USER_INPUT", "{data}");
        assert_eq!(errors[0]["field"], field, "{data}");
        let data = app
            .ok(Some(&owner.token), update, json!({ "id": id, "c": config }))
            .await;
        assert_eq!(
            data["updateTrigger"]["userErrors"][0]["field"], field,
            "{data}"
        );
    }
    // A workflow that is not active starts nothing, and the schedule moves on.
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { setWorkflowStatus(input: {id: $id, status: INACTIVE}) { userErrors { message } } }",
        json!({ "id": wf }),
    )
    .await;
    let before = runs_of(&admin, &id).await.len();
    let pass = scheduler(app.state.db.clone())
        .tick_at(at(2030, 1, 2, 10, 0))
        .await
        .unwrap();
    assert_eq!((pass.fired, pass.skipped), (0, 1));
    assert_eq!(runs_of(&admin, &id).await.len(), before);
    assert_eq!(next_fire_at(&admin, &id).await, Some(at(2030, 1, 3, 10, 0)));
}

#[tokio::test]
async fn a_pass_works_in_each_tenants_transaction_under_its_rls() {
    let app = TestApp::new().await;
    let a = app.owner("sched-a").await;
    let b = app.owner("sched-b").await;
    let wf_a = active_workflow(&app, &a, "report", None).await;
    let wf_b = active_workflow(&app, &b, "report", None).await;
    let trg_a = trigger(
        &app,
        &a,
        &wf_a,
        "hourly",
        "SCHEDULE",
        json!({ "cron": "0 * * * *" }),
    )
    .await;
    let trg_b = trigger(
        &app,
        &b,
        &wf_b,
        "hourly",
        "SCHEDULE",
        json!({ "cron": "0 * * * *" }),
    )
    .await;
    let admin = app.db.admin().await;
    let start = at(2030, 1, 1, 0, 0);
    set_next(&admin, &trg_a, start).await;
    set_next(&admin, &trg_b, start).await;
    let pool = app.db.app_pool(2).await;

    // The due look-up gives tenant ids and nothing else.
    let rows = pool
        .query_all(stmt(
            "SELECT * FROM app.tenants_with_due_schedules($1, 10) t",
            [start.into()],
        ))
        .await
        .unwrap();
    let mut tenants: Vec<Uuid> = rows.iter().map(|r| r.try_get("", "t").unwrap()).collect();
    tenants.sort();
    let mut expected = vec![a.tenant_uuid(), b.tenant_uuid()];
    expected.sort();
    assert_eq!(tenants, expected);
    // Without a tenant the application role sees no trigger: the scheduler can only
    // read them in a tenant's transaction.
    let tx = as_app(&pool, None, None).await;
    let row = tx
        .query_one(stmt("SELECT count(*) AS n FROM triggers", []))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0);
    drop(tx);
    // In A's transaction, B's trigger cannot be claimed, nor a run started on B's
    // workflow: the claim matches no row, the insert is refused.
    let tx = as_app(&pool, Some(a.tenant_uuid()), None).await;
    let claimed = tx
        .execute(stmt(
            "UPDATE triggers SET next_fire_at = next_fire_at + interval '1 hour' WHERE id = $1",
            [uuid(&trg_b).into()],
        ))
        .await
        .unwrap();
    assert_eq!(claimed.rows_affected(), 0);
    let visible = tx
        .query_one(stmt(
            "SELECT count(*) AS n FROM triggers WHERE next_fire_at IS NOT NULL",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(visible.try_get::<i64>("", "n").unwrap(), 1);
    drop(tx);

    // B is suspended: its schedule waits, A's fires, each run in its own tenant.
    admin
        .execute(stmt(
            "UPDATE tenants SET status = 'suspended' WHERE id = $1",
            [b.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    let pass = scheduler(app.state.db.clone())
        .tick_at(start)
        .await
        .unwrap();
    assert_eq!(pass.fired, 1);
    assert_eq!(runs_of(&admin, &trg_b).await.len(), 0);
    assert_eq!(next_fire_at(&admin, &trg_b).await, Some(start));
    admin
        .execute(stmt(
            "UPDATE tenants SET status = 'active' WHERE id = $1",
            [b.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    let pass = scheduler(app.state.db.clone())
        .tick_at(start)
        .await
        .unwrap();
    assert_eq!(pass.fired, 1);
    let owners = admin
        .query_all(stmt(
            "SELECT r.tenant_id AS run_tenant, w.tenant_id AS workflow_tenant, t.tenant_id AS trigger_tenant \
             FROM workflow_runs r JOIN workflows w ON w.id = r.workflow_id JOIN triggers t ON t.id = r.trigger_id",
            [],
        ))
        .await
        .unwrap();
    assert_eq!(owners.len(), 2);
    for row in owners {
        let run: Uuid = row.try_get("", "run_tenant").unwrap();
        assert_eq!(run, row.try_get::<Uuid>("", "workflow_tenant").unwrap());
        assert_eq!(run, row.try_get::<Uuid>("", "trigger_tenant").unwrap());
    }
    // Each tenant sees its own run only.
    for (member, wf) in [(&a, &wf_a), (&b, &wf_b)] {
        let data = app
            .ok(
                Some(&member.token),
                "{ runs(first: 10) { nodes { workflow { id } triggerType } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            data["runs"]["nodes"],
            json!([{ "workflow": { "id": wf }, "triggerType": "SCHEDULE" }])
        );
    }
}
