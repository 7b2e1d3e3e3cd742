//! The connector catalog: the built-in public apps are there for every tenant and only
//! the platform-admin path writes public apps; a tenant's private apps are written by
//! its builders and seen by nobody else; manifests and JSON Schemas are checked when
//! saved (userErrors name the path); a published version never changes, in the API
//! and in the database. The threats: one tenant's connector leaking into another's
//! catalog, a tenant rewriting the shared catalog, a connection's schema changing
//! under it.

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use trellis_core::scope::stmt;

use crate::support::{as_app, is_rls_violation, Member, TestApp};

/// The apps the built-in catalog must have, and an action or trigger of each.
const BUILTIN: [(&str, &str); 6] = [
    ("http", "request"),
    ("webhook", "received"),
    ("schedule", "tick"),
    ("email", "send"),
    ("slack", "postMessage"),
    ("gmail", "sendEmail"),
];

const APP_FIELDS: &str = "id key name description category isPublic versions { id version isPublished publishedAt secretFields configSchema actions { id key kind inputSchema outputSchema } }";

/// A manifest of a tenant's own connector: one config field required, one secret.
pub fn crm_manifest() -> Value {
    json!({
        "auth": "apiKey",
        "configSchema": {
            "type": "object",
            "properties": {
                "region": { "type": "string", "enum": ["eu", "us"] },
                "retries": { "type": "integer", "minimum": 0, "maximum": 5 }
            },
            "required": ["region"],
            "additionalProperties": false
        },
        "secretFields": ["apiKey"]
    })
}

pub fn crm_actions() -> Value {
    json!([
        {
            "key": "createLead", "name": "Create lead", "kind": "ACTION",
            "inputSchema": {
                "type": "object",
                "properties": { "email": { "type": "string", "format": "email" } },
                "required": ["email"]
            },
            "outputSchema": { "type": "object", "properties": { "id": { "type": "string" } } }
        },
        {
            "key": "leadCreated", "name": "Lead created", "kind": "TRIGGER",
            "inputSchema": { "type": "object" },
            "outputSchema": { "type": "object", "properties": { "id": { "type": "string" } } }
        }
    ])
}

pub const CREATE_APP: &str = "mutation($key: String!, $public: Boolean!) { createApp(input: {key: $key, name: \"CRM\", description: \"Our CRM\", category: PRODUCTIVITY, public: $public}) { app { id key isPublic } userErrors { field message code } } }";
pub const CREATE_VERSION: &str = "mutation($app: ID!, $version: String!, $manifest: JSON!, $actions: [ActionInput!]!) { createAppVersion(input: {appId: $app, version: $version, manifest: $manifest, actions: $actions}) { appVersion { id version isPublished actions { id key kind } } userErrors { field message code } } }";
pub const PUBLISH: &str = "mutation($id: ID!) { publishAppVersion(input: {id: $id}) { appVersion { id isPublished publishedAt } userErrors { field message code } } }";

/// Creates a private app `key` in `builder`'s tenant with a published 1.0.0 version;
/// returns (app id, version id, first action id).
pub async fn private_app(app: &TestApp, builder: &Member, key: &str) -> (String, String, String) {
    let data = app
        .ok(
            Some(&builder.token),
            CREATE_APP,
            json!({ "key": key, "public": false }),
        )
        .await;
    assert_eq!(data["createApp"]["userErrors"], json!([]), "{data}");
    let app_id = data["createApp"]["app"]["id"].as_str().unwrap().to_owned();
    let data = app
        .ok(
            Some(&builder.token),
            CREATE_VERSION,
            json!({ "app": app_id, "version": "1.0.0", "manifest": crm_manifest(), "actions": crm_actions() }),
        )
        .await;
    assert_eq!(data["createAppVersion"]["userErrors"], json!([]), "{data}");
    let version = &data["createAppVersion"]["appVersion"];
    let version_id = version["id"].as_str().unwrap().to_owned();
    let action_id = version["actions"][0]["id"].as_str().unwrap().to_owned();
    let data = app
        .ok(Some(&builder.token), PUBLISH, json!({ "id": version_id }))
        .await;
    assert_eq!(data["publishAppVersion"]["appVersion"]["isPublished"], true);
    (app_id, version_id, action_id)
}

fn keys(page: &Value) -> Vec<String> {
    page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["key"].as_str().unwrap().to_owned())
        .collect()
}

