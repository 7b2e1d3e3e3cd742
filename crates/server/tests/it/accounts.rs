//! Account self-service: a user's own name, password, address and sessions, and the
//! password reset by mailed token. Mail goes to a real SMTP sink on loopback.

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::signup::{mail_to, text_of};
use crate::support::{as_app, is_rls_violation, smtp_sink, Member, Received, TestApp};

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a much longer new passphrase";

const VIEWER: &str =
    "{ viewer { user { email name authProvider } sessions { id current ip userAgent } } }";
const LOGIN: &str = "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { session { accessToken refreshToken } } }";
const REFRESH: &str = "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { session { accessToken } } }";
const CHANGE_PASSWORD: &str = "mutation($c: String!, $n: String!) { changePassword(input: {currentPassword: $c, newPassword: $n}) { user { email } userErrors { field code } } }";
const REQUEST_RESET: &str = "mutation($e: String!) { requestPasswordReset(input: {email: $e}) { accepted userErrors { field code } } }";
const RESET: &str = "mutation($t: String!, $n: String!) { resetPassword(input: {token: $t, newPassword: $n}) { accepted userErrors { field code } } }";
const REQUEST_CHANGE: &str = "mutation($e: String!, $p: String!) { requestEmailChange(input: {newEmail: $e, password: $p}) { accepted userErrors { field code } } }";
const CONFIRM_CHANGE: &str = "mutation($t: String!) { confirmEmailChange(input: {token: $t}) { user { email } userErrors { field code } } }";
const REVOKE: &str =
    "mutation($id: ID!) { revokeSession(input: {id: $id}) { accepted userErrors { field code } } }";

/// The token with `prefix` in a message, if it carries one.
fn token_in(message: &Received, prefix: &str) -> Option<String> {
    let text = text_of(message);
    let start = text.find(prefix)?;
    Some(
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect(),
    )
}

/// Signs in again as `email`: a second session. Returns (access, refresh) tokens.
async fn login(app: &TestApp, email: &str, password: &str) -> Option<(String, String)> {
    let (_, body) = app
        .post(None, LOGIN, json!({ "e": email, "p": password }))
        .await;
    let session = &body["data"]["login"]["session"];
    Some((
        session["accessToken"].as_str()?.to_owned(),
        session["refreshToken"].as_str()?.to_owned(),
    ))
}

/// Whether an access token still reaches the API.
async fn works(app: &TestApp, token: &str) -> bool {
    let (_, body) = app.post(Some(token), VIEWER, json!({})).await;
    body.get("errors").is_none()
}

fn user_errors(data: &Value, field: &str) -> Value {
    data[field]["userErrors"].clone()
}

