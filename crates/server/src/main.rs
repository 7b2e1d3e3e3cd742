//! The `trellis` binary.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use opentelemetry_sdk::trace::SdkTracerProvider;
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};
use trellis_core::auth::api_key::ApiKeySecret;
use trellis_core::{doctor, identity, Principal, RequestMeta, RequestScope};
use trellis_server::app::{self, Database};
use trellis_server::bootstrap;
use trellis_server::config::{Cli, Command, Config, LogFormat};
use trellis_server::http::{self, HttpConfig};
use trellis_server::serve::{self, ConnectionLimits};

/// jemalloc rather than glibc malloc: the GraphQL executor allocates a few objects per
/// resolved field, and on the runs dashboard glibc's malloc and free took about a third
/// of the server's CPU.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options. Its background thread purges freed pages one second after they
/// fall idle, whether or not requests still run, so RSS falls back after a burst (such
/// as the 19 MiB work area of every password hash) instead of waiting for the next
/// allocation on the thread that freed them.
#[expect(
    unsafe_code,
    reason = "jemalloc reads its options from this exported symbol"
)]
#[export_name = "_rjem_malloc_conf"]
pub static JEMALLOC_OPTIONS: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    // anyhow captures a backtrace with every error when RUST_BACKTRACE is set, which
    // made each internal error cost tens of KB of log and much memory. Panics keep
    // their backtraces; set RUST_LIB_BACKTRACE=1 to have errors capture them too.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    // OpenTelemetry's batch exporter runs on its own thread with a blocking HTTP
    // client, which must be made and shut down outside the async runtime.
    let traces = match trellis_server::otel::from_env() {
        Ok(traces) => traces,
        Err(err) => {
            eprintln!("OpenTelemetry: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async_main(traces.as_ref()));
    drop(runtime);
    if let Some(traces) = traces {
        // Sends the spans still buffered.
        if let Err(err) = traces.shutdown() {
            eprintln!("OpenTelemetry: {err}");
        }
    }
    code
}

async fn async_main(traces: Option<&SdkTracerProvider>) -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match cli.config.log_format {
        LogFormat::Json => logs.json().with_current_span(false).boxed(),
        LogFormat::Text => {
            use std::io::IsTerminal;
            let color = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
            logs.with_ansi(color).boxed()
        }
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces.map(trellis_server::otel::layer))
        .init();
    match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

#[expect(clippy::print_stdout, reason = "CLI output")]
async fn run(cli: Cli) -> Result<ExitCode> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::ExportSchema => {
            print!("{}", trellis_graphql::export_sdl());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => serve(&config).await,
        Command::Worker => {
            let db = app::prepare_database(&config, config.migrate_on_start).await?;
            let state = app::build_state(&config, &db.app_url, app::jwt_keys(&config)?).await?;
            tracing::info!("Trellis worker: running the executor");
            // Its SQL statements and executor counters, for whoever watches (or
            // benchmarks) the workers apart from the servers.
            spawn_metrics_listener(&config, &state).await?;
            // Stopped with the executor: a pass cut off mid-firing rolls back, and the
            // firing stays due for the next scheduler.
            let scheduler = app::spawn_scheduler(&config, &state);
            app::executor(&config, &state)
                .run(
                    std::time::Duration::from_millis(config.executor_poll_ms.max(10)),
                    state.live.subscribe(),
                    shutdown_signal(),
                )
                .await;
            if let Some(scheduler) = scheduler {
                scheduler.abort();
            }
            tracing::info!("worker stopped");
            db.shutdown()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let db = app::prepare_database(&config, true).await?;
            println!("migrations applied");
            db.shutdown()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => {
            let db = app::prepare_database(&config, config.migrate_on_start).await?;
            let pool = bootstrap::connect_app(&db.app_url, 1, Default::default()).await?;
            let report = doctor::examine(&pool).await?;
            println!("{report}");
            db.shutdown()?;
            Ok(if report.is_healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::SeedDemo => {
            let db = app::prepare_database(&config, true).await?;
            seed_demo(&config, &db).await?;
            db.shutdown()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::RotateMasterKey { generate } => {
            let db = app::prepare_database(&config, true).await?;
            let admin_url = db.admin_url.clone().context(
                "rotate-master-key needs DATABASE_URL (an admin URL) or the embedded cluster",
            )?;
            if generate {
                let id = app::add_generated_master_key(&config)?;
                println!("added master key {id} as the active key");
            }
            let keyring = app::master_keys(&config)?;
            let owner = bootstrap::open_as_owner(&admin_url, &app::db_names(&config)).await?;
            let report =
                trellis_core::integrations::secrets::rotate_master_key(&keyring, &owner, None)
                    .await?;
            println!(
                "re-wrapped {} tenant data key(s) under master key {}; {} left",
                report.rewrapped,
                keyring.active_id(),
                report.remaining
            );
            db.shutdown()?;
            Ok(if report.remaining == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::AuditArchive { tenant, before } => {
            let db = app::prepare_database(&config, config.migrate_on_start).await?;
            let pool = bootstrap::connect_app(&db.app_url, 2, Default::default()).await?;
            let only = match tenant {
                Some(tenant) => Some(tenant_id(&config, &db, &tenant).await?),
                None => None,
            };
            let mut settings = config.audit_archive();
            settings.before = before
                .and_then(|day| day.and_hms_opt(0, 0, 0))
                .map(|at| at.and_utc());
            if only.is_none() {
                settings.max_tenants = i32::MAX;
            }
            let pass = trellis_core::audit_archive::archive_pass(
                &trellis_core::AppDb::new(pool),
                &settings,
                only,
            )
            .await?;
            println!(
                "archived {} audit event(s) of {} tenant(s) into {} file(s) under {}; {} tenant(s) failed",
                pass.events_archived,
                pass.tenants,
                pass.files_written,
                settings.dir.display(),
                pass.failed
            );
            db.shutdown()?;
            Ok(if pass.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::AuditVerify { tenant } => {
            let db = app::prepare_database(&config, config.migrate_on_start).await?;
            let pool = bootstrap::connect_app(&db.app_url, 1, Default::default()).await?;
            let id = tenant_id(&config, &db, &tenant).await?;
            let dir = config.audit_archive_dir();
            let verification = trellis_core::audit_archive::verify_tenant(
                &trellis_core::AppDb::new(pool),
                &dir,
                id,
            )
            .await?;
            db.shutdown()?;
            match verification.problem {
                None => {
                    println!(
                        "the audit chain of tenant {id} verifies: {} archived event(s) in {} file(s), then the table from event {}",
                        verification.archived_events,
                        verification.files,
                        verification.boundary.archived_seq + 1
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some(problem) => {
                    println!("the audit chain of tenant {id} does not verify: {problem}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::CreateApiKey {
            tenant,
            name,
            scopes,
        } => {
            let db = app::prepare_database(&config, true).await?;
            let admin_url = db.admin_url.clone().context(
                "create-api-key needs DATABASE_URL (an admin URL) or the embedded cluster",
            )?;
            let key = create_api_key_as_owner(&config, &admin_url, &tenant, &name, &scopes).await?;
            println!("{key}");
            db.shutdown()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(config: &Config) -> Result<ExitCode> {
    let db = app::prepare_database(config, config.migrate_on_start).await?;
    let result = serve_on(config, &db).await;
    db.shutdown()?;
    result
}

async fn serve_on(config: &Config, db: &Database) -> Result<ExitCode> {
    let state = app::build_state(config, &db.app_url, app::jwt_keys(config)?).await?;
    app::check_master_keys(&state, config).await?;
    let report = doctor::examine(state.db.pool()).await?;
    if !report.is_healthy() {
        for failure in report.failures() {
            tracing::error!(
                subject = failure.subject,
                check = failure.check,
                detail = failure.detail,
                "RLS doctor"
            );
        }
        if !config.skip_doctor {
            anyhow::bail!("the RLS doctor found problems (run `trellis doctor`); refusing to serve. TRELLIS_SKIP_DOCTOR=true overrides");
        }
        tracing::warn!("serving despite RLS doctor failures because TRELLIS_SKIP_DOCTOR is set");
    }
    let http_config = HttpConfig {
        request_timeout: std::time::Duration::from_secs(config.request_timeout),
        body_limit: config.body_limit,
        cors_origins: config.cors_origins.clone(),
        metrics_route: config.metrics_listen.is_none() && !config.is_production(),
    };
    app::spawn_maintenance(config, &state);
    if config.executor {
        // Stopped with the process: every move it makes is its own transaction, and a
        // run cut off mid-move is taken over once its lease runs out.
        let idle = std::time::Duration::from_millis(config.executor_poll_ms.max(10));
        let wake = state.live.subscribe();
        tokio::spawn(app::executor(config, &state).run(idle, wake, std::future::pending()));
        tracing::info!("executor started");
    }
    app::spawn_scheduler(config, &state);
    let shutdown = state.shutdown.clone();
    spawn_metrics_listener(config, &state).await?;
    let router = http::router(state, &http_config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, "Trellis is listening: GraphQL at /graphql, GraphiQL at /graphiql");
    let limits = ConnectionLimits {
        header_read_timeout: std::time::Duration::from_secs(config.header_read_timeout.max(1)),
        shutdown_grace: std::time::Duration::from_secs(config.shutdown_grace),
    };
    serve::serve(listener, router, shutdown, shutdown_signal(), &limits).await;
    tracing::info!("shut down");
    Ok(ExitCode::SUCCESS)
}

/// Serves `/metrics` alone on `TRELLIS_METRICS_LISTEN` when it is set (`serve` and
/// `worker` alike).
async fn spawn_metrics_listener(
    config: &Config,
    state: &trellis_server::state::AppState,
) -> Result<()> {
    if let Some(address) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address} (TRELLIS_METRICS_LISTEN)"))?;
        tracing::info!(%address, "metrics at /metrics");
        let metrics = http::metrics_router(state.clone());
        tokio::spawn(async move { axum::serve(listener, metrics).await });
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminate = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        () = terminate => {}
    }
}

/// Creates (or signs in) the demo user, the `demo` tenant and an admin API key.
#[expect(clippy::print_stdout, reason = "CLI output")]
async fn seed_demo(config: &Config, db: &Database) -> Result<()> {
    const EMAIL: &str = "demo@trellis.dev";
    const PASSWORD: &str = "trellis-demo-password";
    let state = app::build_state(config, &db.app_url, app::jwt_keys(config)?).await?;
    let identity_config = trellis_core::identity::IdentityConfig {
        jwt: state.jwt.clone(),
        refresh_ttl: chrono::Duration::days(30),
        invitation_ttl: chrono::Duration::days(7),
        // The demo account is made confirmed: seeding is the operator's own act.
        verify_email: false,
        verification_ttl: chrono::Duration::days(1),
        mailer: trellis_core::mail::Mailer::Log,
    };
    let meta = RequestMeta {
        request_id: "seed-demo".into(),
        ..Default::default()
    };
    let anonymous = RequestScope::new(state.db.clone(), Principal::Anonymous, meta.clone());
    let session = match identity_config
        .sign_up(&anonymous, EMAIL, "Demo User", SecretString::from(PASSWORD))
        .await
    {
        Ok(identity::SignUp::Session(session)) => *session,
        Ok(identity::SignUp::ConfirmationSent) => {
            anyhow::bail!("the demo account was not created: confirmation is required")
        }
        Err(trellis_core::Error::Conflict { .. }) => {
            finish(anonymous, false).await?;
            let again = RequestScope::new(state.db.clone(), Principal::Anonymous, meta.clone());
            let session = identity_config
                .login(&again, EMAIL, SecretString::from(PASSWORD))
                .await?;
            finish(again, true).await?;
            println!("The demo user already exists; nothing new was created.");
            println!(
                "Sign in with {EMAIL} / {PASSWORD}.\nAccess token (15 min): {}",
                session.access_token
            );
            return Ok(());
        }
        Err(err) => return Err(err.into()),
    };
    finish(anonymous, true).await?;
    let user_scope = RequestScope::new(
        state.db.clone(),
        Principal::User {
            user_id: session.user.id,
            tenant_id: None,
            session_id: None,
        },
        meta.clone(),
    );
    let tenant = identity::create_tenant(&user_scope, "demo", "Demo Tenant", None, false).await?;
    finish(user_scope, true).await?;
    let tenant_scope = RequestScope::new(
        state.db.clone(),
        Principal::User {
            user_id: session.user.id,
            tenant_id: Some(tenant.id),
            session_id: None,
        },
        meta,
    );
    let key = identity::create_api_key(
        &tenant_scope,
        "demo key",
        &[trellis_core::auth::Scope::Admin],
        None,
        identity::ProcessAccess::default(),
    )
    .await?;
    let runs = seed_demo_workflow(&tenant_scope, &state.runs).await?;
    finish(tenant_scope, true).await?;
    let (token, _) = state
        .jwt
        .issue(session.user.id, Some(tenant.id), Some(session.family_id))?;
    println!("Demo tenant `demo` created, with the workflow `onboarding` and {runs} runs.");
    println!("  user:      {EMAIL} / {PASSWORD}");
    println!("  API key:   {}  (admin scope; shown once)", key.plaintext);
    println!("  token:     {token}  (15 minutes)");
    println!(
        "Try (with the server running): curl -s http://{}/graphql -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\",
        config.listen, key.plaintext
    );
    println!("       -d '{{\"query\":\"{{ tenant {{ name members {{ totalCount }} }} }}\"}}'");
    Ok(())
}

/// The demo tenant's workflow: three delay steps, published and active, with a few
/// runs for the executor to carry through, so the dashboard has something to show.
/// Returns how many runs.
async fn seed_demo_workflow(
    scope: &RequestScope,
    runs: &trellis_core::runs::RunSettings,
) -> Result<usize> {
    use trellis_core::workflows::graph::{StepSpec, TransitionSpec};
    use trellis_core::workflows::workflow::{self, NewWorkflow};
    let (workflow, version) = workflow::create_workflow(
        scope,
        NewWorkflow {
            key: "onboarding".into(),
            name: "Customer onboarding".into(),
            description: Some("Receive a sign-up, review it, welcome the customer.".into()),
            client_id: None,
        },
    )
    .await?;
    let step = |key: &str, name: &str| StepSpec {
        key: key.into(),
        name: name.into(),
        step_type: trellis_entity::StepType::Delay,
        position: serde_json::json!({}),
        config: serde_json::json!({ "seconds": 1 }),
        action_id: None,
        connection_id: None,
        is_required: true,
        description: String::new(),
        order: None,
    };
    let edge = |from: &str, to: &str| TransitionSpec {
        key: None,
        from: from.into(),
        to: to.into(),
        condition: None,
        is_default: false,
    };
    workflow::save_graph(
        scope,
        version.id,
        vec![
            step("receive", "Receive the sign-up"),
            step("review", "Review it"),
            step("welcome", "Welcome the customer"),
        ],
        vec![edge("receive", "review"), edge("review", "welcome")],
    )
    .await?;
    workflow::publish_version(scope, version.id).await?;
    workflow::activate_version(scope, version.id).await?;
    let customers = ["Ada", "Grace", "Edsger"];
    for customer in customers {
        trellis_core::runs::start::start_run(
            scope,
            runs,
            trellis_core::runs::start::StartRun {
                workflow_id: workflow.id,
                input: serde_json::json!({ "customer": customer }),
                idempotency_key: None,
                simulation: false,
                version_id: None,
                replay_of: None,
                client_id: None,
                metadata: None,
            },
        )
        .await?;
    }
    Ok(customers.len())
}

async fn finish(scope: std::sync::Arc<RequestScope>, ok: bool) -> Result<()> {
    let scope =
        std::sync::Arc::try_unwrap(scope).map_err(|_| anyhow::anyhow!("scope still shared"))?;
    scope.finish(ok).await?;
    Ok(())
}

/// A tenant named on the command line: its UUID as given, or its slug looked up as the
/// owner role (the live tenant first, else the latest deleted one).
async fn tenant_id(config: &Config, db: &Database, tenant: &str) -> Result<uuid::Uuid> {
    if let Ok(id) = uuid::Uuid::parse_str(tenant) {
        return Ok(id);
    }
    let admin_url = db.admin_url.clone().context(
        "naming a tenant by slug needs DATABASE_URL (an admin URL) or the embedded cluster; give its UUID instead",
    )?;
    let owner = bootstrap::open_as_owner(&admin_url, &app::db_names(config)).await?;
    let row = owner
        .query_one(trellis_core::scope::stmt(
            "SELECT id FROM tenants WHERE slug = $1 \
             ORDER BY deleted_at DESC NULLS FIRST LIMIT 1",
            [tenant.into()],
        ))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| format!("no tenant with slug {tenant}"))?;
    Ok(row.try_get::<uuid::Uuid>("", "id")?)
}

/// Creates an API key for a tenant from the command line, as the owner role, with a
/// `system` audit event.
async fn create_api_key_as_owner(
    config: &Config,
    db_url: &str,
    tenant_slug: &str,
    name: &str,
    scopes: &[String],
) -> Result<String> {
    for scope in scopes {
        trellis_core::auth::Scope::parse(scope)
            .with_context(|| format!("unknown scope {scope}: use read, write or admin"))?;
    }
    let owner = bootstrap::open_as_owner(db_url, &app::db_names(config)).await?;
    let secret = ApiKeySecret::generate();
    let key_id = uuid::Uuid::now_v7();
    let stmt = trellis_core::scope::stmt;
    let inserted = owner
        .execute(stmt(
            "WITH t AS (SELECT id FROM tenants WHERE slug = $1 AND deleted_at IS NULL), \
             k AS (INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, scopes) \
                   SELECT $2, t.id, $3, $4, $5, $6 FROM t RETURNING tenant_id) \
             INSERT INTO audit_events (id, tenant_id, actor_type, action, target_type, target_id, details) \
             SELECT $7, k.tenant_id, 'system', 'api_key.create', 'key', $2, jsonb_build_object('name', $3::text, 'via', 'cli') FROM k",
            [
                tenant_slug.into(),
                key_id.into(),
                name.into(),
                secret.prefix.clone().into(),
                secret.hash.clone().into(),
                scopes.to_vec().into(),
                uuid::Uuid::now_v7().into(),
            ],
        ))
        .await
        .map_err(trellis_core::Error::from)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        inserted.rows_affected() == 1,
        "no tenant with slug {tenant_slug}"
    );
    Ok(secret.plaintext)
}
