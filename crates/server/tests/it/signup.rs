//! Sign-up with email confirmation (production's default): the answer does not tell
//! whether an address has an account, the address's owner learns by mail, and an
//! account signs in only once confirmed. Mail goes through lettre to a real SMTP
//! server on loopback (a minimal sink that speaks the protocol and keeps messages).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use serde_json::json;
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::support::{as_app, is_rls_violation, smtp_sink, test_config, Received, TestApp, TestDb};

/// Waits until `count` messages have reached `address`; returns them.
pub(crate) async fn mail_to(
    inbox: &Mutex<Vec<Received>>,
    address: &str,
    count: usize,
) -> Vec<Received> {
    let started = Instant::now();
    loop {
        let got: Vec<Received> = inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to.iter().any(|t| t == address))
            .cloned()
            .collect();
        if got.len() >= count {
            return got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{count} messages to {address} expected, got {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A message's text with quoted-printable soft line breaks undone.
pub(crate) fn text_of(message: &Received) -> String {
    message.data.replace("=\n", "")
}

/// The confirmation token in a message, if it carries one.
fn token_in(message: &Received) -> Option<String> {
    let text = text_of(message);
    let start = text.find("trv_")?;
    Some(
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect(),
    )
}

const SIGN_UP: &str = "mutation($e: String!) { signUp(input: {email: $e, name: \"New User\", password: \"correct horse battery\"}) { session { accessToken } confirmationSent userErrors { field code message } } }";
const LOGIN: &str = "mutation($e: String!) { login(input: {email: $e, password: \"correct horse battery\"}) { session { accessToken } userErrors { code message } } }";
const VERIFY: &str = "mutation($t: String!) { verifyEmail(input: {token: $t}) { session { accessToken user { email } } userErrors { code } } }";

#[tokio::test]
async fn sign_up_answers_the_same_whether_or_not_the_address_has_an_account() {
    let (smtp, inbox) = smtp_sink().await;
    let app = TestApp::with_args(&["--signup-verification", "true", "--smtp-url", &smtp]).await;
    let address = "new-user@x.test";

    // A new address, then the same address again (unconfirmed), then after it is
    // confirmed: the three answers are byte for byte the same.
    let (status, first) = app.post(None, SIGN_UP, json!({ "e": address })).await;
    assert!(status.is_success(), "{first}");
    assert_eq!(
        first["data"]["signUp"],
        json!({ "session": null, "confirmationSent": true, "userErrors": [] })
    );
    let (_, again) = app.post(None, SIGN_UP, json!({ "e": address })).await;
    assert_eq!(again, first);

    // Not confirmed yet: the right password is told why it cannot sign in.
    let (_, body) = app.post(None, LOGIN, json!({ "e": address })).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );

    // Each sign-up mailed a token; the first confirms and signs in, and then neither
    // works again (the resent one is spent with it).
    let mails = mail_to(&inbox, address, 2).await;
    let tokens: Vec<String> = mails.iter().filter_map(token_in).collect();
    assert_eq!(tokens.len(), 2, "{mails:#?}");
    let confirmed = app.ok(None, VERIFY, json!({ "t": tokens[0] })).await;
    assert_eq!(
        confirmed["verifyEmail"]["session"]["user"]["email"],
        address
    );
    for token in &tokens {
        assert_eq!(
            app.error_code(None, VERIFY, json!({ "t": token })).await,
            "UNAUTHENTICATED"
        );
    }
    assert_eq!(
        app.error_code(None, VERIFY, json!({ "t": "trv_made-up" }))
            .await,
        "UNAUTHENTICATED"
    );
    let signed_in = app.ok(None, LOGIN, json!({ "e": address })).await;
    assert!(signed_in["login"]["session"]["accessToken"].is_string());

    // A confirmed address: the same answer, and its owner gets a notice, no token.
    let (_, third) = app.post(None, SIGN_UP, json!({ "e": address })).await;
    assert_eq!(third, first);
    let mails = mail_to(&inbox, address, 3).await;
    let notice = &mails[2];
    assert!(text_of(notice).contains("already has one"), "{notice:#?}");
    assert_eq!(token_in(notice), None);
    // Nothing went anywhere else.
    assert!(inbox
        .lock()
        .unwrap()
        .iter()
        .all(|m| m.to == [address.to_owned()]));
}

#[tokio::test]
async fn without_confirmation_a_taken_address_is_a_conflict_and_sign_up_signs_in() {
    let app = TestApp::new().await;
    let (_, body) = app.post(None, SIGN_UP, json!({ "e": "dev@x.test" })).await;
    assert_eq!(body["data"]["signUp"]["confirmationSent"], false);
    assert!(body["data"]["signUp"]["session"]["accessToken"].is_string());
    let (_, taken) = app.post(None, SIGN_UP, json!({ "e": "dev@x.test" })).await;
    assert_eq!(taken["data"]["signUp"]["userErrors"][0]["code"], "CONFLICT");
}

#[tokio::test]
async fn production_refuses_to_start_when_confirmations_could_not_be_delivered() {
    let db = TestDb::new().await;
    let config = test_config(&db.app_url, &["--env", "production"]);
    let err = trellis_server::app::build_state(
        &config,
        &db.app_url,
        trellis_server::app::jwt_keys(&config).unwrap(),
    )
    .await
    .err()
    .expect("production without TRELLIS_SMTP_URL must not start");
    assert!(format!("{err:#}").contains("TRELLIS_SMTP_URL"), "{err:#}");
    // Turning confirmation off is the operator's explicit choice.
    let config = test_config(
        &db.app_url,
        &["--env", "production", "--signup-verification", "false"],
    );
    trellis_server::app::build_state(
        &config,
        &db.app_url,
        trellis_server::app::jwt_keys(&config).unwrap(),
    )
    .await
    .unwrap();
}

/// How many confirmation rows `tx` sees.
async fn verifications_seen(tx: &sea_orm::DatabaseTransaction) -> i64 {
    tx.query_one(stmt("SELECT count(*) AS n FROM email_verifications", []))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap()
}

/// Confirmation tokens are the user's own: another user (or no user) can neither read,
/// count, write nor redeem-by-guessing them through SQL as the app role.
#[tokio::test]
async fn confirmation_rows_are_the_users_own_under_rls() {
    let (smtp, inbox) = smtp_sink().await;
    let app = TestApp::with_args(&["--signup-verification", "true", "--smtp-url", &smtp]).await;
    app.post(None, SIGN_UP, json!({ "e": "owner@x.test" }))
        .await;
    mail_to(&inbox, "owner@x.test", 1).await;
    let admin = app.db.admin().await;
    let owner: Uuid = admin
        .query_one(stmt(
            "SELECT id FROM users WHERE email = $1",
            ["owner@x.test".into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "id")
        .unwrap();
    let other_id = Uuid::now_v7();
    for user in [Some(other_id), None] {
        let tx = as_app(app.state.db.pool(), None, user).await;
        assert_eq!(verifications_seen(&tx).await, 0, "{user:?}");
        let err = tx
            .execute(stmt(
                "INSERT INTO email_verifications (id, user_id, token_hash, expires_at) VALUES ($1, $2, $3, now() + interval '1 day')",
                [Uuid::now_v7().into(), owner.into(), vec![7u8; 32].into()],
            ))
            .await
            .unwrap_err();
        assert!(is_rls_violation(&err), "{err}");
        tx.rollback().await.unwrap();
    }
    // The owner sees exactly its own row.
    let tx = as_app(app.state.db.pool(), None, Some(owner)).await;
    assert_eq!(verifications_seen(&tx).await, 1);
    tx.rollback().await.unwrap();
}
