//! Triggers: what starts a workflow's runs. The guarantees: a schedule fires at the
//! wall-clock time of its own time zone whatever daylight saving does, and bad cron
//! expressions, zones and event names are refused on their field; keys are unique per
//! tenant only; only builders create triggers; a webhook's signing secret is shown
//! once, kept sealed as a Secret, and rotating it keeps the old one valid for the grace
//! window and not a moment longer (so a leaked old secret stops working, and senders
//! can switch without losing deliveries); a webhook path finds its tenant before any
//! tenant is known; deleting a trigger leaves no secret behind.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use sea_orm::{ConnectionTrait, EntityTrait};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use trellis_core::crypto::MasterKeyring;
use trellis_core::integrations::secrets::Vault;
use trellis_core::scope::stmt;
use trellis_core::workflows::triggers::{self, SignatureError};
use trellis_core::{Principal, RequestScope};
use trellis_entity::{trigger, PrefixedId};
use uuid::Uuid;

use crate::support::{Member, TestApp, TEST_MASTER_KEYS};

const CREATE: &str = "mutation($w: ID!, $k: String!, $t: TriggerType!, $c: JSON!, $a: Boolean! = true) { createTrigger(input: {workflowId: $w, key: $k, type: $t, config: $c, isActive: $a}) { trigger { id key type config isActive nextFireAt webhookPath previousSecretExpiresAt } signingSecret userErrors { code field message } } }";
const ROTATE: &str = "mutation($id: ID!, $g: Int) { rotateWebhookSecret(input: {id: $id, graceHours: $g}) { trigger { id webhookPath previousSecretExpiresAt } signingSecret userErrors { code field message } } }";
const UPDATE: &str = "mutation($id: ID!, $k: String, $c: JSON, $a: Boolean) { updateTrigger(input: {id: $id, key: $k, config: $c, isActive: $a}) { trigger { id key config isActive nextFireAt } signingSecret userErrors { code field message } } }";

fn uuid(id: &str) -> Uuid {
    PrefixedId::parse(id)
        .unwrap_or_else(|| panic!("not an ID: {id}"))
        .uuid
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// A workflow of `owner`'s tenant; returns its ID.
async fn workflow(app: &TestApp, owner: &Member, key: &str) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($k: String!) { createWorkflow(input: {key: $k, name: $k}) { workflow { id } userErrors { field message } } }",
            json!({ "k": key }),
        )
        .await;
    assert_eq!(data["createWorkflow"]["userErrors"], json!([]));
    data["createWorkflow"]["workflow"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Runs createTrigger; returns its payload.
async fn create(
    app: &TestApp,
    member: &Member,
    workflow: &str,
    key: &str,
    kind: &str,
    config: Value,
) -> Value {
    app.ok(
        Some(&member.token),
        CREATE,
        json!({ "w": workflow, "k": key, "t": kind, "c": config }),
    )
    .await["createTrigger"]
        .clone()
}

/// Creates a trigger that must be accepted; returns its payload.
async fn created(
    app: &TestApp,
    member: &Member,
    workflow: &str,
    key: &str,
    kind: &str,
    config: Value,
) -> Value {
    let payload = create(app, member, workflow, key, kind, config).await;
    assert_eq!(payload["userErrors"], json!([]), "{payload:#}");
    payload
}

/// The single field a refused mutation names, with its code.
fn refusal(payload: &Value) -> (String, String) {
    let errors = payload["userErrors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{payload:#}");
    assert_eq!(payload["trigger"], Value::Null, "{payload:#}");
    (
        errors[0]["code"].as_str().unwrap().to_owned(),
        errors[0]["field"].as_str().unwrap_or_default().to_owned(),
    )
}

fn nth_sunday(year: i32, month: u32, n: u8) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, Weekday::Sun, n).unwrap()
}

fn last_sunday(year: i32, month: u32) -> NaiveDate {
    let mut day = NaiveDate::from_ymd_opt(year, month, 31).unwrap();
    while day.weekday() != Weekday::Sun {
        day = day.pred_opt().unwrap();
    }
    day
}

/// 09:00 wall time in Berlin on `day`, by the EU rule (summer time from the last
/// Sunday of March to the last Sunday of October; both switches happen before 09:00).
fn nine_in_berlin(day: NaiveDate) -> DateTime<Utc> {
    let summer = day >= last_sunday(day.year(), 3) && day < last_sunday(day.year(), 10);
    let hour = if summer { 7 } else { 8 };
    Utc.from_utc_datetime(&day.and_hms_opt(hour, 0, 0).unwrap())
}

