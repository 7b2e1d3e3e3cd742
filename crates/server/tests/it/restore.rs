//! Restoring deleted apps and connections, like workflows, processes and agents: a
//! deleted row leaves its list (a `deleted: true` filter shows it), frees its key or
//! name, and comes back only while that is free (CONFLICT naming the field, nothing
//! written). Another tenant can neither list, restore nor detect a tenant's deleted
//! rows, through GraphQL or raw SQL as the application role.

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::catalog::{private_app, CREATE_APP};
use crate::connections::{connect, create_secret};
use crate::support::{as_app, Member, TestApp};

const DELETE_APP: &str =
    "mutation($id: ID!) { deleteApp(input: {id: $id}) { app { deletedAt } userErrors { code } } }";
const RESTORE_APP: &str = "mutation($id: ID!) { restoreApp(input: {id: $id}) { app { id key deletedAt } userErrors { field message code } } }";
const DELETE_CONNECTION: &str = "mutation($id: ID!) { deleteConnection(input: {id: $id}) { connection { deletedAt } userErrors { code } } }";
const RESTORE_CONNECTION: &str = "mutation($id: ID!) { restoreConnection(input: {id: $id}) { connection { id name isActive deletedAt secrets { field } } userErrors { field message code } } }";

fn uuid_of(id: &str) -> Uuid {
    Uuid::parse_str(id.rsplit('_').next().unwrap()).unwrap()
}

fn made_up(id: &str) -> String {
    format!(
        "{}_{}",
        id.rsplit_once('_').unwrap().0,
        Uuid::now_v7().simple()
    )
}

/// The actions of the tenant's audit events that start with `prefix`, oldest first.
async fn audited(app: &TestApp, member: &Member, prefix: &str) -> Vec<String> {
    let data = app
        .ok(
            Some(&member.token),
            "{ tenant { auditEvents(first: 100, orderBy: CREATED_AT_ASC) { edges { node { action } } } } }",
            json!({}),
        )
        .await;
    data["tenant"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap().to_owned())
        .filter(|a| a.starts_with(prefix))
        .collect()
}

