//! Authentication and authorisation: forged, stale or misdirected tokens are refused;
//! refresh-token reuse burns the family; revoked and expired keys and invitations stop
//! working; roles limit what members may do; suspension locks a tenant out.

use std::sync::Arc;

use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{TestApp, JWT_SECRET};

const WHOAMI: &str = "{ viewer { user { email } } }";

fn claims(user: &str, overrides: &Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": Uuid::parse_str(&user[4..]).unwrap(), "iss": "trellis", "aud": "trellis-api",
        "exp": now + 600, "nbf": now - 1, "iat": now, "jti": Uuid::now_v7(),
    });
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn sign(claims: &Value, kid: Option<&str>, alg: jsonwebtoken::Algorithm) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn forged_and_stale_access_tokens_are_unauthenticated() {
    let app = TestApp::new().await;
    let user = app.sign_up("ada@x.test").await;
    let now = chrono::Utc::now().timestamp();
    let good = sign(
        &claims(&user.user_id, &json!({})),
        Some("trellis-1"),
        jsonwebtoken::Algorithm::HS256,
    );
    assert_eq!(
        app.ok(Some(&good), WHOAMI, json!({})).await["viewer"]["user"]["email"],
        "ada@x.test"
    );

    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"trellis-1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(&user.user_id, &json!({})).to_string());
    let mut tampered = good.clone().into_bytes();
    let mid = good.find('.').unwrap() + 5;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let bad = [
        (
            "expired",
            sign(
                &claims(&user.user_id, &json!({ "exp": now - 120 })),
                Some("trellis-1"),
                jsonwebtoken::Algorithm::HS256,
            ),
        ),
        (
            "not yet valid",
            sign(
                &claims(&user.user_id, &json!({ "nbf": now + 300 })),
                Some("trellis-1"),
                jsonwebtoken::Algorithm::HS256,
            ),
        ),
        (
            "wrong issuer",
            sign(
                &claims(&user.user_id, &json!({ "iss": "evil" })),
                Some("trellis-1"),
                jsonwebtoken::Algorithm::HS256,
            ),
        ),
        (
            "wrong audience",
            sign(
                &claims(&user.user_id, &json!({ "aud": "other-api" })),
                Some("trellis-1"),
                jsonwebtoken::Algorithm::HS256,
            ),
        ),
        (
            "no nbf",
            sign(
                &claims(&user.user_id, &json!({ "nbf": null })),
                Some("trellis-1"),
                jsonwebtoken::Algorithm::HS256,
            ),
        ),
        (
            "no aud",
            sign(
                &claims(&user.user_id, &json!({ "aud": null })),
                Some("trellis-1"),
                jsonwebtoken::Algorithm::HS256,
            ),
        ),
        (
            "unknown kid",
            sign(
                &claims(&user.user_id, &json!({})),
                Some("other"),
                jsonwebtoken::Algorithm::HS256,
            ),
        ),
        (
            "no kid",
            sign(
                &claims(&user.user_id, &json!({})),
                None,
                jsonwebtoken::Algorithm::HS256,
            ),
        ),
        (
            "other algorithm",
            sign(
                &claims(&user.user_id, &json!({})),
                Some("trellis-1"),
                jsonwebtoken::Algorithm::HS512,
            ),
        ),
        ("alg none", format!("{none_header}.{payload}.")),
        ("tampered", String::from_utf8(tampered).unwrap()),
        ("garbage", "not-a-token".to_owned()),
    ];
    for (what, token) in bad {
        let (status, body) = app.post(Some(&token), WHOAMI, json!({})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{what}"
        );
    }
}

