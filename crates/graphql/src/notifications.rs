//! The in-app inbox: `notifications`, `unreadNotificationCount` and
//! `markNotificationsRead`, each the caller's own.

use async_graphql::{Context, InputObject, Object, ID};
use chrono::{DateTime, Utc};
use trellis_core::notifications;
use trellis_entity::{notification, IdKind};

use crate::context::{load, mutate, run, ContextExt};
use crate::identity::types::input_id;
use crate::ids::gid;
use crate::loaders::RunById;
use crate::payload::Json;
use crate::runs::types::WorkflowRun;

/// One message in a member's inbox, from a NOTIFICATION step.
pub struct Notification(pub notification::Model);

/// One message in a member's inbox, from a NOTIFICATION step (channel `in_app`).
#[Object]
impl Notification {
    /// Its global ID (`ntf_…`).
    pub async fn id(&self) -> ID {
        gid(IdKind::Notification, self.0.id)
    }
    /// The step's `title` (or `subject`); "Notification" when it gave none.
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// The step's rendered message.
    async fn body(&self) -> &str {
        &self.0.body
    }
    /// The step's `data`, for the dashboard to link or render; null when none.
    async fn data(&self) -> Option<Json<&serde_json::Value>> {
        self.0.data.as_ref().map(Json)
    }
    /// The run whose step sent it; null once the run is gone.
    async fn run(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<WorkflowRun>> {
        let Some(id) = self.0.run_id else {
            return Ok(None);
        };
        Ok(load(ctx, RunById(id)).await?.map(WorkflowRun))
    }
    /// When it was read (`markNotificationsRead`); null while unread.
    async fn read_at(&self) -> Option<DateTime<Utc>> {
        self.0.read_at
    }
    /// When it was delivered.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(Default)]
pub struct NotificationsQuery;

#[Object]
impl NotificationsQuery {
    /// The caller's notifications in the active tenant, newest first.
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return: 1 to 100, 20 when omitted; outside that range BAD_USER_INPUT."
        )]
        first: Option<i32>,
        #[graphql(
            desc = "Only those older than this notification (its `id`: the last one of the previous page)."
        )]
        before: Option<ID>,
        #[graphql(desc = "Only unread ones (false when omitted).")] unread_only: Option<bool>,
    ) -> async_graphql::Result<Vec<Notification>> {
        let limit = u64::try_from(first.unwrap_or(20)).unwrap_or(0);
        let before = before
            .map(|id| input_id(ctx, &id, IdKind::Notification))
            .transpose()?;
        let rows = run(
            ctx,
            notifications::inbox(ctx.scope()?, limit, unread_only.unwrap_or(false), before),
        )
        .await?;
        Ok(rows.into_iter().map(Notification).collect())
    }

    /// How many of the caller's notifications in the active tenant are unread.
    async fn unread_notification_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        let n = run(ctx, notifications::unread_count(ctx.scope()?)).await?;
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }
}

/// Which notifications to mark read.
#[derive(InputObject)]
pub struct MarkNotificationsReadInput {
    /// These (`ntf_…`, at most 100); every unread one of the caller's when omitted.
    pub ids: Option<Vec<ID>>,
}

payload!(
    /// How many notifications became read.
    MarkNotificationsReadPayload {
        /// How many were unread and are read now (ids that are not the caller's, or
        /// already read, count nothing); null when `userErrors` is not empty.
        marked: i32,
    }
);

#[derive(Default)]
pub struct NotificationsMutation;

#[Object]
impl NotificationsMutation {
    /// Marks the caller's notifications read.
    async fn mark_notifications_read(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which ones.")] input: MarkNotificationsReadInput,
    ) -> async_graphql::Result<MarkNotificationsReadPayload> {
        let ids = input
            .ids
            .map(|ids| {
                ids.iter()
                    .map(|id| input_id(ctx, id, IdKind::Notification))
                    .collect::<async_graphql::Result<Vec<_>>>()
            })
            .transpose()?;
        let (marked, user_errors) =
            mutate(ctx, notifications::mark_read(ctx.scope()?, ids)).await?;
        Ok(MarkNotificationsReadPayload {
            marked: marked.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            user_errors,
        })
    }
}
