//! Start-up: find or start the database, bootstrap and migrate it, check it with the
//! doctor, and build the shared state.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use chrono::Duration;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use trellis_core::auth::{JwtConfig, JwtKeys};
use trellis_core::crypto::{MasterKey, MasterKeyring};
use trellis_core::egress::Egress;
use trellis_core::engine::executor::{Executor, ExecutorConfig};
use trellis_core::engine::scheduler::{Scheduler, SchedulerConfig};
use trellis_core::identity::IdentityConfig;
use trellis_core::integrations::secrets::Vault;
use trellis_core::logs::LogStore;
use trellis_core::mail::Mailer;
use trellis_core::runs::live::LiveEvents;
use trellis_core::runs::RunSettings;
use trellis_core::AppDb;
use trellis_graphql::trusted::TrustedDocuments;
use trellis_graphql::{build_schema, Limits, Services};

use crate::bootstrap::{self, DbNames};
use crate::config::{Config, JwtAlgorithm};
use crate::embedded_pg::Cluster;
use crate::http::render_graphiql;
use crate::state::AppState;
use crate::telemetry;

/// The database the server uses, and the embedded cluster if it started one.
pub struct Database {
    /// Admin URL of the Trellis database, when known (not with only an app URL).
    pub admin_url: Option<String>,
    pub app_url: String,
    pub cluster: Option<Cluster>,
}

impl Database {
    /// Stops the embedded cluster, if any.
    pub fn shutdown(mut self) -> Result<()> {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.stop()?;
        }
        Ok(())
    }
}

pub fn db_names(config: &Config) -> DbNames {
    DbNames {
        database: config.db_name.clone(),
        owner_role: config.owner_role.clone(),
        app_role: config.app_role.clone(),
        app_password: config.app_password.clone(),
    }
}

/// Finds the database (starting the embedded cluster when no URL is configured),
/// creates roles and database, and migrates when `migrate` is set.
pub async fn prepare_database(config: &Config, migrate: bool) -> Result<Database> {
    let (maintenance_url, mut cluster) = match (&config.database_url, &config.app_database_url) {
        (Some(url), _) => (Some(url.expose_secret().to_owned()), None),
        (None, Some(_)) => (None, None),
        (None, None) => {
            let cluster = Cluster::start(&config.data_dir.join("pg"))
                .context("starting the embedded PostgreSQL cluster")?;
            tracing::info!(port = cluster.port, data_dir = %config.data_dir.display(), "embedded PostgreSQL started");
            (Some(cluster.admin_url()), Some(cluster))
        }
    };
    match connect_database(config, maintenance_url, migrate).await {
        Ok((admin_url, app_url)) => Ok(Database {
            admin_url,
            app_url,
            cluster,
        }),
        Err(err) => {
            if let Some(cluster) = cluster.as_mut() {
                cluster.stop()?;
            }
            Err(err)
        }
    }
}

async fn connect_database(
    config: &Config,
    maintenance_url: Option<String>,
    migrate: bool,
) -> Result<(Option<String>, String)> {
    let names = db_names(config);
    let admin_url = match &maintenance_url {
        Some(url) => {
            bootstrap::ensure_roles_and_database(url, &names).await?;
            let db_url = bootstrap::with_database(url, &names.database)?;
            if migrate {
                bootstrap::migrate(&db_url, &names).await?;
            }
            Some(db_url)
        }
        None => None,
    };
    let app_url = match (&config.app_database_url, &maintenance_url) {
        (Some(url), _) => url.expose_secret().to_owned(),
        (None, Some(url)) => bootstrap::app_url(url, &names)?,
        (None, None) => bail!("set DATABASE_URL or TRELLIS_APP_DATABASE_URL"),
    };
    Ok((admin_url, app_url))
}

/// Reads `path`, or creates it with `make()` readable by this user only.
fn read_or_create_secret(path: &Path, make: impl FnOnce() -> String) -> Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_owned());
    }
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let value = make();
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    file.open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(value)
}

/// The master keys from `TRELLIS_MASTER_KEYS`, or the generated key file in the data
/// dir when none are configured.
pub fn master_keys(config: &Config) -> Result<MasterKeyring> {
    let keyring = match &config.master_keys {
        Some(spec) => MasterKeyring::parse(spec.expose_secret())?,
        None => MasterKeyring::load_or_create(&config.data_dir.join("master.keys"))?,
    };
    Ok(keyring)
}

