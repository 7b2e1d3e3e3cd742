//! The per-request database scope: one transaction per request, opened lazily, with the
//! tenant and user set transaction-locally. It is the only way resolvers reach tenant
//! data, and PostgreSQL row-level security decides what that transaction sees.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement, Value};
use tokio::sync::OnceCell;
use trellis_entity::Role;
use uuid::Uuid;

use crate::auth::Scope;
use crate::tx::{Head, RequestTx, StatementHook};
use crate::{Error, Result};

/// The pool of connections as the application role (NOSUPERUSER, NOBYPASSRLS).
#[derive(Clone)]
pub struct AppDb {
    pool: DatabaseConnection,
    /// Requests waiting for a connection to begin their transaction.
    waiting: Arc<AtomicUsize>,
    /// What request transactions report their statements to (the pool reports its own
    /// through sea-orm's metric callback).
    hook: Option<StatementHook>,
}

impl std::fmt::Debug for AppDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppDb")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl AppDb {
    pub fn new(pool: DatabaseConnection) -> Self {
        Self {
            pool,
            waiting: Arc::default(),
            hook: None,
        }
    }

    /// Reports every statement of a request transaction to `hook`, as the pool's
    /// metric callback does for the pool's own.
    pub fn with_statement_hook(mut self, hook: StatementHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The raw pool, for work outside any tenant: health checks and authentication
    /// look-ups through SECURITY DEFINER functions.
    pub fn pool(&self) -> &DatabaseConnection {
        &self.pool
    }

    /// How many requests are waiting for a pooled connection right now (the pool
    /// itself does not say): the `trellis_db_pool_waiting` gauge.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Begins a transaction with `head` as its first statement (in the same round
    /// trip), counted in [`Self::waiting`] until a connection is had.
    ///
    /// The pool does not test a connection when handing it out (that would cost every
    /// request a round trip), so `BEGIN` is the test: when it finds the connection
    /// broken (the server restarted, an administrator ended the session), the broken
    /// one is dropped and the next tried, at most once per pooled connection.
    async fn begin(&self, head: Option<&Head>) -> Result<(RequestTx, Vec<sea_orm::QueryResult>)> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        let pool = self.pool.get_postgres_connection_pool();
        let pooled = pool.options().get_max_connections();
        let mut tries = 0;
        loop {
            match RequestTx::begin(pool, head, self.hook.clone()).await {
                Ok((tx, rows)) => return Ok((tx, rows.into_iter().map(Into::into).collect())),
                Err(err) if tries < pooled && crate::error::is_broken_connection(&err) => {
                    tracing::debug!(error = %err, "a pooled connection was broken; trying another");
                    tries += 1;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
}

/// Who is calling, as established from their credentials before the request runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Principal {
    Anonymous,
    /// A signed-in user; the access token names their active tenant, if any, and the
    /// session it was issued in (none for tokens minted outside a session).
    User {
        user_id: Uuid,
        tenant_id: Option<Uuid>,
        session_id: Option<Uuid>,
    },
    /// An API key of a tenant.
    ApiKey {
        key_id: Uuid,
        tenant_id: Uuid,
        scopes: Vec<Scope>,
    },
    /// The built-in executor, working on one tenant's runs: an operator of that tenant
    /// and a runner, under the tenant's RLS like any request. It acts only while the
    /// tenant is live (not suspended or deleted).
    Engine {
        tenant_id: Uuid,
    },
    /// The maintenance loop, keeping one tenant's retention and clean-up going (also
    /// while it is suspended or deleted), under the tenant's RLS like any request.
    Upkeep {
        tenant_id: Uuid,
    },
}

/// Facts about the HTTP request that the audit log records.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub request_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The tenant a request acts in and the role it acts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantCtx {
    pub tenant_id: Uuid,
    pub role: Role,
}

/// Who performed an action, for the audit log.
#[derive(Clone, Copy, Debug)]
pub enum Actor {
    User(Uuid),
    ApiKey(Uuid),
    System,
}

#[derive(Debug)]
enum TenantAccess {
    None,
    Granted(TenantCtx),
    Refused(&'static str),
    /// The credential no longer counts: the access token's session was revoked (logout,
    /// a detected reuse), or the API key was revoked or expired. Answered like an unknown
    /// credential, so a revoked key cannot be told from one that never existed.
    CredentialEnded,
}

#[derive(Debug)]
struct Begun {
    tx: RequestTx,
    access: TenantAccess,
}

/// One request's view of the database. Create one per request; never share it.
#[derive(Debug)]
pub struct RequestScope {
    db: AppDb,
    principal: Principal,
    meta: RequestMeta,
    /// The tenant access an earlier transaction of the same request granted this
    /// principal ([`Self::continuation`]): set without being checked again.
    entered: Option<TenantCtx>,
    begun: OnceCell<Begun>,
    failed: AtomicBool,
    /// Whether a mutation ran in the scope, or it queued an audit event or a
    /// notification ([`Self::only_read`]).
    writes: AtomicBool,
    /// Whether `app.platform_admin` is on in the transaction (until the operation ends).
    platform_admin: AtomicBool,
    acting_user: std::sync::Mutex<Option<Uuid>>,
    mutation_cost: AtomicU32,
    /// NOTIFYs to send when the transaction commits, as (channel, payload).
    announcements: std::sync::Mutex<Vec<(&'static str, String)>>,
    /// Audit events recorded and not inserted yet ([`crate::audit`]).
    audit: std::sync::Mutex<Vec<crate::audit::Row>>,
}

/// What `app.enter_request` (migration 000021) decided about the request's tenant.
#[derive(FromQueryResult)]
struct AccessRow {
    access: String,
    role: Option<Role>,
}

impl RequestScope {
    /// A scope of background work (`worker`: "executor", "scheduler") acting in one
    /// tenant as [`Principal::Engine`], under that tenant's RLS.
    pub fn for_engine(db: AppDb, tenant_id: Uuid, worker: &str) -> Arc<Self> {
        Self::new(
            db,
            Principal::Engine { tenant_id },
            RequestMeta {
                request_id: worker.into(),
                ..RequestMeta::default()
            },
        )
    }

    /// A scope of the maintenance loop in one tenant, as [`Principal::Upkeep`].
    pub fn for_upkeep(db: AppDb, tenant_id: Uuid) -> Arc<Self> {
        Self::new(
            db,
            Principal::Upkeep { tenant_id },
            RequestMeta {
                request_id: "maintenance".into(),
                ..RequestMeta::default()
            },
        )
    }

    pub fn new(db: AppDb, principal: Principal, meta: RequestMeta) -> Arc<Self> {
        Self::entering(db, principal, meta, None)
    }

    fn entering(
        db: AppDb,
        principal: Principal,
        meta: RequestMeta,
        entered: Option<TenantCtx>,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            principal,
            meta,
            entered,
            begun: OnceCell::new(),
            failed: AtomicBool::new(false),
            writes: AtomicBool::new(false),
            platform_admin: AtomicBool::new(false),
            acting_user: std::sync::Mutex::new(None),
            mutation_cost: AtomicU32::new(0),
            announcements: std::sync::Mutex::new(Vec::new()),
            audit: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A scope for the same request's next transaction (a process call's log, written
    /// after its first transaction committed). When this scope's access was granted,
    /// the next transaction sets the same tenant and user without `app.enter_request`
    /// checking them again: the request was admitted once, and what follows is the
    /// record of what it did, which a key revoked in between must not lose. RLS still
    /// confines it to that tenant. Otherwise the next scope enters as a new one would.
    pub fn continuation(&self) -> Arc<Self> {
        Self::entering(
            self.db.clone(),
            self.principal.clone(),
            self.meta.clone(),
            self.granted_tenant(),
        )
    }

    /// The tenant and role this scope was granted (or, a continuation, carries on in);
    /// `None` before it began or when it was refused.
    pub fn granted_tenant(&self) -> Option<TenantCtx> {
        self.entered.or_else(|| match self.begun.get() {
            Some(Begun {
                access: TenantAccess::Granted(ctx),
                ..
            }) => Some(*ctx),
            _ => None,
        })
    }

    /// The application pool, for statements that must not run in (or wait for) the
    /// request's transaction: definer look-ups before a password check, throttles.
    pub fn db(&self) -> &AppDb {
        &self.db
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn meta(&self) -> &RequestMeta {
        &self.meta
    }

    /// Whether the request found its credential revoked or expired (an ended session,
    /// a revoked or expired API key): the HTTP layer answers it like an unknown one.
    pub fn credential_ended(&self) -> bool {
        self.begun
            .get()
            .is_some_and(|begun| matches!(begun.access, TenantAccess::CredentialEnded))
    }

    /// The request's transaction, begun on first use. A token whose session was
    /// revoked reaches nothing: UNAUTHENTICATED.
    pub async fn tx(&self) -> Result<&RequestTx> {
        let begun = self.begun().await?;
        if matches!(begun.access, TenantAccess::CredentialEnded) {
            return Err(Error::Unauthenticated);
        }
        Ok(&begun.tx)
    }

    async fn begun(&self) -> Result<&Begun> {
        // Boxed: every resolver awaits this, and the begin's state (a connection
        // acquired, a query sent) would otherwise be inlined into each of their futures.
        self.begun.get_or_try_init(|| Box::pin(self.begin())).await
    }

    async fn begin(&self) -> Result<Begun> {
        let (tenant, user, key) = match &self.principal {
            Principal::Anonymous => (None, None, None),
            Principal::User {
                user_id, tenant_id, ..
            } => (*tenant_id, Some(*user_id), None),
            Principal::ApiKey {
                tenant_id, key_id, ..
            } => (Some(*tenant_id), None, Some(*key_id)),
            Principal::Engine { tenant_id } | Principal::Upkeep { tenant_id } => {
                (Some(*tenant_id), None, None)
            }
        };
        if let Some(ctx) = self.entered {
            let head = Head {
                // Written as `app.enter_request` writes them: a UUID, or `''`.
                sql: format!(
                    "SELECT set_config('app.tenant_id', {}::text, true), \
                       set_config('app.user_id', coalesce({}::text, ''), true)",
                    uuid_literal(Some(ctx.tenant_id)),
                    uuid_literal(user),
                ),
                shown: "SELECT set_config('app.tenant_id', $1, true), \
                          set_config('app.user_id', $2, true)",
            };
            let (tx, _) = self.db.begin(Some(&head)).await?;
            return Ok(Begun {
                tx,
                access: TenantAccess::Granted(ctx),
            });
        }
        if tenant.is_none() && user.is_none() {
            let (tx, _) = self.db.begin(None).await?;
            return Ok(Begun {
                tx,
                access: TenantAccess::None,
            });
        }
        // One statement, sent with the transaction's BEGIN, sets the tenant and user
        // transaction-locally, re-checks the caller's access and, when it is refused,
        // resets the tenant (fail closed).
        let head = Head {
            sql: format!(
                "SELECT access, role FROM app.enter_request({}, {}, {}, {}, {}, {})",
                uuid_literal(tenant),
                uuid_literal(user),
                uuid_literal(self.session_id()),
                uuid_literal(key),
                matches!(self.principal, Principal::Engine { .. }),
                matches!(self.principal, Principal::Upkeep { .. }),
            ),
            shown: "SELECT access, role FROM app.enter_request($1, $2, $3, $4, $5, $6)",
        };
        let (tx, rows) = self.db.begin(Some(&head)).await?;
        let row = AccessRow::from_query_result(
            rows.first().ok_or_else(|| {
                Error::Internal(anyhow::anyhow!("app.enter_request returned no row"))
            })?,
            "",
        )?;
        let access = match (row.access.as_str(), tenant) {
            ("session_ended" | "key_dead", _) => TenantAccess::CredentialEnded,
            ("none", _) | (_, None) => TenantAccess::None,
            ("granted", Some(tenant_id)) => {
                let role = match (&self.principal, row.role) {
                    (Principal::ApiKey { scopes, .. }, _) => role_of_scopes(scopes),
                    (_, Some(role)) => role,
                    (_, None) => Role::Viewer,
                };
                TenantAccess::Granted(TenantCtx { tenant_id, role })
            }
            ("deleted", _) => TenantAccess::Refused("this tenant has been deleted"),
            ("suspended", _) => TenantAccess::Refused("this tenant is suspended"),
            _ => TenantAccess::Refused("you are not a member of this tenant"),
        };
        Ok(Begun { tx, access })
    }

    /// The active tenant, if the caller may act in it with at least `required`.
    pub async fn require(&self, required: Role) -> Result<TenantCtx> {
        if self.principal == Principal::Anonymous {
            return Err(Error::Unauthenticated);
        }
        if self.is_invoke_only() {
            return Err(Error::Forbidden("this API key may only invoke processes"));
        }
        self.granted(required).await
    }

    /// The active tenant, for invoking a process: an API key with the `invoke` scope,
    /// or a member who may run things (operators and above).
    pub async fn require_invoker(&self) -> Result<TenantCtx> {
        match &self.principal {
            Principal::ApiKey { scopes, .. } if scopes.contains(&Scope::Invoke) => {
                self.granted(Role::Viewer).await
            }
            Principal::ApiKey { .. } => Err(Error::Forbidden(
                "this needs an API key with the invoke scope",
            )),
            _ => self.require(Role::Operator).await,
        }
    }

    /// Whether the caller is an API key that may only invoke processes: it reads
    /// nothing (`require` refuses it; so must any read that does not call `require`).
    pub fn is_invoke_only(&self) -> bool {
        matches!(&self.principal, Principal::ApiKey { scopes, .. }
            if scopes.iter().all(|s| *s == Scope::Invoke))
    }

    async fn granted(&self, required: Role) -> Result<TenantCtx> {
        match self.begun().await?.access {
            TenantAccess::Granted(ctx) if ctx.role.at_least(required) => Ok(ctx),
            TenantAccess::Granted(_) => Err(Error::Forbidden("your role does not allow this")),
            TenantAccess::Refused(why) => Err(Error::Forbidden(why)),
            TenantAccess::CredentialEnded => Err(Error::Unauthenticated),
            TenantAccess::None => Err(Error::Forbidden(
                "no active tenant: create one or switch to one",
            )),
        }
    }

    /// The active tenant and role, when there is one the caller may act in.
    pub async fn active_tenant(&self) -> Result<Option<TenantCtx>> {
        match self.begun().await?.access {
            TenantAccess::Granted(ctx) => Ok(Some(ctx)),
            TenantAccess::CredentialEnded => Err(Error::Unauthenticated),
            _ => Ok(None),
        }
    }

    /// The active tenant, for a worker: an API key with the runner scope.
    pub async fn require_runner(&self) -> Result<TenantCtx> {
        let runner = matches!(&self.principal, Principal::ApiKey { scopes, .. } if scopes.contains(&Scope::Runner))
            || matches!(self.principal, Principal::Engine { .. });
        if !runner {
            return Err(match self.principal {
                Principal::Anonymous => Error::Unauthenticated,
                _ => Error::Forbidden("this needs an API key with the runner scope"),
            });
        }
        self.require(Role::Viewer).await
    }

    /// The session of the caller's access token, if it names one.
    pub fn session_id(&self) -> Option<Uuid> {
        match self.principal {
            Principal::User { session_id, .. } => session_id,
            _ => None,
        }
    }

    /// The API key acting, if the caller is one.
    pub fn api_key_id(&self) -> Option<Uuid> {
        match self.principal {
            Principal::ApiKey { key_id, .. } => Some(key_id),
            _ => None,
        }
    }

    /// The signed-in user (not an API key).
    pub fn user_id(&self) -> Result<Uuid> {
        match self.principal {
            Principal::User { user_id, .. } => Ok(user_id),
            Principal::ApiKey { .. } | Principal::Engine { .. } | Principal::Upkeep { .. } => Err(
                Error::Forbidden("this needs a signed-in user, not an API key"),
            ),
            Principal::Anonymous => Err(Error::Unauthenticated),
        }
    }

    /// Who acts, for the audit log.
    pub fn actor(&self) -> Actor {
        match &self.principal {
            Principal::User { user_id, .. } => Actor::User(*user_id),
            Principal::ApiKey { key_id, .. } => Actor::ApiKey(*key_id),
            Principal::Engine { .. } | Principal::Upkeep { .. } => Actor::System,
            Principal::Anonymous => {
                match *self.acting_user.lock().unwrap_or_else(|e| e.into_inner()) {
                    Some(user) => Actor::User(user),
                    None => Actor::System,
                }
            }
        }
    }

    /// Sets the user of the transaction for an anonymous request that has just proven
    /// who it is (sign-up, login, refresh).
    pub async fn act_as_user(&self, user_id: Uuid) -> Result<()> {
        self.set("app.user_id", Some(user_id)).await?;
        *self.acting_user.lock().unwrap_or_else(|e| e.into_inner()) = Some(user_id);
        Ok(())
    }

    /// Switches the transaction into `tenant_id` for an operation that has established
    /// the right to (creating a tenant, accepting its invitation). Call
    /// [`Self::leave_tenant`] when done.
    pub async fn enter_tenant(&self, tenant_id: Uuid) -> Result<()> {
        self.set("app.tenant_id", Some(tenant_id)).await
    }

    /// Restores the tenant the request began with (or none).
    pub async fn leave_tenant(&self) -> Result<()> {
        let tenant = match self.begun().await?.access {
            TenantAccess::Granted(ctx) => Some(ctx.tenant_id),
            _ => None,
        };
        self.set("app.tenant_id", tenant).await
    }

    /// Opens the audited platform-administration path: only for a user whose platform
    /// role says so, checked in the database on every use. It stays open until the
    /// operation ends ([`Self::end_operation`]).
    pub async fn require_platform_admin(&self) -> Result<Uuid> {
        let user_id = self.user_id()?;
        self.flush_audit().await?;
        let row = self
            .tx()
            .await?
            .query_one(stmt(
                "SELECT set_config('app.platform_admin', CASE WHEN app.platform_role_of($1) = 'platform_admin' \
                 THEN 'on' ELSE '' END, true) AS flag",
                [user_id.into()],
            ))
            .await?;
        let flag: String = row
            .map(|r| r.try_get("", "flag"))
            .transpose()?
            .unwrap_or_default();
        if flag == "on" {
            self.platform_admin.store(true, Ordering::Relaxed);
            Ok(user_id)
        } else {
            Err(Error::Forbidden("this needs a platform administrator"))
        }
    }

    async fn set(&self, setting: &str, value: Option<Uuid>) -> Result<()> {
        // Queued audit rows go in under the settings they were recorded with.
        self.flush_audit().await?;
        self.tx()
            .await?
            .execute(stmt(
                "SELECT set_config($1, $2, true)",
                [setting.into(), uuid_text(value)],
            ))
            .await?;
        Ok(())
    }

    /// Ends one GraphQL operation of the request: turns `app.platform_admin` off again if
    /// the operation turned it on, so the next operation of a batch (which shares the
    /// transaction) is not widened by it.
    pub async fn end_operation(&self) -> Result<()> {
        // The next operation of a batch reads the audit log as this one left it.
        self.flush_queued().await?;
        if self.platform_admin.swap(false, Ordering::Relaxed) {
            self.tx()
                .await?
                .execute(stmt(
                    "SELECT set_config('app.platform_admin', '', true)",
                    [],
                ))
                .await?;
        }
        Ok(())
    }

    /// Inserts the queued audit events and sends the queued NOTIFYs, in one statement.
    /// PostgreSQL holds the notifications until the commit (and drops them on a
    /// rollback), so sending them before the end of the request is safe.
    async fn flush_queued(&self) -> Result<()> {
        let rows = std::mem::take(
            &mut *self
                .audit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let announcements = std::mem::take(
            &mut *self
                .announcements
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if rows.is_empty() && announcements.is_empty() {
            return Ok(());
        }
        crate::audit::insert_and_notify(self.tx().await?, rows, announcements).await
    }

    /// Adds `cost` to the request's mutations (every operation of a batch shares one
    /// scope); false, and nothing added, when that would pass `limit`.
    pub fn charge_mutations(&self, cost: u32, limit: u32) -> bool {
        self.mutation_cost
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |spent| {
                spent.checked_add(cost).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    /// Queues a NOTIFY on `channel` for the commit: all of a transaction's go out in
    /// one statement just before it commits (none if it rolls back), and the same
    /// announcement made twice is sent once.
    pub fn announce(&self, channel: &'static str, payload: String) {
        self.writes.store(true, Ordering::Relaxed);
        let mut queued = self
            .announcements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !queued.iter().any(|(c, p)| *c == channel && *p == payload) {
            queued.push((channel, payload));
        }
    }

    /// Queues an audit row for [`Self::flush_audit`].
    pub(crate) fn queue_audit(&self, row: crate::audit::Row) {
        self.writes.store(true, Ordering::Relaxed);
        self.audit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(row);
    }

    /// Inserts the audit events recorded so far.
    async fn flush_audit(&self) -> Result<()> {
        let rows = std::mem::take(
            &mut *self
                .audit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if rows.is_empty() {
            return Ok(());
        }
        crate::audit::insert(self.tx().await?, rows).await
    }

    /// Marks the request as failed: its transaction will roll back.
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Records that a mutation runs in this scope.
    pub fn note_mutation(&self) {
        self.writes.store(true, Ordering::Relaxed);
    }

    /// Whether the scope only read: no mutation ran, and it never queued an audit
    /// event or a notification. Such a scope's commit changes nothing a client could
    /// see (at most an API key's `last_used_at`), so the response need not wait for it.
    pub fn only_read(&self) -> bool {
        !self.writes.load(Ordering::Relaxed)
    }

    /// [`Self::finish`] for a scope that resolvers shared: waits (yielding) until
    /// nothing else holds it, as the dataloader's batch tasks may for a moment after a
    /// response, then commits or rolls back. A failure is logged with the request id and
    /// returned: when the request succeeded, its client must be told that nothing was
    /// saved. A scope still shared after that rolls back when its last holder drops it,
    /// which is an error too.
    pub async fn finish_shared(mut scope: Arc<Self>, succeeded: bool) -> Result<()> {
        for _ in 0..1000 {
            match Arc::try_unwrap(scope) {
                Ok(owned) => {
                    let request_id = owned.meta.request_id.clone();
                    let finished = owned.finish(succeeded).await;
                    if let Err(err) = &finished {
                        tracing::error!(request_id, error = ?err, "finishing a request transaction failed");
                    }
                    return finished;
                }
                Err(shared) => {
                    scope = shared;
                    tokio::task::yield_now().await;
                }
            }
        }
        tracing::error!(
            request_id = scope.meta.request_id,
            "request scope still shared; its transaction rolls back on drop"
        );
        Err(Error::Internal(anyhow::anyhow!(
            "request scope still shared at the end of the request"
        )))
    }

    /// Ends a scope that only read (a subscription's check or event read): nothing was
    /// written, so a failure to finish is only logged, as [`Self::finish_shared`] does.
    pub async fn end_read(scope: Arc<Self>, succeeded: bool) {
        let _logged = Self::finish_shared(scope, succeeded).await;
    }

    /// Commits when the request succeeded and nothing marked it failed; rolls back
    /// otherwise. Call once, after the response is computed.
    pub async fn finish(self, succeeded: bool) -> Result<()> {
        let commit = succeeded && !self.has_failed();
        if commit {
            // Nothing is saved without its audit events.
            if let Err(err) = self.flush_queued().await {
                if let Some(begun) = self.begun.into_inner() {
                    begun.tx.rollback().await?;
                }
                return Err(err);
            }
        }
        if let Some(begun) = self.begun.into_inner() {
            if commit {
                begun.tx.commit().await?;
            } else {
                begun.tx.rollback().await?;
            }
        }
        Ok(())
    }
}

fn role_of_scopes(scopes: &[Scope]) -> Role {
    if scopes.contains(&Scope::Admin) {
        Role::Admin
    } else if scopes.contains(&Scope::Write) {
        Role::Builder
    } else if scopes.contains(&Scope::Runner) {
        Role::Operator
    } else {
        Role::Viewer
    }
}

/// A UUID as an SQL literal, for a statement sent without parameters.
fn uuid_literal(id: Option<Uuid>) -> String {
    id.map_or_else(|| "NULL::uuid".to_owned(), |id| format!("'{id}'::uuid"))
}

fn uuid_text(id: Option<Uuid>) -> Value {
    id.map(|u| u.to_string()).unwrap_or_default().into()
}

/// A PostgreSQL statement with positional parameters.
pub fn stmt<I: IntoIterator<Item = Value>>(sql: &str, values: I) -> Statement {
    Statement::from_sql_and_values(sea_orm::DatabaseBackend::Postgres, sql, values)
}