/// 09:00 wall time in New York on `day`, by the US rule (daylight time from the second
/// Sunday of March to the first Sunday of November).
fn nine_in_new_york(day: NaiveDate) -> DateTime<Utc> {
    let summer = day >= nth_sunday(day.year(), 3, 2) && day < nth_sunday(day.year(), 11, 1);
    let hour = if summer { 13 } else { 14 };
    Utc.from_utc_datetime(&day.and_hms_opt(hour, 0, 0).unwrap())
}

/// When a daily schedule fires on a given day, in UTC.
type WallTime = fn(NaiveDate) -> DateTime<Utc>;

/// The first daily firing strictly after `after`, by `at`.
fn next_daily(after: DateTime<Utc>, at: WallTime) -> DateTime<Utc> {
    let today = after.date_naive();
    (-1..=2)
        .map(|d| at(today + Duration::days(d)))
        .find(|t| *t > after)
        .unwrap()
}

#[tokio::test]
async fn schedules_fire_at_the_wall_time_of_their_time_zone() {
    let app = TestApp::new().await;
    let owner = app.owner("sched").await;
    let wf = workflow(&app, &owner, "reports").await;
    let cases: [(&str, &str, WallTime); 2] = [
        ("berlin", "Europe/Berlin", nine_in_berlin),
        ("new-york", "America/New_York", nine_in_new_york),
    ];
    for (key, zone, at) in cases {
        let before = Utc::now();
        let payload = created(
            &app,
            &owner,
            &wf,
            key,
            "SCHEDULE",
            json!({ "cron": "0 9 * * *", "timezone": zone }),
        )
        .await;
        let after = Utc::now();
        let trigger = &payload["trigger"];
        assert_eq!(trigger["type"], "SCHEDULE");
        assert_eq!(trigger["config"]["timezone"], zone);
        assert_eq!(payload["signingSecret"], Value::Null);
        assert_eq!(trigger["webhookPath"], Value::Null);
        let next = time(&trigger["nextFireAt"]);
        assert!(next > before, "{zone}: {next} is not in the future");
        // Computed at some instant between `before` and `after`.
        assert!(
            next == next_daily(before, at) || next == next_daily(after, at),
            "{zone}: next firing {next}, expected {}",
            next_daily(before, at)
        );
        // Read back later, it is still the same instant (until it passes).
        let data = app
            .ok(
                Some(&owner.token),
                "query($id: ID!) { node(id: $id) { ... on Trigger { nextFireAt } } }",
                json!({ "id": trigger["id"] }),
            )
            .await;
        let again = time(&data["node"]["nextFireAt"]);
        assert!(
            again == next || next <= Utc::now(),
            "{zone}: {again} ≠ {next}"
        );
    }

    // A zone without the field is UTC.
    let payload = created(
        &app,
        &owner,
        &wf,
        "utc",
        "SCHEDULE",
        json!({ "cron": "30 6 * * *" }),
    )
    .await;
    assert_eq!(payload["trigger"]["config"]["timezone"], "UTC");
    let next = time(&payload["trigger"]["nextFireAt"]);
    assert_eq!((next.format("%H:%M:%S").to_string()), "06:30:00", "{next}");
}

#[tokio::test]
async fn inactive_schedules_have_no_next_firing() {
    let app = TestApp::new().await;
    let owner = app.owner("sleepy").await;
    let wf = workflow(&app, &owner, "digest").await;
    let payload = app
        .ok(
            Some(&owner.token),
            CREATE,
            json!({ "w": wf, "k": "weekly", "t": "SCHEDULE", "c": { "cron": "0 9 * * 1", "timezone": "Europe/Berlin" }, "a": false }),
        )
        .await["createTrigger"]
        .clone();
    assert_eq!(payload["userErrors"], json!([]), "{payload:#}");
    assert_eq!(payload["trigger"]["isActive"], false);
    assert_eq!(payload["trigger"]["nextFireAt"], Value::Null);
    let id = payload["trigger"]["id"].clone();

    let data = app
        .ok(Some(&owner.token), UPDATE, json!({ "id": id, "a": true }))
        .await;
    let next = time(&data["updateTrigger"]["trigger"]["nextFireAt"]);
    assert!(next > Utc::now() - Duration::seconds(5));
    assert!(next - Utc::now() <= Duration::days(7) + Duration::hours(1));
    assert_eq!(next.weekday(), Weekday::Mon, "{next}");

    let data = app
        .ok(Some(&owner.token), UPDATE, json!({ "id": id, "a": false }))
        .await;
    assert_eq!(data["updateTrigger"]["trigger"]["nextFireAt"], Value::Null);
    let data = app
        .ok(
            Some(&owner.token),
            "{ triggers(filter: {active: false}) { nodes { id nextFireAt } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["triggers"]["nodes"],
        json!([{ "id": id, "nextFireAt": null }])
    );
}

