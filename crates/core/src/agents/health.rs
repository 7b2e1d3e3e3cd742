//! Container health: runners (API keys with the runner scope) report how a tenant's
//! container, and the agent it hosts when known, is doing (`reportHealth`). Raw
//! samples are kept 24 hours; the maintenance loop folds them into hourly aggregates
//! (`container_health_hourly`), kept 30 days, in batches, in each tenant's own
//! transaction under RLS ([`health_pass`]; the tenants come from the SECURITY DEFINER
//! function `app.tenants_with_health_upkeep`, which returns ids only).
//!
//! A report also moves a tenant created to be hosted out of PROVISIONING: HEALTHY
//! makes it ACTIVE, UNHEALTHY makes it FAILED; a FAILED tenant becomes ACTIVE on its
//! next HEALTHY report.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, FromQueryResult, Set};
use serde_json::json;
use trellis_entity::{
    container_health, tenant, HealthStatus, IdKind, Role, Severity, TenantStatus,
};
use uuid::Uuid;

use super::agent::find_agent;
use crate::audit::{self, Event};
use crate::scope::{stmt, RequestScope};
use crate::{AppDb, Error, Result};

/// How long raw samples are kept.
pub const RAW_RETENTION_HOURS: i32 = 24;
/// How long hourly aggregates are kept.
pub const HOURLY_RETENTION_DAYS: i32 = 30;
/// The longest series `tenant.health` returns, in hours (31 days).
pub const MAX_SERIES_HOURS: i64 = 31 * 24;

/// A health report.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    pub agent_id: Option<Uuid>,
    pub status: HealthStatus,
    /// CPU in percent of one core.
    pub cpu: f64,
    pub memory_bytes: i64,
}

/// `reportHealth`: a runner of the tenant records a sample (audited); the agent, when
/// given, must be a live agent of the tenant (NOT_FOUND otherwise).
pub async fn report(scope: &RequestScope, report: Report) -> Result<container_health::Model> {
    let ctx = scope.require_runner().await?;
    if !(report.cpu.is_finite() && (0.0..=100_000.0).contains(&report.cpu)) {
        return Err(Error::bad_input(
            "cpu",
            "cpu is a percentage of one core from 0 to 100000",
        ));
    }
    if report.memory_bytes < 0 {
        return Err(Error::bad_input(
            "memoryBytes",
            "memoryBytes is not negative",
        ));
    }
    if let Some(agent_id) = report.agent_id {
        find_agent(scope, agent_id, false).await?;
    }
    let tx = scope.tx().await?;
    let row = container_health::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        agent_id: Set(report.agent_id),
        status: Set(report.status),
        cpu: Set(report.cpu),
        memory_bytes: Set(report.memory_bytes),
        reported_by_key: Set(scope.api_key_id()),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.health.report")
            .target(IdKind::ContainerHealth, row.id)
            .severity(match report.status {
                HealthStatus::Healthy => Severity::Info,
                HealthStatus::Degraded | HealthStatus::Unhealthy => Severity::Warning,
            })
            .details(json!({ "agentId": report.agent_id, "status": report.status })),
    )
    .await?;
    settle_provisioning(scope, ctx.tenant_id, report.status).await?;
    Ok(row)
}

/// Moves a provisioning (or failed) tenant by its runner's report.
async fn settle_provisioning(
    scope: &RequestScope,
    tenant_id: Uuid,
    status: HealthStatus,
) -> Result<()> {
    let tx = scope.tx().await?;
    let current = tenant::Entity::find_by_id(tenant_id)
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    let next = match (current.status, status) {
        (TenantStatus::Provisioning | TenantStatus::Failed, HealthStatus::Healthy) => {
            TenantStatus::Active
        }
        (TenantStatus::Provisioning, HealthStatus::Unhealthy) => TenantStatus::Failed,
        _ => return Ok(()),
    };
    tenant::ActiveModel {
        id: Set(tenant_id),
        status: Set(next),
        ..Default::default()
    }
    .update(tx)
    .await?;
    let (action, severity) = match next {
        TenantStatus::Active => ("tenant.provisioned", Severity::Info),
        _ => ("tenant.provisioning_failed", Severity::Critical),
    };
    audit::record(
        scope,
        Event::new(Some(tenant_id), action)
            .target(IdKind::Tenant, tenant_id)
            .severity(severity)
            .details(json!({ "from": current.status, "to": next })),
    )
    .await
}

/// One hour of a tenant's health: every sample of the hour, counted by status, with
/// CPU and memory averages and peaks.
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct HealthHour {
    pub hour: DateTime<Utc>,
    pub samples: i64,
    pub healthy: i64,
    pub degraded: i64,
    pub unhealthy: i64,
    pub cpu_avg: f64,
    pub cpu_max: f64,
    pub memory_avg: f64,
    pub memory_max: i64,
}

