//! Tenant isolation enforced by PostgreSQL itself: raw SQL as the application role,
//! with no application filter, never reads, changes, moves or references another
//! tenant's rows. The threat: any resolver bug (a missing `WHERE tenant_id`) that would
//! otherwise leak one customer's data to another.

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::json;
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::support::{as_app, is_rls_violation, TestApp};

const TENANT_TABLES: [&str; 4] = ["memberships", "invitations", "api_keys", "audit_events"];

async fn count(conn: &impl ConnectionTrait, sql: &str) -> i64 {
    conn.query_one(stmt(sql, []))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

/// Two tenants with members, an invitation and an API key each.
async fn two_tenants(app: &TestApp) -> (crate::support::Member, crate::support::Member) {
    let a = app.owner("tenant-a").await;
    let b = app.owner("tenant-b").await;
    for owner in [&a, &b] {
        app.member(
            owner,
            &format!("viewer@{}.test", &owner.tenant_id[4..]),
            "VIEWER",
        )
        .await;
        app.ok(
            Some(&owner.token),
            "mutation { inviteMember(input: {email: \"pending@x.test\", role: VIEWER}) { token } }",
            json!({}),
        )
        .await;
        app.api_key(owner, "READ").await;
    }
    (a, b)
}

#[tokio::test]
async fn foreign_rows_are_invisible_unchangeable_and_undeletable() {
    let app = TestApp::new().await;
    let (a, b) = two_tenants(&app).await;
    let pool = app.db.app_pool(2).await;
    let tx = as_app(&pool, Some(a.tenant_uuid()), Some(a.user_uuid())).await;
    for table in TENANT_TABLES {
        let own = count(&tx, &format!("SELECT count(*) FROM {table}")).await;
        assert!(own > 0, "{table} should have rows of tenant A");
        // No WHERE clause at all: RLS alone must hide tenant B.
        let foreign = count(
            &tx,
            &format!(
                "SELECT count(*) FROM {table} WHERE tenant_id = '{}'",
                b.tenant_uuid()
            ),
        )
        .await;
        assert_eq!(foreign, 0, "{table} leaked rows of tenant B");
    }
    for table in ["memberships", "invitations", "api_keys"] {
        let updated = tx
            .execute(stmt(
                &format!("UPDATE {table} SET updated_at = now() WHERE tenant_id = $1"),
                [b.tenant_uuid().into()],
            ))
            .await
            .unwrap();
        assert_eq!(updated.rows_affected(), 0, "{table}: updated tenant B rows");
        let deleted = tx
            .execute(stmt(
                &format!("DELETE FROM {table} WHERE tenant_id = $1"),
                [b.tenant_uuid().into()],
            ))
            .await
            .unwrap();
        assert_eq!(deleted.rows_affected(), 0, "{table}: deleted tenant B rows");
    }
    let tenants = count(&tx, "SELECT count(*) FROM tenants").await;
    assert_eq!(tenants, 1, "tenant A's owner sees only tenant A");
    let users = count(
        &tx,
        &format!("SELECT count(*) FROM users WHERE id = '{}'", b.user_uuid()),
    )
    .await;
    assert_eq!(users, 0, "tenant B's owner is not visible from tenant A");
    tx.rollback().await.unwrap();

    // And tenant B still has everything.
    let admin = app.db.admin().await;
    for table in ["memberships", "invitations", "api_keys"] {
        let left = count(
            &admin,
            &format!(
                "SELECT count(*) FROM {table} WHERE tenant_id = '{}'",
                b.tenant_uuid()
            ),
        )
        .await;
        assert!(left > 0, "{table} of tenant B was touched");
    }
}

#[tokio::test]
async fn rows_cannot_be_written_into_or_moved_to_another_tenant() {
    let app = TestApp::new().await;
    let (a, b) = two_tenants(&app).await;
    let pool = app.db.app_pool(1).await;

    // Insert with a foreign tenant_id, which also references B's tenant row as parent.
    let tx = as_app(&pool, Some(a.tenant_uuid()), Some(a.user_uuid())).await;
    let err = tx
        .execute(stmt(
            "INSERT INTO memberships (id, tenant_id, user_id, role) VALUES ($1, $2, $3, 'owner')",
            [
                Uuid::now_v7().into(),
                b.tenant_uuid().into(),
                a.user_uuid().into(),
            ],
        ))
        .await
        .unwrap_err();
    assert!(is_rls_violation(&err), "{err}");
    tx.rollback().await.unwrap();

    let tx = as_app(&pool, Some(a.tenant_uuid()), Some(a.user_uuid())).await;
    let err = tx
        .execute(stmt(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, scopes) VALUES ($1, $2, 'x', 'AAAAAAAAAAAA', $3, '{read}')",
            [Uuid::now_v7().into(), b.tenant_uuid().into(), vec![0u8; 32].into()],
        ))
        .await
        .unwrap_err();
    assert!(is_rls_violation(&err), "{err}");
    tx.rollback().await.unwrap();

    let tx = as_app(&pool, Some(a.tenant_uuid()), Some(a.user_uuid())).await;
    let err = tx
        .execute(stmt(
            "INSERT INTO audit_events (id, tenant_id, actor_type, action) VALUES ($1, $2, 'system', 'forged')",
            [Uuid::now_v7().into(), b.tenant_uuid().into()],
        ))
        .await
        .unwrap_err();
    assert!(is_rls_violation(&err), "{err}");
    tx.rollback().await.unwrap();

    // Moving an own row to tenant B fails the WITH CHECK.
    for table in ["memberships", "invitations", "api_keys"] {
        let tx = as_app(&pool, Some(a.tenant_uuid()), Some(a.user_uuid())).await;
        let err = tx
            .execute(stmt(
                &format!("UPDATE {table} SET tenant_id = $1"),
                [b.tenant_uuid().into()],
            ))
            .await
            .unwrap_err();
        assert!(is_rls_violation(&err), "{table}: {err}");
        tx.rollback().await.unwrap();
    }

    // Renaming tenant B from tenant A touches nothing.
    let tx = as_app(&pool, Some(a.tenant_uuid()), Some(a.user_uuid())).await;
    let renamed = tx
        .execute(stmt(
            "UPDATE tenants SET name = 'pwned' WHERE id = $1",
            [b.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    assert_eq!(renamed.rows_affected(), 0);
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn same_names_in_two_tenants_do_not_reveal_each_other() {
    // Unique constraints include tenant_id: tenant B can take a name A uses, so a
    // CONFLICT can never tell B that A has it.
    let app = TestApp::new().await;
    let (a, b) = two_tenants(&app).await;
    for owner in [&a, &b] {
        let data = app
            .ok(Some(&owner.token), "mutation { createApiKey(input: {name: \"deploy\", scopes: [READ]}) { apiKey { id } userErrors { code } } }", json!({}))
            .await;
        assert!(data["createApiKey"]["userErrors"]
            .as_array()
            .unwrap()
            .is_empty());
        let data = app
            .ok(Some(&owner.token), "mutation { inviteMember(input: {email: \"same@x.test\", role: VIEWER}) { token userErrors { code } } }", json!({}))
            .await;
        assert!(data["inviteMember"]["userErrors"]
            .as_array()
            .unwrap()
            .is_empty());
    }
}

#[tokio::test]
async fn without_a_tenant_nothing_is_visible_or_writable() {
    let app = TestApp::new().await;
    let (a, _b) = two_tenants(&app).await;
    let pool = app.db.app_pool(1).await;
    for (tenant, user) in [
        ("", ""),
        ("not-a-uuid", "garbage"),
        ("'; DROP TABLE tenants; --", ""),
    ] {
        let tx = pool.begin().await.unwrap();
        tx.execute(stmt(
            "SELECT set_config('app.tenant_id', $1, true), set_config('app.user_id', $2, true)",
            [tenant.into(), user.into()],
        ))
        .await
        .unwrap();
        for table in [
            "tenants",
            "users",
            "memberships",
            "invitations",
            "api_keys",
            "audit_events",
            "refresh_tokens",
        ] {
            assert_eq!(
                count(&tx, &format!("SELECT count(*) FROM {table}")).await,
                0,
                "{table} with tenant {tenant:?}"
            );
        }
        let err = tx
            .execute(stmt(
                "INSERT INTO invitations (id, tenant_id, email, role, token_hash, expires_at) VALUES ($1, $2, 'x@y.z', 'viewer', $3, now())",
                [Uuid::now_v7().into(), a.tenant_uuid().into(), vec![1u8; 32].into()],
            ))
            .await
            .unwrap_err();
        assert!(is_rls_violation(&err), "{err}");
        tx.rollback().await.unwrap();
    }
    // A connection that never set anything.
    let rows = count(&pool, "SELECT count(*) FROM memberships").await;
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn a_pooled_connection_never_carries_a_tenant_into_the_next_transaction() {
    let app = TestApp::new().await;
    let (a, b) = two_tenants(&app).await;
    let pool = app.db.app_pool(1).await;
    for i in 0..100 {
        let me = if i % 2 == 0 { &a } else { &b };
        let tx = as_app(&pool, Some(me.tenant_uuid()), Some(me.user_uuid())).await;
        let foreign = count(
            &tx,
            &format!(
                "SELECT count(*) FROM memberships WHERE tenant_id <> '{}'",
                me.tenant_uuid()
            ),
        )
        .await;
        assert_eq!(foreign, 0, "iteration {i}");
        let own = count(&tx, "SELECT count(*) FROM memberships").await;
        assert_eq!(own, 2, "iteration {i}");
        if i % 3 == 0 {
            tx.rollback().await.unwrap()
        } else {
            tx.commit().await.unwrap()
        }
        // Between transactions the same connection sees nothing.
        assert_eq!(
            count(&pool, "SELECT count(*) FROM api_keys").await,
            0,
            "iteration {i}"
        );
    }
}

#[tokio::test]
async fn the_app_role_cannot_escape_rls() {
    let app = TestApp::new().await;
    let pool = app.db.app_pool(1).await;
    for sql in [
        "SET row_security = off; SELECT count(*) FROM tenants",
        "ALTER TABLE tenants DISABLE ROW LEVEL SECURITY",
        "SET ROLE trellis_owner",
        "UPDATE users SET platform_role = 'platform_admin'",
        "SELECT * FROM app.audit_chain_heads",
    ] {
        assert!(
            pool.execute_unprepared(sql).await.is_err(),
            "the app role could run: {sql}"
        );
    }
}

/// The tenant, user and platform-admin helpers every policy calls inline into the
/// statement (one expression evaluated once, not a query planned per evaluation), and
/// still fail closed: a missing, empty or malformed setting is no tenant and no user.
#[tokio::test]
async fn tenant_context_helpers_inline_and_fail_closed() {
    let app = TestApp::new().await;
    let (a, _b) = two_tenants(&app).await;
    let pool = app.db.app_pool(1).await;

    let tx = as_app(&pool, Some(a.tenant_uuid()), Some(a.user_uuid())).await;
    let plan = tx
        .query_all(stmt(
            "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM memberships \
             WHERE app.is_platform_admin() OR user_id = app.current_user_id()",
            [],
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    tx.rollback().await.unwrap();
    for helper in ["current_tenant_id", "current_user_id", "is_platform_admin"] {
        assert!(!plan.contains(helper), "{helper} was not inlined:\n{plan}");
    }
    for setting in ["app.tenant_id", "app.user_id", "app.platform_admin"] {
        assert!(
            plan.contains(setting),
            "{setting} is not read inline:\n{plan}"
        );
    }

    let tx = pool.begin().await.unwrap();
    for (tenant, user, admin) in [
        ("", "", ""),
        ("not-a-uuid", "1; DROP TABLE tenants", "yes"),
        (&*a.tenant_id, &*a.user_id, "true"),
    ] {
        tx.execute(stmt(
            "SELECT set_config('app.tenant_id', $1, true), set_config('app.user_id', $2, true), \
                    set_config('app.platform_admin', $3, true)",
            [tenant.into(), user.into(), admin.into()],
        ))
        .await
        .unwrap();
        let row = tx
            .query_one(stmt(
                "SELECT app.current_tenant_id() IS NULL, app.current_user_id() IS NULL, \
                        app.is_platform_admin()",
                [],
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                row.try_get_by_index::<bool>(0).unwrap(),
                row.try_get_by_index::<bool>(1).unwrap(),
                row.try_get_by_index::<bool>(2).unwrap(),
            ),
            (true, true, false),
            "tenant {tenant:?}, user {user:?}, admin {admin:?}"
        );
        assert_eq!(count(&tx, "SELECT count(*) FROM memberships").await, 0);
    }
    tx.execute(stmt(
        "SELECT set_config('app.tenant_id', $1, true), set_config('app.platform_admin', 'on', true)",
        [a.tenant_uuid().to_string().to_uppercase().into()],
    ))
    .await
    .unwrap();
    let row = tx
        .query_one(stmt(
            "SELECT app.current_tenant_id(), app.is_platform_admin()",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<Uuid>(0).unwrap(), a.tenant_uuid());
    assert!(row.try_get_by_index::<bool>(1).unwrap());
    tx.rollback().await.unwrap();
}
