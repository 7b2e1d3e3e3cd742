//! The indexes the seeds name serve the list filters they exist for: each test fills a
//! table with enough rows that the filtered rows are a small share of the tenant's,
//! analyzes it, and EXPLAINs the statement the list runs (`WHERE tenant_id = … AND
//! <filter> ORDER BY created_at DESC, id DESC LIMIT 21`) as the application role under
//! row-level security, with sequential scans off as in the brief for such checks.

use sea_orm::{ConnectionTrait, DatabaseConnection};
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::support::{as_app, Member, TestApp};

/// The plan of `sql` (with its tenant as `$1` and `more` after it) as the application
/// role in `member`'s tenant.
async fn plan(app: &TestApp, member: &Member, sql: &str, more: Vec<sea_orm::Value>) -> String {
    let admin = app.db.admin().await;
    for table in ["workflows", "workflow_runs", "triggers", "connections"] {
        admin
            .execute_unprepared(&format!("ANALYZE {table}"))
            .await
            .unwrap();
    }
    let pool = app.db.app_pool(1).await;
    let tx = as_app(&pool, Some(member.tenant_uuid()), Some(member.user_uuid())).await;
    tx.execute_unprepared("SET LOCAL enable_seqscan = off")
        .await
        .unwrap();
    let mut values: Vec<sea_orm::Value> = vec![member.tenant_uuid().into()];
    values.extend(more);
    let rows = tx
        .query_all(stmt(&format!("EXPLAIN {sql}"), values))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs an admin statement with the tenant as `$1`.
async fn fill(admin: &DatabaseConnection, sql: &str, tenant: Uuid) {
    admin.execute(stmt(sql, [tenant.into()])).await.unwrap();
}

/// A workflow (and its first version) created through the API; their uuids.
async fn workflow(app: &TestApp, owner: &Member) -> (Uuid, Uuid) {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation { createWorkflow(input: {key: \"indexed\", name: \"Indexed\"}) { workflow { id versions { id } } } }",
            serde_json::json!({}),
        )
        .await;
    let w = &data["createWorkflow"]["workflow"];
    let uuid = |id: &serde_json::Value| {
        Uuid::parse_str(id.as_str().unwrap().rsplit('_').next().unwrap()).unwrap()
    };
    (uuid(&w["id"]), uuid(&w["versions"][0]["id"]))
}

#[tokio::test]
async fn runs_filtered_by_status_use_the_tenant_status_index() {
    let app = TestApp::new().await;
    let owner = app.owner("idx-runs").await;
    let (workflow, version) = workflow(&app, &owner).await;
    let admin = app.db.admin().await;
    fill(
        &admin,
        &format!(
            "INSERT INTO workflow_runs (id, tenant_id, workflow_id, version_id, trigger_type, status, created_at)
             SELECT gen_random_uuid(), $1, '{workflow}', '{version}', 'manual',
                    CASE WHEN i % 200 = 0 THEN 'failed' ELSE 'succeeded' END,
                    now() - make_interval(secs => i)
             FROM generate_series(1, 4000) i"
        ),
        owner.tenant_uuid(),
    )
    .await;
    let plan = plan(
        &app,
        &owner,
        "SELECT id, status FROM workflow_runs WHERE tenant_id = $1 AND status IN ('failed')
         ORDER BY created_at DESC, id DESC LIMIT 21",
        vec![],
    )
    .await;
    assert!(plan.contains("workflow_runs_tenant_status_idx"), "{plan}");
}

#[tokio::test]
async fn runs_filtered_by_start_time_use_the_tenant_started_index() {
    let app = TestApp::new().await;
    let owner = app.owner("idx-started").await;
    let (workflow, version) = workflow(&app, &owner).await;
    let admin = app.db.admin().await;
    // A run a minute for days, some not started yet; the last ten minutes' are few.
    fill(
        &admin,
        &format!(
            "INSERT INTO workflow_runs (id, tenant_id, workflow_id, version_id, trigger_type, status,
                                        created_at, started_at)
             SELECT gen_random_uuid(), $1, '{workflow}', '{version}', 'manual', 'succeeded',
                    now() - make_interval(mins => i),
                    CASE WHEN i % 50 = 0 THEN NULL ELSE now() - make_interval(mins => i) END
             FROM generate_series(1, 4000) i"
        ),
        owner.tenant_uuid(),
    )
    .await;
    let plan = plan(
        &app,
        &owner,
        "SELECT id, status FROM workflow_runs WHERE tenant_id = $1 AND started_at >= $2
         ORDER BY created_at DESC, id DESC LIMIT 21",
        vec![(chrono::Utc::now() - chrono::Duration::minutes(10)).into()],
    )
    .await;
    assert!(plan.contains("workflow_runs_tenant_started_idx"), "{plan}");

    // The filter itself, through the API: the last ten and a half minutes' ten runs;
    // the oldest ten minutes' runs but the one that never started.
    let at =
        |mins: i64| (chrono::Utc::now() - chrono::Duration::seconds(mins * 60 + 30)).to_rfc3339();
    let data = app
        .ok(
            Some(&owner.token),
            "query($after: DateTime!, $before: DateTime!) { recent: runs(filter: {startedAfter: $after}) { totalCount } old: runs(filter: {startedBefore: $before}) { totalCount } }",
            serde_json::json!({ "after": at(10), "before": at(3990) }),
        )
        .await;
    assert_eq!(data["recent"]["totalCount"], 10, "{data}");
    assert_eq!(data["old"]["totalCount"], 9, "{data}");
}

#[tokio::test]
async fn workflows_filtered_by_status_use_the_tenant_status_index() {
    let app = TestApp::new().await;
    let owner = app.owner("idx-workflows").await;
    let admin = app.db.admin().await;
    fill(
        &admin,
        "INSERT INTO workflows (id, tenant_id, key, name, status)
         SELECT gen_random_uuid(), $1, 'w' || i, 'W' || i,
                CASE WHEN i % 200 = 0 THEN 'archived' ELSE 'draft' END
         FROM generate_series(1, 4000) i",
        owner.tenant_uuid(),
    )
    .await;
    let plan = plan(
        &app,
        &owner,
        "SELECT id, key FROM workflows WHERE tenant_id = $1 AND deleted_at IS NULL
         AND status IN ('archived') ORDER BY created_at DESC, id DESC LIMIT 21",
        vec![],
    )
    .await;
    assert!(plan.contains("workflows_tenant_status_idx"), "{plan}");
}

#[tokio::test]
async fn triggers_filtered_by_type_and_activity_use_the_tenant_type_index() {
    let app = TestApp::new().await;
    let owner = app.owner("idx-triggers").await;
    let (workflow, _) = workflow(&app, &owner).await;
    let admin = app.db.admin().await;
    fill(
        &admin,
        &format!(
            "INSERT INTO triggers (id, tenant_id, key, workflow_id, type, is_active)
             SELECT gen_random_uuid(), $1, 't' || i, '{workflow}',
                    CASE WHEN i % 200 = 0 THEN 'event' ELSE 'manual' END, i % 400 <> 0
             FROM generate_series(1, 4000) i"
        ),
        owner.tenant_uuid(),
    )
    .await;
    let plan = plan(
        &app,
        &owner,
        "SELECT id, key FROM triggers WHERE tenant_id = $1 AND type = 'event' AND is_active = true
         ORDER BY created_at DESC, id DESC LIMIT 21",
        vec![],
    )
    .await;
    assert!(plan.contains("triggers_tenant_type_idx"), "{plan}");
}

#[tokio::test]
async fn connections_filtered_by_app_and_activity_use_the_tenant_app_index() {
    let app = TestApp::new().await;
    let owner = app.owner("idx-connections").await;
    let other = app.owner("idx-connections-other").await;
    let admin = app.db.admin().await;
    // Few active connections; the tenant's are mostly http ones, and another tenant
    // has many of slack: the tenant alone (`connections_tenant_created_idx`) or the
    // app alone (the older `connections_app_idx`, across tenants) narrows far less
    // than tenant, app and activity together.
    let version_of = |key: &str| {
        format!(
            "(SELECT v.id FROM app_versions v JOIN apps a ON a.id = v.app_id
              WHERE a.key = '{key}' AND a.tenant_id IS NULL AND v.published_at IS NOT NULL
              ORDER BY v.published_at DESC LIMIT 1)"
        )
    };
    for (tenant, key, count, active) in [
        (&owner, "http", 500, "false"),
        (&owner, "slack", 200, "false"),
        (&owner, "slack", 10, "true"),
        (&other, "slack", 3000, "false"),
    ] {
        fill(
            &admin,
            &format!(
                "INSERT INTO connections (id, tenant_id, app_id, app_version_id, name, is_active)
                 SELECT gen_random_uuid(), $1, v.app_id, v.id, '{key}-{active}-' || i, {active}
                 FROM generate_series(1, {count}) i,
                      (SELECT id, app_id FROM app_versions WHERE id = {}) v",
                version_of(key)
            ),
            tenant.tenant_uuid(),
        )
        .await;
    }
    let slack: Uuid = admin
        .query_one(stmt(
            "SELECT id FROM apps WHERE key = 'slack' AND tenant_id IS NULL",
            [],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    let plan = plan(
        &app,
        &owner,
        "SELECT id, name FROM connections WHERE tenant_id = $1 AND deleted_at IS NULL
         AND app_id = $2 AND is_active = $3 ORDER BY created_at DESC, id DESC LIMIT 21",
        vec![slack.into(), true.into()],
    )
    .await;
    assert!(plan.contains("connections_tenant_app_idx"), "{plan}");
}