/// The hourly series of the active tenant (viewers) from the hour holding `from` up to
/// `to` (at most 31 days), of one agent when `agent_id` is given: the aggregates the
/// maintenance job wrote, with the samples it has not folded in yet. Hours without
/// samples are left out.
pub async fn series(
    scope: &RequestScope,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    agent_id: Option<Uuid>,
) -> Result<Vec<HealthHour>> {
    let ctx = scope.require(Role::Viewer).await?;
    if to <= from {
        return Err(Error::bad_input("to", "to must be after from"));
    }
    if to - from > Duration::hours(MAX_SERIES_HOURS) {
        return Err(Error::bad_input("to", "a series covers at most 31 days"));
    }
    let rows = HealthHour::find_by_statement(stmt(
        "SELECT hour, sum(samples)::int8 AS samples, sum(healthy)::int8 AS healthy, \
           sum(degraded)::int8 AS degraded, sum(unhealthy)::int8 AS unhealthy, \
           (sum(cpu_sum) / sum(samples))::float8 AS cpu_avg, max(cpu_max)::float8 AS cpu_max, \
           (sum(memory_sum) / sum(samples))::float8 AS memory_avg, max(memory_max)::int8 AS memory_max \
         FROM ( \
           SELECT hour, samples, healthy, degraded, unhealthy, cpu_sum, cpu_max, memory_sum, memory_max \
           FROM container_health_hourly \
           WHERE tenant_id = $1 AND hour >= date_trunc('hour', $2::timestamptz, 'UTC') AND hour < $3 \
             AND ($4::uuid IS NULL OR agent_id = $4) \
           UNION ALL \
           SELECT date_trunc('hour', recorded_at, 'UTC'), 1, (status = 'healthy')::int, \
             (status = 'degraded')::int, (status = 'unhealthy')::int, cpu, cpu, memory_bytes, memory_bytes \
           FROM container_health \
           WHERE tenant_id = $1 AND aggregated_at IS NULL \
             AND recorded_at >= date_trunc('hour', $2::timestamptz, 'UTC') AND recorded_at < $3 \
             AND ($4::uuid IS NULL OR agent_id = $4) \
         ) AS samples GROUP BY hour ORDER BY hour",
        [ctx.tenant_id.into(), from.into(), to.into(), agent_id.into()],
    ))
    .all(scope.tx().await?)
    .await?;
    Ok(rows)
}

/// What a pass of health upkeep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthPass {
    pub tenants: u64,
    pub failed: u64,
    /// Samples folded into hourly aggregates.
    pub aggregated: u64,
    /// Samples deleted after 24 hours.
    pub samples_deleted: u64,
    /// Hourly aggregates deleted after 30 days.
    pub hours_deleted: u64,
}

impl HealthPass {
    /// Rows changed or deleted, for the maintenance metrics.
    pub fn rows(&self) -> u64 {
        self.aggregated + self.samples_deleted + self.hours_deleted
    }

    fn add(&mut self, other: &HealthPass) {
        self.aggregated += other.aggregated;
        self.samples_deleted += other.samples_deleted;
        self.hours_deleted += other.hours_deleted;
    }
}

#[derive(FromQueryResult)]
struct Count {
    n: i64,
}

