//! Test support: one PostgreSQL server per test run (an admin URL from
//! `TRELLIS_TEST_DATABASE_URL`, or a throw-away cluster this process starts), one
//! migrated template database, and a fresh database per test made from it and dropped
//! afterwards. Tests talk to it as the application role, so RLS is in force.

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use clap::Parser;
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, TransactionTrait,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tower::ServiceExt;
use trellis_core::scope::stmt;
use trellis_server::app;
use trellis_server::bootstrap::{self, DbNames};
use trellis_server::config::Cli;
use trellis_server::embedded_pg::Cluster;
use trellis_server::http::{router, HttpConfig};
use trellis_server::state::AppState;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";
const TEMPLATE: &str = "trellis_test_template";

struct Server {
    admin_url: String,
    _cluster: Option<Cluster>,
}

/// The role and database names of a test database.
pub fn db_names(database: &str) -> DbNames {
    DbNames {
        database: database.to_owned(),
        owner_role: "trellis_owner".into(),
        app_role: "trellis_app".into(),
        app_password: "trellis_app".to_owned().into(),
    }
}

/// The server and its migrated template, made once per test run.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        std::thread::spawn(|| {
            let (admin_url, cluster) = match std::env::var("TRELLIS_TEST_DATABASE_URL") {
                Ok(url) => (url, None),
                Err(_) => {
                    let dir = std::env::temp_dir()
                        .join(format!("trellis-test-pg-{}", std::process::id()));
                    let cluster =
                        Cluster::start_watched(&dir).expect("start a test PostgreSQL cluster");
                    (cluster.admin_url(), Some(cluster))
                }
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("connect as admin");
                sweep_leftovers(&admin).await;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
                    .await
                    .unwrap();
                bootstrap::ensure_roles_and_database(&admin_url, &db_names(TEMPLATE))
                    .await
                    .expect("create template");
                bootstrap::migrate(
                    &bootstrap::with_database(&admin_url, TEMPLATE).unwrap(),
                    &db_names(TEMPLATE),
                )
                .await
                .expect("migrate template");
                admin.close().await.unwrap();
            });
            Server {
                admin_url,
                _cluster: cluster,
            }
        })
        .join()
        .expect("test database setup")
    })
}

/// Drops databases left by earlier runs that were killed before cleaning up.
async fn sweep_leftovers(admin: &DatabaseConnection) {
    let rows = admin
        .query_all(stmt(
            "SELECT datname FROM pg_database WHERE datname LIKE 'trellis_test_%' AND datname <> $1",
            [TEMPLATE.into()],
        ))
        .await
        .unwrap();
    for row in rows {
        let name: String = row.try_get("", "datname").unwrap();
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
    }
}