#[tokio::test]
async fn login_refresh_rotation_and_reuse_detection() {
    let app = TestApp::new().await;
    let user = app.sign_up("grace@x.test").await;
    let login = "mutation($p: String!) { login(input: {email: \"GRACE@x.test\", password: $p}) { session { accessToken refreshToken } } }";
    let (_, body) = app
        .post(None, login, json!({ "p": "wrong password!" }))
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let (_, body) = app.post(None, "mutation { login(input: {email: \"nobody@x.test\", password: \"whatever123\"}) { session { accessToken } } }", json!({})).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let data = app
        .ok(None, login, json!({ "p": "correct horse battery" }))
        .await;
    assert!(data["login"]["session"]["accessToken"].is_string());

    let refresh = "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { session { accessToken refreshToken } } }";
    let first = app
        .ok(None, refresh, json!({ "t": user.refresh_token }))
        .await;
    let second_token = first["refreshSession"]["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = app.ok(None, refresh, json!({ "t": second_token })).await;
    let third_token = second["refreshSession"]["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();

    // The first token was rotated: presenting it again is theft, and burns the family.
    assert_eq!(
        app.error_code(None, refresh, json!({ "t": user.refresh_token }))
            .await,
        "UNAUTHENTICATED"
    );
    assert_eq!(
        app.error_code(None, refresh, json!({ "t": third_token }))
            .await,
        "UNAUTHENTICATED"
    );
    // The login session (another family) still refreshes.
    let other = data["login"]["session"]["refreshToken"].as_str().unwrap();
    app.ok(None, refresh, json!({ "t": other })).await;
    // The reuse was audited even though the request failed.
    let admin = app.db.admin().await;
    let reuse = admin
        .query_one(trellis_core::scope::stmt(
            "SELECT count(*) FROM audit_events WHERE action = 'session.refresh_token_reused'",
            [],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(reuse, 1);

    // Logout ends the family.
    let fresh = app
        .ok(None, login, json!({ "p": "correct horse battery" }))
        .await;
    let s = &fresh["login"]["session"];
    app.ok(
        s["accessToken"].as_str(),
        "mutation($t: String!) { logout(input: {refreshToken: $t}) { ok } }",
        json!({ "t": s["refreshToken"] }),
    )
    .await;
    assert_eq!(
        app.error_code(None, refresh, json!({ "t": s["refreshToken"] }))
            .await,
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn unknown_revoked_and_expired_api_keys_get_the_same_answer() {
    let app = TestApp::new().await;
    let owner = app.owner("keys").await;
    let (key, key_id) = app.api_key(&owner, "READ").await;
    assert_eq!(
        app.ok(Some(&key), "{ tenant { slug } }", json!({})).await["tenant"]["slug"],
        "keys"
    );
    // Read-only keys cannot write.
    assert_eq!(
        app.error_code(
            Some(&key),
            "mutation { updateTenant(input: {name: \"x\"}) { tenant { id } } }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );

    let (expiring, expiring_id) = app.api_key(&owner, "READ").await;
    // Both keys have been verified once, so the server may still hold them as verified
    // when they stop counting: their requests must find out all the same.
    app.ok(Some(&expiring), "{ tenant { slug } }", json!({}))
        .await;
    let admin = app.db.admin().await;
    admin
        .execute(trellis_core::scope::stmt(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1",
            [Uuid::parse_str(&expiring_id[4..]).unwrap().into()],
        ))
        .await
        .unwrap();
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { revokedAt } } }",
        json!({ "id": key_id }),
    )
    .await;

    let mut unknown = key.clone();
    unknown.replace_range(10..12, "zz");
    let mut answers = vec![];
    for k in [
        key.as_str(),
        expiring.as_str(),
        unknown.as_str(),
        "trl_short",
        // Again, once the server has dropped them as verified.
        key.as_str(),
        expiring.as_str(),
    ] {
        answers.push(app.post(Some(k), "{ tenant { slug } }", json!({})).await);
    }
    for answer in &answers {
        assert_eq!(answer, &answers[0]);
    }
    assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn invitations_expire_work_once_and_only_for_their_email() {
    let app = Arc::new(TestApp::new().await);
    let owner = app.owner("invites").await;
    let invite = "mutation($e: String!) { inviteMember(input: {email: $e, role: OPERATOR}) { token invitation { id expiresAt } } }";
    let accept = "mutation($t: String!) { acceptInvitation(input: {token: $t}) { membership { role } userErrors { code field } } }";

    // Expired.
    let data = app
        .ok(Some(&owner.token), invite, json!({ "e": "late@x.test" }))
        .await;
    let token = data["inviteMember"]["token"].as_str().unwrap().to_owned();
    let admin = app.db.admin().await;
    admin.execute_unprepared("UPDATE invitations SET expires_at = now() - interval '1 minute' WHERE email = 'late@x.test'").await.unwrap();
    let late = app.sign_up("late@x.test").await;
    let data = app
        .ok(Some(&late.token), accept, json!({ "t": token }))
        .await;
    assert_eq!(
        data["acceptInvitation"]["userErrors"][0]["code"],
        "CONFLICT"
    );

    // Someone else's email.
    let data = app
        .ok(Some(&owner.token), invite, json!({ "e": "right@x.test" }))
        .await;
    let token = data["inviteMember"]["token"].as_str().unwrap().to_owned();
    let wrong = app.sign_up("wrong@x.test").await;
    assert_eq!(
        app.error_code(Some(&wrong.token), accept, json!({ "t": token }))
            .await,
        "NOT_FOUND"
    );

    // Two concurrent accepts: exactly one wins; a reuse after that is refused.
    let right = app.sign_up("right@x.test").await;
    let attempts: Vec<_> = (0..2)
        .map(|_| {
            let (app, token, user) = (app.clone(), token.clone(), right.token.clone());
            tokio::spawn(async move { app.post(Some(&user), accept, json!({ "t": token })).await })
        })
        .collect();
    let mut successes = 0;
    for attempt in attempts {
        let (_, body) = attempt.await.unwrap();
        if body["data"]["acceptInvitation"]["membership"]["role"] == "OPERATOR" {
            successes += 1;
        } else {
            let code = body["data"]["acceptInvitation"]["userErrors"][0]["code"]
                .as_str()
                .or(body["errors"][0]["extensions"]["code"].as_str());
            assert_eq!(code, Some("CONFLICT"), "{body}");
        }
    }
    assert_eq!(successes, 1);
    let data = app
        .ok(Some(&right.token), accept, json!({ "t": token }))
        .await;
    assert_eq!(
        data["acceptInvitation"]["userErrors"][0]["code"],
        "CONFLICT"
    );
    assert_eq!(
        app.error_code(Some(&right.token), accept, json!({ "t": "tri_made-up" }))
            .await,
        "NOT_FOUND"
    );
}

#[tokio::test]
async fn roles_limit_what_members_may_do() {
    let app = TestApp::new().await;
    let owner = app.owner("roles").await;
    let viewer = app.member(&owner, "viewer@roles.test", "VIEWER").await;
    let operator = app.member(&owner, "operator@roles.test", "OPERATOR").await;
    let admin = app.member(&owner, "admin@roles.test", "ADMIN").await;

    let invite =
        "mutation { inviteMember(input: {email: \"new@roles.test\", role: VIEWER}) { token } }";
    assert_eq!(
        app.error_code(Some(&viewer.token), invite, json!({})).await,
        "FORBIDDEN"
    );
    let key = "mutation { createApiKey(input: {name: \"ops\", scopes: [READ]}) { secret } }";
    assert_eq!(
        app.error_code(Some(&operator.token), key, json!({})).await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(
            Some(&operator.token),
            "{ tenant { apiKeys { totalCount } } }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(
            Some(&admin.token),
            "mutation { deleteTenant(input: {slug: \"roles\"}) { tenant { id } } }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
    // Admins cannot make owners.
    let owner_invite =
        "mutation { inviteMember(input: {email: \"boss@roles.test\", role: OWNER}) { token } }";
    assert_eq!(
        app.error_code(Some(&admin.token), owner_invite, json!({}))
            .await,
        "FORBIDDEN"
    );
    app.ok(Some(&admin.token), invite, json!({})).await;
    // Viewers read.
    assert_eq!(
        app.ok(
            Some(&viewer.token),
            "{ tenant { members { totalCount } } }",
            json!({})
        )
        .await["tenant"]["members"]["totalCount"],
        4
    );

    // The last owner can neither leave nor be demoted.
    let data = app
        .ok(
            Some(&owner.token),
            "{ tenant { members(filter: {roles: [OWNER]}) { edges { node { id } } } } }",
            json!({}),
        )
        .await;
    let owner_membership = data["tenant"]["members"]["edges"][0]["node"]["id"].clone();
    let leave = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { removeMember(input: {id: $id}) { userErrors { code field } } }",
            json!({ "id": owner_membership }),
        )
        .await;
    assert_eq!(leave["removeMember"]["userErrors"][0]["code"], "CONFLICT");
    let demote = app
        .ok(Some(&owner.token), "mutation($id: ID!) { updateMemberRole(input: {id: $id, role: ADMIN}) { userErrors { code field } } }", json!({ "id": owner_membership }))
        .await;
    assert_eq!(
        demote["updateMemberRole"]["userErrors"][0]["code"],
        "CONFLICT"
    );
    assert_eq!(
        app.ok(Some(&owner.token), "{ viewer { role } }", json!({}))
            .await["viewer"]["role"],
        "OWNER"
    );
}

#[tokio::test]
async fn suspended_tenants_are_locked_out_and_only_platform_admins_suspend() {
    let app = TestApp::new().await;
    let owner = app.owner("suspendme").await;
    let (key, _) = app.api_key(&owner, "READ").await;
    let root = app.sign_up("root@platform.test").await;
    let suspend =
        "mutation($id: ID!) { suspendTenant(input: {tenantId: $id}) { tenant { status } } }";
    assert_eq!(
        app.error_code(Some(&root.token), suspend, json!({ "id": owner.tenant_id }))
            .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(Some(&owner.token), "{ tenants { totalCount } }", json!({}))
            .await,
        "FORBIDDEN"
    );

    let admin = app.db.admin().await;
    admin
        .execute_unprepared(
            "UPDATE users SET platform_role = 'platform_admin' WHERE email = 'root@platform.test'",
        )
        .await
        .unwrap();
    let data = app
        .ok(
            Some(&root.token),
            "{ tenants { totalCount edges { node { slug } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["tenants"]["totalCount"], 1);
    let data = app
        .ok(Some(&root.token), suspend, json!({ "id": owner.tenant_id }))
        .await;
    assert_eq!(data["suspendTenant"]["tenant"]["status"], "SUSPENDED");

    assert_eq!(
        app.error_code(
            Some(&owner.token),
            "{ tenant { members { totalCount } } }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(
            Some(&key),
            "{ tenant { members { totalCount } } }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
    let switch = "mutation($t: ID!) { switchTenant(input: {tenantId: $t}) { accessToken } }";
    assert_eq!(
        app.error_code(Some(&owner.token), switch, json!({ "t": owner.tenant_id }))
            .await,
        "FORBIDDEN"
    );

    app.ok(
        Some(&root.token),
        "mutation($id: ID!) { reactivateTenant(input: {tenantId: $id}) { tenant { status } } }",
        json!({ "id": owner.tenant_id }),
    )
    .await;
    app.ok(
        Some(&owner.token),
        "{ tenant { members { totalCount } } }",
        json!({}),
    )
    .await;
    // The suspension is in the tenant's own audit chain.
    let data = app.ok(Some(&owner.token), "{ tenant { auditEvents(filter: {action: \"tenant.\"}) { edges { node { action actor { email } } } } } }", json!({})).await;
    let actions: Vec<&str> = data["tenant"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["tenant.reactivate", "tenant.suspend", "tenant.create"]
    );
}

#[tokio::test]
async fn a_session_acting_in_a_tenant_can_log_out_and_viewers_cannot_fetch_keys_by_id() {
    let app = TestApp::new().await;
    let owner = app.owner("logout").await;
    let viewer = app.member(&owner, "v@logout.test", "VIEWER").await;
    let (_, key_id) = app.api_key(&owner, "READ").await;
    assert_eq!(
        app.error_code(
            Some(&viewer.token),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": key_id })
        )
        .await,
        "FORBIDDEN"
    );
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($t: String!) { logout(input: {refreshToken: $t}) { ok } }",
            json!({ "t": owner.refresh_token }),
        )
        .await;
    assert_eq!(data["logout"]["ok"], true);
    let refresh = "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { session { accessToken } } }";
    assert_eq!(
        app.error_code(None, refresh, json!({ "t": owner.refresh_token }))
            .await,
        "UNAUTHENTICATED"
    );
    // Asking a refresh for a tenant one does not belong to reveals nothing.
    let other = app.owner("elsewhere").await;
    let probe = "mutation($t: String!, $id: ID!) { refreshSession(input: {refreshToken: $t, tenantId: $id}) { session { accessToken } } }";
    assert_eq!(
        app.error_code(
            None,
            probe,
            json!({ "t": viewer.refresh_token, "id": other.tenant_id })
        )
        .await,
        "NOT_FOUND"
    );
}

/// Access tokens carry their session: once it is revoked (logout, or a detected
/// refresh-token reuse) every request with one of its access tokens is UNAUTHENTICATED,
/// in a tenant or not, while the user's other sessions go on.
#[tokio::test]
async fn logout_ends_the_access_tokens_of_its_session() {
    let app = TestApp::new().await;
    let owner = app.owner("logout").await;
    let other = app
        .ok(
            None,
            "mutation { login(input: {email: \"owner@logout.test\", password: \"correct horse battery\"}) { session { accessToken } } }",
            json!({}),
        )
        .await;
    let other_token = other["login"]["session"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // A tenant-less access token of the owner's session, as switchTenant issues them.
    let tenantless = app
        .ok(
            None,
            "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { session { accessToken refreshToken } } }",
            json!({ "t": owner.refresh_token }),
        )
        .await;
    let session = &tenantless["refreshSession"]["session"];
    app.ok(Some(&owner.token), "{ tenant { slug } }", json!({}))
        .await;
    app.ok(
        Some(&owner.token),
        "mutation($t: String!) { logout(input: {refreshToken: $t}) { ok } }",
        json!({ "t": session["refreshToken"] }),
    )
    .await;
    let tenantless_token = session["accessToken"].as_str().unwrap();
    for (token, query) in [
        (owner.token.as_str(), "{ tenant { slug } }"),
        (owner.token.as_str(), "{ viewer { user { email } } }"),
        (tenantless_token, "{ viewer { user { email } } }"),
        (
            tenantless_token,
            "mutation { createTenant(input: {slug: \"after-logout\", name: \"x\"}) { tenant { id } } }",
        ),
    ] {
        assert_eq!(
            app.error_code(Some(token), query, json!({})).await,
            "UNAUTHENTICATED",
            "{query}"
        );
    }
    // The login session is another family: it goes on.
    let data = app
        .ok(
            Some(&other_token),
            "{ viewer { user { email } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["viewer"]["user"]["email"], "owner@logout.test");
}
