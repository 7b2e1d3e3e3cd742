//! Live-update fan-out: one PostgreSQL listener per server process turns the NOTIFYs
//! of [`super::events`] into [`LiveEvent`]s on an in-process broadcast channel, which
//! every subscription of this process filters for its own tenant.
//!
//! An event only says *that* something changed and in which tenant; subscriptions
//! never send its content. They re-read the row in a request scope of their own
//! tenant (RLS in force), so even a forged NOTIFY cannot carry data across tenants.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::events::{LOGS_CHANNEL, RUNS_CHANNEL};
use crate::agents::activity::ACTIVITY_CHANNEL;
use crate::alerts::ALERTS_CHANNEL;

/// What changed, as announced by a NOTIFY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveEvent {
    /// A run changed (status, steps, output).
    RunChanged {
        tenant_id: Uuid,
        run_id: Uuid,
        workflow_id: Uuid,
    },
    /// Log entries were appended to a run.
    LogsAppended {
        tenant_id: Uuid,
        run_id: Uuid,
        count: i64,
    },
    /// An alert was raised (`tenant_id` `None`: a platform alert).
    AlertRaised {
        tenant_id: Option<Uuid>,
        alert_id: Uuid,
        agent_id: Option<Uuid>,
    },
    /// An agent recorded an activity ([`crate::agents::activity`]).
    AgentActivity {
        tenant_id: Uuid,
        agent_id: Uuid,
        activity_id: Uuid,
    },
    /// The listener lost its connection and reconnected: announcements made in
    /// between are lost, so a subscription that follows one run re-reads it.
    Resync,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunPayload {
    tenant_id: Uuid,
    run_id: Uuid,
    workflow_id: Uuid,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActivityPayload {
    tenant_id: Uuid,
    agent_id: Uuid,
    activity_id: Uuid,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogsPayload {
    tenant_id: Uuid,
    run_id: Uuid,
    count: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertPayload {
    tenant_id: Option<Uuid>,
    alert_id: Uuid,
    agent_id: Option<Uuid>,
}

impl LiveEvent {
    /// Parses a notification of one of the live channels; `None` for anything else.
    pub fn parse(channel: &str, payload: &str) -> Option<Self> {
        match channel {
            RUNS_CHANNEL => {
                let p: RunPayload = serde_json::from_str(payload).ok()?;
                Some(Self::RunChanged {
                    tenant_id: p.tenant_id,
                    run_id: p.run_id,
                    workflow_id: p.workflow_id,
                })
            }
            LOGS_CHANNEL => {
                let p: LogsPayload = serde_json::from_str(payload).ok()?;
                Some(Self::LogsAppended {
                    tenant_id: p.tenant_id,
                    run_id: p.run_id,
                    count: p.count,
                })
            }
            ALERTS_CHANNEL => {
                let p: AlertPayload = serde_json::from_str(payload).ok()?;
                Some(Self::AlertRaised {
                    tenant_id: p.tenant_id,
                    alert_id: p.alert_id,
                    agent_id: p.agent_id,
                })
            }
            ACTIVITY_CHANNEL => {
                let p: ActivityPayload = serde_json::from_str(payload).ok()?;
                Some(Self::AgentActivity {
                    tenant_id: p.tenant_id,
                    agent_id: p.agent_id,
                    activity_id: p.activity_id,
                })
            }
            _ => None,
        }
    }

    /// The tenant the event belongs to; `None` for [`LiveEvent::Resync`] and platform
    /// alerts.
    pub fn tenant_id(&self) -> Option<Uuid> {
        match self {
            Self::RunChanged { tenant_id, .. }
            | Self::LogsAppended { tenant_id, .. }
            | Self::AgentActivity { tenant_id, .. } => Some(*tenant_id),
            Self::AlertRaised { tenant_id, .. } => *tenant_id,
            Self::Resync => None,
        }
    }
}

/// How many events a slow subscription may fall behind before it skips some.
const CAPACITY: usize = 1024;
/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long start-up waits for the first LISTEN before going on without it.
const FIRST_LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

struct Inner {
    sender: broadcast::Sender<LiveEvent>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The process's live events. Clones share one listener, which stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct LiveEvents(Arc<Inner>);

impl std::fmt::Debug for LiveEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveEvents")
            .field("receivers", &self.0.sender.receiver_count())
            .finish()
    }
}

impl LiveEvents {
    /// Events without a database listener: only what [`Self::publish`] sends (tests,
    /// schema export).
    pub fn detached() -> Self {
        let (sender, _) = broadcast::channel(CAPACITY);
        Self(Arc::new(Inner { sender, task: None }))
    }

    /// Starts the listener on `database_url` (the application role may LISTEN: it
    /// needs no privilege). Waits for the first LISTEN, so that a change committed
    /// after start-up is not missed; if the database does not answer in time, the
    /// listener keeps trying in the background, with backoff.
    pub async fn listen(database_url: &str) -> Self {
        let (sender, _) = broadcast::channel(CAPACITY);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run_listener(
            database_url.to_owned(),
            sender.clone(),
            ready_tx,
        ));
        if tokio::time::timeout(FIRST_LISTEN_TIMEOUT, ready_rx)
            .await
            .is_err()
        {
            tracing::warn!(
                "live updates: the database listener is not ready yet; retrying in the background"
            );
        }
        Self(Arc::new(Inner {
            sender,
            task: Some(task),
        }))
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.0.sender.subscribe()
    }

    /// Sends an event to this process's subscriptions only.
    pub fn publish(&self, event: LiveEvent) {
        let _ = self.0.sender.send(event);
    }
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener
        .listen_all([RUNS_CHANNEL, LOGS_CHANNEL, ALERTS_CHANNEL, ACTIVITY_CHANNEL])
        .await?;
    Ok(listener)
}

fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(MAX_BACKOFF)
}

