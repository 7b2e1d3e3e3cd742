//! The scheduler: fires SCHEDULE triggers, each firing exactly once however many
//! schedulers (servers, workers) share the database.
//!
//! A schedule trigger keeps its next firing in `triggers.next_fire_at`. A pass at `now`
//! asks one SECURITY DEFINER function which tenants have a trigger due
//! (`app.tenants_with_due_schedules`, tenant ids only), then works in each tenant's
//! transaction as [`Principal::Engine`], under its RLS: it lists the tenant's due
//! triggers and, one transaction per trigger, claims the firing by moving
//! `next_fire_at` on from the value it read (`UPDATE … WHERE id = $1 AND next_fire_at
//! = $due`) and starts the run(s) in that same transaction. Of two schedulers, the
//! second's update waits for the first's transaction and then matches no row; if the
//! first rolls back, the second fires. Each run's idempotency key
//! (`schedule:<trigger>:<firing>`) would catch a second start anyway.
//!
//! `now` is a parameter ([`Scheduler::tick_at`]), so tests drive hours of schedules
//! without waiting; [`Scheduler::run`] passes the clock.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::json;
use trellis_entity::{trigger, workflow_run, IdKind, PrefixedId, Role, RunStatus, TriggerType};
use uuid::Uuid;

use crate::runs::start::cancel_run;
use crate::runs::triggered::{self, Fired, Firing};
use crate::runs::RunSettings;
use crate::scope::{stmt, AppDb, RequestScope};
use crate::workflows::triggers::{plan_firings, FiringPlan, Overlap, Schedule, SchedulePolicy};
use crate::Result;

/// How much one scheduler pass takes on.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// The most tenants served in one pass (the most overdue first).
    pub tenants_per_pass: i32,
    /// The most due triggers of one tenant handled in one pass.
    pub triggers_per_tenant: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tenants_per_pass: 100,
            triggers_per_tenant: 100,
        }
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Runs started.
    pub fired: usize,
    /// Firings that started no run: the previous run was still open (overlap SKIP),
    /// what the trigger starts does not run now (a workflow not active; an agent
    /// deleted, paused or without an active version), or the start was refused (an
    /// agent over its budget).
    pub skipped: usize,
    /// Missed firings passed over by the catch-up policy.
    pub missed: usize,
    /// Due triggers another scheduler fired first.
    pub lost: usize,
    /// Due triggers looked at.
    pub triggers: usize,
}

/// The scheduler of one process.
#[derive(Clone)]
pub struct Scheduler {
    db: AppDb,
    settings: RunSettings,
    config: SchedulerConfig,
}

impl Scheduler {
    /// A scheduler on the application pool.
    pub fn new(db: AppDb, settings: RunSettings, config: SchedulerConfig) -> Self {
        Self {
            db,
            settings,
            config,
        }
    }

    fn scope(&self, tenant_id: Uuid) -> Arc<RequestScope> {
        RequestScope::for_engine(self.db.clone(), tenant_id, "scheduler")
    }

    /// A pass at the clock's time.
    pub async fn tick(&self) -> Result<Pass> {
        self.tick_at(Utc::now()).await
    }

    /// Fires every trigger due at `now`, as its catch-up and overlap policies say.
    pub async fn tick_at(&self, now: DateTime<Utc>) -> Result<Pass> {
        #[derive(FromQueryResult)]
        struct Due {
            tenant_id: Uuid,
        }
        let tenants = Due::find_by_statement(stmt(
            "SELECT t AS tenant_id FROM app.tenants_with_due_schedules($1, $2) t",
            [now.into(), self.config.tenants_per_pass.into()],
        ))
        .all(self.db.pool())
        .await?;
        let mut pass = Pass::default();
        for Due { tenant_id } in tenants {
            let scope = self.scope(tenant_id);
            let listed = due_triggers(&scope, now, self.config.triggers_per_tenant).await;
            RequestScope::end_read(scope, listed.is_ok()).await;
            let due = match listed {
                Ok(due) => due,
                // A tenant suspended since the look-up, say: the others go on.
                Err(err) => {
                    tracing::warn!(tenant = %tenant_id, error = %err, "scheduler: listing due triggers failed");
                    continue;
                }
            };
            for trigger in due {
                pass.triggers += 1;
                let scope = self.scope(tenant_id);
                let fired = fire(&scope, &self.settings, &trigger, now).await;
                let finished = RequestScope::finish_shared(scope, fired.is_ok()).await;
                match (fired, finished) {
                    (Ok(outcome), Ok(())) => outcome.count(&mut pass),
                    // Rolled back: the firing stays due and the next pass tries again.
                    (Err(err), _) | (Ok(_), Err(err)) => {
                        tracing::error!(tenant = %tenant_id, trigger = %trigger.id, error = ?err, "scheduler: firing failed");
                    }
                }
            }
        }
        Ok(pass)
    }

    /// Passes until `shutdown` resolves, resting `idle` between passes (none after a
    /// pass that found a full batch).
    pub async fn run(self, idle: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let full = self.config.triggers_per_tenant as usize;
            let rest = match self.tick().await {
                Ok(pass) if pass.triggers >= full => Duration::ZERO,
                Ok(_) => idle,
                Err(err) => {
                    tracing::error!(error = ?err, "scheduler pass failed");
                    idle
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(rest) => {}
            }
        }
    }
}

