//! NOTIFICATION steps with channel `in_app`: one row per recipient, written with the
//! move that completes the step; each member lists and marks read only their own; a
//! simulation notifies nobody.

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::connections::{connect, create_secret, http_connection, latest_version, Loopback};
use crate::engine::{executor, orders_api, start, workflow};
use crate::support::{as_app, is_rls_violation, smtp_sink, Member, TestApp};

fn notify(config: Value) -> Value {
    let mut step = json!({ "key": "notify", "name": "notify", "type": "NOTIFICATION" });
    step["config"] = config;
    step
}

async fn inbox(app: &TestApp, who: &Member) -> Value {
    app.ok(
        Some(&who.token),
        "{ unreadNotificationCount notifications { id title body readAt run { id } } }",
        json!({}),
    )
    .await
}

async fn run_status(app: &TestApp, who: &Member, id: &str) -> Value {
    app.ok(
        Some(&who.token),
        "query($id: ID!) { node(id: $id) { ... on WorkflowRun { status output error } } }",
        json!({ "id": id }),
    )
    .await["node"]
        .clone()
}

#[tokio::test]
async fn in_app_notifications_reach_the_named_members_once_and_are_marked_read() {
    let app = TestApp::new().await;
    let owner = app.owner("inbox").await;
    let admin = app.member(&owner, "admin@inbox.test", "ADMIN").await;
    let viewer = app.member(&owner, "viewer@inbox.test", "VIEWER").await;
    let builder = app.member(&owner, "builder@inbox.test", "BUILDER").await;
    let steps = json!([notify(json!({
        "channel": "in_app",
        "to": ["ADMIN", "Viewer@Inbox.test"],
        "title": "Order {{ input.id }}",
        "message": "Order {{ input.id }} shipped to {{ input.city }}",
    }))]);
    let wf = workflow(&app, &owner, "tell", steps, json!([])).await;
    let id = start(&app, &owner, &wf, json!({ "id": 7, "city": "Oslo" })).await;
    executor(&app, 10).tick().await.unwrap();
    let run = run_status(&app, &owner, &id).await;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(
        run["output"]["notify"],
        json!({ "channel": "in_app", "delivered": 3 })
    );

    for who in [&owner, &admin, &viewer] {
        let seen = inbox(&app, who).await;
        assert_eq!(seen["unreadNotificationCount"], 1, "{}: {seen}", who.email);
        let note = &seen["notifications"][0];
        assert_eq!(note["title"], "Order 7");
        assert_eq!(note["body"], "Order 7 shipped to Oslo");
        assert_eq!(note["run"]["id"], id.as_str());
    }
    assert_eq!(inbox(&app, &builder).await["notifications"], json!([]));

    // Marking read: one's own only; another member's id changes nothing, and their
    // notification is not found through `node` either.
    let admins = inbox(&app, &admin).await["notifications"][0]["id"].clone();
    let mark = "mutation($ids: [ID!]) { markNotificationsRead(input: {ids: $ids}) { marked } }";
    let marked = app
        .ok(Some(&viewer.token), mark, json!({ "ids": [admins] }))
        .await;
    assert_eq!(marked["markNotificationsRead"]["marked"], 0);
    let node = "query($id: ID!) { node(id: $id) { id } }";
    assert_eq!(
        app.error_code(Some(&viewer.token), node, json!({ "id": admins }))
            .await,
        "NOT_FOUND"
    );
    let marked = app
        .ok(Some(&admin.token), mark, json!({ "ids": [admins] }))
        .await;
    assert_eq!(marked["markNotificationsRead"]["marked"], 1);
    assert_eq!(inbox(&app, &admin).await["unreadNotificationCount"], 0);
    assert_eq!(inbox(&app, &viewer).await["unreadNotificationCount"], 1);
    let all = app
        .ok(Some(&viewer.token), mark, json!({ "ids": null }))
        .await;
    assert_eq!(all["markNotificationsRead"]["marked"], 1);
    let unread = app
        .ok(
            Some(&viewer.token),
            "{ notifications(unreadOnly: true) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(unread["notifications"], json!([]));
}

#[tokio::test]
async fn the_seeds_notification_shape_is_understood() {
    let app = TestApp::new().await;
    let owner = app.owner("seed-notify").await;
    let seed = json!([notify(json!({
        "notificationType": "in_app",
        "template": "welcome aboard",
        "recipients": ["OWNER"],
    }))]);
    let wf = workflow(&app, &owner, "seeded", seed, json!([])).await;
    let id = start(&app, &owner, &wf, json!({})).await;
    executor(&app, 10).tick().await.unwrap();
    assert_eq!(run_status(&app, &owner, &id).await["status"], "SUCCEEDED");
    assert_eq!(
        inbox(&app, &owner).await["notifications"][0]["body"],
        "welcome aboard"
    );
}

/// A simulation of a workflow that calls a server and notifies people reaches
/// neither: the server gets no request and nobody's inbox gets a row.
#[tokio::test]
async fn a_simulation_calls_nobody_and_notifies_nobody() {
    let app = TestApp::new().await;
    let owner = app.owner("quiet").await;
    let (api, seen) = orders_api().await;
    let steps = json!([
        { "key": "fetch", "name": "fetch", "type": "HTTP", "config": {
            "url": format!("{api}/orders/1"), "sampleOutput": { "status": 200, "body": { "total": 5 } } } },
        notify(json!({ "channel": "in_app", "to": ["OWNER"], "message": "total {{ steps.fetch.output.body.total }}",
                       "sampleOutput": { "channel": "in_app", "delivered": 0 } })),
    ]);
    let wf = workflow(
        &app,
        &owner,
        "rehearse",
        steps,
        json!([{ "from": "fetch", "to": "notify" }]),
    )
    .await;
    let id = crate::engine::start_simulation(&app, &owner, &wf).await;
    executor(&app, 10).tick().await.unwrap();
    assert_eq!(run_status(&app, &owner, &id).await["status"], "SUCCEEDED");
    assert!(seen.lock().unwrap().is_empty());
    let admin = app.db.admin().await;
    let rows: i64 = admin
        .query_one(stmt("SELECT count(*) AS n FROM notifications", []))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn another_tenants_notifications_cannot_be_read_written_or_referenced() {
    let app = TestApp::new().await;
    let a = app.owner("notes-a").await;
    let b = app.owner("notes-b").await;
    for owner in [&a, &b] {
        let steps = json!([notify(
            json!({ "channel": "in_app", "to": "OWNER", "message": "hello" })
        )]);
        let wf = workflow(&app, owner, "hello", steps, json!([])).await;
        start(&app, owner, &wf, json!({})).await;
    }
    executor(&app, 10).tick().await.unwrap();
    let theirs = inbox(&app, &a).await["notifications"][0]["id"].clone();
    let their_id = Uuid::parse_str(&theirs.as_str().unwrap()[4..]).unwrap();
    let admin = app.db.admin().await;
    let their_run: Uuid = admin
        .query_one(stmt(
            "SELECT run_id FROM notifications WHERE id = $1",
            [their_id.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "run_id")
        .unwrap();

    let db = app.db.app_pool(2).await;
    let tx = as_app(&db, Some(b.tenant_uuid()), Some(b.user_uuid())).await;
    let seen: i64 = tx
        .query_one(stmt("SELECT count(*) AS n FROM notifications", []))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    assert_eq!(seen, 1, "b sees only its own");
    let changed = tx
        .execute(stmt(
            "UPDATE notifications SET read_at = now() WHERE id = $1",
            [their_id.into()],
        ))
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 0);
    let insert = "INSERT INTO notifications (id, tenant_id, user_id, run_id, title, body) \
                  VALUES ($1, $2, $3, $4, 'x', 'y')";
    let forged = tx
        .execute(stmt(
            insert,
            [
                Uuid::now_v7().into(),
                a.tenant_uuid().into(),
                a.user_uuid().into(),
                their_run.into(),
            ],
        ))
        .await
        .unwrap_err();
    assert!(is_rls_violation(&forged), "{forged}");
    tx.rollback().await.unwrap();
    // Pointing at A's run fails exactly like pointing at a made-up one.
    let mut messages = Vec::new();
    for target in [their_run, Uuid::now_v7()] {
        let tx = as_app(&db, Some(b.tenant_uuid()), Some(b.user_uuid())).await;
        let err = tx
            .execute(stmt(
                insert,
                [
                    Uuid::now_v7().into(),
                    b.tenant_uuid().into(),
                    b.user_uuid().into(),
                    target.into(),
                ],
            ))
            .await
            .unwrap_err();
        messages.push(err.to_string().replace(&target.to_string(), "<id>"));
        tx.rollback().await.unwrap();
    }
    assert!(
        messages[0].contains("notifications_run_fkey"),
        "{}",
        messages[0]
    );
    assert_eq!(messages[0], messages[1]);
    // Through GraphQL A's notification is not found, and marking it changes nothing.
    let node = "query($id: ID!) { node(id: $id) { id } }";
    assert_eq!(
        app.error_code(Some(&b.token), node, json!({ "id": theirs }))
            .await,
        "NOT_FOUND"
    );
    let marked = app
        .ok(
            Some(&b.token),
            "mutation($ids: [ID!]) { markNotificationsRead(input: {ids: $ids}) { marked } }",
            json!({ "ids": [theirs] }),
        )
        .await;
    assert_eq!(marked["markNotificationsRead"]["marked"], 0);
    assert_eq!(inbox(&app, &a).await["unreadNotificationCount"], 1);
}

/// An email connection to the SMTP sink at `url` (`smtp://127.0.0.1:port`); its id.
async fn email_connection(app: &TestApp, admin: &Member, url: &str) -> String {
    let addr: std::net::SocketAddr = url.trim_start_matches("smtp://").parse().unwrap();
    let version = latest_version(app, admin, "email").await;
    // The sink takes mail without a login; the manifest still asks for the secret.
    let password = create_secret(app, admin, "smtp-password", "unused").await;
    let payload = connect(
        app,
        admin,
        &version,
        "mail",
        json!({ "host": addr.ip().to_string(), "port": addr.port(), "security": "none",
                "fromAddress": "flows@acme.test", "fromName": "Acme flows" }),
        json!([{ "field": "password", "secretId": password }]),
    )
    .await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    payload["connection"]["id"].as_str().unwrap().to_owned()
}

fn notify_through(connection: &str, config: Value) -> Value {
    let mut step = notify(config);
    step["connectionId"] = json!(connection);
    step
}

/// Email goes through the step's SMTP connection to a real SMTP server, and a webhook
/// notification posts to its http connection with the connection's authorization
/// secret; a simulation of the same workflow sends nothing to either.
#[tokio::test]
async fn email_and_webhook_notifications_go_through_their_connections() {
    let app = TestApp::new().await;
    let owner = app.owner("mailing").await;
    let (smtp, sent) = smtp_sink().await;
    let mail = email_connection(&app, &owner, &smtp).await;
    let hook_server = Loopback::start().await;
    let token = create_secret(&app, &owner, "hook-token", "Bearer hook-secret").await;
    let hook = http_connection(
        &app,
        &owner,
        "hook",
        &format!("{}/hook", hook_server.base),
        Some(&token),
    )
    .await;
    let steps = json!([
        notify_through(&mail, json!({ "channel": "email", "to": ["ops@acme.test", "{{ input.owner }}"],
                                      "subject": "Order {{ input.id }}", "message": "Order {{ input.id }} is in" })),
        { "key": "post", "name": "post", "type": "NOTIFICATION", "connectionId": hook,
          "config": { "channel": "webhook", "message": "order {{ input.id }}" } },
    ]);
    let wf = workflow(
        &app,
        &owner,
        "mailing",
        steps,
        json!([{ "from": "notify", "to": "post" }]),
    )
    .await;

    // A simulation first: nothing reaches the SMTP server or the webhook.
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!) { startRun(input: {workflowId: $w, simulation: true, input: {id: 1, owner: \"o@acme.test\"}}) { run { id } } }",
            json!({ "w": wf }),
        )
        .await;
    let simulated = data["startRun"]["run"]["id"].as_str().unwrap().to_owned();
    executor(&app, 10).tick().await.unwrap();
    assert_eq!(
        run_status(&app, &owner, &simulated).await["status"],
        "SUCCEEDED"
    );
    assert!(sent.lock().unwrap().is_empty(), "a simulation sent mail");
    assert!(hook_server.requests().is_empty(), "a simulation posted");

    let id = start(
        &app,
        &owner,
        &wf,
        json!({ "id": 42, "owner": "boss@acme.test" }),
    )
    .await;
    executor(&app, 10).tick().await.unwrap();
    let run = run_status(&app, &owner, &id).await;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    let mails = sent.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["ops@acme.test", "boss@acme.test"]);
    assert!(
        mails[0].data.contains("Subject: Order 42"),
        "{}",
        mails[0].data
    );
    assert!(
        mails[0].data.contains("Order 42 is in"),
        "{}",
        mails[0].data
    );
    assert!(
        mails[0].data.contains("flows@acme.test"),
        "{}",
        mails[0].data
    );
    let posts = hook_server.requests();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].path, "/hook");
    assert_eq!(
        posts[0].authorization.as_deref(),
        Some("Bearer hook-secret")
    );
    // The secret is never in the run's record.
    let everything = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on WorkflowRun { output stepRuns { input output error } } } }",
            json!({ "id": id }),
        )
        .await;
    assert!(!everything.to_string().contains("hook-secret"));
}

