//! The RLS doctor passes on the migrated schema and catches a table that lost FORCE
//! ROW LEVEL SECURITY (the owner would then bypass its policies).

use sea_orm::ConnectionTrait;

use crate::support::TestDb;

#[tokio::test]
async fn a_migrated_database_is_healthy() {
    let db = TestDb::new().await;
    let report = trellis_core::doctor::examine(&db.app_pool(1).await)
        .await
        .unwrap();
    assert!(report.is_healthy(), "{report}");
    for table in [
        "tenants",
        "users",
        "memberships",
        "invitations",
        "api_keys",
        "refresh_tokens",
        "audit_events",
        "email_verifications",
        "password_resets",
        "email_changes",
        "step_attempts",
        "approval_decisions",
        "notifications",
        "processes",
        "process_versions",
        "process_deployments",
        "process_promotions",
        "call_logs",
        "response_cache",
        "process_usage_hourly",
        "rate_limits",
        "agents",
        "agent_versions",
        "agent_labels",
        "agent_label_moves",
        "agent_templates",
        "skills",
        "skill_installations",
        "agent_usage",
        "agent_metrics",
        "alerts",
        "plans",
        "agent_channels",
        "agent_activities",
        "container_health",
        "container_health_hourly",
        "alert_rules",
        "run_counts",
    ] {
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.subject == format!("table {table}")
                    && f.check == "has FORCE ROW LEVEL SECURITY"),
            "{table}"
        );
    }
}

#[tokio::test]
async fn a_table_without_force_is_reported() {
    let db = TestDb::new().await;
    db.admin()
        .await
        .execute_unprepared("ALTER TABLE api_keys NO FORCE ROW LEVEL SECURITY")
        .await
        .unwrap();
    let report = trellis_core::doctor::examine(&db.app_pool(1).await)
        .await
        .unwrap();
    let failures: Vec<_> = report
        .failures()
        .map(|f| (f.subject.as_str(), f.check))
        .collect();
    assert_eq!(
        failures,
        [("table api_keys", "has FORCE ROW LEVEL SECURITY")],
        "{report}"
    );
}

#[tokio::test]
async fn unwrapped_helpers_missing_checks_and_unpinned_definers_are_reported() {
    let db = TestDb::new().await;
    db.admin()
        .await
        .execute_unprepared(
            "SET ROLE trellis_owner;
             CREATE TABLE widgets (id uuid PRIMARY KEY, tenant_id uuid NOT NULL, code text UNIQUE);
             ALTER TABLE widgets ENABLE ROW LEVEL SECURITY;
             CREATE POLICY widgets_all ON widgets USING (tenant_id = app.current_tenant_id());
             GRANT SELECT ON widgets TO trellis_app;
             CREATE FUNCTION app.leaky() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';",
        )
        .await
        .unwrap();
    let report = trellis_core::doctor::examine(&db.app_pool(1).await)
        .await
        .unwrap();
    let failed: Vec<_> = report
        .failures()
        .map(|f| format!("{}: {}", f.subject, f.check))
        .collect();
    for expected in [
        "table widgets: has FORCE ROW LEVEL SECURITY",
        "table widgets: write policy has WITH CHECK",
        "table widgets: policy uses (SELECT app.current_…()) helpers",
        "table widgets: has an index leading with tenant_id",
        "table widgets: every unique constraint includes tenant_id",
        "function app.leaky (SECURITY DEFINER): pins search_path",
        "function app.leaky (SECURITY DEFINER): is not executable by PUBLIC",
    ] {
        assert!(
            failed.iter().any(|f| f == expected),
            "missing {expected:?} in {failed:#?}"
        );
    }
}

/// PostgreSQL ORs permissive policies: one careless extra policy (`USING (true)`) would
/// show every tenant's rows. The RESTRICTIVE guard on every table keeps it inside the
/// tenant, and the doctor reports both the careless policy and a missing guard.
#[tokio::test]
async fn a_careless_permissive_policy_cannot_widen_access_and_is_reported() {
    use serde_json::json;
    let app = crate::support::TestApp::new().await;
    let alice = app.owner("guard-a").await;
    let bob = app.owner("guard-b").await;
    for (owner, name) in [(&alice, "Alice's client"), (&bob, "Bob's client")] {
        app.ok(
            Some(&owner.token),
            "mutation($n: String!) { createClient(input: {name: $n}) { client { id } } }",
            json!({ "n": name }),
        )
        .await;
    }
    let admin = app.db.admin().await;
    admin
        .execute_unprepared(
            "CREATE POLICY careless ON clients AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true)",
        )
        .await
        .unwrap();
    let data = app
        .ok(
            Some(&alice.token),
            "{ clients { totalCount edges { node { name } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["clients"]["totalCount"], 1, "{data}");
    assert_eq!(
        data["clients"]["edges"][0]["node"]["name"],
        "Alice's client"
    );
    // Raw SQL as the app role: no foreign row to read, and none to write.
    let pool = app.db.app_pool(1).await;
    let tx = crate::support::as_app(&pool, Some(alice.tenant_uuid()), None).await;
    let foreign = tx
        .query_one(trellis_core::scope::stmt(
            "SELECT count(*) AS n FROM clients WHERE tenant_id = $1",
            [bob.tenant_uuid().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(foreign, 0);
    let written = tx
        .execute(trellis_core::scope::stmt(
            "INSERT INTO clients (id, tenant_id, name) VALUES (gen_random_uuid(), $1, 'smuggled')",
            [bob.tenant_uuid().into()],
        ))
        .await;
    assert!(written.is_err(), "wrote into another tenant");
    drop(tx);

    let report = trellis_core::doctor::examine(&pool).await.unwrap();
    let failures: Vec<_> = report
        .failures()
        .map(|f| (f.subject.as_str(), f.check, f.detail.as_str()))
        .collect();
    assert!(
        failures.contains(&("table clients", "policy is not always true", "careless")),
        "{report}"
    );
    admin
        .execute_unprepared("DROP POLICY careless ON clients; DROP POLICY secrets_guard ON secrets")
        .await
        .unwrap();
    let report = trellis_core::doctor::examine(&pool).await.unwrap();
    let failures: Vec<_> = report
        .failures()
        .map(|f| (f.subject.as_str(), f.check))
        .collect();
    assert_eq!(
        failures,
        [(
            "table secrets",
            "has a RESTRICTIVE guard keyed by tenant or user"
        )],
        "{report}"
    );
}