#[tokio::test]
async fn bad_schedules_and_event_names_are_refused_on_their_field() {
    let app = TestApp::new().await;
    let owner = app.owner("picky").await;
    let wf = workflow(&app, &owner, "checks").await;
    for (kind, config, field) in [
        ("SCHEDULE", json!({ "cron": "61 * * * *" }), "config.cron"),
        // Valid fields, but no such date: it would never fire.
        ("SCHEDULE", json!({ "cron": "0 0 30 2 *" }), "config.cron"),
        ("SCHEDULE", json!({ "cron": "0 0 31 4 *" }), "config.cron"),
        (
            "SCHEDULE",
            json!({ "cron": "every morning" }),
            "config.cron",
        ),
        (
            "SCHEDULE",
            json!({ "timezone": "Europe/Berlin" }),
            "config.cron",
        ),
        (
            "SCHEDULE",
            json!({ "cron": "0 9 * * *", "timezone": "Mars/Olympus" }),
            "config.timezone",
        ),
        (
            "SCHEDULE",
            json!({ "cron": "0 9 * * *", "timezone": "CEST+2" }),
            "config.timezone",
        ),
        ("EVENT", json!({ "event": "Order Created" }), "config.event"),
        ("EVENT", json!({ "event": "" }), "config.event"),
        ("EVENT", json!({}), "config.event"),
    ] {
        let payload = create(&app, &owner, &wf, "bad", kind, config.clone()).await;
        assert_eq!(
            refusal(&payload),
            ("BAD_USER_INPUT".to_owned(), field.to_owned()),
            "{kind} {config}"
        );
    }
    // Nothing was created by the refusals.
    let data = app
        .ok(Some(&owner.token), "{ triggers { totalCount } }", json!({}))
        .await;
    assert_eq!(data["triggers"]["totalCount"], 0);

    // Well-formed ones are accepted, and a change is checked like a creation.
    let event = created(
        &app,
        &owner,
        &wf,
        "orders",
        "EVENT",
        json!({ "event": "order.created" }),
    )
    .await;
    assert_eq!(
        event["trigger"]["config"],
        json!({ "event": "order.created" })
    );
    assert_eq!(event["trigger"]["nextFireAt"], Value::Null);
    let schedule = created(
        &app,
        &owner,
        &wf,
        "hourly",
        "SCHEDULE",
        json!({ "cron": "0 * * * *", "timezone": "Asia/Tokyo" }),
    )
    .await;
    let id = schedule["trigger"]["id"].clone();
    let data = app
        .ok(
            Some(&owner.token),
            UPDATE,
            json!({ "id": id, "c": { "cron": "0 25 * * *", "timezone": "Asia/Tokyo" } }),
        )
        .await;
    assert_eq!(
        refusal(&data["updateTrigger"]),
        ("BAD_USER_INPUT".to_owned(), "config.cron".to_owned())
    );
    let data = app
        .ok(
            Some(&owner.token),
            UPDATE,
            json!({ "id": event["trigger"]["id"], "c": { "event": "no spaces allowed" } }),
        )
        .await;
    assert_eq!(
        refusal(&data["updateTrigger"]),
        ("BAD_USER_INPUT".to_owned(), "config.event".to_owned())
    );
    let data = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on Trigger { config } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data["node"]["config"],
        json!({ "cron": "0 * * * *", "timezone": "Asia/Tokyo" })
    );
}

