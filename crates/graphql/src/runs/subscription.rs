//! Live updates of runs, over graphql-ws only, and only ever for the subscriber's
//! tenant. Access is checked like a request's when a subscription starts (and again
//! for every event); each event is re-read in a fresh request scope before it is sent,
//! so what a NOTIFY payload claims is never trusted.

use std::sync::Arc;

use async_graphql::{Context, SimpleObject, Subscription, ID};
use futures::stream::{self, Stream, StreamExt};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use trellis_core::runs::live::LiveEvent;
use trellis_core::{RequestScope, TenantCtx};
use trellis_entity::{workflow, workflow_run, IdKind, Role};
use uuid::Uuid;

use super::types::WorkflowRun;
use crate::ids::{self, gid};
use crate::live::{session, InScope, LiveSession};

/// Log entries were appended to a run; read them through `run.logs`.
#[derive(SimpleObject)]
pub struct LogAppended {
    /// The run (`run_…`).
    pub run_id: ID,
    /// How many entries were appended.
    pub count: i32,
}

#[derive(Default)]
pub struct RunsSubscription;

#[Subscription]
impl RunsSubscription {
    /// The run as it is now, then again after every change (status, steps, output).
    /// Another tenant's run is NOT_FOUND. Ends if the run disappears.
    async fn run_updated(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The run to follow (`run_…`).")] run_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<InScope<WorkflowRun>>>>
    {
        let session = session(ctx)?;
        // Subscribe before reading, so that no change after the read is missed.
        let events = session.events.subscribe();
        let id = ids::parse(&run_id, IdKind::WorkflowRun).map_err(|e| session.error(&e))?;
        let (scope, run) = read_run(&session, id)
            .await?
            .ok_or_else(|| session.error(&trellis_core::Error::NotFound))?;
        let tenant_id = run.tenant_id;
        let first = InScope::new(scope, WorkflowRun(run));
        let changes = follow(session, events, move |event| match event {
            LiveEvent::RunChanged {
                tenant_id: t,
                run_id: r,
                ..
            } => *t == tenant_id && *r == id,
            // Announcements may have been lost: read the run again.
            LiveEvent::Resync => true,
            LiveEvent::LogsAppended { .. }
            | LiveEvent::AlertRaised { .. }
            | LiveEvent::AgentActivity { .. } => false,
        })
        .then(move |(session, _)| async move { read_run(&session, id).await })
        .take_while(|read| std::future::ready(!matches!(read, Ok(None))))
        .filter_map(|read| async move {
            read.map(|found| found.map(|(scope, run)| InScope::new(scope, WorkflowRun(run))))
                .transpose()
        });
        Ok(stream::once(async move { Ok(first) }).chain(ends_after_error(changes)))
    }

    /// Each run of the tenant as it changes (started, claimed, moved, finished,
    /// cancelled), or only those of one workflow.
    async fn runs_updated(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Only this workflow's runs (`wf_…`; another tenant's is NOT_FOUND); every run of the tenant when omitted."
        )]
        workflow_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<InScope<WorkflowRun>>>>
    {
        let session = session(ctx)?;
        let events = session.events.subscribe();
        let scope = session.scope();
        let checked = check_workflow(&scope, workflow_id.as_ref()).await;
        RequestScope::end_read(scope, checked.is_ok()).await;
        let (tenant, workflow_id) = checked.map_err(|e| session.error(&e))?;
        let changes = follow(session, events, move |event| match event {
            LiveEvent::RunChanged {
                tenant_id,
                workflow_id: w,
                ..
            } => *tenant_id == tenant.tenant_id && workflow_id.is_none_or(|wanted| *w == wanted),
            LiveEvent::LogsAppended { .. }
            | LiveEvent::AlertRaised { .. }
            | LiveEvent::AgentActivity { .. }
            | LiveEvent::Resync => false,
        })
        .then(|(session, event)| async move {
            let LiveEvent::RunChanged { run_id, .. } = event else {
                return Ok(None);
            };
            read_run(&session, run_id).await
        })
        .filter_map(move |read| async move {
            match read {
                // What the database says decides, not the announcement.
                Ok(Some((scope, run))) if workflow_id.is_none_or(|w| run.workflow_id == w) => {
                    Some(Ok(InScope::new(scope, WorkflowRun(run))))
                }
                Ok(Some((scope, _))) => {
                    RequestScope::end_read(scope, true).await;
                    None
                }
                Ok(None) => None,
                Err(err) => Some(Err(err)),
            }
        });
        Ok(ends_after_error(changes))
    }

    /// Each append of log entries to the run. Another tenant's run is NOT_FOUND.
    async fn log_appended(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The run whose log to follow (`run_…`).")] run_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LogAppended>>> {
        let session = session(ctx)?;
        let events = session.events.subscribe();
        let id = ids::parse(&run_id, IdKind::WorkflowRun).map_err(|e| session.error(&e))?;
        let (scope, run) = read_run(&session, id)
            .await?
            .ok_or_else(|| session.error(&trellis_core::Error::NotFound))?;
        RequestScope::end_read(scope, true).await;
        let tenant_id = run.tenant_id;
        let appends = follow(session, events, move |event| {
            matches!(event, LiveEvent::LogsAppended { tenant_id: t, run_id: r, .. } if *t == tenant_id && *r == id)
        })
        .then(move |(session, event)| async move {
            let count = match event {
                LiveEvent::LogsAppended { count, .. } => count,
                _ => 0,
            };
            // The run must still be visible to the subscriber.
            let read = read_run(&session, id).await?;
            Ok(match read {
                Some((scope, _)) => {
                    RequestScope::end_read(scope, true).await;
                    Some(LogAppended {
                        run_id: gid(IdKind::WorkflowRun, id),
                        count: i32::try_from(count).unwrap_or(i32::MAX),
                    })
                }
                None => None,
            })
        })
        .take_while(|read| std::future::ready(!matches!(read, Ok(None))))
        .filter_map(|read| async move { read.transpose() });
        Ok(ends_after_error(appends))
    }
}

