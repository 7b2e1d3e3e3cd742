//! Triggers: what starts the runs of a workflow or of an agent ([`Target`]). `manual`
//! needs nothing; `schedule` holds a
//! cron expression and an IANA time zone; `webhook` has an unguessable public path and
//! a signing secret kept as a [`Secret`](trellis_entity::secret) (the plaintext is
//! shown once); `event` names an event that starts runs when fired.
//!
//! Webhook deliveries are signed `X-Trellis-Signature: t=<unix>,v1=<hex>` with
//! HMAC-SHA256 over `"<t>.<body>"`. Rotating the secret keeps the previous one valid
//! for a grace window, so senders can switch without losing deliveries.

use std::str::FromStr;
use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Offset, SubsecRound, TimeZone, Utc};
use chrono_tz::Tz;
use croner::{Cron, JobType};
use rand::RngCore;
use regex::Regex;
use ring::hmac;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value as Json};
use trellis_entity::{
    agent, secret, trigger, workflow, IdKind, PrefixedId, Role, Severity, TriggerType,
};
use uuid::Uuid;

use super::check_key;
use crate::audit::{self, Event};
use crate::integrations::secrets::{store_secret, Vault};
use crate::scope::{stmt, RequestScope};
use crate::{Error, Result};

/// How long a rotated-out signing secret stays valid by default.
pub const DEFAULT_GRACE: Duration = Duration::hours(24);
/// The longest grace window a rotation may ask for.
pub const MAX_GRACE: Duration = Duration::days(7);
/// How far a signature's timestamp may be from now (replay protection).
pub const SIGNATURE_TOLERANCE: Duration = Duration::minutes(5);

/// Whose runs a trigger starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A workflow's: of its active version.
    Workflow(Uuid),
    /// An agent's: of its active version's flow, as `runAgent` without a version
    /// ([`crate::agents::runs`]), recorded with the agent.
    Agent(Uuid),
}

impl Target {
    /// The target of a stored trigger.
    pub fn of(trigger: &trigger::Model) -> Result<Self> {
        match (trigger.workflow_id, trigger.agent_id) {
            (Some(workflow), None) => Ok(Self::Workflow(workflow)),
            (None, Some(agent)) => Ok(Self::Agent(agent)),
            _ => Err(anyhow::anyhow!("trigger {} has no single target", trigger.id).into()),
        }
    }
}

/// A new trigger.
pub struct NewTrigger {
    pub target: Target,
    pub key: String,
    pub trigger_type: TriggerType,
    pub config: Json,
    pub is_active: bool,
}

/// Changes to a trigger; `None` leaves a field alone. The type never changes.
#[derive(Default)]
pub struct TriggerChanges {
    pub key: Option<String>,
    pub config: Option<Json>,
    pub is_active: Option<bool>,
}

/// A trigger with, right after a webhook trigger is created or its secret rotated, the
/// new signing secret's plaintext (shown once).
pub struct TriggerWithSecret {
    pub trigger: trigger::Model,
    pub signing_secret: Option<SecretString>,
}

/// A schedule: a cron expression evaluated in a time zone.
#[derive(Debug)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
    /// One time of day (single second, minute and hour): fires once on a day whose
    /// wall time repeats, and at the first instant after a gap that swallows it.
    fixed_time: bool,
}

