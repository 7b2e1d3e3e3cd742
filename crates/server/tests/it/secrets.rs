//! Secrets: write-only values sealed with the tenant's data key, itself wrapped by a
//! master key. A value never comes back out: not in a field, an error, a log line or
//! the database row; rotation (of a secret, of a tenant's data key, of the master key)
//! keeps every secret readable; a ciphertext moved to another row or tenant does not
//! open. The threats: a leaked log or backup exposing credentials, a compromised row
//! being replayed elsewhere, a master-key rotation that dies halfway and strands
//! tenants.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use axum::body::Body;
use axum::http::Request;
use clap::Parser;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tower::ServiceExt;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use trellis_core::crypto::{CryptoError, MasterKey, MasterKeyring, SecretBinding, WrappedKey};
use trellis_core::integrations::secrets::{rotate_master_key, MasterKeyRotation};
use trellis_core::scope::stmt;
use trellis_server::bootstrap::{self, DbNames};
use uuid::Uuid;

use crate::connections::{
    connect, create_secret, http_connection, latest_version, Loopback, CREATE_SECRET,
    TEST_CONNECTION,
};
use crate::support::{Member, TestApp, JWT_SECRET, TEST_MASTER_KEYS};

const ROTATE: &str = "mutation($id: ID!, $v: String!) { rotateSecret(input: {id: $id, value: $v}) { secret { id name version rotatedAt } userErrors { field message code } } }";
const DELETE: &str =
    "mutation($id: ID!) { deleteSecret(input: {id: $id}) { secret { id } userErrors { field message code } } }";
const ROTATE_DATA_KEY: &str =
    "mutation { rotateDataKey { generation secretsReencrypted userErrors { field code } } }";

fn uuid_of(id: &str) -> Uuid {
    Uuid::parse_str(&id[4..]).unwrap()
}

/// One secret row with the data key that sealed it, as the database holds them.
#[derive(Clone, Debug)]
struct Stored {
    id: Uuid,
    tenant_id: Uuid,
    version: i32,
    generation: i32,
    ciphertext: Vec<u8>,
    master_key_id: String,
    wrapped: Vec<u8>,
}

impl Stored {
    /// Opens the value with `keyring`, as the server would.
    fn open(&self, keyring: &MasterKeyring) -> Result<String, CryptoError> {
        let key = keyring.unwrap(
            self.tenant_id,
            &WrappedKey {
                master_key_id: self.master_key_id.clone(),
                ciphertext: self.wrapped.clone(),
            },
        )?;
        let value = key.open(
            &SecretBinding {
                tenant_id: self.tenant_id,
                secret_id: self.id,
                version: self.version,
            },
            &self.ciphertext,
        )?;
        Ok(value.expose_secret().to_owned())
    }
}

async fn stored(admin: &DatabaseConnection) -> HashMap<Uuid, Stored> {
    let rows = admin
        .query_all(stmt(
            "SELECT s.id, s.tenant_id, s.version, s.data_key_generation, s.ciphertext, k.master_key_id, k.wrapped \
             FROM secrets s JOIN tenant_data_keys k ON k.tenant_id = s.tenant_id AND k.generation = s.data_key_generation",
            [],
        ))
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| {
            let s = Stored {
                id: r.try_get("", "id").unwrap(),
                tenant_id: r.try_get("", "tenant_id").unwrap(),
                version: r.try_get("", "version").unwrap(),
                generation: r.try_get("", "data_key_generation").unwrap(),
                ciphertext: r.try_get("", "ciphertext").unwrap(),
                master_key_id: r.try_get("", "master_key_id").unwrap(),
                wrapped: r.try_get("", "wrapped").unwrap(),
            };
            (s.id, s)
        })
        .collect()
}

/// Every tenant data key: (tenant, generation) → (master key id, wrapped bytes).
async fn data_keys(admin: &DatabaseConnection) -> HashMap<(Uuid, i32), (String, Vec<u8>)> {
    admin
        .query_all(stmt(
            "SELECT tenant_id, generation, master_key_id, wrapped FROM tenant_data_keys",
            [],
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                (
                    r.try_get("", "tenant_id").unwrap(),
                    r.try_get("", "generation").unwrap(),
                ),
                (
                    r.try_get("", "master_key_id").unwrap(),
                    r.try_get("", "wrapped").unwrap(),
                ),
            )
        })
        .collect()
}

fn test_keyring() -> MasterKeyring {
    MasterKeyring::parse(TEST_MASTER_KEYS).unwrap()
}