/// Puts a freshly generated master key in front of the key file's keys (the old ones
/// stay, to unwrap until rotation is done) and returns its id. Only for the generated
/// key file: configured keys are the operator's to change.
pub fn add_generated_master_key(config: &Config) -> Result<String> {
    if config.master_keys.is_some() {
        bail!("--generate works on the generated key file only; with TRELLIS_MASTER_KEYS, put the new key first there");
    }
    let path = config.data_dir.join("master.keys");
    let current = MasterKeyring::load_or_create(&path)?;
    let id = format!("local-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let mut spec = MasterKeyring::from_keys(vec![MasterKey::generate(&id)?])?
        .to_spec()
        .expose_secret()
        .to_owned();
    spec.push(',');
    spec.push_str(current.to_spec().expose_secret());
    MasterKeyring::parse(&spec)?;
    let staged = path.with_extension("keys.new");
    let _ = std::fs::remove_file(&staged);
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    file.open(&staged)
        .and_then(|mut f| {
            f.write_all(spec.as_bytes())?;
            f.sync_all()
        })
        .with_context(|| format!("writing {}", staged.display()))?;
    std::fs::rename(&staged, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(id)
}

/// The token keys from configuration; HS256 with a generated secret kept in the data
/// dir when none is configured.
pub fn jwt_keys(config: &Config) -> Result<JwtKeys> {
    let jwt_config = JwtConfig {
        issuer: config.jwt_issuer.clone(),
        audience: config.jwt_audience.clone(),
        access_ttl: Duration::seconds(config.access_token_ttl),
        leeway_seconds: config.jwt_leeway,
    };
    let pem_files = || {
        config
            .jwt_private_key_file
            .as_deref()
            .zip(config.jwt_public_key_file.as_deref())
            .context(
                "EdDSA and RS256 need TRELLIS_JWT_PRIVATE_KEY_FILE and TRELLIS_JWT_PUBLIC_KEY_FILE",
            )
    };
    match config.jwt_algorithm {
        JwtAlgorithm::Hs256 => {
            let secret = match &config.jwt_secret {
                Some(s) => s.clone(),
                None => SecretString::from(read_or_create_secret(
                    &config.data_dir.join("jwt-secret"),
                    || {
                        let mut bytes = [0u8; 48];
                        rand::rngs::OsRng.fill_bytes(&mut bytes);
                        base64::engine::general_purpose::STANDARD.encode(bytes)
                    },
                )?),
            };
            JwtKeys::hs256(
                secret.expose_secret().as_bytes(),
                &config.jwt_kid,
                jwt_config,
            )
        }
        JwtAlgorithm::EdDsa => {
            let (private, public) = pem_files()?;
            JwtKeys::from_pem_files(
                jsonwebtoken::Algorithm::EdDSA,
                private,
                public,
                &config.jwt_kid,
                jwt_config,
            )
        }
        JwtAlgorithm::Rs256 => {
            let (private, public) = pem_files()?;
            JwtKeys::from_pem_files(
                jsonwebtoken::Algorithm::RS256,
                private,
                public,
                &config.jwt_kid,
                jwt_config,
            )
        }
    }
}

/// Refuses to serve when stored tenant data keys are wrapped under a master key that
/// the configured keyring does not hold: every secret of those tenants would fail to
/// open (INTERNAL "unknown master key id") with no warning at start. The usual cause
/// is a lost `<data dir>/master.keys` (a container recreated without its volume).
pub async fn check_master_keys(state: &AppState, config: &Config) -> Result<()> {
    use sea_orm::ConnectionTrait;
    let rows = match state
        .db
        .pool()
        .query_all(trellis_core::scope::stmt(
            "SELECT id FROM app.master_key_ids_in_use() AS id",
            [],
        ))
        .await
    {
        Ok(rows) => rows,
        // A database not yet migrated to this version (TRELLIS_APP_DATABASE_URL with
        // migrations run elsewhere): the check is a safety net, not a door.
        Err(err) => {
            tracing::warn!(error = %err, "could not check the master keys in use");
            return Ok(());
        }
    };
    let keyring = state.vault.keyring();
    let mut missing = vec![];
    for row in rows {
        let id: String = row.try_get("", "id")?;
        if !keyring.contains(&id) {
            missing.push(id);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let source = match config.master_keys {
        Some(_) => "TRELLIS_MASTER_KEYS".to_owned(),
        None => config.data_dir.join("master.keys").display().to_string(),
    };
    bail!(
        "stored secrets are sealed under master key(s) {} that {source} does not hold, so \
         they cannot be opened. Restore the key file from a backup (or the volume that held \
         it), or set TRELLIS_MASTER_KEYS to the keys in use. Nothing was changed; refusing \
         to serve.",
        missing.join(", ")
    )
}

/// The platform's mailer. Confirming sign-ups in production needs one that delivers.
fn mailer(config: &Config) -> Result<Mailer> {
    let configured = config
        .smtp_url
        .as_ref()
        .filter(|u| !u.expose_secret().is_empty());
    let Some(url) = configured else {
        if config.verifies_email() && config.is_production() {
            bail!(
                "sign-up confirmation is on (the production default) but TRELLIS_SMTP_URL is \
                 not set, so no confirmation could reach anyone: set TRELLIS_SMTP_URL, or \
                 TRELLIS_SIGNUP_VERIFICATION=false to sign users in without confirming"
            );
        }
        return Ok(Mailer::Log);
    };
    Mailer::smtp(url.expose_secret(), &config.mail_from)
        .map_err(|err| anyhow!("TRELLIS_SMTP_URL / TRELLIS_MAIL_FROM: {err}"))
}

/// The manifest of trusted documents the configuration names, if any.
fn trusted_documents(config: &Config) -> Result<TrustedDocuments> {
    let Some(path) = &config.trusted_documents else {
        if config.trusted_documents_only {
            bail!("TRELLIS_TRUSTED_DOCUMENTS_ONLY needs TRELLIS_TRUSTED_DOCUMENTS (a manifest)");
        }
        return Ok(TrustedDocuments::none());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("TRELLIS_TRUSTED_DOCUMENTS: reading {}", path.display()))?;
    let trusted = TrustedDocuments::from_manifest(&text, config.trusted_documents_only)
        .map_err(|err| anyhow!("TRELLIS_TRUSTED_DOCUMENTS ({}): {err}", path.display()))?;
    tracing::info!(
        documents = trusted.len(),
        enforced = trusted.is_enforced(),
        "trusted documents loaded"
    );
    Ok(trusted)
}

/// Connects as the application role and builds everything the handlers share.
pub async fn build_state(config: &Config, app_url: &str, jwt: JwtKeys) -> Result<AppState> {
    // Metrics recorded from here on reach /metrics.
    crate::telemetry::exporter();
    let statements = Arc::new(AtomicU64::new(0));
    let pool = bootstrap::connect_app_with(
        app_url,
        config.pool_size,
        std::time::Duration::from_secs(config.db_acquire_timeout.max(1)),
        statements.clone(),
    )
    .await?;
    let limits = Limits {
        depth: config.max_depth,
        complexity: config.max_complexity,
        mutation_cost: config.max_mutation_cost,
        anonymous_mutations_per_minute: config.anonymous_mutations_per_minute,
        introspection: !config.is_production(),
        trusted_documents: trusted_documents(config)?,
        ..Limits::default()
    };
    let identity = IdentityConfig {
        jwt: jwt.clone(),
        refresh_ttl: Duration::seconds(config.refresh_token_ttl),
        invitation_ttl: Duration::seconds(config.invitation_ttl),
        verify_email: config.verifies_email(),
        verification_ttl: Duration::seconds(config.email_verification_ttl.max(60)),
        mailer: mailer(config)?,
    };
    let vault = Vault::new(master_keys(config)?);
    let runs = RunSettings {
        idempotency_ttl: std::time::Duration::from_secs(config.idempotency_ttl),
    };
    let logs = match &config.mongodb_url {
        Some(url) => LogStore::mongodb(url.expose_secret())
            .await
            .context("MONGODB_URL")?,
        None => LogStore::postgres(),
    };
    let egress = Egress::new(Egress::parse_allow(&config.egress_allow)?)?;
    let schema = build_schema(
        Some(Services {
            identity,
            vault: vault.clone(),
            runs: runs.clone(),
            logs: logs.clone(),
            egress: egress.clone(),
        }),
        &limits,
    );
    let graphiql = (!config.is_production()).then(|| {
        if !config.graphiql_assets.join("ruru.js").is_file() {
            tracing::warn!(path = %config.graphiql_assets.display(), "GraphiQL assets missing: run `npm ci --prefix web`");
        }
        Arc::new((render_graphiql(), config.graphiql_assets.clone()))
    });
    Ok(AppState {
        schema,
        limits,
        db: AppDb::new(pool).with_statement_hook(bootstrap::statement_hook(statements.clone())),
        jwt,
        api_keys: Default::default(),
        statements,
        requests: Arc::new(AtomicU64::new(0)),
        graphiql,
        max_batch: config.max_batch,
        vault,
        runs,
        logs,
        egress,
        // One listener per process feeds every subscription it serves.
        live: LiveEvents::listen(app_url).await,
        call_logs: trellis_core::processes::log_queue::CallLogQueue::with_linger(
            std::time::Duration::from_millis(config.call_log_linger_ms),
        ),
        shutdown: crate::serve::Shutdown::default(),
    })
}

/// The executor the configuration describes, on the application pool.
pub fn executor(config: &Config, state: &AppState) -> Executor {
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    Executor::new(
        state.db.clone(),
        state.egress.clone(),
        state.vault.clone(),
        ExecutorConfig {
            concurrency: config.executor_concurrency.unwrap_or(2 * cpus).max(1),
            runs_per_tenant: config.executor_runs_per_tenant.clamp(1, 100),
            ..ExecutorConfig::default()
        },
    )
}

/// The scheduler of SCHEDULE triggers, on the application pool.
pub fn scheduler(state: &AppState) -> Scheduler {
    Scheduler::new(
        state.db.clone(),
        state.runs.clone(),
        SchedulerConfig::default(),
    )
}

/// Starts the scheduler's loop when the configuration asks for it.
pub fn spawn_scheduler(config: &Config, state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    if !config.scheduler {
        return None;
    }
    let idle = std::time::Duration::from_millis(config.scheduler_poll_ms.max(10));
    let handle = tokio::spawn(scheduler(state).run(idle, std::future::pending()));
    tracing::info!("scheduler started");
    Some(handle)
}

/// Starts the background maintenance: the log store's outbox replay or purge, throttle
/// purges, tenant upkeep (run retention, expired invitations and idempotency keys),
/// account upkeep (spent credentials), the purge of tenants deleted past their grace
/// period, container-health folding, alert rules, the audit archive (events past their
/// retention, to files), process upkeep (expired cache entries and call payloads) and
/// the report rollups of closed periods, each tenant's or user's in its own transaction
/// under RLS, on the application pool.
pub fn spawn_maintenance(config: &Config, state: &AppState) {
    let every = std::time::Duration::from_secs(config.maintenance_interval.max(1));
    tokio::spawn(state.logs.clone().maintain(state.db.pool().clone(), every));
    let db = state.db.clone();
    let logs = state.logs.clone();
    let purge = trellis_core::purge::PurgeLimits {
        purge_days: config.tenant_purge_days,
        ..Default::default()
    };
    let archive = config.audit_archive();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match trellis_core::throttle::purge(&db).await {
                Ok(purged) => {
                    telemetry::maintenance_pass("throttle_purge", purged.unsigned_abs().into());
                }
                Err(err) => {
                    telemetry::maintenance_failure("throttle_purge");
                    tracing::warn!(error = ?err, "purging request throttles failed");
                }
            }
            match trellis_core::upkeep::tenant_pass(&db, 500, 1000).await {
                Ok(pass) => {
                    telemetry::maintenance_pass("tenant_upkeep", pass.rows());
                    if pass.failed > 0 {
                        telemetry::maintenance_failure("tenant_upkeep");
                    }
                    if pass.tenants > 0 {
                        tracing::info!(?pass, "tenant upkeep pass");
                    }
                }
                Err(err) => {
                    telemetry::maintenance_failure("tenant_upkeep");
                    tracing::warn!(error = ?err, "tenant upkeep failed");
                }
            }
            match trellis_core::agents::health::health_pass(&db, 500, 1000).await {
                Ok(pass) => {
                    telemetry::maintenance_pass("health_upkeep", pass.rows());
                    if pass.failed > 0 {
                        telemetry::maintenance_failure("health_upkeep");
                    }
                }
                Err(err) => {
                    telemetry::maintenance_failure("health_upkeep");
                    tracing::warn!(error = ?err, "health upkeep failed");
                }
            }
            // Alert rules, each tenant's in its own transaction; counted: alerts raised.
            match trellis_core::alert_rules::evaluate_pass(&db, 1000).await {
                Ok(pass) => {
                    telemetry::maintenance_pass("alert_rules", pass.raised);
                    if pass.failed > 0 {
                        telemetry::maintenance_failure("alert_rules");
                    }
                    if pass.raised > 0 {
                        tracing::info!(?pass, "alert rules raised alerts");
                    }
                }
                Err(err) => {
                    telemetry::maintenance_failure("alert_rules");
                    tracing::warn!(error = ?err, "alert rule evaluation failed");
                }
            }
            match trellis_core::upkeep::account_pass(&db, 1000).await {
                Ok(pass) => {
                    telemetry::maintenance_pass(
                        "account_upkeep",
                        pass.refresh_tokens_deleted + pass.account_tokens_deleted,
                    );
                    if pass.failed > 0 {
                        telemetry::maintenance_failure("account_upkeep");
                    }
                }
                Err(err) => {
                    telemetry::maintenance_failure("account_upkeep");
                    tracing::warn!(error = ?err, "account upkeep failed");
                }
            }
            match trellis_core::purge::purge_pass(&db, &logs, Some(&archive.dir), purge).await {
                Ok(pass) => {
                    telemetry::maintenance_pass(
                        "tenant_purge",
                        pass.rows_deleted + pass.logs_deleted,
                    );
                    if pass.failed > 0 {
                        telemetry::maintenance_failure("tenant_purge");
                    }
                    if pass.tenants > 0 {
                        tracing::info!(?pass, "tenant purge pass");
                    }
                }
                Err(err) => {
                    telemetry::maintenance_failure("tenant_purge");
                    tracing::warn!(error = ?err, "tenant purge failed");
                }
            }
            match trellis_core::audit_archive::archive_pass(&db, &archive, None).await {
                Ok(pass) => {
                    telemetry::maintenance_pass("audit_archive", pass.events_archived);
                    telemetry::audit_archive_files(pass.files_written);
                    if pass.failed > 0 {
                        telemetry::maintenance_failure("audit_archive");
                    }
                    if pass.tenants > 0 {
                        tracing::info!(?pass, "audit archive pass");
                    }
                }
                Err(err) => {
                    telemetry::maintenance_failure("audit_archive");
                    tracing::warn!(error = ?err, "audit archive failed");
                }
            }
            match trellis_core::processes::upkeep::upkeep_pass(&db, 500, 1000).await {
                Ok(pass) => {
                    telemetry::maintenance_pass(
                        "process_upkeep",
                        pass.cache_entries_deleted + pass.payloads_cleared,
                    );
                    if pass.failed > 0 {
                        telemetry::maintenance_failure("process_upkeep");
                    }
                    if pass.tenants > 0 {
                        tracing::info!(?pass, "process upkeep pass");
                    }
                }
                Err(err) => {
                    telemetry::maintenance_failure("process_upkeep");
                    tracing::warn!(error = ?err, "process upkeep failed");
                }
            }
            // Rollups of the closed periods of the last two months; older ones exist.
            let now = chrono::Utc::now();
            let job = trellis_core::runs::reports::ReportJob {
                since: Some(now - chrono::Duration::days(62)),
                ..Default::default()
            };
            match trellis_core::runs::reports::write_reports(&db, now, &job).await {
                Ok(pass) => {
                    telemetry::maintenance_pass("report_rollup", pass.written);
                    if pass.failed > 0 {
                        telemetry::maintenance_failure("report_rollup");
                    }
                }
                Err(err) => {
                    telemetry::maintenance_failure("report_rollup");
                    tracing::warn!(error = ?err, "report rollup failed");
                }
            }
        }
    });
}