/// The scope's tenant's schedule triggers due at `now`, most overdue first.
async fn due_triggers(
    scope: &RequestScope,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<trigger::Model>> {
    let ctx = scope.require(Role::Operator).await?;
    Ok(trigger::Entity::find()
        .filter(trigger::Column::TenantId.eq(ctx.tenant_id))
        .filter(trigger::Column::NextFireAt.lte(now))
        .order_by_asc(trigger::Column::NextFireAt)
        .order_by_asc(trigger::Column::Id)
        .limit(limit)
        .all(scope.tx().await?)
        .await?)
}

/// What firing one trigger came to.
#[derive(Default)]
struct Outcome {
    fired: usize,
    skipped: usize,
    missed: usize,
    lost: bool,
}

impl Outcome {
    fn count(&self, pass: &mut Pass) {
        pass.fired += self.fired;
        pass.skipped += self.skipped;
        pass.missed += self.missed;
        pass.lost += usize::from(self.lost);
    }
}

fn skipped(reason: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!("trellis_scheduler_skipped_total", "reason" => reason)
            .increment(n as u64);
    }
}

/// Claims a due trigger's firing and makes its runs, in the scope's one transaction.
async fn fire(
    scope: &RequestScope,
    settings: &RunSettings,
    trigger: &trigger::Model,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let ctx = scope.require(Role::Operator).await?;
    let Some(due) = trigger.next_fire_at else {
        return Ok(Outcome::default());
    };
    let (plan, policy) = match Schedule::parse(&trigger.config) {
        Ok(schedule) => {
            let policy = SchedulePolicy::parse(&trigger.config).unwrap_or_default();
            (plan_firings(&schedule, &policy, due, now), policy)
        }
        // Checked on save, so only a config from before a rule changed: stop it.
        Err(err) => {
            tracing::warn!(trigger = %trigger.id, error = %err, "scheduler: the schedule no longer parses; it stops");
            (FiringPlan::default(), SchedulePolicy::default())
        }
    };
    let tx = scope.tx().await?;
    // The claim: only the scheduler that moves `next_fire_at` from the value it read
    // fires. A trigger changed since it was read (config, switched off) is left alone.
    let claimed = tx
        .execute(stmt(
            "UPDATE triggers SET next_fire_at = $3 \
             WHERE id = $1 AND tenant_id = $2 AND next_fire_at = $4 AND config = $5",
            [
                trigger.id.into(),
                ctx.tenant_id.into(),
                plan.next.into(),
                due.into(),
                trigger.config.clone().into(),
            ],
        ))
        .await?
        .rows_affected();
    if claimed == 0 {
        return Ok(Outcome {
            lost: true,
            ..Outcome::default()
        });
    }
    let mut outcome = Outcome {
        missed: plan.missed,
        ..Outcome::default()
    };
    skipped("missed", plan.missed);
    if plan.fire.is_empty() {
        return Ok(outcome);
    }
    let trigger_id = PrefixedId::new(IdKind::Trigger, trigger.id).to_string();
    for at in plan.fire {
        let scheduled_at = at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let open: Vec<Uuid> = if policy.overlap == Overlap::Allow {
            vec![]
        } else {
            workflow_run::Entity::find()
                .select_only()
                .column(workflow_run::Column::Id)
                .filter(workflow_run::Column::TenantId.eq(ctx.tenant_id))
                .filter(workflow_run::Column::TriggerId.eq(trigger.id))
                .filter(
                    workflow_run::Column::Status.is_in([RunStatus::Pending, RunStatus::Running]),
                )
                .into_tuple()
                .all(tx)
                .await?
        };
        if !open.is_empty() && policy.overlap == Overlap::Skip {
            tracing::info!(trigger = %trigger_id, scheduled_at, open = open.len(), "schedule skipped: its previous run is still open");
            skipped("overlap", 1);
            outcome.skipped += 1;
            continue;
        }
        let firing = Firing {
            trigger_type: TriggerType::Schedule,
            payload: json!({ "scheduledAt": scheduled_at, "firedAt": now }),
            input: json!({}),
            idempotency_key: format!("schedule:{trigger_id}:{scheduled_at}"),
        };
        let started = match triggered::fire(scope, settings, trigger, firing).await {
            Ok(Fired::Started(started)) => *started,
            Ok(Fired::Idle(reason)) => {
                tracing::info!(trigger = %trigger_id, scheduled_at, reason, "schedule skipped: what it starts does not run now");
                skipped(reason, 1);
                outcome.skipped += 1;
                continue;
            }
            // Refused before anything was written: rolling back would only make the
            // next pass try again, and again. An agent over its budget has had its
            // alert raised.
            Err(err) if triggered::refused_before_writing(&err) => {
                tracing::warn!(trigger = %trigger_id, scheduled_at, error = %err, "schedule started no run");
                skipped("refused", 1);
                outcome.skipped += 1;
                continue;
            }
            Err(err) => return Err(err),
        };
        // CANCEL_PREVIOUS: the open runs end once the new one has started.
        for run in open.into_iter().filter(|run| *run != started.run.id) {
            cancel_run(scope, run).await?;
        }
        if !started.deduplicated {
            metrics::counter!("trellis_scheduler_fired_total").increment(1);
            outcome.fired += 1;
        }
    }
    Ok(outcome)
}