async fn run_listener(
    url: String,
    sender: broadcast::Sender<LiveEvent>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match connect(&url).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "live updates: cannot LISTEN");
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
                continue;
            }
        };
        match ready.take() {
            Some(ready) => {
                let _ = ready.send(());
            }
            None => {
                tracing::info!("live updates: listening again");
                let _ = sender.send(LiveEvent::Resync);
            }
        }
        loop {
            // A lost connection is `None`, after the listener has reconnected and
            // listened again (eager reconnection); a failed reconnection is an error.
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    backoff = Duration::from_millis(100);
                    match LiveEvent::parse(notification.channel(), notification.payload()) {
                        Some(event) => {
                            let _ = sender.send(event);
                        }
                        None => tracing::warn!(
                            channel = notification.channel(),
                            "live updates: ignoring a malformed notification"
                        ),
                    }
                }
                Ok(None) => {
                    tracing::warn!("live updates: listener connection lost and re-established");
                    let _ = sender.send(LiveEvent::Resync);
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "live updates: listener error");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_payloads_of_both_channels_and_nothing_else() {
        let (t, r, w) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let run =
            serde_json::json!({ "tenantId": t, "runId": r, "workflowId": w, "status": "RUNNING" });
        assert_eq!(
            LiveEvent::parse(RUNS_CHANNEL, &run.to_string()),
            Some(LiveEvent::RunChanged {
                tenant_id: t,
                run_id: r,
                workflow_id: w
            })
        );
        let logs = serde_json::json!({ "tenantId": t, "runId": r, "count": 3 });
        assert_eq!(
            LiveEvent::parse(LOGS_CHANNEL, &logs.to_string()),
            Some(LiveEvent::LogsAppended {
                tenant_id: t,
                run_id: r,
                count: 3
            })
        );
        let a = Uuid::now_v7();
        let alert = serde_json::json!({ "tenantId": t, "alertId": a, "agentId": null });
        assert_eq!(
            LiveEvent::parse(ALERTS_CHANNEL, &alert.to_string()),
            Some(LiveEvent::AlertRaised {
                tenant_id: Some(t),
                alert_id: a,
                agent_id: None
            })
        );
        assert_eq!(LiveEvent::parse(RUNS_CHANNEL, "{}"), None);
        assert_eq!(LiveEvent::parse("other", &run.to_string()), None);
    }

    #[test]
    fn parses_an_agent_activity_announcement() {
        let (t, a, id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let activity = serde_json::json!({ "tenantId": t, "agentId": a, "activityId": id });
        let event = LiveEvent::parse(ACTIVITY_CHANNEL, &activity.to_string());
        assert_eq!(
            event,
            Some(LiveEvent::AgentActivity {
                tenant_id: t,
                agent_id: a,
                activity_id: id
            })
        );
        assert_eq!(event.and_then(|e| e.tenant_id()), Some(t));
        assert_eq!(LiveEvent::parse(ACTIVITY_CHANNEL, "{}"), None);
    }
}
