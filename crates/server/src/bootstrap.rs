//! Database bootstrap: the two roles, the database, migrations run as the owner role,
//! and the application pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use sea_orm_migration::MigratorTrait;
use secrecy::{ExposeSecret, SecretString};
use trellis_migration::Migrator;

/// Role and database names.
#[derive(Clone, Debug)]
pub struct DbNames {
    pub database: String,
    pub owner_role: String,
    pub app_role: String,
    pub app_password: SecretString,
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

async fn connect_single(url: &str) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10));
    Database::connect(options)
        .await
        .context("connecting to PostgreSQL")
}

async fn exec(db: &DatabaseConnection, sql: &str) -> Result<()> {
    db.execute_unprepared(sql)
        .await
        .with_context(|| format!("running: {}", sql.lines().next().unwrap_or_default()))?;
    Ok(())
}

/// `url` with its path (database) replaced.
pub fn with_database(url: &str, database: &str) -> Result<String> {
    let mut parsed = url::Url::parse(url).context("DATABASE_URL is not a URL")?;
    parsed.set_path(&format!("/{database}"));
    Ok(parsed.to_string())
}

/// The application role's URL: the admin URL with the app role's name and password.
pub fn app_url(admin_url: &str, names: &DbNames) -> Result<String> {
    let mut parsed = url::Url::parse(&with_database(admin_url, &names.database)?)?;
    parsed
        .set_username(&names.app_role)
        .map_err(|()| anyhow::anyhow!("cannot set user"))?;
    parsed
        .set_password(Some(names.app_password.expose_secret()))
        .map_err(|()| anyhow::anyhow!("cannot set password"))?;
    Ok(parsed.to_string())
}

/// Creates the roles (idempotently) and the database if missing. `admin_url` names the
/// maintenance database to connect to.
pub async fn ensure_roles_and_database(admin_url: &str, names: &DbNames) -> Result<()> {
    let admin = connect_single(admin_url).await?;
    let owner = quote_ident(&names.owner_role);
    let app = quote_ident(&names.app_role);
    let password = quote_literal(names.app_password.expose_secret());
    exec(
        &admin,
        &format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {owner_lit}) THEN
                 CREATE ROLE {owner} NOLOGIN BYPASSRLS;
               END IF;
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {app_lit}) THEN
                 CREATE ROLE {app} LOGIN;
               END IF;
             END $$;
             ALTER ROLE {app} WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD {password};",
            owner_lit = quote_literal(&names.owner_role),
            app_lit = quote_literal(&names.app_role),
        ),
    )
    .await?;
    let exists = admin
        .query_one(Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT 1 AS one FROM pg_database WHERE datname = $1",
            [names.database.clone().into()],
        ))
        .await?
        .is_some();
    if !exists {
        exec(
            &admin,
            &format!(
                "CREATE DATABASE {} OWNER {owner}",
                quote_ident(&names.database)
            ),
        )
        .await?;
    }
    admin.close().await?;
    Ok(())
}

/// Applies pending migrations to the database at `db_url` (an admin URL), as the owner
/// role, and lets the application role connect.
pub async fn migrate(db_url: &str, names: &DbNames) -> Result<()> {
    let db = open_as_owner(db_url, names).await?;
    Migrator::up(&db, None)
        .await
        .context("applying migrations")?;
    db.close().await?;
    Ok(())
}

/// A single connection to `db_url` acting as the owner role, with the app role's name in
/// `trellis.app_role` for the migrations' grants.
pub async fn open_as_owner(db_url: &str, names: &DbNames) -> Result<DatabaseConnection> {
    let db = connect_single(db_url).await?;
    exec(
        &db,
        &format!(
            "GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {app}; \
             REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC; \
             SET ROLE {owner}; SELECT set_config('trellis.app_role', {app_lit}, false);",
            database = quote_ident(&names.database),
            app = quote_ident(&names.app_role),
            owner = quote_ident(&names.owner_role),
            app_lit = quote_literal(&names.app_role),
        ),
    )
    .await?;
    Ok(db)
}

/// The application pool, counting every statement it sends into `statements` (and,
/// with traces on, recording each as a span).
pub async fn connect_app(
    url: &str,
    pool_size: u32,
    statements: Arc<AtomicU64>,
) -> Result<DatabaseConnection> {
    connect_app_with(url, pool_size, APP_ACQUIRE_TIMEOUT, statements).await
}

/// How long a request waits for a pooled connection (and a new connection for its
/// handshake) before it fails as UNAVAILABLE, unless configured otherwise.
pub const APP_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// [`connect_app`] with a chosen acquire timeout.
pub async fn connect_app_with(
    url: &str,
    pool_size: u32,
    acquire_timeout: Duration,
    statements: Arc<AtomicU64>,
) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(pool_size)
        .min_connections(1)
        .connect_timeout(acquire_timeout)
        .acquire_timeout(acquire_timeout)
        // sqlx pings a connection when it returns to the pool; pinging it again on
        // every acquire cost each request a round trip before its first statement.
        // A connection that died while idle fails that one request's first statement.
        .test_before_acquire(false)
        .sqlx_logging(false);
    let mut db = Database::connect(options)
        .await
        .context("connecting as the application role")?;
    let hook = statement_hook(statements);
    db.set_metric_callback(move |info| hook(info));
    Ok(db)
}

/// What every statement of the application role reports to, from the pool or from a
/// request transaction: it counts into `statements` (and, with traces on, records a
/// span).
pub fn statement_hook(statements: Arc<AtomicU64>) -> trellis_core::tx::StatementHook {
    Arc::new(move |info| {
        statements.fetch_add(1, Ordering::Relaxed);
        crate::otel::record_statement(info);
    })
}