#[tokio::test]
async fn trigger_keys_are_unique_per_tenant_only() {
    let app = TestApp::new().await;
    let a = app.owner("keys-a").await;
    let b = app.owner("keys-b").await;
    let wf_a = workflow(&app, &a, "main").await;
    let other_a = workflow(&app, &a, "other").await;
    let wf_b = workflow(&app, &b, "main").await;
    created(&app, &a, &wf_a, "nightly", "MANUAL", json!({})).await;
    // The same key on another workflow of the same tenant, of another type.
    let payload = create(
        &app,
        &a,
        &other_a,
        "nightly",
        "EVENT",
        json!({ "event": "x.y" }),
    )
    .await;
    assert_eq!(refusal(&payload), ("CONFLICT".to_owned(), "key".to_owned()));
    // Another tenant may use it.
    created(&app, &b, &wf_b, "nightly", "MANUAL", json!({})).await;
    // Renaming onto a taken key is the same conflict.
    let second = created(&app, &a, &other_a, "weekly", "MANUAL", json!({})).await;
    let data = app
        .ok(
            Some(&a.token),
            UPDATE,
            json!({ "id": second["trigger"]["id"], "k": "nightly" }),
        )
        .await;
    assert_eq!(
        refusal(&data["updateTrigger"]),
        ("CONFLICT".to_owned(), "key".to_owned())
    );
    let data = app
        .ok(
            Some(&a.token),
            "{ triggers(orderBy: CREATED_AT_ASC) { nodes { key } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["triggers"]["nodes"],
        json!([{ "key": "nightly" }, { "key": "weekly" }])
    );
}

#[tokio::test]
async fn only_builders_and_above_create_and_change_triggers() {
    let app = TestApp::new().await;
    let owner = app.owner("roles").await;
    let wf = workflow(&app, &owner, "flow").await;
    let viewer = app.member(&owner, "viewer@roles.test", "VIEWER").await;
    let operator = app.member(&owner, "operator@roles.test", "OPERATOR").await;
    let builder = app.member(&owner, "builder@roles.test", "BUILDER").await;
    let existing = created(&app, &owner, &wf, "hook", "WEBHOOK", json!({})).await;
    let id = existing["trigger"]["id"].clone();
    for (who, member) in [("viewer", &viewer), ("operator", &operator)] {
        for kind in ["MANUAL", "WEBHOOK"] {
            assert_eq!(
                app.error_code(
                    Some(&member.token),
                    CREATE,
                    json!({ "w": wf, "k": format!("by-{who}"), "t": kind, "c": {} }),
                )
                .await,
                "FORBIDDEN",
                "{who} created a {kind} trigger"
            );
        }
        for (mutation, variables) in [
            (UPDATE, json!({ "id": id, "a": false })),
            (ROTATE, json!({ "id": id })),
            (
                "mutation($id: ID!) { deleteTrigger(input: {id: $id}) { trigger { id } } }",
                json!({ "id": id }),
            ),
        ] {
            assert_eq!(
                app.error_code(Some(&member.token), mutation, variables)
                    .await,
                "FORBIDDEN",
                "{who}: {mutation}"
            );
        }
        // They still read them.
        let data = app
            .ok(
                Some(&member.token),
                "{ triggers { nodes { id isActive } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            data["triggers"]["nodes"],
            json!([{ "id": id, "isActive": true }])
        );
    }
    let payload = created(&app, &builder, &wf, "by-builder", "WEBHOOK", json!({})).await;
    assert!(payload["signingSecret"]
        .as_str()
        .unwrap()
        .starts_with("whsec_"));
    let data = app
        .ok(Some(&builder.token), ROTATE, json!({ "id": id }))
        .await;
    assert_eq!(data["rotateWebhookSecret"]["userErrors"], json!([]));
    let data = app
        .ok(Some(&owner.token), "{ triggers { totalCount } }", json!({}))
        .await;
    assert_eq!(data["triggers"]["totalCount"], 2);
}

/// Every secret of the tenant whose name marks it as a webhook signing secret.
async fn webhook_secrets(app: &TestApp, owner: &Member) -> Vec<(String, String)> {
    let data = app
        .ok(
            Some(&owner.token),
            "{ secrets(first: 100) { nodes { id name } } }",
            json!({}),
        )
        .await;
    data["secrets"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("webhook."))
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Everything an owner can read about triggers, secrets and the audit trail, as text.
async fn everything_readable(app: &TestApp, owner: &Member, trigger: &Value) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on Trigger { id key type config isActive webhookPath previousSecretExpiresAt nextFireAt workflow { id triggers { id config webhookPath } } } } triggers(first: 100) { nodes { id key type config webhookPath previousSecretExpiresAt } } workflows { nodes { triggers { config } } } secrets(first: 100) { nodes { id name version lastUsedAt rotatedAt usedBy { field } } } tenant { auditEvents(first: 100) { edges { node { action details targetId } } } } }",
            json!({ "id": trigger }),
        )
        .await;
    data.to_string()
}