impl Schedule {
    /// Parses `{cron, timezone}`; errors name `config.cron` or `config.timezone`.
    pub fn parse(config: &Json) -> Result<Self> {
        let pattern = config
            .get("cron")
            .and_then(Json::as_str)
            .unwrap_or_default();
        if pattern.trim().is_empty() || pattern.len() > 200 {
            return Err(Error::bad_input(
                "config.cron",
                "a cron expression such as \"0 9 * * 1-5\" is required",
            ));
        }
        let cron = Cron::from_str(pattern.trim()).map_err(|e| {
            Error::bad_input("config.cron", format!("not a valid cron expression: {e}"))
        })?;
        let zone_name = config
            .get("timezone")
            .and_then(Json::as_str)
            .unwrap_or("UTC");
        let zone = Tz::from_str(zone_name).map_err(|_| {
            Error::bad_input(
                "config.timezone",
                "not an IANA time zone (such as Europe/Berlin or America/New_York)",
            )
        })?;
        let fixed_time = cron.determine_job_type() == JobType::FixedTime;
        let schedule = Self {
            cron,
            zone,
            fixed_time,
        };
        // `0 0 30 2 *` (30 February) parses but never fires; such a trigger would be
        // stored with no next firing and silently do nothing.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(Error::bad_input(
                "config.cron",
                "this cron expression never fires (no such date)",
            ));
        }
        Ok(schedule)
    }

    /// The first time strictly after `after` that the schedule fires, in UTC. Wall
    /// times are read in the schedule's zone, so 09:00 stays 09:00 across a
    /// daylight-saving change. A wall time that a spring-forward gap skips fires at
    /// the first instant after the gap (02:30 → 03:00); a wall time that a fall-back
    /// repeats fires once, at its first occurrence, for a schedule with one time of
    /// day, and at both (they are different instants) for interval schedules
    /// (`*/5 * * * *`, `0 * * * *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Whole seconds: the search keeps the sub-second part of its start, which
        // would otherwise leak into the firing time (09:00:00.726).
        let after = after.trunc_subsecs(0);
        let next = self.search(after.with_timezone(&self.zone), false, after);
        if self.fixed_time {
            return next;
        }
        // An interval schedule also fires in the second pass of a repeated hour, which
        // a wall-clock search from its first pass jumps over.
        let repeat = self
            .repeat_after(after)
            .and_then(|start| self.search(start, true, after));
        match (next, repeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The first firing after `after`, searching wall times from `from`.
    fn search(
        &self,
        from: DateTime<Tz>,
        inclusive: bool,
        after: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut from = from;
        let mut inclusive = inclusive;
        // croner maps a repeated wall time to its first occurrence, which lies before
        // `after` while `after` is in the second pass: step over such answers.
        for _ in 0..64 {
            let found = self.cron.find_next_occurrence(&from, inclusive).ok()?;
            let found_utc = found.with_timezone(&Utc);
            if found_utc > after {
                return Some(found_utc);
            }
            let second = self
                .zone
                .from_local_datetime(&found.naive_local())
                .latest()?;
            if !self.fixed_time && second.with_timezone(&Utc) > after {
                return Some(second.with_timezone(&Utc));
            }
            if second.with_timezone(&Utc) <= from.with_timezone(&Utc) {
                return None;
            }
            from = second;
            inclusive = false;
        }
        None
    }

    /// When `after` is in the first pass of a wall-clock hour that will repeat (a
    /// fall-back), the instant the second pass starts, in the zone.
    fn repeat_after(&self, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        let local = after.with_timezone(&self.zone);
        let chrono::LocalResult::Ambiguous(first, _) =
            self.zone.from_local_datetime(&local.naive_local())
        else {
            return None;
        };
        if first != local {
            return None;
        }
        // The offset changes within a few hours: find the first instant it has.
        let offset = local.offset().fix();
        let (mut low, mut high) = (after, after + Duration::hours(4));
        if high.with_timezone(&self.zone).offset().fix() == offset {
            return None;
        }
        while high - low > Duration::seconds(1) {
            let mid = low + (high - low) / 2;
            if mid.with_timezone(&self.zone).offset().fix() == offset {
                low = mid;
            } else {
                high = mid;
            }
        }
        Some(high.with_timezone(&self.zone))
    }

    /// Every firing in `[from, to]`, oldest first, at most `limit`.
    pub fn firings_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut firings = Vec::new();
        let mut at = self.next_after(from - Duration::seconds(1));
        while let Some(t) = at {
            if t > to || firings.len() >= limit {
                break;
            }
            firings.push(t);
            at = self.next_after(t);
        }
        firings
    }

    /// The latest firing in `[from, to]`, if any: looked for in spans that double
    /// back from `to`, so a dense schedule is not walked from `from`.
    pub fn latest_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut span = Duration::minutes(1);
        loop {
            let start = (to - span).max(from);
            let mut latest = None;
            let mut at = self.next_after(start - Duration::seconds(1));
            while let Some(t) = at.filter(|t| *t <= to) {
                latest = Some(t);
                at = self.next_after(t);
            }
            if latest.is_some() || start == from {
                return latest;
            }
            span = span * 2;
        }
    }
}

/// What a schedule does about firings it missed (the server was down, or the
/// scheduler switched off): `config.catchUp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// Skip them; fire again at the next firing.
    None,
    /// Fire once, for the latest missed firing inside the window (the default).
    Latest,
    /// Fire every missed firing inside the window, each as its own run.
    All,
}

/// What a schedule does when the previous run it started is still open (pending or
/// running): `config.overlap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Start no run for this firing (the default, as Temporal's).
    Skip,
    /// Start it anyway.
    Allow,
    /// Cancel the open runs of this trigger, then start it.
    CancelPrevious,
}

/// How late a firing may be made and still count as on time (not missed).
pub const ON_TIME_GRACE: Duration = Duration::seconds(60);
/// The default `config.catchUpWindowSeconds`.
pub const DEFAULT_CATCH_UP_WINDOW: i64 = 3600;
/// The largest `config.catchUpWindowSeconds`: 7 days.
pub const MAX_CATCH_UP_WINDOW: i64 = 7 * 24 * 3600;
/// The most firings one scheduler pass makes for one trigger (catch-up `ALL`); the
/// rest follow in the next passes.
pub const MAX_FIRINGS_PER_PASS: usize = 100;

/// A schedule trigger's catch-up and overlap policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulePolicy {
    /// `config.catchUp`: what happens to missed firings.
    pub catch_up: CatchUp,
    /// `config.catchUpWindowSeconds`: how far back missed firings are made (the
    /// on-time grace counts as at least this long).
    pub catch_up_window: Duration,
    /// `config.overlap`: what a firing does while the previous run is open.
    pub overlap: Overlap,
}

