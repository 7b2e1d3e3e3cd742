//! Execution logs in GraphQL: `WorkflowRun.logs`, `StepRun.logs` and the runner's
//! `appendLogs`. Lines are read through the tenant-bound log store (MongoDB or
//! PostgreSQL) and paged by a keyset cursor on time and id.

use std::borrow::Cow;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, Enum, InputObject, OutputType, Positioned, ServerResult,
    SimpleObject, Value, ID,
};
use chrono::{DateTime, Utc};
use trellis_core::logs::{LogCursor, LogFilter, LogPage};
use trellis_entity::IdKind;
use uuid::Uuid;

use crate::context::{run, ContextExt};
use crate::ids::gid;
use crate::pagination::describe_connection;
use crate::payload::Json;

/// How serious a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "trellis_core::logs::LogLevel")]
pub enum LogLevel {
    /// Diagnostic detail.
    Debug,
    /// Routine progress.
    Info,
    /// Something worth attention that did not stop the work.
    Warn,
    /// A failure.
    Error,
}

/// One execution log line, redacted before it was stored.
#[derive(SimpleObject)]
pub struct LogLine {
    /// The global ID (`log_…`), which `node` takes.
    #[graphql(owned)]
    pub id: ID,
    /// The run it belongs to.
    pub run_id: ID,
    /// How serious it is.
    pub level: LogLevel,
    /// The text, redacted (run secrets, the tenant's rules and, unless turned off, email
    /// addresses) and at most 16,384 characters.
    pub message: String,
    /// Structured details, redacted like the message; `{}` when the runner sent none.
    pub context: Json<serde_json::Value>,
    /// When it happened, to the millisecond.
    pub logged_at: DateTime<Utc>,
    /// The step run it belongs to, if any.
    pub step_run_id: Option<ID>,
    /// When retention removes it.
    pub expire_at: DateTime<Utc>,
}

impl From<trellis_core::logs::LogEntry> for LogLine {
    fn from(e: trellis_core::logs::LogEntry) -> Self {
        Self {
            id: gid(IdKind::LogLine, e.id),
            run_id: gid(IdKind::WorkflowRun, e.run_id),
            level: e.level.into(),
            message: e.message,
            context: Json(e.context),
            logged_at: e.logged_at,
            step_run_id: e.step_run_id.map(|id| gid(IdKind::StepRun, id)),
            expire_at: e.expire_at,
        }
    }
}

/// A page of log lines, oldest first: async-graphql's `Connection`, described in the
/// schema like every list's (see [`describe_connection`]).
pub struct LogConnection(Connection<String, LogLine, EmptyFields>);

impl OutputType for LogConnection {
    fn type_name() -> Cow<'static, str> {
        <Connection<String, LogLine, EmptyFields> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        let name =
            <Connection<String, LogLine, EmptyFields> as OutputType>::create_type_info(registry);
        describe_connection::<LogLine, Edge<String, LogLine, EmptyFields>>(registry, &name);
        name
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        self.0.resolve(ctx, field).await
    }
}

/// Narrows a run's log lines.
#[derive(InputObject, Default)]
pub struct LogLineFilter {
    /// Any of these levels.
    pub levels: Option<Vec<LogLevel>>,
    /// A case-insensitive substring of the message, matched literally.
    pub text: Option<String>,
}

/// The line with this id, if the tenant has it and it has not expired.
pub(crate) async fn log_line(
    ctx: &Context<'_>,
    id: Uuid,
) -> async_graphql::Result<Option<LogLine>> {
    let scope = ctx.scope()?;
    let store = &ctx.services()?.logs;
    let filter = LogFilter {
        id: Some(id),
        ..LogFilter::default()
    };
    let page = LogPage {
        limit: 1,
        ..LogPage::default()
    };
    let (lines, _) = run(
        ctx,
        Box::pin(async { store.for_tenant(scope).await?.query(&filter, page).await }),
    )
    .await?;
    Ok(lines.into_iter().next().map(LogLine::from))
}

/// One page of the lines of a run or of a step run.
///
/// The read is boxed: the log store's futures (the MongoDB driver's above all) are
/// large, and inline they would size the future of every `WorkflowRun` and `StepRun`
/// object, which a list allocates and moves once per row (see `crate::in_place`).
pub(crate) async fn log_page(
    ctx: &Context<'_>,
    run_id: Uuid,
    step_run_id: Option<Uuid>,
    first: Option<i32>,
    after: Option<String>,
    filter: Option<LogLineFilter>,
) -> async_graphql::Result<LogConnection> {
    Box::pin(read_log_page(
        ctx,
        run_id,
        step_run_id,
        first,
        after,
        filter,
    ))
    .await
}

async fn read_log_page(
    ctx: &Context<'_>,
    run_id: Uuid,
    step_run_id: Option<Uuid>,
    first: Option<i32>,
    after: Option<String>,
    filter: Option<LogLineFilter>,
) -> async_graphql::Result<LogConnection> {
    let scope = ctx.scope()?;
    let store = &ctx.services()?.logs;
    let filter = filter.unwrap_or_default();
    let (lines, more, had_cursor) = run(ctx, async {
        let after = after
            .as_deref()
            .map(|c| LogCursor::decode(c, "after"))
            .transpose()?;
        let limit = first.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(trellis_core::Error::bad_input(
                "first",
                "first must be between 1 and 100",
            ));
        }
        let query = LogFilter {
            run_id: Some(run_id),
            step_run_id,
            levels: filter
                .levels
                .map(|levels| levels.into_iter().map(Into::into).collect()),
            text: filter.text,
            ..LogFilter::default()
        };
        let page = LogPage {
            after,
            limit: limit as u32,
            newest_first: false,
        };
        let (lines, more) = store.for_tenant(scope).await?.query(&query, page).await?;
        Ok((lines, more, after.is_some()))
    })
    .await?;
    let mut connection = Connection::new(had_cursor, more);
    connection.edges = lines
        .into_iter()
        .map(|line| Edge::new(LogCursor::of(&line).encode(), LogLine::from(line)))
        .collect();
    Ok(LogConnection(connection))
}