#[tokio::test]
async fn notifications_through_a_connection_need_one_of_the_right_app() {
    let app = TestApp::new().await;
    let owner = app.owner("mail-check").await;
    let hook = http_connection(&app, &owner, "hook", "https://hooks.example.com/x", None).await;
    let created = app
        .ok(
            Some(&owner.token),
            "mutation { createWorkflow(input: {key: \"bad\", name: \"bad\"}) { workflow { versions { id } } } }",
            json!({}),
        )
        .await;
    let version = created["createWorkflow"]["workflow"]["versions"][0]["id"].clone();
    let save = "mutation($v: ID!, $s: [WorkflowStepInput!]!) { saveWorkflowGraph(input: {versionId: $v, steps: $s, transitions: []}) { userErrors { field message } } }";
    for step in [
        // Email through an http connection.
        notify_through(
            &hook,
            json!({ "channel": "email", "to": "x@y.test", "message": "m" }),
        ),
        // Email with no connection at all.
        notify(json!({ "channel": "email", "to": "x@y.test", "message": "m" })),
        // A connection on a step that takes none.
        notify_through(
            &hook,
            json!({ "channel": "in_app", "to": "OWNER", "message": "m" }),
        ),
    ] {
        let saved = app
            .ok(
                Some(&owner.token),
                save,
                json!({ "v": version, "s": [step] }),
            )
            .await;
        let errors = &saved["saveWorkflowGraph"]["userErrors"];
        assert_eq!(errors[0]["field"], "steps.notify.connectionId", "{saved}");
    }
}