#[tokio::test]
async fn a_webhook_secret_is_shown_once_and_kept_as_a_secret() {
    let app = TestApp::new().await;
    let owner = app.owner("hooks").await;
    let wf = workflow(&app, &owner, "intake").await;
    let payload = created(&app, &owner, &wf, "inbound", "WEBHOOK", json!({})).await;
    let plaintext = payload["signingSecret"].as_str().unwrap().to_owned();
    assert!(plaintext.starts_with("whsec_"), "{plaintext}");
    assert!(plaintext.len() >= 6 + 32, "a short secret: {plaintext}");
    let trigger = &payload["trigger"];
    let id = trigger["id"].clone();
    let path = trigger["webhookPath"].as_str().unwrap();
    let path_id = path.strip_prefix("/hooks/").expect("a /hooks/ path");
    assert!(
        (32..=64).contains(&path_id.len())
            && path_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "{path}"
    );
    assert!(
        !path.contains(&id.as_str().unwrap()[4..]),
        "a guessable path: {path}"
    );
    assert!(!path.contains(&plaintext[6..]));
    assert_eq!(trigger["previousSecretExpiresAt"], Value::Null);
    // Two webhooks never share a path or a secret.
    let other = created(&app, &owner, &wf, "second", "WEBHOOK", json!({})).await;
    assert_ne!(other["trigger"]["webhookPath"], trigger["webhookPath"]);
    assert_ne!(other["signingSecret"], payload["signingSecret"]);

    // Never again: not in any read, nor in the payload of a later change.
    let data = app
        .ok(
            Some(&owner.token),
            UPDATE,
            json!({ "id": id, "k": "renamed" }),
        )
        .await;
    assert_eq!(data["updateTrigger"]["signingSecret"], Value::Null);
    assert!(!data.to_string().contains(&plaintext[6..]));
    let seen = everything_readable(&app, &owner, &id).await;
    assert!(
        seen.contains("renamed"),
        "the read missed the trigger: {seen}"
    );
    assert!(
        !seen.contains(&plaintext[6..]),
        "the signing secret was shown again: {seen}"
    );

    // It is a Secret of the tenant, sealed in the database.
    let secrets = webhook_secrets(&app, &owner).await;
    assert_eq!(secrets.len(), 2, "{secrets:?}");
    let admin = app.db.admin().await;
    let stored = admin
        .query_all(stmt(
            "SELECT s.id, s.ciphertext FROM secrets s JOIN triggers t ON t.signing_secret_id = s.id WHERE t.id = $1",
            [uuid(id.as_str().unwrap()).into()],
        ))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    let secret_id: Uuid = stored[0].try_get("", "id").unwrap();
    let ciphertext: Vec<u8> = stored[0].try_get("", "ciphertext").unwrap();
    assert!(!ciphertext
        .windows(plaintext.len())
        .any(|w| w == plaintext.as_bytes()));
    admin.close().await.unwrap();
    let (listed, _) = secrets
        .iter()
        .find(|(sid, _)| uuid(sid) == secret_id)
        .expect("the signing secret is in the secrets list");

    // While the trigger uses it, it cannot be deleted.
    let delete = "mutation($id: ID!) { deleteSecret(input: {id: $id}) { secret { id } userErrors { code field message } } }";
    let data = app
        .ok(Some(&owner.token), delete, json!({ "id": listed }))
        .await;
    assert_eq!(data["deleteSecret"]["secret"], Value::Null);
    assert_eq!(data["deleteSecret"]["userErrors"][0]["code"], "CONFLICT");
    assert_eq!(webhook_secrets(&app, &owner).await.len(), 2);
}

