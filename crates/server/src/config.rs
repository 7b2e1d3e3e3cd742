//! Typed configuration from environment variables (and flags). Every variable is
//! documented here, in `--help` and in `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

/// Trellis: the multi-tenant GraphQL control plane for automations and AI agents.
#[derive(Debug, Parser)]
#[command(name = "trellis", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default), and the executor and scheduler unless
    /// TRELLIS_EXECUTOR=false or TRELLIS_SCHEDULER=false.
    Serve,
    /// Run only the executor (workflows' runs) and the scheduler (unless
    /// TRELLIS_SCHEDULER=false), with no HTTP server. Run as many as the load needs,
    /// beside any number of servers, on one database.
    Worker,
    /// Create the roles and database if needed, and apply migrations.
    Migrate,
    /// Check that the database keeps the tenancy contract; exits 1 when it does not.
    Doctor,
    /// Print the GraphQL schema (SDL) to stdout.
    ExportSchema,
    /// Create a demo tenant, user and API key, and print how to use them.
    SeedDemo,
    /// Re-wrap every tenant data key under the active master key (the first of
    /// TRELLIS_MASTER_KEYS). Resumable: rerun after an interruption. Secret ciphertexts
    /// are not touched.
    RotateMasterKey {
        /// With the generated key file (no TRELLIS_MASTER_KEYS): first add a new
        /// active key to it, keeping the old ones for unwrapping.
        #[arg(long)]
        generate: bool,
    },
    /// Archive audit events older than each tenant's retention now (one pass): write
    /// them to the archive's gzip NDJSON files, then delete them from the table.
    AuditArchive {
        /// Only this tenant (its slug, or its UUID).
        #[arg(long)]
        tenant: Option<String>,
        /// Archive events created before this day (UTC, `YYYY-MM-DD`) instead of each
        /// tenant's retention; events younger than a day always stay.
        #[arg(long)]
        before: Option<chrono::NaiveDate>,
    },
    /// Verify a tenant's whole audit chain: its archive files, then the events still
    /// in the table from the archived boundary on. Exits 1 when it does not verify.
    AuditVerify {
        /// The tenant's slug, or its UUID.
        #[arg(long)]
        tenant: String,
    },
    /// Create an API key for a tenant (by slug) and print it once.
    CreateApiKey {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// read, write or admin (repeatable).
        #[arg(long = "scope", default_values = ["read"])]
        scopes: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    #[value(name = "HS256")]
    Hs256,
    #[value(name = "EdDSA")]
    EdDsa,
    #[value(name = "RS256")]
    Rs256,
}