/// A fresh database for one test, dropped when this is dropped.
pub struct TestDb {
    pub name: String,
    /// Superuser URL of this database (for what only an owner may do in a test).
    pub admin_url: String,
    /// URL of the application role.
    pub app_url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let server = server();
        let name = format!("trellis_test_{}", Uuid::new_v4().simple());
        let admin = Database::connect(&server.admin_url).await.unwrap();
        admin
            .execute_unprepared(&format!(
                "CREATE DATABASE {name} TEMPLATE {TEMPLATE} OWNER trellis_owner"
            ))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let admin_url = bootstrap::with_database(&server.admin_url, &name).unwrap();
        let app_url = bootstrap::app_url(&server.admin_url, &db_names(&name)).unwrap();
        Self {
            name,
            admin_url,
            app_url,
        }
    }

    /// A superuser connection to this database.
    pub async fn admin(&self) -> DatabaseConnection {
        Database::connect(&self.admin_url).await.unwrap()
    }

    /// A pool of `size` connections as the application role.
    pub async fn app_pool(&self, size: u32) -> DatabaseConnection {
        bootstrap::connect_app(&self.app_url, size, Default::default())
            .await
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = server().admin_url.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// The whole seconds a response's `Retry-After` header says to wait.
pub fn retry_after(response: &axum::response::Response) -> i64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Whether a statement was refused by row-level security (SQLSTATE 42501).
pub fn is_rls_violation(err: &sea_orm::DbErr) -> bool {
    trellis_core::error::database_error(err)
        .and_then(|e| e.code())
        .as_deref()
        == Some("42501")
}

/// Opens a transaction as the app role with the given tenant and user set, like a
/// request would.
pub async fn as_app(
    pool: &DatabaseConnection,
    tenant: Option<Uuid>,
    user: Option<Uuid>,
) -> DatabaseTransaction {
    let tx = pool.begin().await.unwrap();
    tx.execute(stmt(
        "SELECT set_config('app.tenant_id', $1, true), set_config('app.user_id', $2, true)",
        [
            tenant.map(|t| t.to_string()).unwrap_or_default().into(),
            user.map(|u| u.to_string()).unwrap_or_default().into(),
        ],
    ))
    .await
    .unwrap();
    tx
}

/// A scope of `member` on `db`, as a request of theirs would have.
pub fn scope_of(db: &trellis_core::AppDb, member: &Member) -> Arc<trellis_core::RequestScope> {
    trellis_core::RequestScope::new(
        db.clone(),
        trellis_core::Principal::User {
            user_id: member.user_uuid(),
            tenant_id: Some(member.tenant_uuid()),
            session_id: None,
        },
        trellis_core::RequestMeta::default(),
    )
}

/// The whole server on one fresh database, driven through its router.
pub struct TestApp {
    pub db: TestDb,
    pub state: AppState,
    pub router: axum::Router,
}

/// A signed-in user acting in a tenant.
#[derive(Clone, Debug)]
pub struct Member {
    pub token: String,
    pub refresh_token: String,
    pub user_id: String,
    pub tenant_id: String,
    pub email: String,
}

impl Member {
    pub fn tenant_uuid(&self) -> Uuid {
        Uuid::parse_str(&self.tenant_id[4..]).unwrap()
    }
    pub fn user_uuid(&self) -> Uuid {
        Uuid::parse_str(&self.user_id[4..]).unwrap()
    }
}

/// The master keyring of every test server (never the generated key file, which
/// would land in the crate directory).
pub const TEST_MASTER_KEYS: &str = "test-1:QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";

pub fn test_config(app_url: &str, extra: &[&str]) -> trellis_server::config::Config {
    let mut args = vec![
        "trellis",
        "--app-database-url",
        app_url,
        "--jwt-secret",
        JWT_SECRET,
        "--pool-size",
        "8",
    ];
    if !extra.contains(&"--master-keys") {
        args.extend_from_slice(&["--master-keys", TEST_MASTER_KEYS]);
    }
    // The loopback servers tests call out to; a test of the guard names its own list.
    if !extra.contains(&"--egress-allow") {
        args.extend_from_slice(&["--egress-allow", "127.0.0.1"]);
    }
    args.extend_from_slice(extra);
    Cli::try_parse_from(args).unwrap().config
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_args(&[]).await
    }

    pub async fn with_args(extra: &[&str]) -> Self {
        let db = TestDb::new().await;
        let config = test_config(&db.app_url, extra);
        let state = app::build_state(&config, &db.app_url, app::jwt_keys(&config).unwrap())
            .await
            .unwrap();
        let http = HttpConfig {
            request_timeout: std::time::Duration::from_secs(30),
            body_limit: 1 << 20,
            cors_origins: vec![],
            metrics_route: true,
        };
        let router = router(state.clone(), &http);
        Self { db, state, router }
    }

    /// POSTs a GraphQL request; returns the status and the JSON body.
    pub async fn post(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> (StatusCode, Value) {
        let mut request = Request::post("/graphql").header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = json!({ "query": query, "variables": variables }).to_string();
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// Runs a query that must succeed; returns `data`.
    pub async fn ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(token, query, variables).await;
        assert!(
            status.is_success() && body.get("errors").is_none(),
            "{status}: {body:#}"
        );
        body["data"].clone()
    }

    /// The `extensions.code` of the first error.
    pub async fn error_code(&self, token: Option<&str>, query: &str, variables: Value) -> String {
        let (_, body) = self.post(token, query, variables).await;
        body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error: {body:#}"))
            .to_owned()
    }

    pub async fn sign_up(&self, email: &str) -> Member {
        let data = self
            .ok(
                None,
                "mutation($e: String!) { signUp(input: {email: $e, name: \"Test User\", password: \"correct horse battery\"}) { session { accessToken refreshToken user { id } } userErrors { message } } }",
                json!({ "e": email }),
            )
            .await;
        let session = &data["signUp"]["session"];
        Member {
            token: session["accessToken"].as_str().unwrap().to_owned(),
            refresh_token: session["refreshToken"].as_str().unwrap().to_owned(),
            user_id: session["user"]["id"].as_str().unwrap().to_owned(),
            tenant_id: String::new(),
            email: email.to_owned(),
        }
    }

    /// Switches `member` into `tenant_id`, replacing its token.
    pub async fn switch(&self, member: &mut Member, tenant_id: &str) {
        let data = self
            .ok(
                Some(&member.token),
                "mutation($t: ID!) { switchTenant(input: {tenantId: $t}) { accessToken } }",
                json!({ "t": tenant_id }),
            )
            .await;
        member.token = data["switchTenant"]["accessToken"]
            .as_str()
            .unwrap()
            .to_owned();
        member.tenant_id = tenant_id.to_owned();
    }

    /// A new user owning a new tenant, acting in it.
    pub async fn owner(&self, slug: &str) -> Member {
        let mut owner = self.sign_up(&format!("owner@{slug}.test")).await;
        let data = self
            .ok(Some(&owner.token), "mutation($s: String!) { createTenant(input: {slug: $s, name: $s}) { tenant { id } } }", json!({ "s": slug }))
            .await;
        let tenant_id = data["createTenant"]["tenant"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.switch(&mut owner, &tenant_id).await;
        owner
    }

    /// Invites `email` with `role` into the owner's tenant and accepts as a new user.
    pub async fn member(&self, owner: &Member, email: &str, role: &str) -> Member {
        let data = self
            .ok(
                Some(&owner.token),
                &format!("mutation($e: String!) {{ inviteMember(input: {{email: $e, role: {role}}}) {{ token }} }}"),
                json!({ "e": email }),
            )
            .await;
        let token = data["inviteMember"]["token"].as_str().unwrap().to_owned();
        let mut member = self.sign_up(email).await;
        self.ok(
            Some(&member.token),
            "mutation($t: String!) { acceptInvitation(input: {token: $t}) { membership { id } } }",
            json!({ "t": token }),
        )
        .await;
        self.switch(&mut member, &owner.tenant_id).await;
        member
    }

    /// An API key of the owner's tenant with these scopes.
    pub async fn api_key(&self, owner: &Member, scopes: &str) -> (String, String) {
        let data = self
            .ok(
                Some(&owner.token),
                &format!("mutation {{ createApiKey(input: {{name: \"k-{}\", scopes: [{scopes}]}}) {{ secret apiKey {{ id }} }} }}", Uuid::new_v4().simple()),
                json!({}),
            )
            .await;
        (
            data["createApiKey"]["secret"].as_str().unwrap().to_owned(),
            data["createApiKey"]["apiKey"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    }
}

/// One message the sink received: its recipients and its raw text.
#[derive(Clone, Debug)]
pub struct Received {
    pub to: Vec<String>,
    pub data: String,
}

/// An SMTP server on loopback that accepts every message and keeps it.
pub async fn smtp_sink() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let kept = inbox.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.ok()?;
                let mut to = Vec::new();
                while let Some(line) = lines.next_line().await.ok()? {
                    let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "RCPT" => {
                            let address = line.split(':').nth(1).unwrap_or("");
                            to.push(address.trim().trim_matches(['<', '>']).to_owned());
                            b"250 OK\r\n"
                        }
                        "DATA" => {
                            write.write_all(b"354 go on\r\n").await.ok()?;
                            let mut data = String::new();
                            while let Some(line) = lines.next_line().await.ok()? {
                                if line == "." {
                                    break;
                                }
                                data.push_str(&line);
                                data.push('\n');
                            }
                            kept.lock().unwrap().push(Received {
                                to: std::mem::take(&mut to),
                                data,
                            });
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.ok()?;
                            return Some(());
                        }
                        _ => b"250 OK\r\n",
                    };
                    write.write_all(reply).await.ok()?;
                }
                Some(())
            });
        }
    });
    (url, inbox)
}