#[tokio::test]
async fn rotating_a_webhook_secret_opens_a_grace_window() {
    let app = TestApp::new().await;
    let owner = app.owner("rotor").await;
    let wf = workflow(&app, &owner, "intake").await;
    let payload = created(&app, &owner, &wf, "inbound", "WEBHOOK", json!({})).await;
    let first = payload["signingSecret"].as_str().unwrap().to_owned();
    let id = payload["trigger"]["id"].clone();
    let path = payload["trigger"]["webhookPath"].clone();

    let before = Utc::now();
    let data = app
        .ok(Some(&owner.token), ROTATE, json!({ "id": id }))
        .await;
    let after = Utc::now();
    let rotated = &data["rotateWebhookSecret"];
    assert_eq!(rotated["userErrors"], json!([]));
    let second = rotated["signingSecret"].as_str().unwrap().to_owned();
    assert!(second.starts_with("whsec_"));
    assert_ne!(second, first);
    // The path stays: senders only switch secrets.
    assert_eq!(rotated["trigger"]["webhookPath"], path);
    let expires = time(&rotated["trigger"]["previousSecretExpiresAt"]);
    assert!(
        expires >= before + Duration::hours(24) - Duration::seconds(1)
            && expires <= after + Duration::hours(24) + Duration::seconds(1),
        "{expires} is not 24 h after {before}"
    );
    let seen = everything_readable(&app, &owner, &id).await;
    assert!(
        !seen.contains(&first[6..]) && !seen.contains(&second[6..]),
        "{seen}"
    );
    assert_eq!(webhook_secrets(&app, &owner).await.len(), 2);

    // A chosen grace window, within 0 to 168 hours.
    let before = Utc::now();
    let data = app
        .ok(Some(&owner.token), ROTATE, json!({ "id": id, "g": 2 }))
        .await;
    let expires = time(&data["rotateWebhookSecret"]["trigger"]["previousSecretExpiresAt"]);
    let offset = expires - before;
    assert!(
        offset >= Duration::hours(2) - Duration::seconds(1)
            && offset <= Duration::hours(2) + Duration::minutes(1),
        "{expires}"
    );
    for grace in [-1, 169] {
        let data = app
            .ok(Some(&owner.token), ROTATE, json!({ "id": id, "g": grace }))
            .await;
        let payload = &data["rotateWebhookSecret"];
        assert_eq!(
            refusal(payload),
            ("BAD_USER_INPUT".to_owned(), "graceHours".to_owned())
        );
        assert_eq!(payload["signingSecret"], Value::Null);
    }
    // Only webhooks have a secret to rotate.
    let manual = created(&app, &owner, &wf, "by-hand", "MANUAL", json!({})).await;
    let data = app
        .ok(
            Some(&owner.token),
            ROTATE,
            json!({ "id": manual["trigger"]["id"] }),
        )
        .await;
    assert_eq!(
        refusal(&data["rotateWebhookSecret"]),
        ("BAD_USER_INPUT".to_owned(), "id".to_owned())
    );
}

fn vault() -> Vault {
    Vault::new(MasterKeyring::parse(TEST_MASTER_KEYS).unwrap())
}

/// A scope like the one a request of `member` would get.
fn scope_of(app: &TestApp, member: &Member) -> Arc<RequestScope> {
    RequestScope::new(
        app.state.db.clone(),
        Principal::User {
            user_id: member.user_uuid(),
            tenant_id: Some(member.tenant_uuid()),
            session_id: None,
        },
        Default::default(),
    )
}

async fn finish(scope: Arc<RequestScope>) {
    Arc::try_unwrap(scope)
        .expect("the scope is no longer shared")
        .finish(true)
        .await
        .unwrap();
}

/// The trigger row and the secrets a delivery may be signed with at each of `times`.
async fn keys_at(
    app: &TestApp,
    member: &Member,
    trigger_id: &Value,
    times: &[DateTime<Utc>],
) -> (trigger::Model, Vec<Vec<SecretString>>) {
    let vault = vault();
    let scope = scope_of(app, member);
    let row = trigger::Entity::find_by_id(uuid(trigger_id.as_str().unwrap()))
        .one(scope.tx().await.unwrap())
        .await
        .unwrap()
        .expect("the trigger is visible to its tenant");
    let mut keys = vec![];
    for at in times {
        keys.push(
            triggers::signing_keys(&vault, &scope, &row, *at)
                .await
                .unwrap(),
        );
    }
    finish(scope).await;
    (row, keys)
}

fn exposed(keys: &[SecretString]) -> Vec<String> {
    let mut all: Vec<String> = keys.iter().map(|k| k.expose_secret().to_owned()).collect();
    all.sort();
    all
}

/// Whether a delivery signed with `secret` at `at` is accepted by `keys` at `at`.
fn accepts(keys: &[SecretString], secret: &str, at: DateTime<Utc>) -> Result<(), SignatureError> {
    let body = br#"{"order":42,"status":"paid"}"#;
    let header = triggers::sign(&SecretString::from(secret.to_owned()), at.timestamp(), body);
    triggers::verify_signature(&header, body, keys, at).map(|_| ())
}

