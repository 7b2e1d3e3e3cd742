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