/// The events a subscription wants, each with the session to read it in. A subscriber
/// that falls too far behind skips what it missed (with a `Resync` in its place).
pub(crate) fn follow(
    session: LiveSession,
    events: Receiver<LiveEvent>,
    wanted: impl Fn(&LiveEvent) -> bool + Send + 'static,
) -> impl Stream<Item = (LiveSession, LiveEvent)> + Send + 'static {
    stream::unfold(
        (session, events, wanted),
        |(session, mut events, wanted)| async move {
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "a subscription fell behind the live events");
                        LiveEvent::Resync
                    }
                    Err(RecvError::Closed) => return None,
                };
                if wanted(&event) {
                    return Some(((session.clone(), event), (session, events, wanted)));
                }
            }
        },
    )
}

/// Ends a subscription after its first error (access lost, database trouble), which
/// is still sent.
pub(crate) fn ends_after_error<T: Send>(
    items: impl Stream<Item = async_graphql::Result<T>> + Send,
) -> impl Stream<Item = async_graphql::Result<T>> + Send {
    stream::unfold((Box::pin(items), false), |(mut items, failed)| async move {
        if failed {
            return None;
        }
        let item = items.next().await?;
        let failed = item.is_err();
        Some((item, (items, failed)))
    })
}

/// Reads a run in a fresh scope of the subscriber, checking access like a request.
/// Returns the scope still open (its fields resolve through it), or `None`, with the
/// scope ended, when the run is not visible.
async fn read_run(
    session: &LiveSession,
    run_id: Uuid,
) -> async_graphql::Result<Option<(Arc<RequestScope>, workflow_run::Model)>> {
    let scope = session.scope();
    let read = async {
        let tenant = scope.require(Role::Viewer).await?;
        let run = workflow_run::Entity::find_by_id(run_id)
            .filter(workflow_run::Column::TenantId.eq(tenant.tenant_id))
            .one(scope.tx().await?)
            .await?;
        trellis_core::Result::Ok(run)
    }
    .await;
    match read {
        Ok(Some(run)) => Ok(Some((scope, run))),
        Ok(None) => {
            RequestScope::end_read(scope, true).await;
            Ok(None)
        }
        Err(err) => {
            RequestScope::end_read(scope, false).await;
            Err(session.error(&err))
        }
    }
}

/// The subscriber's tenant, and the workflow it names (which must be visible).
async fn check_workflow(
    scope: &RequestScope,
    workflow_id: Option<&ID>,
) -> trellis_core::Result<(TenantCtx, Option<Uuid>)> {
    let tenant = scope.require(Role::Viewer).await?;
    let Some(workflow_id) = workflow_id else {
        return Ok((tenant, None));
    };
    let id = ids::parse(workflow_id, IdKind::Workflow)?;
    workflow::Entity::find_by_id(id)
        .filter(workflow::Column::TenantId.eq(tenant.tenant_id))
        .one(scope.tx().await?)
        .await?
        .ok_or(trellis_core::Error::NotFound)?;
    Ok((tenant, Some(id)))
}
