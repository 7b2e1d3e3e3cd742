//! A request's transaction, begun in the same round trip as the statement that sets its
//! tenant.
//!
//! sea-orm's `begin()` sends a bare `BEGIN` and waits for it, so a request paid a round
//! trip for `BEGIN` and another for `app.enter_request` before its first real
//! statement (bench/README.md, "Where a small request's time goes"). [`RequestTx`]
//! sends `BEGIN` and that first statement as one simple query. Otherwise it is what
//! sea-orm's `DatabaseTransaction` is: one pooled connection that runs the request's
//! statements in turn, a commit or a rollback at the end, and a rollback when it is
//! dropped open.

use std::sync::Arc;
use std::time::Instant;

use sea_orm::sea_query::Values;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement};
use sea_query_binder::SqlxValues;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::{Executor, PgConnection, PgPool, Postgres};
use tokio::sync::Mutex;

/// Called after every statement a [`RequestTx`] runs (but `BEGIN`, `COMMIT` and
/// `ROLLBACK`), as sea-orm's metric callback is for the pool's: the server counts them
/// and, with traces on, records each as a span.
pub type StatementHook = Arc<dyn Fn(&sea_orm::metric::Info<'_>) + Send + Sync>;

/// An open transaction on one pooled connection.
pub struct RequestTx {
    /// `None` once committed or rolled back.
    conn: Mutex<Option<PoolConnection<Postgres>>>,
    hook: Option<StatementHook>,
}

impl std::fmt::Debug for RequestTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTx").finish_non_exhaustive()
    }
}

/// The first statement of a transaction, sent with its `BEGIN`.
pub struct Head {
    /// The statement, with its values written into the text (a simple query takes no
    /// parameters): only values whose text the caller produced from typed values
    /// (UUIDs, booleans), never text a client sent.
    pub sql: String,
    /// What the statement hook is told ran: the statement as it would read with
    /// parameters, so that no value reaches the metrics or traces.
    pub shown: &'static str,
}

impl RequestTx {
    /// Takes a connection from `pool` and begins a transaction on it, running `head`
    /// in the same round trip; its rows come back with the transaction. When `head`
    /// fails, the transaction is rolled back and its error returned.
    pub async fn begin(
        pool: &PgPool,
        head: Option<&Head>,
        hook: Option<StatementHook>,
    ) -> Result<(Self, Vec<PgRow>), DbErr> {
        let mut pooled = pool.acquire().await.map_err(acquire_error)?;
        let conn: &mut PgConnection = &mut pooled;
        let rows = match head {
            None => {
                conn.execute("BEGIN").await.map_err(query_error)?;
                Vec::new()
            }
            Some(head) => {
                let started = Instant::now();
                let sql = format!("BEGIN; {}", head.sql);
                let result = conn.fetch_all(sql.as_str()).await;
                let shown = Statement::from_string(DbBackend::Postgres, head.shown);
                report(&hook, &shown, started, result.is_err());
                match result {
                    Ok(rows) => rows,
                    Err(err) => {
                        // `BEGIN` ran and the head failed: the transaction is aborted.
                        let _closed_if_failed = end_on(&mut pooled, "ROLLBACK").await;
                        return Err(query_error(err));
                    }
                }
            }
        };
        let tx = Self {
            conn: Mutex::new(Some(pooled)),
            hook,
        };
        Ok((tx, rows))
    }

    /// Commits, and returns the connection to the pool.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.end("COMMIT").await
    }

    /// Rolls back, and returns the connection to the pool.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.end("ROLLBACK").await
    }

    async fn end(self, sql: &'static str) -> Result<(), DbErr> {
        let Some(mut pooled) = self.conn.lock().await.take() else {
            return Ok(());
        };
        end_on(&mut pooled, sql).await
    }
}

/// Ends the transaction on `pooled` with `sql` (`COMMIT` or `ROLLBACK`). A connection
/// where that fails is closed when dropped: whatever state it is in, it must not serve
/// another request.
async fn end_on(pooled: &mut PoolConnection<Postgres>, sql: &'static str) -> Result<(), DbErr> {
    let conn: &mut PgConnection = pooled;
    let ended = conn.execute(sql).await.map(drop).map_err(query_error);
    if ended.is_err() {
        pooled.close_on_drop();
    }
    ended
}

/// Tells `hook` that `stmt` ran from `started` until now.
fn report(hook: &Option<StatementHook>, stmt: &Statement, started: Instant, failed: bool) {
    if let Some(hook) = hook {
        hook(&sea_orm::metric::Info {
            elapsed: started.elapsed(),
            statement: stmt,
            failed,
        });
    }
}

/// The open transaction's connection.
fn open(conn: &mut Option<PoolConnection<Postgres>>) -> Result<&mut PgConnection, DbErr> {
    match conn {
        Some(conn) => Ok(&mut *conn),
        None => Err(DbErr::Custom("the transaction has ended".into())),
    }
}

/// `stmt` as a sqlx query with its values bound, as sea-orm binds them (a prepared
/// statement, cached per connection).
fn bind(stmt: &Statement) -> sqlx::query::Query<'_, Postgres, SqlxValues> {
    let values = stmt.values.clone().unwrap_or(Values(Vec::new()));
    sqlx::query_with(&stmt.sql, SqlxValues(values))
}

impl Drop for RequestTx {
    /// A transaction dropped open (its request was cancelled, or panicked) rolls back
    /// before its connection serves anyone else; without a runtime to do that on, the
    /// connection is closed, which ends the transaction too.
    fn drop(&mut self) {
        let Some(mut pooled) = self.conn.get_mut().take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _closed_if_failed = end_on(&mut pooled, "ROLLBACK").await;
                });
            }
            Err(_) => pooled.close_on_drop(),
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for RequestTx {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn.lock().await;
        let conn = open(&mut conn)?;
        let started = Instant::now();
        let result = bind(&stmt).execute(conn).await;
        report(&self.hook, &stmt, started, result.is_err());
        result.map(Into::into).map_err(exec_error)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn.lock().await;
        let conn = open(&mut conn)?;
        conn.execute(sql).await.map(Into::into).map_err(exec_error)
    }

    async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut conn = self.conn.lock().await;
        let conn = open(&mut conn)?;
        let started = Instant::now();
        let result = bind(&stmt).fetch_optional(conn).await;
        report(&self.hook, &stmt, started, result.is_err());
        result.map(|row| row.map(Into::into)).map_err(query_error)
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut conn = self.conn.lock().await;
        let conn = open(&mut conn)?;
        let started = Instant::now();
        let result = bind(&stmt).fetch_all(conn).await;
        report(&self.hook, &stmt, started, result.is_err());
        result
            .map(|rows| rows.into_iter().map(Into::into).collect())
            .map_err(query_error)
    }
}

fn query_error(err: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(err))
}

fn exec_error(err: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(err))
}

fn acquire_error(err: sqlx::Error) -> DbErr {
    match err {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => {
            DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::ConnectionClosed)
        }
        err => DbErr::Conn(RuntimeErr::SqlxError(err)),
    }
}