/// Everything the server reads at start-up.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Admin (superuser or CREATEROLE) URL used to create roles, the database and run
    /// migrations. Unset: an embedded PostgreSQL cluster is started under the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// URL the server connects with as the application role. Unset: derived from the
    /// admin URL with the app role's name and password.
    #[arg(long, env = "TRELLIS_APP_DATABASE_URL", hide_env_values = true)]
    pub app_database_url: Option<SecretString>,
    /// Name of the database (when derived from the admin URL or embedded).
    #[arg(long, env = "TRELLIS_DB_NAME", default_value = "trellis")]
    pub db_name: String,
    /// Role that owns every object and runs migrations (NOLOGIN, BYPASSRLS).
    #[arg(long, env = "TRELLIS_DB_OWNER_ROLE", default_value = "trellis_owner")]
    pub owner_role: String,
    /// Role the server logs in as (NOSUPERUSER, NOBYPASSRLS, owns nothing).
    #[arg(long, env = "TRELLIS_DB_APP_ROLE", default_value = "trellis_app")]
    pub app_role: String,
    /// Password of the application role.
    #[arg(
        long,
        env = "TRELLIS_DB_APP_PASSWORD",
        default_value = "trellis_app",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub app_password: SecretString,
    /// MongoDB for execution logs (`mongodb://host/db`). Unset: logs are kept in
    /// PostgreSQL (`execution_logs`).
    #[arg(long, env = "MONGODB_URL", hide_env_values = true)]
    pub mongodb_url: Option<SecretString>,
    /// Seconds between maintenance passes: log outbox replay (MongoDB) or expired-log
    /// purge (PostgreSQL), and run-payload retention (when an admin URL is known).
    #[arg(long, env = "TRELLIS_MAINTENANCE_INTERVAL", default_value_t = 60)]
    pub maintenance_interval: u64,
    /// Days a soft-deleted tenant is kept, and can be restored by an owner
    /// (`restoreTenant`), before the maintenance loop purges every row of it.
    #[arg(long, env = "TRELLIS_TENANT_PURGE_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(i32).range(1..=3650))]
    pub tenant_purge_days: i32,
    /// Days a tenant's audit events stay in PostgreSQL before the maintenance loop
    /// archives them to files, unless the tenant's `settings.auditRetentionDays` or its
    /// plan's `auditRetentionDays` limit says otherwise.
    #[arg(long, env = "TRELLIS_AUDIT_RETENTION_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(i32).range(1..=3650))]
    pub audit_retention_days: i32,
    /// Where archived audit events are written (`<dir>/<tenant uuid>/<YYYY-MM>.ndjson.gz`).
    /// Unset: `<data dir>/audit-archive`. Replicas must share it.
    #[arg(long, env = "TRELLIS_AUDIT_ARCHIVE_DIR")]
    pub audit_archive_dir: Option<PathBuf>,
    /// Connections in the application pool.
    #[arg(long, env = "TRELLIS_DB_POOL_SIZE", default_value_t = 16)]
    pub pool_size: u32,
    /// Seconds a request waits for a database connection before it fails with
    /// UNAVAILABLE (HTTP 503): during an outage requests fail fast instead of hanging.
    #[arg(long, env = "TRELLIS_DB_ACQUIRE_TIMEOUT", default_value_t = 3)]
    pub db_acquire_timeout: u64,
    /// Where the embedded cluster, generated keys and other local state live.
    #[arg(long, env = "TRELLIS_DATA_DIR", default_value = ".trellis")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "TRELLIS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// `production` turns off introspection, field suggestions and GraphiQL.
    #[arg(long, env = "TRELLIS_ENV", value_enum, default_value = "development")]
    pub env: Environment,
    /// Apply migrations when `serve` starts.
    #[arg(long, env = "TRELLIS_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    /// Serve even when the RLS doctor finds a problem (not recommended).
    #[arg(long, env = "TRELLIS_SKIP_DOCTOR", default_value_t = false, action = clap::ArgAction::Set)]
    pub skip_doctor: bool,
    /// Master keys that wrap tenant data keys: `id:base64key,…` (32-byte keys, the
    /// first active, the rest kept to unwrap). Unset: one is generated and kept in
    /// `<data dir>/master.keys` (mode 0600).
    #[arg(long, env = "TRELLIS_MASTER_KEYS", hide_env_values = true)]
    pub master_keys: Option<SecretString>,
    /// HS256 secret (32+ bytes). Unset: one is generated and kept in the data dir.
    #[arg(long, env = "TRELLIS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,
    /// The one algorithm access tokens are signed and checked with.
    #[arg(
        long,
        env = "TRELLIS_JWT_ALGORITHM",
        value_enum,
        default_value = "HS256"
    )]
    pub jwt_algorithm: JwtAlgorithm,
    /// PEM private key for EdDSA or RS256.
    #[arg(long, env = "TRELLIS_JWT_PRIVATE_KEY_FILE")]
    pub jwt_private_key_file: Option<PathBuf>,
    /// PEM public key for EdDSA or RS256.
    #[arg(long, env = "TRELLIS_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Key id put in and required from the token header.
    #[arg(long, env = "TRELLIS_JWT_KID", default_value = "trellis-1")]
    pub jwt_kid: String,
    #[arg(long, env = "TRELLIS_JWT_ISSUER", default_value = "trellis")]
    pub jwt_issuer: String,
    #[arg(long, env = "TRELLIS_JWT_AUDIENCE", default_value = "trellis-api")]
    pub jwt_audience: String,
    /// Access-token lifetime in seconds.
    #[arg(long, env = "TRELLIS_ACCESS_TOKEN_TTL", default_value_t = 900)]
    pub access_token_ttl: i64,
    /// Refresh-token lifetime in seconds.
    #[arg(long, env = "TRELLIS_REFRESH_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl: i64,
    /// Invitation lifetime in seconds.
    #[arg(long, env = "TRELLIS_INVITATION_TTL", default_value_t = 7 * 24 * 3600)]
    pub invitation_ttl: i64,
    /// Whether sign-up must confirm the address by mail before the account can sign
    /// in (and then answers the same whether or not the address has an account).
    /// Default: on in production, off in development.
    #[arg(long, env = "TRELLIS_SIGNUP_VERIFICATION", action = clap::ArgAction::Set)]
    pub signup_verification: Option<bool>,
    /// How long a sign-up confirmation token is good for, in seconds.
    #[arg(long, env = "TRELLIS_EMAIL_VERIFICATION_TTL", default_value_t = 24 * 3600)]
    pub email_verification_ttl: i64,
    /// The SMTP server of the platform's own mail (sign-up confirmation), e.g.
    /// `smtp://user:pass@mail.example.com:587?tls=required`. Unset: messages are only
    /// logged (development).
    #[arg(long, env = "TRELLIS_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<SecretString>,
    /// The sender of the platform's mail.
    #[arg(
        long,
        env = "TRELLIS_MAIL_FROM",
        default_value = "Trellis <no-reply@localhost>"
    )]
    pub mail_from: String,
    /// How long a run's idempotency key names its run, in seconds.
    #[arg(long, env = "TRELLIS_IDEMPOTENCY_TTL", default_value_t = 24 * 3600)]
    pub idempotency_ttl: u64,
    /// Clock skew allowed when checking tokens, in seconds (at most 30).
    #[arg(long, env = "TRELLIS_JWT_LEEWAY", default_value_t = 5)]
    pub jwt_leeway: u64,
    /// Folder with ruru's static assets (from `npm ci` in web/).
    #[arg(long, env = "TRELLIS_GRAPHIQL_ASSETS", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/node_modules/ruru/static"))]
    pub graphiql_assets: PathBuf,
    /// Addresses and CIDR ranges outbound calls may reach although they are loopback,
    /// private, link-local or metadata addresses (comma-separated, e.g.
    /// `10.0.0.0/8,127.0.0.1`). Everything public is reachable.
    #[arg(long, env = "TRELLIS_EGRESS_ALLOW", default_value = "")]
    pub egress_allow: String,
    /// Seconds before a request is cut off.
    #[arg(long, env = "TRELLIS_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout: u64,
    /// Seconds a connection may take to send a request's headers; also how long an
    /// idle keep-alive connection stays open.
    #[arg(long, env = "TRELLIS_HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds shutdown (SIGTERM, Ctrl-C) waits for requests in flight and live
    /// sockets (closed with 1001) before the process exits.
    #[arg(long, env = "TRELLIS_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Largest request body in bytes.
    #[arg(long, env = "TRELLIS_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Origins allowed by CORS, comma-separated; empty: same-origin only.
    #[arg(long, env = "TRELLIS_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Maximum query depth.
    #[arg(long, env = "TRELLIS_MAX_DEPTH", default_value_t = 12)]
    pub max_depth: usize,
    /// Maximum query complexity.
    #[arg(long, env = "TRELLIS_MAX_COMPLEXITY", default_value_t = 5000)]
    pub max_complexity: usize,
    /// Most mutation cost per HTTP request (all operations of a batch together): each
    /// mutation field, alias by alias, costs 1; signUp and login cost 10.
    #[arg(long, env = "TRELLIS_MAX_MUTATION_COST", default_value_t = 50)]
    pub max_mutation_cost: u32,
    /// Anonymous mutation fields (sign-up, login, refresh, …) one client address may
    /// send a minute, counted in PostgreSQL across replicas; 0 turns the throttle off.
    #[arg(
        long,
        env = "TRELLIS_ANONYMOUS_MUTATIONS_PER_MINUTE",
        default_value_t = 60
    )]
    pub anonymous_mutations_per_minute: u32,
    /// A manifest of trusted documents (JSON: SHA-256 hex to document text, as
    /// `clients/typescript/persisted-documents.json`): clients may then send a
    /// `documentId` instead of the text.
    #[arg(long, env = "TRELLIS_TRUSTED_DOCUMENTS")]
    pub trusted_documents: Option<PathBuf>,
    /// Run only the documents of TRELLIS_TRUSTED_DOCUMENTS (recommended in production
    /// once every client sends them).
    #[arg(long, env = "TRELLIS_TRUSTED_DOCUMENTS_ONLY", default_value_t = false, action = clap::ArgAction::Set)]
    pub trusted_documents_only: bool,
    /// Run the built-in executor in `serve` (`trellis worker` always runs it).
    #[arg(long, env = "TRELLIS_EXECUTOR", default_value_t = true, action = clap::ArgAction::Set)]
    pub executor: bool,
    /// Runs the executor drives at once. Default: twice the number of CPUs.
    #[arg(long, env = "TRELLIS_EXECUTOR_CONCURRENCY")]
    pub executor_concurrency: Option<usize>,
    /// Runs the executor claims from one tenant per pass, so that one tenant's backlog
    /// cannot hold another's runs back.
    #[arg(long, env = "TRELLIS_EXECUTOR_RUNS_PER_TENANT", default_value_t = 10)]
    pub executor_runs_per_tenant: u64,
    /// How long the executor rests when it found nothing to do, in milliseconds.
    #[arg(long, env = "TRELLIS_EXECUTOR_POLL_MS", default_value_t = 250)]
    pub executor_poll_ms: u64,
    /// Run the scheduler (which fires SCHEDULE triggers) in `serve` and `worker`. Any
    /// number may run: each firing is made once.
    #[arg(long, env = "TRELLIS_SCHEDULER", default_value_t = true, action = clap::ArgAction::Set)]
    pub scheduler: bool,
    /// How long the scheduler rests between passes, in milliseconds.
    #[arg(long, env = "TRELLIS_SCHEDULER_POLL_MS", default_value_t = 1000)]
    pub scheduler_poll_ms: u64,
    /// How long, in milliseconds, the log of a process call answered over REST waits
    /// for others to be written with it in one transaction (docs/processes.md); at most
    /// 5000, so that a shutdown's grace period still sees it written.
    #[arg(long, env = "TRELLIS_CALL_LOG_LINGER_MS",
          default_value_t = trellis_core::processes::log_queue::LINGER.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(0..=5000))]
    pub call_log_linger_ms: u64,
    /// Most operations in one batched HTTP request.
    #[arg(long, env = "TRELLIS_MAX_BATCH", default_value_t = 10)]
    pub max_batch: usize,
    /// Where `/metrics` is served (e.g. `127.0.0.1:9090`), by `serve` and `worker`.
    /// Unset: on the main port in development, nowhere in production (and nowhere by a
    /// worker).
    #[arg(long, env = "TRELLIS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// `text` (colored on a terminal unless `NO_COLOR` is set) or `json` (one object a
    /// line, for log pipelines).
    #[arg(long, env = "TRELLIS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info,trellis=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
}

impl Config {
    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    /// The audit archive's directory: as configured, else `<data dir>/audit-archive`.
    pub fn audit_archive_dir(&self) -> PathBuf {
        self.audit_archive_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-archive"))
    }

    /// How the audit archive runs: its directory and the default retention.
    pub fn audit_archive(&self) -> trellis_core::audit_archive::ArchiveSettings {
        trellis_core::audit_archive::ArchiveSettings {
            default_days: self.audit_retention_days,
            ..trellis_core::audit_archive::ArchiveSettings::new(self.audit_archive_dir())
        }
    }

    /// Whether sign-up confirms addresses: as configured, else in production only.
    pub fn verifies_email(&self) -> bool {
        self.signup_verification.unwrap_or(self.is_production())
    }
}