/// (live keys, deleted keys) of the tenant's own apps.
async fn app_keys(app: &TestApp, member: &Member) -> (Value, Value) {
    let data = app
        .ok(
            Some(&member.token),
            "{ live: apps(filter: {public: false}) { nodes { key deletedAt } } deleted: apps(filter: {public: false, deleted: true}) { nodes { key } } }",
            json!({}),
        )
        .await;
    let keys = |list: &Value| {
        json!(list["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["key"].clone())
            .collect::<Vec<_>>())
    };
    (keys(&data["live"]), keys(&data["deleted"]))
}

#[tokio::test]
async fn a_deleted_app_frees_its_key_and_comes_back_while_the_key_is_free() {
    let app = TestApp::new().await;
    let owner = app.owner("restore-app").await;
    let builder = app
        .member(&owner, "builder@restore-app.test", "BUILDER")
        .await;
    let viewer = app
        .member(&owner, "viewer@restore-app.test", "VIEWER")
        .await;
    let (old, _, _) = private_app(&app, &builder, "crm").await;

    let deleted = app
        .ok(Some(&builder.token), DELETE_APP, json!({ "id": old }))
        .await;
    assert!(deleted["deleteApp"]["app"]["deletedAt"].is_string());
    assert_eq!(app_keys(&app, &owner).await, (json!([]), json!(["crm"])));
    // The key is free: a new app takes it.
    let fresh = app
        .ok(
            Some(&builder.token),
            CREATE_APP,
            json!({ "key": "crm", "public": false }),
        )
        .await;
    assert_eq!(fresh["createApp"]["userErrors"], json!([]), "{fresh}");
    let fresh = fresh["createApp"]["app"]["id"].as_str().unwrap().to_owned();

    // While it is taken the old app stays deleted: CONFLICT on key, nothing written.
    let refused = app
        .ok(Some(&builder.token), RESTORE_APP, json!({ "id": old }))
        .await;
    assert_eq!(refused["restoreApp"]["app"], Value::Null);
    assert_eq!(
        refused["restoreApp"]["userErrors"],
        json!([{ "field": "key", "message": "an app with this key already exists", "code": "CONFLICT" }])
    );
    assert_eq!(
        app_keys(&app, &owner).await,
        (json!(["crm"]), json!(["crm"]))
    );

    // Viewers cannot restore; a live app or a made-up id is not found.
    app.ok(Some(&builder.token), DELETE_APP, json!({ "id": fresh }))
        .await;
    assert_eq!(
        app.error_code(Some(&viewer.token), RESTORE_APP, json!({ "id": old }))
            .await,
        "FORBIDDEN"
    );
    let restored = app
        .ok(Some(&builder.token), RESTORE_APP, json!({ "id": old }))
        .await;
    assert_eq!(restored["restoreApp"]["userErrors"], json!([]));
    assert_eq!(restored["restoreApp"]["app"]["key"], "crm");
    assert_eq!(restored["restoreApp"]["app"]["deletedAt"], Value::Null);
    for id in [old.clone(), made_up(&old)] {
        assert_eq!(
            app.error_code(Some(&builder.token), RESTORE_APP, json!({ "id": id }))
                .await,
            "NOT_FOUND"
        );
    }
    let data = app
        .ok(
            Some(&viewer.token),
            "{ app(key: \"crm\") { id versions { isPublished } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["app"]["id"], json!(old));
    assert_eq!(data["app"]["versions"], json!([{ "isPublished": true }]));
    assert_eq!(
        audited(&app, &owner, "app.").await,
        [
            "app.create",
            "app.delete",
            "app.create",
            "app.delete",
            "app.restore"
        ]
    );

    // A tenant's app never shadows a public one: a public app that took the key while
    // the private one was deleted keeps it.
    let (shadow, _, _) = private_app(&app, &builder, "shared-crm").await;
    app.ok(Some(&builder.token), DELETE_APP, json!({ "id": shadow }))
        .await;
    let root = app.sign_up("root@restore-app.test").await;
    app.db
        .admin()
        .await
        .execute_unprepared(
            "UPDATE users SET platform_role = 'platform_admin' WHERE email = 'root@restore-app.test'",
        )
        .await
        .unwrap();
    let public = app
        .ok(
            Some(&root.token),
            CREATE_APP,
            json!({ "key": "shared-crm", "public": true }),
        )
        .await["createApp"]["app"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = app
        .ok(Some(&builder.token), RESTORE_APP, json!({ "id": shadow }))
        .await;
    assert_eq!(
        refused["restoreApp"]["userErrors"],
        json!([{ "field": "key", "message": "a public app already has this key", "code": "CONFLICT" }])
    );

    // A deleted public app comes back on the platform-admin path only.
    app.ok(Some(&root.token), DELETE_APP, json!({ "id": public }))
        .await;
    assert_eq!(
        app.error_code(Some(&owner.token), RESTORE_APP, json!({ "id": public }))
            .await,
        "FORBIDDEN"
    );
    let restored = app
        .ok(Some(&root.token), RESTORE_APP, json!({ "id": public }))
        .await;
    assert_eq!(restored["restoreApp"]["app"]["deletedAt"], Value::Null);
}

#[tokio::test]
async fn a_deleted_connection_frees_its_name_and_comes_back_inactive_without_secrets() {
    let app = TestApp::new().await;
    let admin = app.owner("restore-conn").await;
    let builder = app
        .member(&admin, "builder@restore-conn.test", "BUILDER")
        .await;
    let (_, version, _) = private_app(&app, &admin, "crm").await;
    let secret = create_secret(&app, &admin, "crm-key", "crm-secret-value").await;
    let with_key = json!([{ "field": "apiKey", "secretId": secret }]);
    let old = connect(
        &app,
        &admin,
        &version,
        "crm",
        json!({ "region": "eu" }),
        with_key.clone(),
    )
    .await["connection"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    app.ok(Some(&admin.token), DELETE_CONNECTION, json!({ "id": old }))
        .await;
    let lists = "{ live: connections { nodes { name } } deleted: connections(filter: {deleted: true}) { nodes { id name deletedAt } } }";
    let data = app.ok(Some(&builder.token), lists, json!({})).await;
    assert_eq!(data["live"]["nodes"], json!([]));
    assert_eq!(data["deleted"]["nodes"][0]["id"], json!(old));
    assert!(data["deleted"]["nodes"][0]["deletedAt"].is_string());
    let fresh = connect(
        &app,
        &admin,
        &version,
        "crm",
        json!({ "region": "us" }),
        with_key.clone(),
    )
    .await;
    assert_eq!(fresh["userErrors"], json!([]), "{fresh}");
    let fresh = fresh["connection"]["id"].as_str().unwrap().to_owned();

    let refused = app
        .ok(Some(&admin.token), RESTORE_CONNECTION, json!({ "id": old }))
        .await;
    assert_eq!(
        refused["restoreConnection"]["userErrors"],
        json!([{ "field": "name", "message": "a connection with this name already exists", "code": "CONFLICT" }])
    );
    let data = app.ok(Some(&builder.token), lists, json!({})).await;
    assert_eq!(data["deleted"]["nodes"][0]["id"], json!(old));

    app.ok(
        Some(&admin.token),
        DELETE_CONNECTION,
        json!({ "id": fresh }),
    )
    .await;
    assert_eq!(
        app.error_code(
            Some(&builder.token),
            RESTORE_CONNECTION,
            json!({ "id": old })
        )
        .await,
        "FORBIDDEN"
    );
    let restored = app
        .ok(Some(&admin.token), RESTORE_CONNECTION, json!({ "id": old }))
        .await;
    assert_eq!(
        restored["restoreConnection"],
        json!({
            "connection": { "id": old, "name": "crm", "isActive": false, "deletedAt": null, "secrets": [] },
            "userErrors": []
        })
    );
    assert_eq!(
        app.error_code(Some(&admin.token), RESTORE_CONNECTION, json!({ "id": old }))
            .await,
        "NOT_FOUND"
    );

    // It cannot run again until its secret fields are filled.
    let activate = "mutation($id: ID!, $s: [ConnectionSecretInput!]) { updateConnection(input: {id: $id, isActive: true, secrets: $s}) { connection { isActive secrets { field } } userErrors { field code } } }";
    let refused = app
        .ok(Some(&admin.token), activate, json!({ "id": old }))
        .await;
    assert_eq!(
        refused["updateConnection"]["userErrors"],
        json!([{ "field": "secrets", "code": "BAD_USER_INPUT" }])
    );
    let active = app
        .ok(
            Some(&admin.token),
            activate,
            json!({ "id": old, "s": with_key }),
        )
        .await;
    assert_eq!(
        active["updateConnection"]["connection"],
        json!({ "isActive": true, "secrets": [{ "field": "apiKey" }] })
    );
    assert_eq!(
        audited(&app, &admin, "connection.").await,
        [
            "connection.create",
            "connection.delete",
            "connection.create",
            "connection.delete",
            "connection.restore",
            "connection.update"
        ]
    );
}

async fn count(conn: &impl ConnectionTrait, sql: &str, id: Uuid) -> i64 {
    conn.query_one(stmt(sql, [id.into()]))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

#[tokio::test]
async fn another_tenant_can_neither_see_nor_restore_deleted_apps_and_connections() {
    let app = TestApp::new().await;
    let a = app.owner("restore-iso-a").await;
    let b = app.owner("restore-iso-b").await;
    // Both tenants use the same key and name; B's are deleted, A's live.
    let (_, a_version, _) = private_app(&app, &a, "crm").await;
    let (b_app, b_version, _) = private_app(&app, &b, "crm").await;
    let b_secret = create_secret(&app, &b, "crm-key", "b-secret").await;
    let b_conn = connect(
        &app,
        &b,
        &b_version,
        "crm",
        json!({ "region": "eu" }),
        json!([{ "field": "apiKey", "secretId": b_secret }]),
    )
    .await["connection"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a_secret = create_secret(&app, &a, "crm-key", "a-secret").await;
    connect(
        &app,
        &a,
        &a_version,
        "crm",
        json!({ "region": "eu" }),
        json!([{ "field": "apiKey", "secretId": a_secret }]),
    )
    .await;
    app.ok(Some(&b.token), DELETE_CONNECTION, json!({ "id": b_conn }))
        .await;
    app.ok(Some(&b.token), DELETE_APP, json!({ "id": b_app }))
        .await;

    // A's deleted lists are empty; B's rows are NOT_FOUND like made-up ids.
    let deleted = "{ apps(filter: {deleted: true}) { totalCount } connections(filter: {deleted: true}) { totalCount } }";
    let data = app.ok(Some(&a.token), deleted, json!({})).await;
    assert_eq!(
        data,
        json!({ "apps": { "totalCount": 0 }, "connections": { "totalCount": 0 } })
    );
    for (mutation, id) in [(RESTORE_APP, &b_app), (RESTORE_CONNECTION, &b_conn)] {
        for candidate in [id.clone(), made_up(id)] {
            let (_, body) = app
                .post(Some(&a.token), mutation, json!({ "id": candidate }))
                .await;
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "NOT_FOUND",
                "{body}"
            );
            assert_eq!(body["errors"][0]["message"], "not found", "{body}");
        }
    }

    // Raw SQL as the application role in A: B's deleted rows are invisible and
    // cannot be brought back.
    let pool = app.db.app_pool(1).await;
    let tx = as_app(&pool, Some(a.tenant_uuid()), Some(a.user_uuid())).await;
    for (table, id) in [("apps", &b_app), ("connections", &b_conn)] {
        let id = uuid_of(id);
        assert_eq!(
            count(
                &tx,
                &format!("SELECT count(*) FROM {table} WHERE id = $1"),
                id
            )
            .await,
            0
        );
        let changed = tx
            .execute(stmt(
                &format!("UPDATE {table} SET deleted_at = NULL WHERE id = $1"),
                [id.into()],
            ))
            .await
            .unwrap();
        assert_eq!(changed.rows_affected(), 0, "{table}");
    }
    tx.commit().await.unwrap();
    let admin = app.db.admin().await;
    for (table, id) in [("apps", &b_app), ("connections", &b_conn)] {
        assert_eq!(
            count(
                &admin,
                &format!("SELECT count(*) FROM {table} WHERE id = $1 AND deleted_at IS NOT NULL"),
                uuid_of(id)
            )
            .await,
            1,
            "{table}"
        );
    }

    // A's live key and name do not stand in B's way: keys are per tenant.
    let restored = app
        .ok(Some(&b.token), RESTORE_APP, json!({ "id": b_app }))
        .await;
    assert_eq!(restored["restoreApp"]["userErrors"], json!([]));
    let restored = app
        .ok(Some(&b.token), RESTORE_CONNECTION, json!({ "id": b_conn }))
        .await;
    assert_eq!(restored["restoreConnection"]["userErrors"], json!([]));
    let data = app.ok(Some(&b.token), deleted, json!({})).await;
    assert_eq!(
        data,
        json!({ "apps": { "totalCount": 0 }, "connections": { "totalCount": 0 } })
    );
}
