//! Tenant isolation of the integration tables (private apps, app versions, actions,
//! secrets, connections, connection secrets, tenant data keys), enforced by
//! PostgreSQL: raw SQL as the application role in tenant A neither reads, changes,
//! deletes nor creates tenant B's rows, and cannot point at them (a composite foreign
//! key or a trigger refuses, with the same error as for an id that does not exist).
//! Through the API, B's IDs are NOT_FOUND, exactly like made-up ones.

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{json, Value};
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::catalog::{crm_actions, crm_manifest, private_app, CREATE_VERSION};
use crate::connections::{connect, create_secret, TEST_CONNECTION};
use crate::support::{as_app, Member, TestApp};

/// One tenant's integration objects, by GraphQL ID.
struct Fixture {
    app: String,
    version: String,
    draft: String,
    action: String,
    secret: String,
    connection: String,
}

fn uuid_of(id: &str) -> Uuid {
    Uuid::parse_str(&id[4..]).unwrap()
}

fn made_up(id: &str) -> String {
    format!("{}_{}", &id[..3], Uuid::now_v7().simple())
}

/// A private app `crm` (a published version and a draft, with actions), a secret and a
/// connection using both.
async fn fixture(app: &TestApp, owner: &Member) -> Fixture {
    let (app_id, version, action) = private_app(app, owner, "crm").await;
    let data = app
        .ok(
            Some(&owner.token),
            CREATE_VERSION,
            json!({ "app": app_id, "version": "2.0.0", "manifest": crm_manifest(), "actions": crm_actions() }),
        )
        .await;
    let draft = data["createAppVersion"]["appVersion"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = create_secret(app, owner, "crm-key", "crm-secret-value").await;
    let payload = connect(
        app,
        owner,
        &version,
        "crm",
        json!({ "region": "eu" }),
        json!([{ "field": "apiKey", "secretId": secret }]),
    )
    .await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    Fixture {
        app: app_id,
        version,
        draft,
        action,
        secret,
        connection: payload["connection"]["id"].as_str().unwrap().to_owned(),
    }
}

async fn count(conn: &impl ConnectionTrait, sql: &str, values: Vec<sea_orm::Value>) -> i64 {
    conn.query_one(stmt(sql, values))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

const TABLES: [&str; 7] = [
    "apps",
    "app_versions",
    "actions",
    "secrets",
    "connections",
    "connection_secrets",
    "tenant_data_keys",
];

/// A snapshot of tenant B's rows, to show nothing changed.
async fn snapshot(admin: &DatabaseConnection, tenant: Uuid) -> Vec<String> {
    let mut rows = vec![];
    for table in TABLES {
        let found = admin
            .query_all(stmt(
                &format!("SELECT t::text AS row FROM {table} t WHERE tenant_id = $1 ORDER BY 1"),
                [tenant.into()],
            ))
            .await
            .unwrap();
        assert!(!found.is_empty(), "{table} has no rows of the tenant");
        rows.extend(
            found
                .into_iter()
                .map(|r| format!("{table}: {}", r.try_get::<String>("", "row").unwrap())),
        );
    }
    rows
}

#[tokio::test]
async fn another_tenants_integration_rows_are_invisible_unchangeable_and_undeletable() {
    let app = TestApp::new().await;
    let a = app.owner("iso-int-a").await;
    let b = app.owner("iso-int-b").await;
    let mine = fixture(&app, &a).await;
    let theirs = fixture(&app, &b).await;
    let admin = app.db.admin().await;
    let before = snapshot(&admin, b.tenant_uuid()).await;
    let pool = app.db.app_pool(1).await;
    let (ta, tb) = (a.tenant_uuid(), b.tenant_uuid());

    let tx = as_app(&pool, Some(ta), Some(a.user_uuid())).await;
    for table in TABLES {
        let own = count(
            &tx,
            &format!("SELECT count(*) FROM {table} WHERE tenant_id = $1"),
            vec![ta.into()],
        )
        .await;
        assert!(own > 0, "{table} has rows of tenant A");
        // No tenant filter at all: only A's rows, and the public catalog.
        let foreign = count(
            &tx,
            &format!("SELECT count(*) FROM {table} WHERE tenant_id IS DISTINCT FROM $1 AND tenant_id IS NOT NULL"),
            vec![ta.into()],
        )
        .await;
        assert_eq!(foreign, 0, "{table} leaked rows of tenant B");
    }
    for (table, id) in [
        ("apps", &theirs.app),
        ("app_versions", &theirs.version),
        ("app_versions", &theirs.draft),
        ("actions", &theirs.action),
        ("secrets", &theirs.secret),
        ("connections", &theirs.connection),
    ] {
        let found = count(
            &tx,
            &format!("SELECT count(*) FROM {table} WHERE id = $1"),
            vec![uuid_of(id).into()],
        )
        .await;
        assert_eq!(found, 0, "{table} {id}");
    }
    // Public rows are there (the catalog is shared), and A's own.
    assert!(
        count(
            &tx,
            "SELECT count(*) FROM apps WHERE tenant_id IS NULL",
            vec![]
        )
        .await
            >= 6
    );
    assert_eq!(
        count(
            &tx,
            "SELECT count(*) FROM connection_secrets WHERE connection_id = $1",
            vec![uuid_of(&mine.connection).into()]
        )
        .await,
        1
    );

    for (sql, id) in [
        (
            "UPDATE apps SET name = 'pwned' WHERE id = $1",
            uuid_of(&theirs.app),
        ),
        (
            "UPDATE app_versions SET manifest = '{}' WHERE id = $1",
            uuid_of(&theirs.draft),
        ),
        (
            "UPDATE actions SET name = 'pwned' WHERE app_version_id = $1",
            uuid_of(&theirs.draft),
        ),
        (
            "UPDATE secrets SET ciphertext = '\\x00', version = 9 WHERE id = $1",
            uuid_of(&theirs.secret),
        ),
        (
            "UPDATE connections SET name = 'pwned', is_active = false WHERE id = $1",
            uuid_of(&theirs.connection),
        ),
        (
            "UPDATE tenant_data_keys SET rewrapped_at = now() WHERE tenant_id = $1",
            tb,
        ),
        (
            "DELETE FROM app_versions WHERE id = $1",
            uuid_of(&theirs.draft),
        ),
        (
            "DELETE FROM actions WHERE app_version_id = $1",
            uuid_of(&theirs.draft),
        ),
        (
            "DELETE FROM connection_secrets WHERE connection_id = $1",
            uuid_of(&theirs.connection),
        ),
        ("DELETE FROM secrets WHERE tenant_id = $1", tb),
        ("DELETE FROM tenant_data_keys WHERE tenant_id = $1", tb),
    ] {
        let result = tx.execute(stmt(sql, [id.into()])).await.unwrap();
        assert_eq!(result.rows_affected(), 0, "{sql}");
    }
    tx.rollback().await.unwrap();
    // Without a tenant, nothing private at all.
    let tx = as_app(&pool, None, None).await;
    for table in TABLES {
        assert_eq!(
            count(
                &tx,
                &format!("SELECT count(*) FROM {table} WHERE tenant_id IS NOT NULL"),
                vec![]
            )
            .await,
            0,
            "{table}"
        );
    }
    tx.rollback().await.unwrap();

    assert_eq!(
        snapshot(&admin, tb).await,
        before,
        "tenant B's rows changed"
    );
}

/// Runs `sql` as tenant A's app role in its own transaction; the SQLSTATE and message.
async fn refused(
    pool: &DatabaseConnection,
    a: &Member,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> (String, String) {
    let tx = as_app(pool, Some(a.tenant_uuid()), Some(a.user_uuid())).await;
    let err = tx.execute(stmt(sql, values)).await.expect_err(sql);
    tx.rollback().await.unwrap();
    let db = trellis_core::error::database_error(&err)
        .unwrap_or_else(|| panic!("{sql}: not a database error: {err}"));
    (
        db.code().unwrap_or_default().into_owned(),
        db.message().to_owned(),
    )
}

#[tokio::test]
async fn integration_rows_cannot_be_written_into_or_point_at_another_tenant() {
    let app = TestApp::new().await;
    let a = app.owner("iso-ref-a").await;
    let b = app.owner("iso-ref-b").await;
    let mine = fixture(&app, &a).await;
    let theirs = fixture(&app, &b).await;
    let admin = app.db.admin().await;
    let before = snapshot(&admin, b.tenant_uuid()).await;
    let pool = app.db.app_pool(1).await;
    let tb = b.tenant_uuid();
    let public_http: Uuid = admin
        .query_one(stmt(
            "SELECT id FROM apps WHERE key = 'http' AND tenant_id IS NULL",
            [],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "id")
        .unwrap();
    let public_http_version: Uuid = admin
        .query_one(stmt(
            "SELECT id FROM app_versions WHERE app_id = $1",
            [public_http.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "id")
        .unwrap();

    // Rows written with tenant B's id: row-level security (or, for a catalog child,
    // the parent check that cannot see B's parent) refuses.
    let inserts: Vec<(&str, Vec<sea_orm::Value>)> = vec![
        (
            "INSERT INTO apps (id, tenant_id, key, name, category) VALUES ($1, $2, 'planted', 'Planted', 'core')",
            vec![Uuid::now_v7().into(), tb.into()],
        ),
        (
            "INSERT INTO app_versions (id, tenant_id, app_id, version, manifest) VALUES ($1, $2, $3, '9.9.9', '{}')",
            vec![Uuid::now_v7().into(), tb.into(), uuid_of(&theirs.app).into()],
        ),
        (
            "INSERT INTO actions (id, tenant_id, app_version_id, key, name, kind, input_schema, output_schema) VALUES ($1, $2, $3, 'planted', 'P', 'action', '{}', '{}')",
            vec![Uuid::now_v7().into(), tb.into(), uuid_of(&theirs.draft).into()],
        ),
        (
            "INSERT INTO secrets (id, tenant_id, name, data_key_generation, ciphertext) VALUES ($1, $2, 'planted', 1, $3)",
            vec![Uuid::now_v7().into(), tb.into(), vec![0u8; 40].into()],
        ),
        (
            "INSERT INTO tenant_data_keys (tenant_id, generation, master_key_id, wrapped) VALUES ($1, 7, 'test-1', $2)",
            vec![tb.into(), vec![0u8; 60].into()],
        ),
        (
            "INSERT INTO connections (id, tenant_id, app_id, app_version_id, name) VALUES ($1, $2, $3, $4, 'planted')",
            vec![Uuid::now_v7().into(), tb.into(), public_http.into(), public_http_version.into()],
        ),
        (
            "INSERT INTO connection_secrets (tenant_id, connection_id, field, secret_id) VALUES ($1, $2, 'other', $3)",
            vec![tb.into(), uuid_of(&theirs.connection).into(), uuid_of(&theirs.secret).into()],
        ),
    ];
    for (sql, values) in inserts {
        let (code, message) = refused(&pool, &a, sql, values).await;
        assert!(
            code == "42501" || code == "23503",
            "{sql}: {code} {message}"
        );
    }
    // Own rows cannot be moved to tenant B.
    for table in [
        "apps",
        "app_versions",
        "secrets",
        "connections",
        "tenant_data_keys",
    ] {
        let (code, message) = refused(
            &pool,
            &a,
            &format!("UPDATE {table} SET tenant_id = $1"),
            vec![tb.into()],
        )
        .await;
        assert_eq!(code, "42501", "{table}: {message}");
    }

    // Rows of tenant A that point at B's rows are refused exactly as if B's rows did not
    // exist: same SQLSTATE, same message.
    let references: Vec<(&str, Vec<sea_orm::Value>, usize)> = vec![
        (
            "INSERT INTO connection_secrets (tenant_id, connection_id, field, secret_id) VALUES ($1, $2, 'other', $3)",
            vec![a.tenant_uuid().into(), uuid_of(&mine.connection).into(), uuid_of(&theirs.secret).into()],
            2,
        ),
        (
            "INSERT INTO connection_secrets (tenant_id, connection_id, field, secret_id) VALUES ($1, $2, 'other', $3)",
            vec![a.tenant_uuid().into(), uuid_of(&theirs.connection).into(), uuid_of(&mine.secret).into()],
            1,
        ),
        (
            "INSERT INTO app_versions (id, tenant_id, app_id, version, manifest) VALUES (gen_random_uuid(), $1, $2, '9.9.9', '{}')",
            vec![a.tenant_uuid().into(), uuid_of(&theirs.app).into()],
            1,
        ),
        (
            "INSERT INTO actions (id, tenant_id, app_version_id, key, name, kind, input_schema, output_schema) VALUES (gen_random_uuid(), $1, $2, 'planted', 'P', 'action', '{}', '{}')",
            vec![a.tenant_uuid().into(), uuid_of(&theirs.draft).into()],
            1,
        ),
        (
            "INSERT INTO connections (id, tenant_id, app_id, app_version_id, name) VALUES (gen_random_uuid(), $1, $2, $3, 'planted')",
            vec![a.tenant_uuid().into(), uuid_of(&theirs.app).into(), uuid_of(&theirs.version).into()],
            2,
        ),
        (
            "UPDATE connections SET app_version_id = $2 WHERE id = $1",
            vec![uuid_of(&mine.connection).into(), uuid_of(&theirs.version).into()],
            1,
        ),
    ];
    for (sql, values, foreign) in references {
        let with_theirs = refused(&pool, &a, sql, values.clone()).await;
        let mut nonexistent = values;
        nonexistent[foreign] = Uuid::now_v7().into();
        let with_nothing = refused(&pool, &a, sql, nonexistent).await;
        assert_eq!(with_theirs.0, "23503", "{sql}: {with_theirs:?}");
        assert_eq!(
            with_theirs, with_nothing,
            "{sql}: B's id is distinguishable"
        );
    }

    assert_eq!(
        snapshot(&admin, tb).await,
        before,
        "tenant B's rows changed"
    );
}

#[tokio::test]
async fn another_tenants_integration_ids_are_not_found_like_made_up_ones() {
    let app = TestApp::new().await;
    let a = app.owner("iso-gql-a").await;
    let b = app.owner("iso-gql-b").await;
    let mine = fixture(&app, &a).await;
    let theirs = fixture(&app, &b).await;
    let admin = app.db.admin().await;
    let before = snapshot(&admin, b.tenant_uuid()).await;

    let node = "query($id: ID!) { node(id: $id) { id } }";
    for id in [
        &theirs.app,
        &theirs.version,
        &theirs.draft,
        &theirs.action,
        &theirs.secret,
        &theirs.connection,
    ] {
        for candidate in [id.clone(), made_up(id)] {
            assert_eq!(
                app.error_code(Some(&a.token), node, json!({ "id": candidate }))
                    .await,
                "NOT_FOUND",
                "{candidate}"
            );
        }
    }
    let data = app
        .ok(
            Some(&a.token),
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            json!({ "ids": [theirs.app, theirs.secret, theirs.connection, mine.connection] }),
        )
        .await;
    assert_eq!(
        data["nodes"],
        json!([null, null, null, { "id": mine.connection }])
    );

    let bot = |secret: &str| json!([{ "field": "apiKey", "secretId": secret }]);
    // (mutation, variables with `$ID` standing for the foreign id, that id)
    let cases: Vec<(&str, Value, &String)> = vec![
        ("mutation($id: ID!) { updateApp(input: {id: $id, name: \"pwned\"}) { app { id } } }", json!({}), &theirs.app),
        ("mutation($id: ID!) { deleteApp(input: {id: $id}) { app { id } } }", json!({}), &theirs.app),
        (CREATE_VERSION_ID, json!({ "manifest": crm_manifest() }), &theirs.app),
        ("mutation($id: ID!) { updateAppVersion(input: {id: $id, actions: []}) { appVersion { id } } }", json!({}), &theirs.draft),
        ("mutation($id: ID!) { publishAppVersion(input: {id: $id}) { appVersion { id } } }", json!({}), &theirs.draft),
        ("mutation($id: ID!) { rotateSecret(input: {id: $id, value: \"pwned\"}) { secret { id } } }", json!({}), &theirs.secret),
        ("mutation($id: ID!) { deleteSecret(input: {id: $id}) { secret { id } } }", json!({}), &theirs.secret),
        ("mutation($id: ID!) { updateConnection(input: {id: $id, name: \"pwned\"}) { connection { id } } }", json!({}), &theirs.connection),
        ("mutation($id: ID!) { deleteConnection(input: {id: $id}) { connection { id } } }", json!({}), &theirs.connection),
        (TEST_CONNECTION, json!({}), &theirs.connection),
        (CREATE_CONNECTION_VERSION, json!({ "s": bot(&mine.secret) }), &theirs.version),
        (CREATE_CONNECTION_SECRET, json!({ "v": mine.version }), &theirs.secret),
        ("mutation($id: ID!, $c: ID!) { updateConnection(input: {id: $c, secrets: [{field: \"apiKey\", secretId: $id}]}) { connection { id } } }", json!({ "c": mine.connection }), &theirs.secret),
        ("mutation($id: ID!, $c: ID!) { updateConnection(input: {id: $c, appVersionId: $id}) { connection { id } } }", json!({ "c": mine.connection }), &theirs.version),
    ];
    for (mutation, vars, id) in cases {
        for candidate in [id.clone(), made_up(id)] {
            let mut vars = vars.clone();
            vars["id"] = json!(candidate);
            let (_, body) = app.post(Some(&a.token), mutation, vars).await;
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "NOT_FOUND",
                "{mutation} with {candidate}: {body}"
            );
            assert_eq!(body["errors"][0]["message"], "not found", "{body}");
        }
    }

    // Lists and look-ups by key show only A's.
    let data = app
        .ok(
            Some(&a.token),
            "query($app: ID!) { app(key: \"crm\") { id } apps(filter: {public: false}) { totalCount } connections(filter: {app: $app}) { totalCount } all: connections { totalCount } secrets { totalCount } }",
            json!({ "app": theirs.app }),
        )
        .await;
    assert_eq!(data["app"]["id"], mine.app.as_str());
    assert_eq!(data["apps"]["totalCount"], 1);
    assert_eq!(data["connections"]["totalCount"], 0);
    assert_eq!(data["all"]["totalCount"], 1);
    assert_eq!(data["secrets"]["totalCount"], 1);

    // Nothing of B changed, and B still works with all of it.
    assert_eq!(snapshot(&admin, b.tenant_uuid()).await, before);
    let data = app
        .ok(
            Some(&b.token),
            "query($c: ID!, $d: ID!) { connection: node(id: $c) { ... on Connection { name secrets { secret { name version } } } } draft: node(id: $d) { ... on AppVersion { isPublished } } }",
            json!({ "c": theirs.connection, "d": theirs.draft }),
        )
        .await;
    assert_eq!(data["connection"]["name"], "crm");
    assert_eq!(
        data["connection"]["secrets"],
        json!([{ "secret": { "name": "crm-key", "version": 1 } }])
    );
    assert_eq!(data["draft"]["isPublished"], false);
}

const CREATE_VERSION_ID: &str = "mutation($id: ID!, $manifest: JSON!) { createAppVersion(input: {appId: $id, version: \"3.0.0\", manifest: $manifest}) { appVersion { id } } }";
const CREATE_CONNECTION_VERSION: &str = "mutation($id: ID!, $s: [ConnectionSecretInput!]!) { createConnection(input: {appVersionId: $id, name: \"stolen\", config: {region: \"eu\"}, secrets: $s}) { connection { id } } }";
const CREATE_CONNECTION_SECRET: &str = "mutation($id: ID!, $v: ID!) { createConnection(input: {appVersionId: $v, name: \"stolen\", config: {region: \"eu\"}, secrets: [{field: \"apiKey\", secretId: $id}]}) { connection { id } } }";