#[tokio::test]
async fn secrets_are_managed_by_admins_and_their_values_never_read_back() {
    let app = TestApp::new().await;
    let admin = app.owner("vault").await;
    let builder = app.member(&admin, "builder@vault.test", "BUILDER").await;
    let viewer = app.member(&admin, "viewer@vault.test", "VIEWER").await;

    let data = app
        .ok(
            Some(&admin.token),
            CREATE_SECRET,
            json!({ "n": "stripe-key", "v": "sk_live_first" }),
        )
        .await;
    let secret = &data["createSecret"]["secret"];
    assert_eq!(secret["name"], "stripe-key");
    assert_eq!(secret["version"], 1);
    assert_eq!(secret["rotatedAt"], Value::Null);
    assert_eq!(secret["lastUsedAt"], Value::Null);
    let id = secret["id"].as_str().unwrap().to_owned();

    // No field of the type can carry a value.
    let data = app
        .ok(
            Some(&admin.token),
            "{ __type(name: \"Secret\") { fields { name } } }",
            json!({}),
        )
        .await;
    let mut fields: Vec<&str> = data["__type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "createdAt",
            "createdBy",
            "id",
            "lastUsedAt",
            "name",
            "rotatedAt",
            "updatedAt",
            "usedBy",
            "version"
        ]
    );

    // Input problems are userErrors naming the field.
    for (name, value, field, code) in [
        ("stripe-key", "again", "name", "CONFLICT"),
        ("has space", "v", "name", "BAD_USER_INPUT"),
        ("9starts-with-digit", "v", "name", "BAD_USER_INPUT"),
        ("empty", "", "value", "BAD_USER_INPUT"),
    ] {
        let data = app
            .ok(
                Some(&admin.token),
                CREATE_SECRET,
                json!({ "n": name, "v": value }),
            )
            .await;
        assert_eq!(data["createSecret"]["secret"], Value::Null);
        assert_eq!(
            data["createSecret"]["userErrors"][0]["field"], field,
            "{name}"
        );
        assert_eq!(
            data["createSecret"]["userErrors"][0]["code"], code,
            "{name}"
        );
    }
    let data = app
        .ok(
            Some(&admin.token),
            CREATE_SECRET,
            json!({ "n": "huge", "v": "x".repeat(64 * 1024 + 1) }),
        )
        .await;
    assert_eq!(data["createSecret"]["userErrors"][0]["field"], "value");

    // Rotation bumps the version and records when.
    for (version, value) in [(2, "sk_live_second"), (3, "sk_live_third")] {
        let data = app
            .ok(Some(&admin.token), ROTATE, json!({ "id": id, "v": value }))
            .await;
        let rotated = &data["rotateSecret"]["secret"];
        assert_eq!(rotated["version"], version);
        assert!(rotated["rotatedAt"].is_string());
    }
    let data = app
        .ok(Some(&admin.token), ROTATE, json!({ "id": id, "v": "" }))
        .await;
    assert_eq!(data["rotateSecret"]["userErrors"][0]["field"], "value");
    let admin_db = app.db.admin().await;
    let row = stored(&admin_db).await[&uuid_of(&id)].clone();
    assert_eq!(row.version, 3);
    assert_eq!(row.open(&test_keyring()).unwrap(), "sk_live_third");

    // Only admins see or change secrets.
    for member in [&builder, &viewer] {
        for (query, vars) in [
            (ROTATE, json!({ "id": id, "v": "x" })),
            (DELETE, json!({ "id": id })),
            ("{ secrets { totalCount } }", json!({})),
            (
                "query($id: ID!) { node(id: $id) { id } }",
                json!({ "id": id }),
            ),
            (ROTATE_DATA_KEY, json!({})),
        ] {
            assert_eq!(
                app.error_code(Some(&member.token), query, vars).await,
                "FORBIDDEN",
                "{query}"
            );
        }
    }
    let other = create_secret(&app, &admin, "other-token", "tok").await;
    let data = app
        .ok(
            Some(&admin.token),
            "query($s: String) { secrets(filter: {search: $s}) { totalCount edges { node { name version } } } }",
            json!({ "s": "STRIPE" }),
        )
        .await;
    assert_eq!(
        data["secrets"],
        json!({ "totalCount": 1, "edges": [{ "node": { "name": "stripe-key", "version": 3 } }] })
    );

    // In use by a connection: CONFLICT, and it stays.
    let slack = latest_version(&app, &admin, "slack").await;
    let payload = connect(
        &app,
        &admin,
        &slack,
        "team",
        json!({ "workspace": "acme" }),
        json!([{ "field": "botToken", "secretId": id }]),
    )
    .await;
    let connection = payload["connection"]["id"].as_str().unwrap().to_owned();
    let data = app
        .ok(Some(&admin.token), DELETE, json!({ "id": id }))
        .await;
    assert_eq!(data["deleteSecret"]["secret"], Value::Null);
    assert_eq!(data["deleteSecret"]["userErrors"][0]["code"], "CONFLICT");
    assert_eq!(data["deleteSecret"]["userErrors"][0]["field"], "id");
    let data = app
        .ok(
            Some(&admin.token),
            "query($id: ID!) { node(id: $id) { ... on Secret { name usedBy { field connection { id } } } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data["node"]["usedBy"],
        json!([{ "field": "botToken", "connection": { "id": connection } }])
    );
    // The database refuses too, whatever the application checks.
    let pool = app.db.app_pool(1).await;
    let tx =
        crate::support::as_app(&pool, Some(admin.tenant_uuid()), Some(admin.user_uuid())).await;
    let err = tx
        .execute(stmt(
            "DELETE FROM secrets WHERE id = $1",
            [uuid_of(&id).into()],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        trellis_core::error::database_error(&err)
            .and_then(|e| e.code())
            .as_deref(),
        Some("23503"),
        "{err}"
    );
    tx.rollback().await.unwrap();

    // Free once the connection is gone.
    app.ok(
        Some(&admin.token),
        "mutation($id: ID!) { deleteConnection(input: {id: $id}) { connection { id } } }",
        json!({ "id": connection }),
    )
    .await;
    let data = app
        .ok(Some(&admin.token), DELETE, json!({ "id": id }))
        .await;
    assert_eq!(data["deleteSecret"]["userErrors"], json!([]));
    assert_eq!(data["deleteSecret"]["secret"]["id"], id.as_str());
    assert_eq!(
        app.error_code(
            Some(&admin.token),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": id })
        )
        .await,
        "NOT_FOUND"
    );
    let left = stored(&admin_db).await;
    assert!(!left.contains_key(&uuid_of(&id)));
    assert!(left.contains_key(&uuid_of(&other)));
    // Each change is in the audit log.
    let data = app
        .ok(
            Some(&admin.token),
            "{ tenant { auditEvents(filter: {action: \"secret.\"}) { edges { node { action } } } } }",
            json!({}),
        )
        .await;
    let actions: Vec<&str> = data["tenant"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "secret.delete",
            "secret.create",
            "secret.rotate",
            "secret.rotate",
            "secret.create"
        ]
    );
}