#[tokio::test]
async fn the_previous_secret_verifies_only_inside_the_grace_window() {
    let app = TestApp::new().await;
    let owner = app.owner("grace").await;
    let wf = workflow(&app, &owner, "intake").await;
    let payload = created(&app, &owner, &wf, "inbound", "WEBHOOK", json!({})).await;
    let old = payload["signingSecret"].as_str().unwrap().to_owned();
    let id = payload["trigger"]["id"].clone();

    // Before any rotation only the one secret signs.
    let now = Utc::now();
    let (_, keys) = keys_at(&app, &owner, &id, &[now]).await;
    assert_eq!(exposed(&keys[0]), vec![old.clone()]);
    assert_eq!(accepts(&keys[0], &old, now), Ok(()));

    let data = app
        .ok(Some(&owner.token), ROTATE, json!({ "id": id }))
        .await;
    let new = data["rotateWebhookSecret"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = Utc::now();
    let later = now + Duration::hours(25);
    let (row, keys) = keys_at(&app, &owner, &id, &[now, later]).await;
    let expires = row.previous_secret_expires_at.expect("a grace window");
    let (inside, outside) = (&keys[0], &keys[1]);
    let mut both = vec![old.clone(), new.clone()];
    both.sort();
    assert_eq!(exposed(inside), both);
    assert_eq!(exposed(outside), vec![new.clone()]);

    // Inside the window deliveries signed with either secret verify.
    assert_eq!(accepts(inside, &old, now), Ok(()));
    assert_eq!(accepts(inside, &new, now), Ok(()));
    assert_eq!(
        accepts(inside, "whsec_someone-elses-secret", now),
        Err(SignatureError::Mismatch)
    );
    // After it only the new one does.
    assert_eq!(accepts(outside, &old, later), Err(SignatureError::Mismatch));
    assert_eq!(accepts(outside, &new, later), Ok(()));

    // The window ends exactly at previousSecretExpiresAt.
    let edge = [expires - Duration::seconds(1), expires];
    let (_, keys) = keys_at(&app, &owner, &id, &edge).await;
    assert_eq!(accepts(&keys[0], &old, edge[0]), Ok(()));
    assert_eq!(
        accepts(&keys[1], &old, edge[1]),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(accepts(&keys[1], &new, edge[1]), Ok(()));
}

#[tokio::test]
async fn a_second_rotation_drops_the_oldest_secret() {
    let app = TestApp::new().await;
    let owner = app.owner("twice").await;
    let wf = workflow(&app, &owner, "intake").await;
    let payload = created(&app, &owner, &wf, "inbound", "WEBHOOK", json!({})).await;
    let first = payload["signingSecret"].as_str().unwrap().to_owned();
    let id = payload["trigger"]["id"].clone();
    let (created_row, _) = keys_at(&app, &owner, &id, &[]).await;
    let first_id = created_row.signing_secret_id.unwrap();

    let data = app
        .ok(Some(&owner.token), ROTATE, json!({ "id": id }))
        .await;
    let second = data["rotateWebhookSecret"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let (row, _) = keys_at(&app, &owner, &id, &[]).await;
    assert_eq!(row.previous_signing_secret_id, Some(first_id));
    let second_id = row.signing_secret_id.unwrap();

    let data = app
        .ok(Some(&owner.token), ROTATE, json!({ "id": id }))
        .await;
    let third = data["rotateWebhookSecret"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(first != third && second != third);
    let now = Utc::now();
    let (row, keys) = keys_at(&app, &owner, &id, &[now]).await;
    assert_eq!(row.previous_signing_secret_id, Some(second_id));
    let mut expected = vec![second.clone(), third.clone()];
    expected.sort();
    assert_eq!(exposed(&keys[0]), expected);
    assert_eq!(
        accepts(&keys[0], &first, now),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(accepts(&keys[0], &second, now), Ok(()));
    assert_eq!(accepts(&keys[0], &third, now), Ok(()));

    // The oldest secret's row is gone, not merely unused.
    let admin = app.db.admin().await;
    let left = |id: Uuid| {
        let admin = &admin;
        async move {
            admin
                .query_one(stmt(
                    "SELECT count(*) AS n FROM secrets WHERE id = $1",
                    [id.into()],
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap()
        }
    };
    assert_eq!(left(first_id).await, 0);
    assert_eq!(left(second_id).await, 1);
    assert_eq!(left(row.signing_secret_id.unwrap()).await, 1);
    admin.close().await.unwrap();
    assert_eq!(webhook_secrets(&app, &owner).await.len(), 2);
}

#[tokio::test]
async fn a_webhook_path_finds_its_tenant_before_any_tenant_is_known() {
    let app = TestApp::new().await;
    let a = app.owner("paths-a").await;
    let b = app.owner("paths-b").await;
    let mut hooks = vec![];
    for owner in [&a, &b] {
        let wf = workflow(&app, owner, "intake").await;
        let payload = created(&app, owner, &wf, "inbound", "WEBHOOK", json!({})).await;
        let path = payload["trigger"]["webhookPath"].as_str().unwrap();
        hooks.push((
            owner.tenant_uuid(),
            uuid(payload["trigger"]["id"].as_str().unwrap()),
            path.strip_prefix("/hooks/").unwrap().to_owned(),
        ));
    }
    let scope = RequestScope::new(
        app.state.db.clone(),
        Principal::Anonymous,
        Default::default(),
    );
    for (tenant, trigger, path) in &hooks {
        assert_eq!(
            triggers::webhook_target(&scope, path).await.unwrap(),
            Some((*tenant, *trigger))
        );
    }
    let unknown = hooks[0].2.chars().rev().collect::<String>();
    for path in [unknown.as_str(), "", "%", &hooks[0].2[..20]] {
        assert_eq!(
            triggers::webhook_target(&scope, path).await.unwrap(),
            None,
            "{path:?}"
        );
    }
    // The narrow function is the only way in: the anonymous transaction itself sees no
    // trigger and no secret.
    let tx = scope.tx().await.unwrap();
    for table in ["triggers", "secrets"] {
        let row = tx
            .query_one(stmt(&format!("SELECT count(*) AS n FROM {table}"), []))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0, "{table}");
    }
    finish(scope).await;

    // A deleted trigger's path leads nowhere.
    let data = app
        .ok(
            Some(&a.token),
            "mutation($id: ID!) { deleteTrigger(input: {id: $id}) { trigger { id } userErrors { message } } }",
            json!({ "id": PrefixedId::new(trellis_entity::IdKind::Trigger, hooks[0].1).to_string() }),
        )
        .await;
    assert_eq!(data["deleteTrigger"]["userErrors"], json!([]));
    let scope = RequestScope::new(
        app.state.db.clone(),
        Principal::Anonymous,
        Default::default(),
    );
    assert_eq!(
        triggers::webhook_target(&scope, &hooks[0].2).await.unwrap(),
        None
    );
    assert_eq!(
        triggers::webhook_target(&scope, &hooks[1].2).await.unwrap(),
        Some((hooks[1].0, hooks[1].1))
    );
    finish(scope).await;
}

#[tokio::test]
async fn deleting_a_trigger_deletes_its_signing_secrets() {
    let app = TestApp::new().await;
    let owner = app.owner("cleanup").await;
    let wf = workflow(&app, &owner, "intake").await;
    let doomed = created(&app, &owner, &wf, "doomed", "WEBHOOK", json!({})).await;
    let kept = created(&app, &owner, &wf, "kept", "WEBHOOK", json!({})).await;
    let id = doomed["trigger"]["id"].clone();
    let data = app
        .ok(Some(&owner.token), ROTATE, json!({ "id": id }))
        .await;
    assert_eq!(data["rotateWebhookSecret"]["userErrors"], json!([]));
    let (row, _) = keys_at(&app, &owner, &id, &[]).await;
    let doomed_secrets = [
        row.signing_secret_id.unwrap(),
        row.previous_signing_secret_id.unwrap(),
    ];
    let (kept_row, _) = keys_at(&app, &owner, &kept["trigger"]["id"], &[]).await;
    let kept_secret = kept_row.signing_secret_id.unwrap();
    assert_eq!(webhook_secrets(&app, &owner).await.len(), 3);

    let data = app
        .ok(
            Some(&owner.token),
            "mutation($id: ID!) { deleteTrigger(input: {id: $id}) { trigger { id key } signingSecret userErrors { message } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["deleteTrigger"]["userErrors"], json!([]));
    assert_eq!(data["deleteTrigger"]["trigger"]["key"], "doomed");
    assert_eq!(data["deleteTrigger"]["signingSecret"], Value::Null);

    let admin = app.db.admin().await;
    let count = |ids: Vec<Uuid>| {
        let admin = &admin;
        async move {
            admin
                .query_one(stmt(
                    "SELECT count(*) AS n FROM secrets WHERE id = ANY($1)",
                    [ids.into()],
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap()
        }
    };
    assert_eq!(count(doomed_secrets.to_vec()).await, 0);
    assert_eq!(count(vec![kept_secret]).await, 1);
    admin.close().await.unwrap();
    let listed = webhook_secrets(&app, &owner).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(uuid(&listed[0].0), kept_secret);
    assert_eq!(
        app.error_code(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await,
        "NOT_FOUND"
    );
}