impl Default for SchedulePolicy {
    fn default() -> Self {
        Self {
            catch_up: CatchUp::Latest,
            catch_up_window: Duration::seconds(DEFAULT_CATCH_UP_WINDOW),
            overlap: Overlap::Skip,
        }
    }
}

impl SchedulePolicy {
    /// Reads `{catchUp, catchUpWindowSeconds, overlap}`; errors name their field.
    /// Absent keys take the defaults (`LATEST`, 3600 s, `SKIP`).
    pub fn parse(config: &Json) -> Result<Self> {
        let mut policy = Self::default();
        match config.get("catchUp") {
            None | Some(Json::Null) => {}
            Some(value) => {
                policy.catch_up = match value.as_str() {
                    Some("NONE") => CatchUp::None,
                    Some("LATEST") => CatchUp::Latest,
                    Some("ALL") => CatchUp::All,
                    _ => {
                        return Err(Error::bad_input(
                            "config.catchUp",
                            "one of NONE, LATEST or ALL",
                        ))
                    }
                }
            }
        }
        match config.get("catchUpWindowSeconds") {
            None | Some(Json::Null) => {}
            Some(value) => match value.as_i64() {
                Some(seconds) if (0..=MAX_CATCH_UP_WINDOW).contains(&seconds) => {
                    policy.catch_up_window = Duration::seconds(seconds);
                }
                _ => {
                    return Err(Error::bad_input(
                        "config.catchUpWindowSeconds",
                        format!("a whole number of seconds from 0 to {MAX_CATCH_UP_WINDOW}"),
                    ))
                }
            },
        }
        match config.get("overlap") {
            None | Some(Json::Null) => {}
            Some(value) => {
                policy.overlap = match value.as_str() {
                    Some("SKIP") => Overlap::Skip,
                    Some("ALLOW") => Overlap::Allow,
                    Some("CANCEL_PREVIOUS") => Overlap::CancelPrevious,
                    _ => {
                        return Err(Error::bad_input(
                            "config.overlap",
                            "one of SKIP, ALLOW or CANCEL_PREVIOUS",
                        ))
                    }
                }
            }
        }
        Ok(policy)
    }
}

/// What one scheduler pass does for a due trigger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FiringPlan {
    /// The firings to make now, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Firings passed over (missed and outside the policy).
    pub missed: usize,
    /// The trigger's next `next_fire_at`: the next firing after `now`, or, when a
    /// catch-up was cut short, the next firing still to catch up.
    pub next: Option<DateTime<Utc>>,
}

/// Plans a pass at `now` for a trigger whose `next_fire_at` is `due` (at or before
/// `now`). A firing no more than [`ON_TIME_GRACE`] late is on time and is made
/// whatever the catch-up policy; older ones are missed: `NONE` skips them, `LATEST`
/// makes the latest inside the window (one run in all), `ALL` makes each inside the
/// window (at most [`MAX_FIRINGS_PER_PASS`] per pass).
pub fn plan_firings(
    schedule: &Schedule,
    policy: &SchedulePolicy,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> FiringPlan {
    let window = policy.catch_up_window.max(ON_TIME_GRACE);
    // Firings before the window are never made; they are not looked at either.
    let from = due.max(now - window);
    let mut firings = schedule.firings_between(from, now, MAX_FIRINGS_PER_PASS + 1);
    let mut next = None;
    let fire = match policy.catch_up {
        CatchUp::All => {
            if firings.len() > MAX_FIRINGS_PER_PASS {
                // The rest of the catch-up is the next passes' work.
                next = firings.pop();
            }
            firings.clone()
        }
        CatchUp::Latest | CatchUp::None => match schedule.latest_between(from, now) {
            Some(t) if policy.catch_up == CatchUp::Latest || now - t <= ON_TIME_GRACE => {
                vec![t]
            }
            _ => vec![],
        },
    };
    FiringPlan {
        missed: firings.len().saturating_sub(fire.len()),
        fire,
        next: next.or_else(|| schedule.next_after(now)),
    }
}

/// What an event name looks like (`order.created`, `run.failed`).
pub(crate) static EVENT_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_.-]{0,127}$").expect("event name pattern"));