/// Log output of everything the current thread does, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Captures every tracing event and span (TRACE and up, spans with their fields) of
/// this thread, which runs the whole test: the router, the pool, the HTTP client and
/// the loopback server. `log` records (reqwest, rustls) are bridged into tracing as
/// the server's own `fmt().init()` does.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    static LOG_BRIDGE: Once = Once::new();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    LOG_BRIDGE.call_once(|| {
        // The global subscriber drops everything; it exists to install the `log`
        // bridge, whose records then reach this thread's subscriber.
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::OFF)
            .try_init();
    });
    (captured, guard)
}

#[tokio::test]
async fn a_secret_value_never_appears_in_responses_logs_or_rows() {
    let (logs, _guard) = capture_logs();
    let app = TestApp::new().await;
    let admin = app.owner("leaky").await;
    let builder = app.member(&admin, "builder@leaky.test", "BUILDER").await;
    let marker = format!("PLAINTEXT-{}", Uuid::new_v4().simple());
    let rotated_marker = format!("{marker}-rotated");
    let server = Loopback::start().await;
    let mut bodies: Vec<String> = vec![];

    macro_rules! send {
        ($member:expr, $query:expr, $vars:expr) => {{
            let (_, body) = app.post(Some(&$member.token), $query, $vars).await;
            bodies.push(body.to_string());
            body
        }};
    }

    let body = send!(admin, CREATE_SECRET, json!({ "n": "leak", "v": marker }));
    let id = body["data"]["createSecret"]["secret"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Refused writes carrying the value: a taken name, a bad name, too long, no right.
    send!(admin, CREATE_SECRET, json!({ "n": "leak", "v": marker }));
    send!(
        admin,
        CREATE_SECRET,
        json!({ "n": "bad name!", "v": marker })
    );
    send!(
        admin,
        CREATE_SECRET,
        json!({ "n": "big", "v": marker.repeat(64 * 1024 / marker.len() + 1) })
    );
    send!(builder, CREATE_SECRET, json!({ "n": "mine", "v": marker }));
    // The value in the document itself, next to a mistake the validator reports.
    let body = send!(
        admin,
        &format!("mutation {{ createSecret(input: {{name: 42, value: \"{marker}\"}}) {{ secret {{ id }} }} }}"),
        json!({})
    );
    assert!(body["errors"].is_array(), "{body}");
    let body = send!(
        admin,
        &format!(
            "mutation {{ createSecret(input: {{value: \"{marker}\"}}) {{ secret {{ id }} }} }}"
        ),
        json!({})
    );
    assert!(body["errors"].is_array(), "{body}");
    // A variable declared with another type (async-graphql lets this one through).
    send!(
        admin,
        "mutation($v: Int!) { createSecret(input: {name: \"n\", value: $v}) { secret { id } } }",
        json!({ "v": marker })
    );

    // Rotation, including refused ones.
    let body = send!(admin, ROTATE, json!({ "id": id, "v": rotated_marker }));
    assert_eq!(
        body["data"]["rotateSecret"]["secret"]["version"], 2,
        "{body}"
    );
    send!(
        admin,
        ROTATE,
        json!({ "id": format!("sec_{}", Uuid::now_v7().simple()), "v": marker })
    );
    send!(admin, ROTATE, json!({ "id": "not-an-id", "v": marker }));
    send!(builder, ROTATE, json!({ "id": id, "v": marker }));

    // Used for real: a test request carries it to the loopback server...
    let good = http_connection(
        &app,
        &admin,
        "api",
        &format!("{}/ok", server.base),
        Some(&id),
    )
    .await;
    let body = send!(builder, TEST_CONNECTION, json!({ "id": good }));
    assert_eq!(body["data"]["testConnection"]["ok"], true, "{body}");
    assert_eq!(
        server.requests()[0].authorization.as_deref(),
        Some(rotated_marker.as_str()),
        "the secret must really be used"
    );
    // ...and fails in every way a request can fail.
    let failing = http_connection(
        &app,
        &admin,
        "failing",
        &format!("{}/fail", server.base),
        Some(&id),
    )
    .await;
    send!(admin, TEST_CONNECTION, json!({ "id": failing }));
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        http_connection(
            &app,
            &admin,
            "closed",
            &format!("http://127.0.0.1:{port}/"),
            Some(&id),
        )
        .await
    };
    let body = send!(admin, TEST_CONNECTION, json!({ "id": closed }));
    assert_eq!(
        body["data"]["testConnection"]["message"],
        "could not connect"
    );
    // A value that is no valid header value.
    let body = send!(
        admin,
        CREATE_SECRET,
        json!({ "n": "bad-header", "v": format!("Bearer {marker}\r\nX-Injected: 1") })
    );
    let bad_header = body["data"]["createSecret"]["secret"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let injected = http_connection(
        &app,
        &admin,
        "injected",
        &format!("{}/ok", server.base),
        Some(&bad_header),
    )
    .await;
    let body = send!(admin, TEST_CONNECTION, json!({ "id": injected }));
    assert_eq!(
        body["data"]["testConnection"]["userErrors"][0]["field"], "secrets",
        "{body}"
    );
    // A ciphertext that does not open: an internal error, logged.
    let admin_db = app.db.admin().await;
    admin_db
        .execute(stmt(
            "UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE id = $1) WHERE id = $2",
            [uuid_of(&id).into(), uuid_of(&bad_header).into()],
        ))
        .await
        .unwrap();
    let body = send!(admin, TEST_CONNECTION, json!({ "id": injected }));
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INTERNAL",
        "{body}"
    );
    // Re-encryption and the read side.
    send!(admin, ROTATE_DATA_KEY, json!({}));
    send!(admin, DELETE, json!({ "id": id }));
    send!(
        admin,
        "{ secrets { edges { node { id name version createdAt rotatedAt lastUsedAt createdBy { email } usedBy { field connection { name config secrets { field secret { name version } } } } } } } }",
        json!({})
    );
    send!(
        admin,
        "query($id: ID!) { node(id: $id) { ... on Secret { name version } } }",
        json!({ "id": id })
    );
    send!(
        admin,
        "{ connections { edges { node { name config secrets { secret { name } } } } } }",
        json!({})
    );
    send!(
        admin,
        "{ tenant { auditEvents(first: 100) { edges { node { action details } } } } }",
        json!({})
    );
    assert!(server.requests().len() >= 2);

    // Responses: never.
    assert!(bodies.len() >= 20);
    for body in &bodies {
        assert!(
            !body.contains(&marker),
            "a response carries the value: {body}"
        );
    }
    // Logs: never, though they saw the requests, the failures and the internal error.
    let log = logs.text();
    assert!(
        log.contains("finished processing request"),
        "nothing captured"
    );
    assert!(
        log.contains("internal error"),
        "the internal error was not logged"
    );
    assert!(log.contains("could not decrypt"));
    let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
    for needle in [&marker, &hex] {
        if let Some(at) = log.find(needle.as_str()) {
            let start = log[..at].rfind('\n').unwrap_or(0);
            panic!(
                "the log carries the value: {}",
                &log[start..(at + 200).min(log.len())]
            );
        }
    }
    // Rows: no table holds the value, as text or bytes.
    let tables: Vec<String> = admin_db
        .query_all(stmt(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS t FROM pg_tables WHERE schemaname IN ('public', 'app')",
            [],
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.try_get("", "t").unwrap())
        .collect();
    assert!(tables.iter().any(|t| t == "public.secrets"), "{tables:?}");
    let mut rows_with_name = 0;
    for table in &tables {
        let hits: i64 = admin_db
            .query_one(stmt(
                &format!(
                    "SELECT count(*) FROM {table} t WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0"
                ),
                [marker.clone().into(), hex.clone().into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        assert_eq!(hits, 0, "{table} holds the value");
        let named: i64 = admin_db
            .query_one(stmt(
                &format!("SELECT count(*) FROM {table} t WHERE strpos(t::text, 'bad-header') > 0"),
                [],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        rows_with_name += named;
    }
    // The scan does find what is there: the secret's name (not secret).
    assert!(rows_with_name >= 2, "{rows_with_name}");
    let in_ciphertext: i64 = admin_db
        .query_one(stmt(
            "SELECT count(*) FROM secrets WHERE position(convert_to($1, 'UTF8') IN ciphertext) > 0",
            [marker.clone().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(in_ciphertext, 0);
}

fn db_names(database: &str) -> DbNames {
    DbNames {
        database: database.to_owned(),
        owner_role: "trellis_owner".into(),
        app_role: "trellis_app".into(),
        app_password: "trellis_app".to_owned().into(),
    }
}

/// A router over the same database whose server holds the master keys `spec`.
async fn router_with_keys(app: &TestApp, spec: &str) -> axum::Router {
    let config = trellis_server::config::Cli::try_parse_from([
        "trellis",
        "--app-database-url",
        &app.db.app_url,
        "--jwt-secret",
        JWT_SECRET,
        "--master-keys",
        spec,
        "--pool-size",
        "2",
        "--egress-allow",
        "127.0.0.1",
    ])
    .unwrap()
    .config;
    let state = trellis_server::app::build_state(
        &config,
        &app.db.app_url,
        trellis_server::app::jwt_keys(&config).unwrap(),
    )
    .await
    .unwrap();
    trellis_server::http::router(
        state,
        &trellis_server::http::HttpConfig {
            request_timeout: std::time::Duration::from_secs(30),
            body_limit: 1 << 20,
            cors_origins: vec![],
            metrics_route: true,
        },
    )
}

/// Tests `connection` through `router`; the JSON body.
async fn test_through(router: &axum::Router, member: &Member, connection: &str) -> Value {
    let body = json!({ "query": TEST_CONNECTION, "variables": { "id": connection } }).to_string();
    let request = Request::post("/graphql")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", member.token))
        .body(Body::from(body))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn master_key_rotation_rewraps_every_data_key_and_a_rerun_finishes_an_interrupted_one() {
    let app = TestApp::new().await;
    let server = Loopback::start().await;
    let mut owners = vec![];
    let mut values: HashMap<Uuid, String> = HashMap::new();
    let mut connections = vec![];
    for slug in ["mk-a", "mk-b", "mk-c"] {
        let owner = app.owner(slug).await;
        for i in 0..2 {
            let value = format!("{slug}-value-{i}");
            let id = create_secret(&app, &owner, &format!("s{i}"), &value).await;
            values.insert(uuid_of(&id), value);
            if i == 0 {
                let url = format!("{}/{slug}", server.base);
                connections.push(http_connection(&app, &owner, "api", &url, Some(&id)).await);
            }
        }
        owners.push(owner);
    }
    // One tenant is on its second data-key generation.
    app.ok(Some(&owners[1].token), ROTATE_DATA_KEY, json!({}))
        .await;

    let admin = app.db.admin().await;
    let before = stored(&admin).await;
    let keys_before = data_keys(&admin).await;
    assert_eq!(before.len(), 6);
    assert_eq!(keys_before.len(), 3);
    assert!(keys_before.values().all(|(id, _)| id == "test-1"));
    let old = test_keyring();
    for row in before.values() {
        assert_eq!(row.open(&old).unwrap(), values[&row.id]);
    }

    let new_key = MasterKeyring::from_keys(vec![MasterKey::generate("test-2").unwrap()])
        .unwrap()
        .to_spec();
    let both_spec = format!("{},{TEST_MASTER_KEYS}", new_key.expose_secret());
    let both = MasterKeyring::parse(&both_spec).unwrap();
    let new_only = MasterKeyring::parse(new_key.expose_secret()).unwrap();
    let owner = bootstrap::open_as_owner(&app.db.admin_url, &db_names(&app.db.name))
        .await
        .unwrap();

    // Interrupted after one key.
    let report = rotate_master_key(&both, &owner, Some(1)).await.unwrap();
    assert_eq!(
        report,
        MasterKeyRotation {
            rewrapped: 1,
            remaining: 2
        }
    );
    let mid = data_keys(&admin).await;
    assert_eq!(mid.values().filter(|(id, _)| id == "test-2").count(), 1);
    // Halfway, every secret opens with the keyring that holds both keys.
    for row in stored(&admin).await.values() {
        assert_eq!(row.open(&both).unwrap(), values[&row.id]);
    }

    // A key whose row another transaction holds (a run that died mid-way, a
    // concurrent run) is skipped, not waited for, and reported as left.
    let blocker = admin.begin().await.unwrap();
    let locked: Uuid = blocker
        .query_one(stmt(
            "SELECT tenant_id FROM tenant_data_keys WHERE master_key_id = 'test-1' LIMIT 1 FOR UPDATE",
            [],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "tenant_id")
        .unwrap();
    let report = rotate_master_key(&both, &owner, None).await.unwrap();
    assert_eq!(
        report,
        MasterKeyRotation {
            rewrapped: 1,
            remaining: 1
        }
    );
    let partial = data_keys(&admin).await;
    assert!(partial
        .iter()
        .all(|((tenant, _), (id, _))| (*tenant == locked) == (id == "test-1")));
    blocker.rollback().await.unwrap();

    // The rerun finishes it.
    let report = rotate_master_key(&both, &owner, None).await.unwrap();
    assert_eq!(
        report,
        MasterKeyRotation {
            rewrapped: 1,
            remaining: 0
        }
    );
    let after = stored(&admin).await;
    let keys_after = data_keys(&admin).await;
    assert_eq!(keys_after.len(), 3);
    for (key, (id, wrapped)) in &keys_after {
        assert_eq!(id, "test-2");
        assert_ne!(wrapped, &keys_before[key].1, "re-wrapped");
    }
    for row in after.values() {
        // Secret ciphertexts are untouched; only the data keys' wrapping changed.
        assert_eq!(row.ciphertext, before[&row.id].ciphertext);
        assert_eq!(row.generation, before[&row.id].generation);
        // The old master key is no longer needed.
        assert_eq!(row.open(&new_only).unwrap(), values[&row.id]);
        assert!(matches!(
            row.open(&old),
            Err(CryptoError::UnknownMasterKey(id)) if id == "test-2"
        ));
    }
    let rewrapped: i64 = admin
        .query_one(stmt(
            "SELECT count(*) FROM tenant_data_keys WHERE rewrapped_at IS NOT NULL",
            [],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(rewrapped, 3);
    // Another rerun has nothing to do.
    assert_eq!(
        rotate_master_key(&both, &owner, None).await.unwrap(),
        MasterKeyRotation::default()
    );

    // A keyring that lacks a key in use fails loudly, naming it, and changes nothing.
    let stranger = MasterKeyring::from_keys(vec![
        MasterKey::generate("test-3").unwrap(),
        MasterKey::generate("test-1").unwrap(),
    ])
    .unwrap();
    let err = rotate_master_key(&stranger, &owner, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("test-2") || format!("{err:?}").contains("test-2"),
        "{err:?}"
    );
    assert_eq!(data_keys(&admin).await, keys_after);

    // A server holding only the new key serves every tenant's secrets.
    let router = router_with_keys(&app, new_key.expose_secret()).await;
    for (owner, connection) in owners.iter().zip(&connections) {
        let body = test_through(&router, owner, connection).await;
        assert_eq!(body["data"]["testConnection"]["ok"], true, "{body}");
    }
    let seen: Vec<Option<String>> = server
        .requests()
        .into_iter()
        .map(|s| s.authorization)
        .collect();
    assert_eq!(
        seen,
        [
            Some("mk-a-value-0".to_owned()),
            Some("mk-b-value-0".to_owned()),
            Some("mk-c-value-0".to_owned())
        ]
    );
    // The old server, without the new key, fails generically.
    let body = app
        .post(
            Some(&owners[0].token),
            TEST_CONNECTION,
            json!({ "id": connections[0] }),
        )
        .await
        .1;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INTERNAL",
        "{body}"
    );
    assert_eq!(body["errors"][0]["message"], "internal error");
}

#[tokio::test]
async fn a_tenant_data_key_rotation_reencrypts_its_secrets_and_only_its_own() {
    let app = TestApp::new().await;
    let a = app.owner("dk-a").await;
    let b = app.owner("dk-b").await;
    let admin_member = app.member(&a, "admin@dk-a.test", "ADMIN").await;
    let mut values = HashMap::new();
    let mut ids = vec![];
    for i in 0..3 {
        let value = format!("a-value-{i}");
        let id = create_secret(&app, &a, &format!("s{i}"), &value).await;
        values.insert(uuid_of(&id), value);
        ids.push(id);
    }
    let theirs = create_secret(&app, &b, "s0", "b-value").await;
    values.insert(uuid_of(&theirs), "b-value".to_owned());
    let admin = app.db.admin().await;
    let before = stored(&admin).await;
    let keys_before = data_keys(&admin).await;

    let data = app
        .ok(Some(&admin_member.token), ROTATE_DATA_KEY, json!({}))
        .await;
    assert_eq!(
        data["rotateDataKey"],
        json!({ "generation": 2, "secretsReencrypted": 3, "userErrors": [] })
    );
    let after = stored(&admin).await;
    let keys_after = data_keys(&admin).await;
    let keyring = test_keyring();
    for row in after.values() {
        assert_eq!(row.open(&keyring).unwrap(), values[&row.id]);
        assert_eq!(row.version, before[&row.id].version);
        if row.tenant_id == a.tenant_uuid() {
            assert_eq!(row.generation, 2);
            assert_ne!(row.ciphertext, before[&row.id].ciphertext);
        } else {
            assert_eq!(row.generation, 1);
            assert_eq!(row.ciphertext, before[&row.id].ciphertext);
        }
    }
    // The old generation is gone; the other tenant's key is as it was.
    let mut a_keys: Vec<i32> = keys_after
        .keys()
        .filter(|(t, _)| *t == a.tenant_uuid())
        .map(|(_, g)| *g)
        .collect();
    a_keys.sort_unstable();
    assert_eq!(a_keys, [2]);
    assert_eq!(
        keys_after[&(b.tenant_uuid(), 1)],
        keys_before[&(b.tenant_uuid(), 1)]
    );
    assert_ne!(
        keys_after[&(a.tenant_uuid(), 2)].1,
        keys_before[&(a.tenant_uuid(), 1)].1
    );

    // Again, then the values are used for real and rotated under the newest key.
    let data = app.ok(Some(&a.token), ROTATE_DATA_KEY, json!({})).await;
    assert_eq!(data["rotateDataKey"]["generation"], 3);
    let server = Loopback::start().await;
    let connection = http_connection(&app, &a, "api", &server.base, Some(&ids[1])).await;
    let data = app
        .ok(Some(&a.token), TEST_CONNECTION, json!({ "id": connection }))
        .await;
    assert_eq!(data["testConnection"]["ok"], true);
    assert_eq!(
        server.requests()[0].authorization.as_deref(),
        Some("a-value-1")
    );
    app.ok(
        Some(&a.token),
        ROTATE,
        json!({ "id": ids[1], "v": "a-value-1b" }),
    )
    .await;
    let row = stored(&admin).await[&uuid_of(&ids[1])].clone();
    assert_eq!((row.version, row.generation), (2, 3));
    assert_eq!(row.open(&keyring).unwrap(), "a-value-1b");
    // A tenant with no secrets yet can rotate too.
    let c = app.owner("dk-c").await;
    let data = app.ok(Some(&c.token), ROTATE_DATA_KEY, json!({})).await;
    assert_eq!(data["rotateDataKey"]["secretsReencrypted"], 0);
    let data = app
        .ok(
            Some(&a.token),
            "{ tenant { auditEvents(filter: {action: \"tenant.data_key.rotate\"}) { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["tenant"]["auditEvents"]["totalCount"], 2);
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_version_or_tenant_does_not_open() {
    let app = TestApp::new().await;
    let a = app.owner("move-a").await;
    let b = app.owner("move-b").await;
    let server = Loopback::start().await;
    let first = create_secret(&app, &a, "first", "first-value").await;
    let second = create_secret(&app, &a, "second", "second-value").await;
    let theirs = create_secret(&app, &b, "theirs", "their-value").await;
    let a_conn = http_connection(
        &app,
        &a,
        "api",
        &format!("{}/a", server.base),
        Some(&second),
    )
    .await;
    let b_conn = http_connection(
        &app,
        &b,
        "api",
        &format!("{}/b", server.base),
        Some(&theirs),
    )
    .await;
    let admin = app.db.admin().await;
    let original = stored(&admin).await;
    let keys = data_keys(&admin).await;

    let test = |member: &Member, id: &str| {
        let (member, id) = (member.clone(), id.to_owned());
        let app = &app;
        async move {
            app.post(Some(&member.token), TEST_CONNECTION, json!({ "id": id }))
                .await
                .1
        }
    };
    let assert_opaque = |body: &Value| {
        let error = &body["errors"][0];
        assert_eq!(error["message"], "internal error", "{body}");
        let mut keys: Vec<&String> = error["extensions"].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["code", "requestId"], "{body}");
        assert_eq!(error["extensions"]["code"], "INTERNAL");
        assert!(!body.to_string().contains("decrypt"));
    };
    let body = test(&a, &a_conn).await;
    assert_eq!(body["data"]["testConnection"]["ok"], true, "{body}");

    let set = |sql: &'static str, values: Vec<sea_orm::Value>| {
        let admin = &admin;
        async move {
            admin.execute(stmt(sql, values)).await.unwrap();
        }
    };
    // Another secret's ciphertext, same tenant and key.
    set(
        "UPDATE secrets SET ciphertext = $1 WHERE id = $2",
        vec![
            original[&uuid_of(&first)].ciphertext.clone().into(),
            uuid_of(&second).into(),
        ],
    )
    .await;
    assert_opaque(&test(&a, &a_conn).await);
    // Its own ciphertext under another version number.
    set(
        "UPDATE secrets SET ciphertext = $1, version = version + 1 WHERE id = $2",
        vec![
            original[&uuid_of(&second)].ciphertext.clone().into(),
            uuid_of(&second).into(),
        ],
    )
    .await;
    assert_opaque(&test(&a, &a_conn).await);
    // Put back as it was, it opens again: the failures were the moves.
    set(
        "UPDATE secrets SET version = 1 WHERE id = $1",
        vec![uuid_of(&second).into()],
    )
    .await;
    let body = test(&a, &a_conn).await;
    assert_eq!(body["data"]["testConnection"]["ok"], true, "{body}");

    // Tenant A's ciphertext in tenant B's row.
    set(
        "UPDATE secrets SET ciphertext = $1 WHERE id = $2",
        vec![
            original[&uuid_of(&second)].ciphertext.clone().into(),
            uuid_of(&theirs).into(),
        ],
    )
    .await;
    assert_opaque(&test(&b, &b_conn).await);
    // Even with tenant A's wrapped data key copied along: the wrapping is bound to A.
    let (a_master, a_wrapped) = keys[&(a.tenant_uuid(), 1)].clone();
    set(
        "UPDATE tenant_data_keys SET master_key_id = $1, wrapped = $2 WHERE tenant_id = $3",
        vec![a_master.into(), a_wrapped.into(), b.tenant_uuid().into()],
    )
    .await;
    assert_opaque(&test(&b, &b_conn).await);
    let moved = stored(&admin).await[&uuid_of(&theirs)].clone();
    assert!(matches!(
        moved.open(&test_keyring()),
        Err(CryptoError::Open)
    ));

    // Only the two good tests reached the server, both with A's own value.
    let seen: Vec<Option<String>> = server
        .requests()
        .into_iter()
        .map(|s| s.authorization)
        .collect();
    assert_eq!(
        seen,
        [
            Some("second-value".to_owned()),
            Some("second-value".to_owned())
        ]
    );
}

/// A server whose keyring lacks the master key stored data keys are wrapped under (a
/// lost `master.keys`, a replica with its own generated key) refuses to start, saying
/// what to do, instead of answering INTERNAL for every secret later.
#[tokio::test]
async fn start_up_refuses_a_keyring_that_cannot_open_stored_secrets() {
    let app = crate::support::TestApp::new().await;
    let admin = app.owner("keyring").await;
    let config = crate::support::test_config(&app.db.app_url, &[]);
    // No secret yet: any keyring will do.
    trellis_server::app::check_master_keys(&app.state, &config)
        .await
        .unwrap();
    create_secret(&app, &admin, "api", "s3cret-value").await;
    trellis_server::app::check_master_keys(&app.state, &config)
        .await
        .unwrap();
    let other_keys = "other-1:Q0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0M=";
    let other = crate::support::test_config(&app.db.app_url, &["--master-keys", other_keys]);
    let state = trellis_server::app::build_state(
        &other,
        &app.db.app_url,
        trellis_server::app::jwt_keys(&other).unwrap(),
    )
    .await
    .unwrap();
    let refused = trellis_server::app::check_master_keys(&state, &other)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("test-1"), "{refused}");
    assert!(refused.contains("TRELLIS_MASTER_KEYS"), "{refused}");
}