#[tokio::test]
async fn a_user_renames_themselves_and_sees_how_they_sign_in() {
    let app = TestApp::new().await;
    let owner = app.owner("profile").await;
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($n: String!) { updateProfile(input: {name: $n}) { user { name authProvider } userErrors { field code } } }",
            json!({ "n": "  Ada Lovelace " }),
        )
        .await;
    assert_eq!(
        data["updateProfile"]["user"],
        json!({ "name": "Ada Lovelace", "authProvider": "PASSWORD" })
    );
    let viewer = app.ok(Some(&owner.token), VIEWER, json!({})).await;
    assert_eq!(viewer["viewer"]["user"]["name"], "Ada Lovelace");
    let bad = app
        .ok(
            Some(&owner.token),
            "mutation { updateProfile(input: {name: \"  \"}) { user { name } userErrors { field code } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        user_errors(&bad, "updateProfile"),
        json!([{ "field": "name", "code": "BAD_USER_INPUT" }])
    );
    // An API key has no account to change, and no sessions.
    let (key, _) = app.api_key(&owner, "ADMIN").await;
    assert_eq!(
        app.error_code(
            Some(&key),
            "mutation { updateProfile(input: {name: \"Key\"}) { user { name } } }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
    let as_key = app.ok(Some(&key), VIEWER, json!({})).await;
    assert_eq!(as_key["viewer"]["sessions"], json!([]));
    // Nothing changed for the refused ones; each change is audited.
    let audit = app
        .db
        .admin()
        .await
        .query_one(stmt(
            "SELECT count(*) AS n FROM audit_events WHERE action = 'user.profile_updated'",
            [],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(audit, 1);
}

#[tokio::test]
async fn changing_the_password_signs_out_every_other_session() {
    let (smtp, inbox) = smtp_sink().await;
    let app = TestApp::with_args(&["--smtp-url", &smtp]).await;
    let user = app.sign_up("pw@x.test").await;
    let (other_access, other_refresh) = login(&app, "pw@x.test", PASSWORD).await.unwrap();
    let sessions = app.ok(Some(&user.token), VIEWER, json!({})).await["viewer"]["sessions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    assert_eq!(
        sessions.iter().filter(|s| s["current"] == true).count(),
        1,
        "{sessions:#?}"
    );

    // A wrong current password changes nothing.
    let wrong = app
        .ok(
            Some(&user.token),
            CHANGE_PASSWORD,
            json!({ "c": "not the password at all", "n": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(
        user_errors(&wrong, "changePassword"),
        json!([{ "field": "currentPassword", "code": "BAD_USER_INPUT" }])
    );
    let short = app
        .ok(
            Some(&user.token),
            CHANGE_PASSWORD,
            json!({ "c": PASSWORD, "n": "short" }),
        )
        .await;
    assert_eq!(
        user_errors(&short, "changePassword"),
        json!([{ "field": "newPassword", "code": "BAD_USER_INPUT" }])
    );
    assert!(works(&app, &other_access).await);

    let changed = app
        .ok(
            Some(&user.token),
            CHANGE_PASSWORD,
            json!({ "c": PASSWORD, "n": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(changed["changePassword"]["user"]["email"], "pw@x.test");
    // This session goes on; the other one ends, its refresh token too.
    assert!(works(&app, &user.token).await);
    assert!(!works(&app, &other_access).await);
    let (_, refreshed) = app.post(None, REFRESH, json!({ "t": other_refresh })).await;
    assert_eq!(
        refreshed["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    assert!(login(&app, "pw@x.test", PASSWORD).await.is_none());
    assert!(login(&app, "pw@x.test", NEW_PASSWORD).await.is_some());
    let notice = mail_to(&inbox, "pw@x.test", 1).await;
    assert!(text_of(&notice[0]).contains("password"), "{notice:#?}");
}

#[tokio::test]
async fn a_password_reset_works_once_and_does_not_tell_who_has_an_account() {
    let (smtp, inbox) = smtp_sink().await;
    let app = TestApp::with_args(&["--smtp-url", &smtp]).await;
    let user = app.sign_up("reset@x.test").await;

    let (_, known) = app
        .post(None, REQUEST_RESET, json!({ "e": "reset@x.test" }))
        .await;
    let (_, unknown) = app
        .post(None, REQUEST_RESET, json!({ "e": "nobody@x.test" }))
        .await;
    assert_eq!(known, unknown);
    assert_eq!(known["data"]["requestPasswordReset"]["accepted"], true);
    let mails = mail_to(&inbox, "reset@x.test", 1).await;
    let token = token_in(&mails[0], "trp_").expect("a reset token");
    assert!(inbox
        .lock()
        .unwrap()
        .iter()
        .all(|m| m.to == ["reset@x.test".to_owned()]));

    // Bad input first: a short password, a made-up token. Neither spends the token.
    let short = app
        .ok(None, RESET, json!({ "t": token, "n": "short" }))
        .await;
    assert_eq!(
        user_errors(&short, "resetPassword"),
        json!([{ "field": "newPassword", "code": "BAD_USER_INPUT" }])
    );
    let made_up = app
        .ok(
            None,
            RESET,
            json!({ "t": "trp_made-up", "n": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(
        user_errors(&made_up, "resetPassword"),
        json!([{ "field": "token", "code": "BAD_USER_INPUT" }])
    );

    let reset = app
        .ok(None, RESET, json!({ "t": token, "n": NEW_PASSWORD }))
        .await;
    assert_eq!(reset["resetPassword"]["accepted"], true);
    // Every session ended; the new password signs in, the old one does not.
    assert!(!works(&app, &user.token).await);
    assert!(login(&app, "reset@x.test", PASSWORD).await.is_none());
    assert!(login(&app, "reset@x.test", NEW_PASSWORD).await.is_some());
    // Once only.
    let again = app
        .ok(None, RESET, json!({ "t": token, "n": PASSWORD }))
        .await;
    assert_eq!(
        user_errors(&again, "resetPassword"),
        json!([{ "field": "token", "code": "BAD_USER_INPUT" }])
    );

    // An expired token does not work either.
    app.post(None, REQUEST_RESET, json!({ "e": "reset@x.test" }))
        .await;
    let mails = mail_to(&inbox, "reset@x.test", 2).await;
    let late = token_in(&mails[1], "trp_").unwrap();
    app.db
        .admin()
        .await
        .execute_unprepared(
            "UPDATE password_resets SET expires_at = now() - interval '1 second' WHERE used_at IS NULL",
        )
        .await
        .unwrap();
    let expired = app
        .ok(None, RESET, json!({ "t": late, "n": PASSWORD }))
        .await;
    assert_eq!(
        user_errors(&expired, "resetPassword"),
        json!([{ "field": "token", "code": "BAD_USER_INPUT" }])
    );
    let audited = app
        .db
        .admin()
        .await
        .query_one(stmt(
            "SELECT count(*) AS n FROM audit_events WHERE action = 'user.password_reset' AND target_id = $1",
            [user.user_uuid().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn an_address_changes_only_once_confirmed_from_the_new_address() {
    let (smtp, inbox) = smtp_sink().await;
    let app = TestApp::with_args(&["--smtp-url", &smtp]).await;
    let user = app.sign_up("old@x.test").await;
    for (vars, field) in [
        (
            json!({ "e": "new@x.test", "p": "not the password" }),
            "password",
        ),
        (json!({ "e": "old@x.test", "p": PASSWORD }), "newEmail"),
        (json!({ "e": "not an address", "p": PASSWORD }), "newEmail"),
    ] {
        let refused = app.ok(Some(&user.token), REQUEST_CHANGE, vars).await;
        assert_eq!(
            user_errors(&refused, "requestEmailChange")[0]["field"],
            field
        );
    }
    let asked = app
        .ok(
            Some(&user.token),
            REQUEST_CHANGE,
            json!({ "e": "new@x.test", "p": PASSWORD }),
        )
        .await;
    assert_eq!(asked["requestEmailChange"]["accepted"], true);
    let to_new = mail_to(&inbox, "new@x.test", 1).await;
    let token = token_in(&to_new[0], "tre_").expect("a confirmation token");
    let to_old = mail_to(&inbox, "old@x.test", 1).await;
    assert_eq!(token_in(&to_old[0], "tre_"), None, "{to_old:#?}");
    // Nothing changed yet.
    let viewer = app.ok(Some(&user.token), VIEWER, json!({})).await;
    assert_eq!(viewer["viewer"]["user"]["email"], "old@x.test");

    let confirmed = app.ok(None, CONFIRM_CHANGE, json!({ "t": token })).await;
    assert_eq!(
        confirmed["confirmEmailChange"]["user"]["email"],
        "new@x.test"
    );
    assert!(login(&app, "new@x.test", PASSWORD).await.is_some());
    assert!(login(&app, "old@x.test", PASSWORD).await.is_none());
    let again = app.ok(None, CONFIRM_CHANGE, json!({ "t": token })).await;
    assert_eq!(
        user_errors(&again, "confirmEmailChange"),
        json!([{ "field": "token", "code": "BAD_USER_INPUT" }])
    );

    // An address another account takes before the confirmation: CONFLICT.
    app.ok(
        Some(&user.token),
        REQUEST_CHANGE,
        json!({ "e": "taken@x.test", "p": PASSWORD }),
    )
    .await;
    let to_taken = mail_to(&inbox, "taken@x.test", 1).await;
    let token = token_in(&to_taken[0], "tre_").unwrap();
    app.sign_up("taken@x.test").await;
    let clash = app.ok(None, CONFIRM_CHANGE, json!({ "t": token })).await;
    assert_eq!(
        user_errors(&clash, "confirmEmailChange"),
        json!([{ "field": "token", "code": "CONFLICT" }])
    );
    let viewer = app.ok(Some(&user.token), VIEWER, json!({})).await;
    assert_eq!(viewer["viewer"]["user"]["email"], "new@x.test");
}

/// Sessions, reset tokens and address changes are their user's own: another user sees,
/// revokes and writes none of them, through GraphQL or SQL as the app role.
#[tokio::test]
async fn sessions_and_account_tokens_are_the_users_own() {
    let (smtp, inbox) = smtp_sink().await;
    let app = TestApp::with_args(&["--smtp-url", &smtp]).await;
    let alice = app.sign_up("alice@x.test").await;
    let bob: Member = app.sign_up("bob@x.test").await;
    app.ok(
        Some(&alice.token),
        REQUEST_CHANGE,
        json!({ "e": "alice2@x.test", "p": PASSWORD }),
    )
    .await;
    app.post(None, REQUEST_RESET, json!({ "e": "alice@x.test" }))
        .await;
    mail_to(&inbox, "alice2@x.test", 1).await;

    let alices = app.ok(Some(&alice.token), VIEWER, json!({})).await["viewer"]["sessions"].clone();
    let alice_session = alices[0]["id"].as_str().unwrap().to_owned();
    let bobs = app.ok(Some(&bob.token), VIEWER, json!({})).await["viewer"]["sessions"].clone();
    assert_eq!(bobs.as_array().unwrap().len(), 1);
    assert_ne!(bobs[0]["id"], alices[0]["id"]);
    // Bob cannot end Alice's session: it is as unknown as a made-up one.
    for id in [
        alice_session.clone(),
        format!("ses_{}", Uuid::now_v7().simple()),
    ] {
        let (_, body) = app
            .post(Some(&bob.token), REVOKE, json!({ "id": id }))
            .await;
        let code = body["data"]["revokeSession"]["userErrors"][0]["code"]
            .as_str()
            .or(body["errors"][0]["extensions"]["code"].as_str())
            .map(str::to_owned);
        assert_eq!(code.as_deref(), Some("NOT_FOUND"), "{body}");
    }
    assert!(works(&app, &alice.token).await);

    // SQL as the app role, as Bob: none of Alice's rows, and no writing them.
    let pool = app.state.db.pool();
    let tx = as_app(pool, None, Some(bob.user_uuid())).await;
    for table in ["refresh_tokens", "password_resets", "email_changes"] {
        let n: i64 = tx
            .query_one(stmt(
                &format!("SELECT count(*) AS n FROM {table} WHERE user_id = $1"),
                [alice.user_uuid().into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get("", "n")
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let err = tx
        .execute(stmt(
            "INSERT INTO email_changes (id, user_id, new_email, token_hash, expires_at) \
             VALUES ($1, $2, 'evil@x.test', $3, now() + interval '1 day')",
            [
                Uuid::now_v7().into(),
                alice.user_uuid().into(),
                vec![9u8; 32].into(),
            ],
        ))
        .await
        .unwrap_err();
    assert!(is_rls_violation(&err), "{err}");
    drop(tx);
    let tx = as_app(pool, None, Some(bob.user_uuid())).await;
    let revoked = tx
        .execute(stmt(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1",
            [alice.user_uuid().into()],
        ))
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(revoked, 0);
    // Nobody inserts reset tokens directly: only the definer function makes them.
    let err = tx
        .execute(stmt(
            "INSERT INTO password_resets (id, user_id, token_hash, expires_at) \
             VALUES ($1, $2, $3, now() + interval '1 hour')",
            [
                Uuid::now_v7().into(),
                bob.user_uuid().into(),
                vec![8u8; 32].into(),
            ],
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    drop(tx);

    // Alice ends her own session: its access token stops working at once.
    let done = app
        .ok(Some(&alice.token), REVOKE, json!({ "id": alice_session }))
        .await;
    assert_eq!(done["revokeSession"]["accepted"], true);
    assert!(!works(&app, &alice.token).await);
    assert!(works(&app, &bob.token).await);
}