/// Checks a trigger's config for its type and returns it normalised. An EVENT
/// trigger's `workflowId` is checked against the tenant's workflows by the caller.
pub fn check_config(trigger_type: TriggerType, config: Json) -> Result<Json> {
    let Json::Object(object) = &config else {
        return Err(Error::bad_input("config", "config must be an object"));
    };
    match trigger_type {
        TriggerType::Manual => Ok(config),
        TriggerType::Schedule => {
            Schedule::parse(&config)?;
            SchedulePolicy::parse(&config)?;
            let mut normal = object.clone();
            normal
                .entry("timezone")
                .or_insert_with(|| Json::from("UTC"));
            Ok(Json::Object(normal))
        }
        TriggerType::Webhook => Ok(config),
        TriggerType::Event => {
            let event = object
                .get("event")
                .and_then(Json::as_str)
                .unwrap_or_default();
            if !EVENT_NAME.is_match(event) {
                return Err(Error::bad_input(
                    "config.event",
                    "an event name: lowercase letters, digits, '_', '.' or '-' (order.created)",
                ));
            }
            match object.get("workflowId") {
                None | Some(Json::Null) => {}
                Some(id) => {
                    if id
                        .as_str()
                        .and_then(|id| PrefixedId::parse_as(id, IdKind::Workflow))
                        .is_none()
                    {
                        return Err(Error::bad_input(
                            "config.workflowId",
                            "a workflow ID (wf_…) of this tenant",
                        ));
                    }
                }
            }
            match object.get("filter") {
                None | Some(Json::Null) => {}
                Some(filter) => {
                    if let Err((path, message)) = super::graph::check_condition(filter, 0) {
                        return Err(Error::bad_input(format!("config.filter{path}"), message));
                    }
                }
            }
            Ok(config)
        }
    }
}

/// When a schedule trigger fires next after `now`; `None` for other types and for
/// inactive triggers.
pub fn next_fire_at(trigger: &trigger::Model, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule_next(
        trigger.trigger_type,
        trigger.is_active,
        &trigger.config,
        now,
    )
}

fn schedule_next(
    trigger_type: TriggerType,
    is_active: bool,
    config: &Json,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if trigger_type != TriggerType::Schedule || !is_active {
        return None;
    }
    Schedule::parse(config).ok()?.next_after(now)
}

/// An EVENT trigger's `config.workflowId` must name a workflow the tenant can see
/// (RLS decides): another tenant's is as unknown as a made-up one.
async fn check_event_workflow(scope: &RequestScope, config: &Json) -> Result<()> {
    let Some(id) = config
        .get("workflowId")
        .and_then(Json::as_str)
        .and_then(|id| PrefixedId::parse_as(id, IdKind::Workflow))
    else {
        return Ok(());
    };
    let found = workflow::Entity::find_by_id(id)
        .filter(workflow::Column::DeletedAt.is_null())
        .one(scope.tx().await?)
        .await?;
    if found.is_none() {
        return Err(Error::bad_input(
            "config.workflowId",
            "no such workflow in this tenant",
        ));
    }
    Ok(())
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A new signing secret, stored sealed; returns its row and the plaintext.
async fn new_signing_secret(
    vault: &Vault,
    scope: &RequestScope,
    tenant_id: Uuid,
    trigger_id: Uuid,
) -> Result<(secret::Model, SecretString)> {
    let value = SecretString::from(format!("whsec_{}", random_token(32)));
    let name = format!(
        "webhook.{}.{}",
        trigger_id.simple(),
        Utc::now().timestamp_micros()
    );
    let row = store_secret(vault, scope, tenant_id, name, &value).await?;
    Ok((row, value))
}

/// Creates a trigger (builders). A webhook trigger gets its path and signing secret.
pub async fn create_trigger(
    vault: &Vault,
    scope: &RequestScope,
    new: NewTrigger,
) -> Result<TriggerWithSecret> {
    let ctx = scope.require(Role::Builder).await?;
    let key = check_key(&new.key)?;
    let config = check_config(new.trigger_type, new.config)?;
    let tx = scope.tx().await?;
    check_event_workflow(scope, &config).await?;
    let next_fire_at = schedule_next(new.trigger_type, new.is_active, &config, Utc::now());
    // Another tenant's workflow or agent is as unknown as a made-up one (RLS), and the
    // composite foreign keys would refuse it anyway.
    let (workflow_id, agent_id) = match new.target {
        Target::Workflow(id) => {
            workflow::Entity::find_by_id(id)
                .filter(workflow::Column::DeletedAt.is_null())
                .one(tx)
                .await?
                .ok_or(Error::NotFound)?;
            (Some(id), None)
        }
        Target::Agent(id) => {
            agent::Entity::find_by_id(id)
                .filter(agent::Column::DeletedAt.is_null())
                .one(tx)
                .await?
                .ok_or(Error::NotFound)?;
            (None, Some(id))
        }
    };
    let id = Uuid::now_v7();
    let mut row = trigger::ActiveModel {
        id: Set(id),
        tenant_id: Set(ctx.tenant_id),
        key: Set(key),
        workflow_id: Set(workflow_id),
        agent_id: Set(agent_id),
        trigger_type: Set(new.trigger_type),
        config: Set(config),
        is_active: Set(new.is_active),
        next_fire_at: Set(next_fire_at),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    };
    let mut plaintext = None;
    if new.trigger_type == TriggerType::Webhook {
        let (secret, value) = new_signing_secret(vault, scope, ctx.tenant_id, id).await?;
        row.webhook_path = Set(Some(random_token(24)));
        row.signing_secret_id = Set(Some(secret.id));
        plaintext = Some(value);
    }
    let row = row.insert(tx).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "trigger.create")
            .target(IdKind::Trigger, id)
            .details(json!({ "key": row.key, "type": row.trigger_type })),
    )
    .await?;
    Ok(TriggerWithSecret {
        trigger: row,
        signing_secret: plaintext,
    })
}