async fn catalog(app: &TestApp, member: &Member, filter: Value) -> Value {
    app.ok(
        Some(&member.token),
        &format!(
            "query($f: AppFilter) {{ apps(first: 100, filter: $f) {{ totalCount edges {{ node {{ {APP_FIELDS} }} }} }} }}"
        ),
        json!({ "f": filter }),
    )
    .await["apps"]
        .clone()
}

#[tokio::test]
async fn the_builtin_public_catalog_is_readable_by_every_tenant() {
    let app = TestApp::new().await;
    let a = app.owner("cat-a").await;
    let b = app.owner("cat-b").await;
    let viewer = app.member(&a, "viewer@cat-a.test", "VIEWER").await;

    let public = catalog(&app, &a, json!({ "public": true })).await;
    let public_keys = keys(&public);
    for (key, action) in BUILTIN {
        assert!(
            public_keys.contains(&key.to_owned()),
            "{key} missing: {public_keys:?}"
        );
        let node = &public["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"]["key"] == key)
            .unwrap()["node"];
        assert_eq!(node["isPublic"], true);
        let versions = node["versions"].as_array().unwrap();
        assert!(!versions.is_empty(), "{key} has no version");
        let published = versions
            .iter()
            .find(|v| v["isPublished"] == true)
            .unwrap_or_else(|| panic!("{key} has no published version"));
        assert!(published["publishedAt"].is_string());
        assert_eq!(published["configSchema"]["type"], "object", "{key}");
        let actions = published["actions"].as_array().unwrap();
        assert!(
            actions.iter().any(|x| x["key"] == action),
            "{key} lacks {action}: {actions:?}"
        );
        for x in actions {
            assert!(x["inputSchema"].is_object() && x["outputSchema"].is_object());
        }
    }
    // Triggers and actions are both there, and `kind` narrows them.
    let data = app
        .ok(
            Some(&viewer.token),
            "{ app(key: \"slack\") { key isPublic versions { secretFields triggers: actions(kind: TRIGGER) { key kind } steps: actions(kind: ACTION) { key kind } } } }",
            json!({}),
        )
        .await;
    let slack = &data["app"]["versions"][0];
    assert_eq!(slack["secretFields"], json!(["botToken"]));
    assert!(slack["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["kind"] == "TRIGGER"));
    assert!(slack["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "messagePosted"));
    assert!(slack["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["kind"] == "ACTION"));
    assert!(slack["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "postMessage"));

    // The same catalog for another tenant and for a viewer.
    assert_eq!(catalog(&app, &b, json!({ "public": true })).await, public);
    assert_eq!(
        catalog(&app, &viewer, json!({ "public": true })).await,
        public
    );
    // Nothing private yet.
    assert_eq!(
        catalog(&app, &a, json!({ "public": false })).await["totalCount"],
        0
    );
    assert_eq!(
        catalog(&app, &a, json!(null)).await["totalCount"],
        public["totalCount"]
    );

    // search matches key, name or description, case-insensitively.
    let found = catalog(&app, &b, json!({ "search": "SLACK" })).await;
    assert!(keys(&found).contains(&"slack".to_owned()));
    for edge in found["edges"].as_array().unwrap() {
        let n = &edge["node"];
        let text = format!("{} {} {}", n["key"], n["name"], n["description"]).to_lowercase();
        assert!(text.contains("slack"), "{text}");
    }
    assert_eq!(
        catalog(&app, &b, json!({ "search": "no-such-connector-anywhere" })).await["totalCount"],
        0
    );
    // categories narrows by shelf.
    let email = catalog(&app, &b, json!({ "categories": ["EMAIL"] })).await;
    let email_keys = keys(&email);
    assert!(email_keys.contains(&"email".to_owned()) && email_keys.contains(&"gmail".to_owned()));
    assert!(!email_keys.contains(&"slack".to_owned()));
    for edge in email["edges"].as_array().unwrap() {
        assert_eq!(edge["node"]["category"], "EMAIL");
    }
    let two = catalog(
        &app,
        &b,
        json!({ "categories": ["EMAIL", "COMMUNICATION"] }),
    )
    .await;
    assert!(keys(&two).contains(&"slack".to_owned()));
    assert_eq!(
        catalog(
            &app,
            &b,
            json!({ "categories": ["EMAIL"], "search": "slack" })
        )
        .await["totalCount"],
        0
    );

    // app(key:) on an unknown key is null, not an error.
    let data = app
        .ok(
            Some(&a.token),
            "{ app(key: \"nope-nope\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(data["app"], Value::Null);
}

#[tokio::test]
async fn only_the_platform_admin_path_writes_the_public_catalog() {
    let app = TestApp::new().await;
    let owner = app.owner("pub-a").await;
    let builder = app.member(&owner, "builder@pub-a.test", "BUILDER").await;
    let other = app.owner("pub-b").await;

    for member in [&builder, &owner] {
        assert_eq!(
            app.error_code(
                Some(&member.token),
                CREATE_APP,
                json!({ "key": "shared-crm", "public": true })
            )
            .await,
            "FORBIDDEN"
        );
    }
    // Changing a public app is refused too (it is visible, so FORBIDDEN is no leak).
    let slack = app
        .ok(
            Some(&owner.token),
            "{ app(key: \"slack\") { id name versions { id } } }",
            json!({}),
        )
        .await["app"]
        .clone();
    assert_eq!(
        app.error_code(
            Some(&owner.token),
            "mutation($id: ID!) { updateApp(input: {id: $id, name: \"Slock\"}) { app { name } } }",
            json!({ "id": slack["id"] })
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(
            Some(&builder.token),
            "mutation($id: ID!) { deleteApp(input: {id: $id}) { app { id } } }",
            json!({ "id": slack["id"] })
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.error_code(
            Some(&owner.token),
            CREATE_VERSION,
            json!({ "app": slack["id"], "version": "9.0.0", "manifest": crm_manifest(), "actions": [] })
        )
        .await,
        "FORBIDDEN"
    );

    // Raw SQL as the app role in a tenant: public rows are readable, not writable.
    let pool = app.db.app_pool(1).await;
    let tx = as_app(&pool, Some(owner.tenant_uuid()), Some(owner.user_uuid())).await;
    let changed = tx
        .execute(stmt(
            "UPDATE apps SET name = 'pwned' WHERE tenant_id IS NULL",
            [],
        ))
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 0);
    let err = tx
        .execute(stmt(
            "INSERT INTO apps (id, tenant_id, key, name, category) VALUES (gen_random_uuid(), NULL, 'forged', 'Forged', 'core')",
            [],
        ))
        .await
        .unwrap_err();
    assert!(is_rls_violation(&err), "{err}");
    tx.rollback().await.unwrap();

    // A platform admin (granted out of band, as an operator would) writes public apps.
    let mut root = app.sign_up("root@platform.test").await;
    app.db
        .admin()
        .await
        .execute_unprepared(
            "UPDATE users SET platform_role = 'platform_admin' WHERE email = 'root@platform.test'",
        )
        .await
        .unwrap();
    let data = app
        .ok(
            Some(&root.token),
            CREATE_APP,
            json!({ "key": "shared-crm", "public": true }),
        )
        .await;
    assert_eq!(data["createApp"]["userErrors"], json!([]), "{data}");
    assert_eq!(data["createApp"]["app"]["isPublic"], true);
    let app_id = data["createApp"]["app"]["id"].clone();
    let data = app
        .ok(
            Some(&root.token),
            CREATE_VERSION,
            json!({ "app": app_id, "version": "1.0.0", "manifest": crm_manifest(), "actions": crm_actions() }),
        )
        .await;
    let version_id = data["createAppVersion"]["appVersion"]["id"].clone();
    app.ok(Some(&root.token), PUBLISH, json!({ "id": version_id }))
        .await;
    app.ok(
        Some(&root.token),
        "mutation($id: ID!) { updateApp(input: {id: $id, name: \"Shared CRM\"}) { app { name } } }",
        json!({ "id": app_id }),
    )
    .await;
    // Both tenants see it, with its actions.
    for member in [&builder, &other] {
        let data = app
            .ok(
                Some(&member.token),
                "{ app(key: \"shared-crm\") { name isPublic versions { isPublished actions { key } } } }",
                json!({}),
            )
            .await;
        assert_eq!(data["app"]["name"], "Shared CRM");
        assert_eq!(data["app"]["isPublic"], true);
        assert_eq!(
            data["app"]["versions"][0]["actions"],
            json!([{ "key": "createLead" }, { "key": "leadCreated" }])
        );
    }
    // The platform admin, acting in a tenant, still creates that tenant's private apps
    // unless asking for a public one.
    let tenant = app
        .ok(
            Some(&root.token),
            "mutation { createTenant(input: {slug: \"root-co\", name: \"Root\"}) { tenant { id } } }",
            json!({}),
        )
        .await["createTenant"]["tenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.switch(&mut root, &tenant).await;
    let data = app
        .ok(
            Some(&root.token),
            CREATE_APP,
            json!({ "key": "root-only", "public": false }),
        )
        .await;
    assert_eq!(data["createApp"]["app"]["isPublic"], false);
    let data = app
        .ok(
            Some(&other.token),
            "{ app(key: \"root-only\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(data["app"], Value::Null);
}

#[tokio::test]
async fn private_apps_are_written_by_builders_and_seen_only_in_their_tenant() {
    let app = TestApp::new().await;
    let owner = app.owner("priv-a").await;
    let builder = app.member(&owner, "builder@priv-a.test", "BUILDER").await;
    let operator = app.member(&owner, "operator@priv-a.test", "OPERATOR").await;
    let viewer = app.member(&owner, "viewer@priv-a.test", "VIEWER").await;
    let other = app.owner("priv-b").await;

    for member in [&viewer, &operator] {
        assert_eq!(
            app.error_code(
                Some(&member.token),
                CREATE_APP,
                json!({ "key": "crm", "public": false })
            )
            .await,
            "FORBIDDEN"
        );
    }
    let (app_id, version_id, _) = private_app(&app, &builder, "crm").await;

    // Viewers of the tenant read it; it is not public.
    let mine = catalog(&app, &viewer, json!({ "public": false })).await;
    assert_eq!(keys(&mine), ["crm"]);
    let node = &mine["edges"][0]["node"];
    assert_eq!(node["isPublic"], false);
    assert_eq!(node["versions"][0]["id"], version_id.as_str());
    assert_eq!(node["versions"][0]["secretFields"], json!(["apiKey"]));
    assert_eq!(node["versions"][0]["actions"][0]["key"], "createLead");
    assert_eq!(node["versions"][0]["actions"][1]["kind"], "TRIGGER");
    assert!(
        !keys(&catalog(&app, &viewer, json!({ "public": true })).await).contains(&"crm".to_owned())
    );
    assert!(
        keys(&catalog(&app, &viewer, json!({ "search": "crm" })).await).contains(&"crm".to_owned())
    );
    let by_key = app
        .ok(
            Some(&viewer.token),
            "{ app(key: \"crm\") { id isPublic latestVersion { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(by_key["app"]["id"], app_id.as_str());
    assert_eq!(by_key["app"]["latestVersion"]["id"], version_id.as_str());

    // The other tenant sees nothing of it, by list, search or key.
    assert_eq!(
        catalog(&app, &other, json!({ "public": false })).await["totalCount"],
        0
    );
    assert!(
        !keys(&catalog(&app, &other, json!({ "search": "crm" })).await).contains(&"crm".to_owned())
    );
    let theirs = app
        .ok(
            Some(&other.token),
            "{ app(key: \"crm\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(theirs["app"], Value::Null);
    // ...and can take the same key for its own app.
    let (other_app, _, _) = private_app(&app, &other, "crm").await;
    assert_ne!(other_app, app_id);
    let again = app
        .ok(
            Some(&owner.token),
            "{ app(key: \"crm\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(again["app"]["id"], app_id.as_str());

    // A key taken in the tenant, or by a public app, is a CONFLICT userError.
    for key in ["crm", "slack"] {
        let data = app
            .ok(
                Some(&builder.token),
                CREATE_APP,
                json!({ "key": key, "public": false }),
            )
            .await;
        assert_eq!(data["createApp"]["app"], Value::Null);
        assert_eq!(
            data["createApp"]["userErrors"][0]["code"], "CONFLICT",
            "{key}"
        );
        assert_eq!(data["createApp"]["userErrors"][0]["field"], "key", "{key}");
    }
    let data = app
        .ok(
            Some(&builder.token),
            CREATE_APP,
            json!({ "key": "Bad Key!", "public": false }),
        )
        .await;
    assert_eq!(data["createApp"]["userErrors"][0]["field"], "key");
    assert_eq!(data["createApp"]["userErrors"][0]["code"], "BAD_USER_INPUT");

    // Builders update and delete their tenant's apps; viewers cannot.
    let update =
        "mutation($id: ID!, $n: String!) { updateApp(input: {id: $id, name: $n}) { app { name } userErrors { field } } }";
    assert_eq!(
        app.error_code(
            Some(&viewer.token),
            update,
            json!({ "id": app_id, "n": "x" })
        )
        .await,
        "FORBIDDEN"
    );
    let data = app
        .ok(
            Some(&builder.token),
            update,
            json!({ "id": app_id, "n": "Our CRM" }),
        )
        .await;
    assert_eq!(data["updateApp"]["app"]["name"], "Our CRM");
    app.ok(
        Some(&builder.token),
        "mutation($id: ID!) { deleteApp(input: {id: $id}) { app { id } } }",
        json!({ "id": app_id }),
    )
    .await;
    assert_eq!(
        catalog(&app, &viewer, json!({ "public": false })).await["totalCount"],
        0
    );
    // The other tenant's app of the same key is untouched.
    let data = app
        .ok(
            Some(&other.token),
            "{ app(key: \"crm\") { id name } }",
            json!({}),
        )
        .await;
    assert_eq!(data["app"]["id"], other_app.as_str());
}

/// Runs createAppVersion with `manifest` and `actions`; returns the first userError.
async fn version_error(
    app: &TestApp,
    builder: &Member,
    app_id: &str,
    version: &str,
    manifest: Value,
    actions: Value,
) -> Value {
    let data = app
        .ok(
            Some(&builder.token),
            CREATE_VERSION,
            json!({ "app": app_id, "version": version, "manifest": manifest, "actions": actions }),
        )
        .await;
    assert_eq!(
        data["createAppVersion"]["appVersion"],
        Value::Null,
        "{data}"
    );
    let errors = data["createAppVersion"]["userErrors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{data}");
    assert_eq!(errors[0]["code"], "BAD_USER_INPUT", "{data}");
    errors[0].clone()
}

fn action(key: &str, input: Value, output: Value) -> Value {
    let mut action = json!({ "key": key, "name": key, "kind": "ACTION" });
    action["inputSchema"] = input;
    action["outputSchema"] = output;
    action
}

#[tokio::test]
async fn invalid_manifests_and_schemas_are_user_errors_naming_the_path() {
    let app = TestApp::new().await;
    let owner = app.owner("schemas").await;
    let builder = app.member(&owner, "builder@schemas.test", "BUILDER").await;
    let app_id = app
        .ok(
            Some(&builder.token),
            CREATE_APP,
            json!({ "key": "checked", "public": false }),
        )
        .await["createApp"]["app"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let good = crm_manifest();
    let with = |patch: Value| {
        let mut m = crm_manifest();
        for (k, v) in patch.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let ok_action = || {
        action(
            "ok",
            json!({ "type": "object" }),
            json!({ "type": "object" }),
        )
    };

    // (manifest, actions, version, expected field, words the message must contain)
    let cases: Vec<(Value, Value, &str, &str, &str)> = vec![
        (json!([1, 2]), json!([]), "1.0.0", "manifest", "object"),
        (
            json!({ "configSchema": { "type": "object" } }),
            json!([]),
            "1.0.0",
            "manifest.auth",
            "required",
        ),
        (
            with(json!({ "auth": "magic" })),
            json!([]),
            "1.0.0",
            "manifest.auth",
            "apiKey",
        ),
        (
            with(json!({ "color": "red" })),
            json!([]),
            "1.0.0",
            "manifest.color",
            "unknown",
        ),
        (
            with(json!({ "configSchema": { "type": "string" } })),
            json!([]),
            "1.0.0",
            "manifest.configSchema/type",
            "object",
        ),
        (
            with(
                json!({ "configSchema": { "type": "object", "properties": { "url": { "type": "strin" } } } }),
            ),
            json!([]),
            "1.0.0",
            "manifest.configSchema/properties/url/type",
            "",
        ),
        (
            with(
                json!({ "configSchema": { "type": "object", "properties": { "n": { "minimum": "ten" } } } }),
            ),
            json!([]),
            "1.0.0",
            "manifest.configSchema/properties/n/minimum",
            "",
        ),
        (
            with(
                json!({ "configSchema": { "type": "object", "properties": { "x": { "$ref": "https://evil.example/schema.json" } } } }),
            ),
            json!([]),
            "1.0.0",
            "manifest.configSchema/properties/x/$ref",
            "local",
        ),
        (
            with(json!({ "secretFields": ["apiKey", "apiKey"] })),
            json!([]),
            "1.0.0",
            "manifest.secretFields[1]",
            "",
        ),
        (
            with(json!({ "secretFields": ["region"] })),
            json!([]),
            "1.0.0",
            "manifest.secretFields[0]",
            "",
        ),
        (
            with(json!({ "optionalSecretFields": ["token"] })),
            json!([]),
            "1.0.0",
            "manifest.optionalSecretFields[0]",
            "secretFields",
        ),
        (
            good.clone(),
            json!([ok_action(), action("bad", json!({ "type": 12 }), json!({}))]),
            "1.0.0",
            "actions[1].inputSchema",
            "/type",
        ),
        (
            good.clone(),
            json!([action(
                "o",
                json!({}),
                json!({ "properties": { "a": { "pattern": "(" } } })
            )]),
            "1.0.0",
            "actions[0].outputSchema",
            "/properties/a/pattern",
        ),
        (
            good.clone(),
            json!([action("r", json!({ "$ref": "#/$defs/missing" }), json!({}))]),
            "1.0.0",
            "actions[0].inputSchema",
            "",
        ),
        (
            good.clone(),
            json!([ok_action(), ok_action()]),
            "1.0.0",
            "actions[1].key",
            "key",
        ),
        (
            good.clone(),
            json!([action("has space", json!({}), json!({}))]),
            "1.0.0",
            "actions[0].key",
            "",
        ),
        (
            good.clone(),
            json!([]),
            "1.0",
            "version",
            "MAJOR.MINOR.PATCH",
        ),
    ];
    for (manifest, actions, version, field, words) in cases {
        let error =
            version_error(&app, &builder, &app_id, version, manifest.clone(), actions).await;
        assert_eq!(error["field"], field, "{manifest}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(words),
            "{field}: {error}"
        );
    }
    // Nothing was stored by the refused attempts.
    let data = app
        .ok(
            Some(&builder.token),
            "{ app(key: \"checked\") { versions { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["app"]["versions"], json!([]));

    // A good one is stored; updating it to a bad manifest is refused the same way.
    let data = app
        .ok(
            Some(&builder.token),
            CREATE_VERSION,
            json!({ "app": app_id, "version": "1.0.0", "manifest": good, "actions": [ok_action()] }),
        )
        .await;
    let version_id = data["createAppVersion"]["appVersion"]["id"].clone();
    let data = app
        .ok(
            Some(&builder.token),
            "mutation($id: ID!, $m: JSON) { updateAppVersion(input: {id: $id, manifest: $m}) { appVersion { id } userErrors { field code } } }",
            json!({ "id": version_id, "m": with(json!({ "configSchema": { "type": "object", "required": "region" } })) }),
        )
        .await;
    assert_eq!(
        data["updateAppVersion"]["userErrors"],
        json!([{ "field": "manifest.configSchema/required", "code": "BAD_USER_INPUT" }])
    );
    // The same version number twice is a CONFLICT.
    let data = app
        .ok(
            Some(&builder.token),
            CREATE_VERSION,
            json!({ "app": app_id, "version": "1.0.0", "manifest": crm_manifest(), "actions": [] }),
        )
        .await;
    assert_eq!(
        data["createAppVersion"]["userErrors"][0]["code"],
        "CONFLICT"
    );
    assert_eq!(
        data["createAppVersion"]["userErrors"][0]["field"],
        "version"
    );
}

#[tokio::test]
async fn published_versions_are_immutable_in_the_api_and_the_database() {
    let app = TestApp::new().await;
    let owner = app.owner("frozen").await;
    let builder = app.member(&owner, "builder@frozen.test", "BUILDER").await;
    let app_id = app
        .ok(
            Some(&builder.token),
            CREATE_APP,
            json!({ "key": "frozen-app", "public": false }),
        )
        .await["createApp"]["app"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = app
        .ok(
            Some(&builder.token),
            CREATE_VERSION,
            json!({ "app": app_id, "version": "1.0.0", "manifest": crm_manifest(), "actions": crm_actions() }),
        )
        .await;
    let version_id = data["createAppVersion"]["appVersion"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let update = "mutation($id: ID!, $m: JSON, $a: [ActionInput!]) { updateAppVersion(input: {id: $id, manifest: $m, actions: $a}) { appVersion { id manifest actions { key } } userErrors { field message code } } }";

    // A draft changes freely.
    let mut manifest = crm_manifest();
    manifest["docsUrl"] = json!("https://docs.example.com/crm");
    let data = app
        .ok(
            Some(&builder.token),
            update,
            json!({ "id": version_id, "m": manifest, "a": [crm_actions()[1]] }),
        )
        .await;
    assert_eq!(data["updateAppVersion"]["userErrors"], json!([]));
    assert_eq!(
        data["updateAppVersion"]["appVersion"]["manifest"]["docsUrl"],
        "https://docs.example.com/crm"
    );
    assert_eq!(
        data["updateAppVersion"]["appVersion"]["actions"],
        json!([{ "key": "leadCreated" }])
    );

    app.ok(Some(&builder.token), PUBLISH, json!({ "id": version_id }))
        .await;

    // Through the API: CONFLICT, and nothing changed.
    for vars in [
        json!({ "id": version_id, "m": crm_manifest() }),
        json!({ "id": version_id, "a": crm_actions() }),
    ] {
        let data = app.ok(Some(&builder.token), update, vars).await;
        assert_eq!(data["updateAppVersion"]["appVersion"], Value::Null);
        assert_eq!(
            data["updateAppVersion"]["userErrors"][0]["code"],
            "CONFLICT"
        );
        assert_eq!(data["updateAppVersion"]["userErrors"][0]["field"], "id");
    }
    let data = app
        .ok(Some(&builder.token), PUBLISH, json!({ "id": version_id }))
        .await;
    assert_eq!(
        data["publishAppVersion"]["userErrors"][0]["code"],
        "CONFLICT"
    );

    // In the database, as the application role of the owning tenant: every change to
    // the version or its actions fails, whatever the application would allow.
    let pool = app.db.app_pool(1).await;
    let uuid = |id: &str| uuid::Uuid::parse_str(&id[4..]).unwrap();
    let version = uuid(&version_id);
    for sql in [
        "UPDATE app_versions SET manifest = '{\"auth\": \"none\"}' WHERE id = $1",
        "UPDATE app_versions SET published_at = NULL WHERE id = $1",
        "UPDATE actions SET name = 'Changed' WHERE app_version_id = $1",
        "UPDATE actions SET input_schema = '{}' WHERE app_version_id = $1",
        "DELETE FROM actions WHERE app_version_id = $1",
        "INSERT INTO actions (id, tenant_id, app_version_id, key, name, kind, input_schema, output_schema) SELECT gen_random_uuid(), tenant_id, id, 'sneaky', 'Sneaky', 'action', '{}', '{}' FROM app_versions WHERE id = $1",
        "DELETE FROM app_versions WHERE id = $1",
    ] {
        let tx = as_app(&pool, Some(owner.tenant_uuid()), Some(builder.user_uuid())).await;
        let err = tx
            .execute(stmt(sql, [version.into()]))
            .await
            .expect_err(sql);
        let db = trellis_core::error::database_error(&err).expect("a database error");
        assert_eq!(db.code().as_deref(), Some("23000"), "{sql}: {err}");
        assert_eq!(db.constraint(), Some("app_versions_published_immutable"), "{sql}");
        tx.rollback().await.unwrap();
    }
    // The same holds for the public catalog, even on the platform-admin path.
    let tx = as_app(&pool, Some(owner.tenant_uuid()), Some(builder.user_uuid())).await;
    tx.execute_unprepared("SELECT set_config('app.platform_admin', 'on', true)")
        .await
        .unwrap();
    let err = tx
        .execute_unprepared(
            "UPDATE app_versions SET manifest = '{}' WHERE app_id = (SELECT id FROM apps WHERE key = 'slack' AND tenant_id IS NULL)",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("published"), "{err}");
    tx.rollback().await.unwrap();

    // The stored version is what was published.
    let data = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on AppVersion { isPublished manifest actions { key name } } } }",
            json!({ "id": version_id }),
        )
        .await;
    assert_eq!(data["node"]["isPublished"], true);
    assert_eq!(data["node"]["manifest"], manifest);
    assert_eq!(
        data["node"]["actions"],
        json!([{ "key": "leadCreated", "name": "Lead created" }])
    );

    // A new version is the way to change it.
    let data = app
        .ok(
            Some(&builder.token),
            CREATE_VERSION,
            json!({ "app": app_id, "version": "1.1.0", "manifest": crm_manifest(), "actions": crm_actions() }),
        )
        .await;
    assert_eq!(data["createAppVersion"]["userErrors"], json!([]));
    assert_eq!(data["createAppVersion"]["appVersion"]["isPublished"], false);
}