/// Folds at most `batch` samples of closed hours into their hourly aggregates, adding
/// to what an hour already has (a late sample counts once: it is marked as it is
/// folded in).
async fn aggregate(tx: &impl ConnectionTrait, tenant_id: Uuid, batch: i64) -> Result<u64> {
    let row = Count::find_by_statement(stmt(
        "WITH batch AS ( \
           SELECT id FROM container_health \
           WHERE tenant_id = $1 AND aggregated_at IS NULL \
             AND recorded_at < date_trunc('hour', now(), 'UTC') \
           ORDER BY recorded_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
         marked AS ( \
           UPDATE container_health h SET aggregated_at = now() FROM batch \
           WHERE h.tenant_id = $1 AND h.id = batch.id \
           RETURNING h.agent_id, h.status, h.cpu, h.memory_bytes, \
             date_trunc('hour', h.recorded_at, 'UTC') AS hour), \
         grouped AS ( \
           SELECT agent_id, hour, count(*)::int AS samples, \
             (count(*) FILTER (WHERE status = 'healthy'))::int AS healthy, \
             (count(*) FILTER (WHERE status = 'degraded'))::int AS degraded, \
             (count(*) FILTER (WHERE status = 'unhealthy'))::int AS unhealthy, \
             sum(cpu) AS cpu_sum, max(cpu) AS cpu_max, \
             sum(memory_bytes)::numeric AS memory_sum, max(memory_bytes) AS memory_max \
           FROM marked GROUP BY agent_id, hour), \
         merged AS ( \
           INSERT INTO container_health_hourly AS a (id, tenant_id, agent_id, hour, samples, \
             healthy, degraded, unhealthy, cpu_sum, cpu_max, memory_sum, memory_max) \
           SELECT gen_random_uuid(), $1, agent_id, hour, samples, healthy, degraded, unhealthy, \
             cpu_sum, cpu_max, memory_sum, memory_max FROM grouped \
           ON CONFLICT ON CONSTRAINT container_health_hourly_hour_key DO UPDATE SET \
             samples = a.samples + EXCLUDED.samples, healthy = a.healthy + EXCLUDED.healthy, \
             degraded = a.degraded + EXCLUDED.degraded, unhealthy = a.unhealthy + EXCLUDED.unhealthy, \
             cpu_sum = a.cpu_sum + EXCLUDED.cpu_sum, cpu_max = greatest(a.cpu_max, EXCLUDED.cpu_max), \
             memory_sum = a.memory_sum + EXCLUDED.memory_sum, \
             memory_max = greatest(a.memory_max, EXCLUDED.memory_max) \
           RETURNING 1) \
         SELECT (SELECT count(*) FROM marked) AS n",
        [tenant_id.into(), batch.into()],
    ))
    .one(tx)
    .await?;
    Ok(row.map_or(0, |r| r.n.unsigned_abs()))
}

/// One batch of a tenant's health upkeep, in one transaction of that tenant.
async fn tenant_batch(db: &AppDb, tenant_id: Uuid, batch: i64) -> Result<HealthPass> {
    let scope = RequestScope::for_upkeep(db.clone(), tenant_id);
    scope.require(Role::Viewer).await?;
    let tx = scope.tx().await?;
    let aggregated = aggregate(tx, tenant_id, batch).await?;
    let samples_deleted = tx
        .execute(stmt(
            "DELETE FROM container_health h USING ( \
               SELECT id FROM container_health \
               WHERE tenant_id = $1 AND aggregated_at IS NOT NULL \
                 AND recorded_at < now() - make_interval(hours => $3) \
               ORDER BY recorded_at LIMIT $2 FOR UPDATE SKIP LOCKED) doomed \
             WHERE h.tenant_id = $1 AND h.id = doomed.id",
            [tenant_id.into(), batch.into(), RAW_RETENTION_HOURS.into()],
        ))
        .await?
        .rows_affected();
    let hours_deleted = tx
        .execute(stmt(
            "DELETE FROM container_health_hourly a USING ( \
               SELECT id FROM container_health_hourly \
               WHERE tenant_id = $1 AND hour < now() - make_interval(days => $3) \
               ORDER BY hour LIMIT $2 FOR UPDATE SKIP LOCKED) doomed \
             WHERE a.tenant_id = $1 AND a.id = doomed.id",
            [tenant_id.into(), batch.into(), HOURLY_RETENTION_DAYS.into()],
        ))
        .await?
        .rows_affected();
    RequestScope::finish_shared(scope, true).await?;
    Ok(HealthPass {
        aggregated,
        samples_deleted,
        hours_deleted,
        ..HealthPass::default()
    })
}

/// A tenant's health upkeep until it is done, batch by batch.
pub async fn tenant_health_upkeep(db: &AppDb, tenant_id: Uuid, batch: i64) -> Result<HealthPass> {
    let mut total = HealthPass {
        tenants: 1,
        ..HealthPass::default()
    };
    let full = batch.unsigned_abs();
    loop {
        let done = tenant_batch(db, tenant_id, batch).await?;
        total.add(&done);
        if done.aggregated < full && done.samples_deleted < full && done.hours_deleted < full {
            return Ok(total);
        }
    }
}

#[derive(FromQueryResult)]
struct Id {
    id: Uuid,
}

/// One pass over the tenants with health upkeep due (at most `max_tenants`). One
/// tenant's failure is logged and counted, and the others go on.
pub async fn health_pass(db: &AppDb, batch: i64, max_tenants: i32) -> Result<HealthPass> {
    let tenants = Id::find_by_statement(stmt(
        "SELECT t AS id FROM app.tenants_with_health_upkeep($1) AS t",
        [max_tenants.into()],
    ))
    .all(db.pool())
    .await?;
    let mut pass = HealthPass::default();
    for Id { id } in tenants {
        match tenant_health_upkeep(db, id, batch).await {
            Ok(done) => {
                pass.tenants += 1;
                pass.add(&done);
            }
            Err(err) => {
                pass.failed += 1;
                tracing::warn!(tenant = %id, error = ?err, "health upkeep failed");
            }
        }
    }
    Ok(pass)
}