async fn find_trigger(scope: &RequestScope, id: Uuid) -> Result<trigger::Model> {
    trigger::Entity::find_by_id(id)
        .lock_exclusive()
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)
}

/// Changes a trigger's key, config or whether it is active (builders).
pub async fn update_trigger(
    scope: &RequestScope,
    id: Uuid,
    changes: TriggerChanges,
) -> Result<trigger::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let current = find_trigger(scope, id).await?;
    let mut row = trigger::ActiveModel {
        id: Set(id),
        ..Default::default()
    };
    if let Some(key) = changes.key {
        row.key = Set(check_key(&key)?);
    }
    let mut config_changed = false;
    if let Some(config) = changes.config {
        let config = check_config(current.trigger_type, config)?;
        check_event_workflow(scope, &config).await?;
        config_changed = config != current.config;
        row.config = Set(config);
    }
    if let Some(is_active) = changes.is_active {
        row.is_active = Set(is_active);
    }
    // A schedule's next firing moves when its schedule changes or it is switched on
    // (from now: what it missed while off is not made) or off (none).
    let is_active = changes.is_active.unwrap_or(current.is_active);
    if config_changed || is_active != current.is_active {
        let config = match &row.config {
            sea_orm::ActiveValue::Set(config) => config,
            _ => &current.config,
        };
        row.next_fire_at = Set(schedule_next(
            current.trigger_type,
            is_active,
            config,
            Utc::now(),
        ));
    }
    if !row.is_changed() {
        return Ok(current);
    }
    let row = row.update(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "trigger.update").target(IdKind::Trigger, id),
    )
    .await?;
    Ok(row)
}

/// Deletes a trigger and its signing secrets (builders).
pub async fn delete_trigger(scope: &RequestScope, id: Uuid) -> Result<trigger::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let current = find_trigger(scope, id).await?;
    let tx = scope.tx().await?;
    trigger::Entity::delete_by_id(id).exec(tx).await?;
    let secrets: Vec<Uuid> = [
        current.signing_secret_id,
        current.previous_signing_secret_id,
    ]
    .into_iter()
    .flatten()
    .collect();
    if !secrets.is_empty() {
        secret::Entity::delete_many()
            .filter(secret::Column::Id.is_in(secrets))
            .exec(tx)
            .await?;
    }
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "trigger.delete")
            .target(IdKind::Trigger, id)
            .severity(Severity::Warning)
            .details(json!({ "key": current.key })),
    )
    .await?;
    Ok(current)
}

/// Issues a new signing secret for a webhook trigger (builders). The current one stays
/// valid for `grace` (default 24 h); one rotated out earlier is dropped now.
pub async fn rotate_webhook_secret(
    vault: &Vault,
    scope: &RequestScope,
    id: Uuid,
    grace: Option<Duration>,
) -> Result<TriggerWithSecret> {
    let ctx = scope.require(Role::Builder).await?;
    let grace = grace.unwrap_or(DEFAULT_GRACE);
    if grace < Duration::zero() || grace > MAX_GRACE {
        return Err(Error::bad_input(
            "graceHours",
            "the grace window is 0 to 168 hours",
        ));
    }
    let current = find_trigger(scope, id).await?;
    let Some(current_secret) = current.signing_secret_id else {
        return Err(Error::bad_input(
            "id",
            "only webhook triggers have a signing secret",
        ));
    };
    let (secret, value) = new_signing_secret(vault, scope, ctx.tenant_id, id).await?;
    let tx = scope.tx().await?;
    let row = trigger::ActiveModel {
        id: Set(id),
        signing_secret_id: Set(Some(secret.id)),
        previous_signing_secret_id: Set(Some(current_secret)),
        previous_secret_expires_at: Set(Some(Utc::now() + grace)),
        ..Default::default()
    }
    .update(tx)
    .await?;
    if let Some(dropped) = current.previous_signing_secret_id {
        secret::Entity::delete_by_id(dropped).exec(tx).await?;
    }
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "trigger.rotate_secret")
            .target(IdKind::Trigger, id)
            .severity(Severity::Warning)
            .details(json!({ "graceSeconds": grace.num_seconds() })),
    )
    .await?;
    Ok(TriggerWithSecret {
        trigger: row,
        signing_secret: Some(value),
    })
}

/// The secrets a delivery to `trigger` may be signed with at `now`: the current one
/// and, inside its grace window, the previous one.
pub async fn signing_keys(
    vault: &Vault,
    scope: &RequestScope,
    trigger: &trigger::Model,
    now: DateTime<Utc>,
) -> Result<Vec<SecretString>> {
    let mut ids = vec![];
    ids.extend(trigger.signing_secret_id);
    if trigger
        .previous_secret_expires_at
        .is_some_and(|expires| now < expires)
    {
        ids.extend(trigger.previous_signing_secret_id);
    }
    let rows = secret::Entity::find()
        .filter(secret::Column::Id.is_in(ids))
        .all(scope.tx().await?)
        .await?;
    let mut keys = Vec::with_capacity(rows.len());
    for row in &rows {
        keys.push(vault.reveal(scope, row).await?);
    }
    Ok(keys)
}

