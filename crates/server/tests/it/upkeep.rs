//! The maintenance loop's clean-up, in each tenant's or user's own transaction under
//! RLS: expired invitations and idempotency keys per tenant, spent credentials per
//! user, and nothing of anybody else's.

use sea_orm::ConnectionTrait;
use serde_json::json;
use trellis_core::scope::stmt;

use crate::runs::{active_workflow, start};
use crate::support::TestApp;

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.db
        .admin()
        .await
        .query_one(stmt(sql, []))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

#[tokio::test]
async fn expired_invitations_and_idempotency_keys_are_cleaned_tenant_by_tenant() {
    let app = TestApp::new().await;
    let owner = app.owner("upkeep-a").await;
    let other = app.owner("upkeep-b").await;
    let invite = "mutation($e: String!) { inviteMember(input: {email: $e, role: VIEWER}) { invitation { id } } }";
    for (who, email) in [(&owner, "late@x.test"), (&other, "fresh@x.test")] {
        app.ok(Some(&who.token), invite, json!({ "e": email }))
            .await;
    }
    let workflow = active_workflow(&app, &owner, "upkeep").await;
    let first = start(&app, &owner.token, &workflow, json!({}), Some("once")).await;
    let admin = app.db.admin().await;
    admin
        .execute_unprepared(
            "UPDATE invitations SET expires_at = now() - interval '1 hour' WHERE email = 'late@x.test'; \
             UPDATE run_idempotency_keys SET expires_at = now() - interval '1 second'",
        )
        .await
        .unwrap();

    let pass = trellis_core::upkeep::tenant_pass(&app.state.db, 100, 1000)
        .await
        .unwrap();
    assert_eq!(pass.tenants, 1, "only the tenant with work: {pass:?}");
    assert_eq!(
        (pass.invitations_expired, pass.idempotency_keys_deleted),
        (1, 1),
        "{pass:?}"
    );
    let listed = app
        .ok(
            Some(&owner.token),
            "{ tenant { invitations(first: 5) { edges { node { email status } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["tenant"]["invitations"]["edges"][0]["node"],
        json!({ "email": "late@x.test", "status": "EXPIRED" })
    );
    // The other tenant's invitation is untouched.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM invitations WHERE email = 'fresh@x.test' AND status = 'pending'"
        )
        .await,
        1
    );
    // The key is free again: the same key starts a new run.
    let second = start(&app, &owner.token, &workflow, json!({}), Some("once")).await;
    assert_eq!(second["deduplicated"], false, "{second:#}");
    assert_ne!(second["run"]["id"], first["run"]["id"]);

    // Nothing is due until thirty days after it expired: no tenant is visited.
    let idle = trellis_core::upkeep::tenant_pass(&app.state.db, 100, 1000)
        .await
        .unwrap();
    assert_eq!(idle, Default::default());
    // Thirty days after it expired, the invitation is gone.
    admin
        .execute_unprepared(
            "UPDATE invitations SET expires_at = now() - interval '31 days' WHERE email = 'late@x.test'",
        )
        .await
        .unwrap();
    let pass = trellis_core::upkeep::tenant_pass(&app.state.db, 100, 1000)
        .await
        .unwrap();
    assert_eq!(pass.invitations_deleted, 1, "{pass:?}");
    assert_eq!(count(&app, "SELECT count(*) FROM invitations").await, 1);
}

#[tokio::test]
async fn spent_credentials_are_deleted_as_their_user_only() {
    let app = TestApp::new().await;
    let gone = app.sign_up("spent@x.test").await;
    let kept = app.sign_up("live@x.test").await;
    let admin = app.db.admin().await;
    // One user's refresh token expired, and a reset token of theirs was used two days
    // ago; the other user's session is live.
    admin
        .execute(stmt(
            "UPDATE refresh_tokens SET expires_at = now() - interval '1 minute' WHERE user_id = $1",
            [gone.user_uuid().into()],
        ))
        .await
        .unwrap();
    admin
        .execute(stmt(
            "INSERT INTO password_resets (id, user_id, token_hash, expires_at, used_at) \
             VALUES (gen_random_uuid(), $1, $2, now() - interval '2 days', now() - interval '2 days')",
            [gone.user_uuid().into(), vec![3u8; 32].into()],
        ))
        .await
        .unwrap();
    let pass = trellis_core::upkeep::account_pass(&app.state.db, 1000)
        .await
        .unwrap();
    assert_eq!(
        (
            pass.users,
            pass.failed,
            pass.refresh_tokens_deleted,
            pass.account_tokens_deleted
        ),
        (1, 0, 1, 1),
        "{pass:?}"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM password_resets").await, 0);
    let left = admin
        .query_one(stmt(
            "SELECT count(*) FILTER (WHERE user_id = $1), count(*) FILTER (WHERE user_id = $2) FROM refresh_tokens",
            [gone.user_uuid().into(), kept.user_uuid().into()],
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.try_get_by_index::<i64>(0).unwrap(), 0);
    assert_eq!(left.try_get_by_index::<i64>(1).unwrap(), 1);
    let viewer = app
        .ok(
            Some(&kept.token),
            "{ viewer { user { email } } }",
            json!({}),
        )
        .await;
    assert_eq!(viewer["viewer"]["user"]["email"], "live@x.test");
    // Nothing left to do.
    let again = trellis_core::upkeep::account_pass(&app.state.db, 1000)
        .await
        .unwrap();
    assert_eq!(again, Default::default());
}