/// `trellis worker`, the real binary, on the test app's database (no migrations, a 50 ms
/// poll, loopback admitted by the egress guard), killed when dropped; callers add their
/// own settings and spawn it.
pub fn worker_command(app: &TestApp) -> tokio::process::Command {
    trellis_command(app, "worker")
}

/// `trellis serve`, the real binary, listening on `listen`, set up as
/// [`worker_command`] is.
pub fn serve_command(app: &TestApp, listen: std::net::SocketAddr) -> tokio::process::Command {
    let mut command = trellis_command(app, "serve");
    command.env("TRELLIS_LISTEN", listen.to_string());
    command
}

/// `count` `trellis serve` processes on the test app's database (no executor), each on
/// a free port and answering `/healthz`; they stop when the children are dropped.
pub async fn serve_replicas(
    app: &TestApp,
    count: usize,
) -> (Vec<tokio::process::Child>, Vec<String>) {
    let mut servers = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..count {
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        servers.push(
            serve_command(app, listen)
                .env("TRELLIS_EXECUTOR", "false")
                .spawn()
                .unwrap(),
        );
        urls.push(format!("http://{listen}"));
    }
    let client = reqwest::Client::new();
    for url in &urls {
        let mut ready = false;
        for _ in 0..400 {
            let answer = client.get(format!("{url}/healthz")).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                ready = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(ready, "{url} did not start");
    }
    (servers, urls)
}

/// The real `trellis` binary with `subcommand`, on the test app's database as the app
/// role (no migrations), killed when dropped.
pub fn trellis_command(app: &TestApp, subcommand: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_trellis"));
    command
        .arg(subcommand)
        .env_remove("DATABASE_URL")
        .env("TRELLIS_APP_DATABASE_URL", &app.db.app_url)
        .env("TRELLIS_JWT_SECRET", JWT_SECRET)
        .env("TRELLIS_MASTER_KEYS", TEST_MASTER_KEYS)
        .env("TRELLIS_MIGRATE_ON_START", "false")
        .env("TRELLIS_EGRESS_ALLOW", "127.0.0.1")
        .env("TRELLIS_EXECUTOR_POLL_MS", "50")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    command
}