/// The trigger behind a public webhook path, looked up before the tenant is known
/// through a narrow SECURITY DEFINER function.
pub async fn webhook_target(scope: &RequestScope, path: &str) -> Result<Option<(Uuid, Uuid)>> {
    let row = scope
        .tx()
        .await?
        .query_one(stmt(
            "SELECT tenant_id, trigger_id FROM app.webhook_target($1)",
            [path.into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => Some((
            row.try_get("", "tenant_id")?,
            row.try_get("", "trigger_id")?,
        )),
        None => None,
    })
}

/// Why a webhook signature was refused. Callers answer 401 without saying which.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature timestamp is too far from now")]
    Stale,
    #[error("no signing secret matches")]
    Mismatch,
}

/// `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` for `secret`.
pub fn sign(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// Verifies a signature header against any of `keys` in constant time, refusing
/// timestamps more than [`SIGNATURE_TOLERANCE`] from `now`. Returns the signed
/// timestamp.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    keys: &[SecretString],
    now: DateTime<Utc>,
) -> Result<i64, SignatureError> {
    let mut timestamp = None;
    let mut signatures = vec![];
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(decode_hex(v).ok_or(SignatureError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now.timestamp() - timestamp).abs() > SIGNATURE_TOLERANCE.num_seconds() {
        return Err(SignatureError::Stale);
    }
    let mut message = Vec::with_capacity(body.len() + 12);
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    for key in keys {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key.expose_secret().as_bytes());
        if signatures
            .iter()
            .any(|s| hmac::verify(&key, &message, s).is_ok())
        {
            return Ok(timestamp);
        }
    }
    Err(SignatureError::Mismatch)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn schedule(cron: &str, zone: &str) -> Schedule {
        Schedule::parse(&json!({ "cron": cron, "timezone": zone })).unwrap()
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn nine_am_stays_nine_am_across_spring_forward_in_new_york() {
        // 2026-03-08: New York moves from EST (UTC-5) to EDT (UTC-4).
        let s = schedule("0 9 * * *", "America/New_York");
        assert_eq!(
            s.next_after(utc(2026, 3, 7, 12, 0)),
            Some(utc(2026, 3, 7, 14, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 3, 7, 15, 0)),
            Some(utc(2026, 3, 8, 13, 0))
        );
    }

    #[test]
    fn nine_am_stays_nine_am_across_fall_back_in_berlin() {
        // 2026-10-25: Berlin moves from CEST (UTC+2) to CET (UTC+1).
        let s = schedule("0 9 * * *", "Europe/Berlin");
        assert_eq!(
            s.next_after(utc(2026, 10, 24, 6, 0)),
            Some(utc(2026, 10, 24, 7, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 10, 24, 8, 0)),
            Some(utc(2026, 10, 25, 8, 0))
        );
    }

    #[test]
    fn firings_are_on_whole_seconds() {
        let s = schedule("0 9 * * *", "Europe/Berlin");
        let after = utc(2026, 12, 1, 12, 0) + Duration::milliseconds(726);
        assert_eq!(s.next_after(after), Some(utc(2026, 12, 2, 8, 0)));
    }

    #[test]
    fn a_time_skipped_by_spring_forward_is_not_fired_twice() {
        // 02:30 does not exist in Berlin on 2026-03-29; the next firing is after it.
        let s = schedule("30 2 * * *", "Europe/Berlin");
        let next = s.next_after(utc(2026, 3, 28, 12, 0)).unwrap();
        assert!(next > utc(2026, 3, 28, 12, 0));
        let after = s.next_after(next).unwrap();
        assert!(after - next >= Duration::hours(23), "{next} then {after}");
    }

    fn utc_s(y: i32, m: u32, d: u32, h: u32, min: u32, sec: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, sec).unwrap()
    }

    #[test]
    fn a_time_in_the_spring_forward_gap_fires_once_at_the_end_of_the_gap() {
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 never
        // happens. The firing is the first instant after the gap, once.
        let s = schedule("30 2 * * *", "Europe/Berlin");
        let firings = s.firings_between(utc(2026, 3, 28, 0, 0), utc(2026, 3, 30, 12, 0), 10);
        assert_eq!(
            firings,
            vec![
                utc(2026, 3, 28, 1, 30), // 02:30 CET
                utc(2026, 3, 29, 1, 0),  // 03:00 CEST, right after the gap
                utc(2026, 3, 30, 0, 30), // 02:30 CEST
            ]
        );
        // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
        let s = schedule("30 2 * * *", "America/New_York");
        let firings = s.firings_between(utc(2026, 3, 7, 12, 0), utc(2026, 3, 9, 12, 0), 10);
        assert_eq!(firings, vec![utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]);
    }

    #[test]
    fn a_time_repeated_by_fall_back_fires_once() {
        // New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens at
        // 05:30 UTC and again at 06:30 UTC. It fires at the first only.
        let s = schedule("30 1 * * *", "America/New_York");
        let firings = s.firings_between(utc(2026, 10, 31, 12, 0), utc(2026, 11, 2, 12, 0), 10);
        assert_eq!(
            firings,
            vec![utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
        );
        // Asked from inside the repeated hour (after both or between them), the next
        // firing is tomorrow's, never an instant in the past.
        for after in [
            utc(2026, 11, 1, 6, 10),
            utc(2026, 11, 1, 6, 40),
            utc(2026, 11, 1, 5, 45),
        ] {
            assert_eq!(
                s.next_after(after),
                Some(utc(2026, 11, 2, 6, 30)),
                "after {after}"
            );
        }
        // Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 repeats.
        let s = schedule("30 2 * * *", "Europe/Berlin");
        let firings = s.firings_between(utc(2026, 10, 24, 12, 0), utc(2026, 10, 26, 12, 0), 10);
        assert_eq!(
            firings,
            vec![utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
        );
    }

    #[test]
    fn interval_schedules_keep_real_time_through_both_changes() {
        // Every 15 minutes through New York's fall-back: the repeated hour is two real
        // hours, so there are 4 firings an hour throughout, none twice.
        let s = schedule("*/15 * * * *", "America/New_York");
        let from = utc(2026, 11, 1, 4, 0);
        let firings = s.firings_between(from, utc(2026, 11, 1, 8, 0), 100);
        let expected: Vec<_> = (0..=16).map(|i| from + Duration::minutes(15 * i)).collect();
        assert_eq!(firings, expected);
        // Through spring-forward the wall-clock hour 02:00-03:00 does not exist: real
        // time still advances 15 minutes per firing.
        let from = utc(2026, 3, 8, 5, 0);
        let firings = s.firings_between(from, utc(2026, 3, 8, 9, 0), 100);
        let expected: Vec<_> = (0..=16).map(|i| from + Duration::minutes(15 * i)).collect();
        assert_eq!(firings, expected);
    }

    fn policy(catch_up: CatchUp, window: i64) -> SchedulePolicy {
        SchedulePolicy {
            catch_up,
            catch_up_window: Duration::seconds(window),
            overlap: Overlap::Skip,
        }
    }

    #[test]
    fn on_time_firings_are_made_whatever_the_catch_up() {
        let s = schedule("*/5 * * * *", "UTC");
        let due = utc(2026, 12, 1, 10, 5);
        for catch_up in [CatchUp::None, CatchUp::Latest, CatchUp::All] {
            let plan = plan_firings(&s, &policy(catch_up, 3600), due, due + Duration::seconds(2));
            assert_eq!(plan.fire, vec![due], "{catch_up:?}");
            assert_eq!(plan.missed, 0);
            assert_eq!(plan.next, Some(utc(2026, 12, 1, 10, 10)));
        }
    }

    #[test]
    fn missed_firings_follow_the_catch_up_policy() {
        // Down from 10:05 to 12:02:30: firings every 5 minutes were missed.
        let s = schedule("*/5 * * * *", "UTC");
        let due = utc(2026, 12, 1, 10, 5);
        let now = utc_s(2026, 12, 1, 12, 2, 30);
        let none = plan_firings(&s, &policy(CatchUp::None, 3600), due, now);
        assert!(none.fire.is_empty());
        assert_eq!(none.next, Some(utc(2026, 12, 1, 12, 5)));
        let latest = plan_firings(&s, &policy(CatchUp::Latest, 3600), due, now);
        assert_eq!(latest.fire, vec![utc(2026, 12, 1, 12, 0)]);
        assert_eq!(latest.next, Some(utc(2026, 12, 1, 12, 5)));
        // ALL: the firings of the last hour (11:05 to 12:00), each once.
        let all = plan_firings(&s, &policy(CatchUp::All, 3600), due, now);
        let expected: Vec<_> = (0..12)
            .map(|i| utc(2026, 12, 1, 11, 5) + Duration::minutes(5 * i))
            .collect();
        assert_eq!(all.fire, expected);
        assert_eq!(all.next, Some(utc(2026, 12, 1, 12, 5)));
        // LATEST outside its window makes nothing.
        let late = plan_firings(&s, &policy(CatchUp::Latest, 60), due, now);
        assert!(late.fire.is_empty());
    }

    #[test]
    fn a_long_catch_up_continues_in_the_next_pass() {
        let s = schedule("* * * * *", "UTC");
        let due = utc(2026, 12, 1, 0, 0);
        let now = utc(2026, 12, 1, 5, 0);
        let first = plan_firings(&s, &policy(CatchUp::All, 6 * 3600), due, now);
        assert_eq!(first.fire.len(), MAX_FIRINGS_PER_PASS);
        assert_eq!(first.fire[0], due);
        assert_eq!(first.next, Some(due + Duration::minutes(100)));
        let second = plan_firings(
            &s,
            &policy(CatchUp::All, 6 * 3600),
            first.next.unwrap(),
            now,
        );
        assert_eq!(second.fire[0], due + Duration::minutes(100));
    }

    #[test]
    fn schedule_policies_are_checked_on_their_field() {
        for (config, field) in [
            (
                json!({ "cron": "* * * * *", "catchUp": "SOME" }),
                "config.catchUp",
            ),
            (
                json!({ "cron": "* * * * *", "catchUp": 1 }),
                "config.catchUp",
            ),
            (
                json!({ "cron": "* * * * *", "overlap": "queue" }),
                "config.overlap",
            ),
            (
                json!({ "cron": "* * * * *", "catchUpWindowSeconds": -1 }),
                "config.catchUpWindowSeconds",
            ),
            (
                json!({ "cron": "* * * * *", "catchUpWindowSeconds": "1h" }),
                "config.catchUpWindowSeconds",
            ),
            (
                json!({ "cron": "* * * * *", "catchUpWindowSeconds": 1e9 }),
                "config.catchUpWindowSeconds",
            ),
        ] {
            match check_config(TriggerType::Schedule, config) {
                Err(Error::BadInput { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected a bad input, got {other:?}"),
            }
        }
        let ok = json!({ "cron": "* * * * *", "catchUp": "ALL", "catchUpWindowSeconds": 600, "overlap": "CANCEL_PREVIOUS" });
        let policy =
            SchedulePolicy::parse(&check_config(TriggerType::Schedule, ok).unwrap()).unwrap();
        assert_eq!(policy.catch_up, CatchUp::All);
        assert_eq!(policy.overlap, Overlap::CancelPrevious);
        assert_eq!(policy.catch_up_window, Duration::seconds(600));
        assert_eq!(
            SchedulePolicy::parse(&json!({})).unwrap(),
            SchedulePolicy::default()
        );
    }

    #[test]
    fn event_filters_and_workflows_are_checked() {
        let ok = json!({ "event": "order.created", "filter": { "field": "payload.total", "operator": "gt", "value": 10 } });
        assert!(check_config(TriggerType::Event, ok).is_ok());
        for (config, field) in [
            (
                json!({ "event": "run.failed", "workflowId": "nope" }),
                "config.workflowId",
            ),
            (
                json!({ "event": "run.failed", "workflowId": 7 }),
                "config.workflowId",
            ),
            (
                json!({ "event": "x", "filter": { "field": "payload.a", "operator": "between" } }),
                "config.filter/operator",
            ),
        ] {
            match check_config(TriggerType::Event, config) {
                Err(Error::BadInput { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected a bad input, got {other:?}"),
            }
        }
    }

    #[test]
    fn bad_cron_and_zones_name_their_field() {
        for (config, field) in [
            (json!({ "cron": "61 * * * *" }), "config.cron"),
            (json!({ "cron": "every day" }), "config.cron"),
            (json!({}), "config.cron"),
            (
                json!({ "cron": "0 9 * * *", "timezone": "Mars/Olympus" }),
                "config.timezone",
            ),
        ] {
            match check_config(TriggerType::Schedule, config) {
                Err(Error::BadInput { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected a bad input, got {other:?}"),
            }
        }
        let normal = check_config(TriggerType::Schedule, json!({ "cron": "*/5 * * * *" })).unwrap();
        assert_eq!(normal["timezone"], "UTC");
    }

    #[test]
    fn event_names_are_checked() {
        assert!(check_config(TriggerType::Event, json!({ "event": "order.created" })).is_ok());
        assert!(check_config(TriggerType::Event, json!({ "event": "Order Created" })).is_err());
        assert!(check_config(TriggerType::Event, json!({})).is_err());
    }

    #[test]
    fn signatures_verify_and_refuse() {
        let key = SecretString::from("whsec_test");
        let other = SecretString::from("whsec_other");
        let now = utc(2026, 12, 1, 12, 0);
        let header = sign(&key, now.timestamp(), b"{\"a\":1}");
        assert_eq!(
            verify_signature(&header, b"{\"a\":1}", std::slice::from_ref(&key), now),
            Ok(now.timestamp())
        );
        assert_eq!(
            verify_signature(&header, b"{\"a\":1}", &[other.clone(), key.clone()], now),
            Ok(now.timestamp())
        );
        assert_eq!(
            verify_signature(&header, b"{\"a\":2}", std::slice::from_ref(&key), now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&header, b"{\"a\":1}", &[other], now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(
                &header,
                b"{\"a\":1}",
                std::slice::from_ref(&key),
                now + Duration::minutes(6)
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature("v1=abc", b"", std::slice::from_ref(&key), now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature("t=1,v1=zz", b"", &[key], now),
            Err(SignatureError::Malformed)
        );
    }
}
