//! Triggers: what starts a workflow's runs. `manual` needs nothing; `schedule` holds a
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
use chrono::{DateTime, Duration, SubsecRound, Utc};
use chrono_tz::Tz;
use croner::Cron;
use rand::RngCore;
use regex::Regex;
use ring::hmac;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value as Json};
use trellis_entity::{secret, trigger, workflow, IdKind, Role, Severity, TriggerType};
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

/// A new trigger.
pub struct NewTrigger {
    pub workflow_id: Uuid,
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
        let schedule = Self { cron, zone };
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
    /// daylight-saving change.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Whole seconds: the search keeps the sub-second part of its start, which
        // would otherwise leak into the firing time (09:00:00.726).
        let local = after.trunc_subsecs(0).with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

static EVENT_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_.-]{0,127}$").expect("event name pattern"));

/// Checks a trigger's config for its type and returns it normalised.
pub fn check_config(trigger_type: TriggerType, config: Json) -> Result<Json> {
    let Json::Object(object) = &config else {
        return Err(Error::bad_input("config", "config must be an object"));
    };
    match trigger_type {
        TriggerType::Manual => Ok(config),
        TriggerType::Schedule => {
            Schedule::parse(&config)?;
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
            if EVENT_NAME.is_match(event) {
                Ok(config)
            } else {
                Err(Error::bad_input(
                    "config.event",
                    "an event name: lowercase letters, digits, '_', '.' or '-' (order.created)",
                ))
            }
        }
    }
}

/// When a schedule trigger fires next after `now`; `None` for other types and for
/// inactive triggers.
pub fn next_fire_at(trigger: &trigger::Model, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if trigger.trigger_type != TriggerType::Schedule || !trigger.is_active {
        return None;
    }
    Schedule::parse(&trigger.config).ok()?.next_after(now)
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
    workflow::Entity::find_by_id(new.workflow_id)
        .filter(workflow::Column::DeletedAt.is_null())
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    let id = Uuid::now_v7();
    let mut row = trigger::ActiveModel {
        id: Set(id),
        tenant_id: Set(ctx.tenant_id),
        key: Set(key),
        workflow_id: Set(new.workflow_id),
        trigger_type: Set(new.trigger_type),
        config: Set(config),
        is_active: Set(new.is_active),
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
    if let Some(config) = changes.config {
        row.config = Set(check_config(current.trigger_type, config)?);
    }
    if let Some(is_active) = changes.is_active {
        row.is_active = Set(is_active);
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
