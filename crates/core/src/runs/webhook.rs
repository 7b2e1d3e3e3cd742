//! Webhook intake: a signed POST to a trigger's public path starts a run (of the
//! trigger's workflow or agent, [`super::triggered`]). The path is
//! resolved before the tenant is known; the signature is checked against the trigger's
//! current secret (or, inside the rotation window, the previous one) before anything
//! else happens; the sender's delivery id is the idempotency key, so a redelivery never
//! makes a second run.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::Value as Json;
use trellis_entity::{trigger, TriggerType};

use super::start::{Started, MAX_PAYLOAD_BYTES};
use super::triggered::{fire, Fired, Firing};
use super::RunSettings;
use crate::integrations::secrets::Vault;
use crate::scope::{stmt, RequestScope};
use crate::workflows::triggers::{signing_keys, verify_signature, webhook_target};
use crate::{Error, Result};

/// The largest webhook body taken, in bytes.
pub const MAX_WEBHOOK_BODY: usize = 256 * 1024;

/// Why a delivery was refused; the HTTP layer answers each with its status and no
/// detail.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown path, inactive trigger, or a workflow or agent that does not run: 404.
    NotFound,
    /// Missing, malformed, stale or wrong signature: 401.
    BadSignature,
    /// The tenant is suspended: 403.
    Suspended,
    /// The body is not JSON, or holds a NUL character (which PostgreSQL cannot store): 400.
    NotJson,
    /// The delivery id was used with another body: 409.
    DeliveryReused,
    /// The trigger's agent is over its monthly budget (its alert raised): 429 with
    /// `Retry-After`.
    OverBudget { retry_after_seconds: u32 },
    /// The tenant has started as many runs this month as its plan allows: 429 with
    /// `Retry-After` (the seconds until the next month, UTC).
    MonthlyRunsUsed { retry_after_seconds: u32 },
}

/// One delivery as it arrived.
pub struct Delivery<'a> {
    pub path: &'a str,
    pub signature: Option<&'a str>,
    pub delivery_id: Option<&'a str>,
    pub body: &'a [u8],
    pub now: DateTime<Utc>,
}

/// Checks a delivery and starts its run in `scope` (an anonymous scope the caller
/// commits when this returns `Ok(Ok(_))`).
pub async fn receive(
    vault: &Vault,
    scope: &RequestScope,
    settings: &RunSettings,
    delivery: Delivery<'_>,
) -> Result<std::result::Result<Started, Refusal>> {
    if delivery.path.len() > 64 || delivery.body.len() > MAX_WEBHOOK_BODY {
        return Ok(Err(Refusal::NotFound));
    }
    let Some((tenant_id, trigger_id)) = webhook_target(scope, delivery.path).await? else {
        return Ok(Err(Refusal::NotFound));
    };
    scope.enter_tenant(tenant_id).await?;
    let tx = scope.tx().await?;
    let tenant = tx
        .query_one(stmt(
            "SELECT status, deleted_at IS NOT NULL AS deleted FROM tenants WHERE id = $1",
            [tenant_id.into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("webhook tenant not visible"))?;
    if tenant.try_get::<bool>("", "deleted")? {
        return Ok(Err(Refusal::NotFound));
    }
    if tenant.try_get::<String>("", "status")? == "suspended" {
        return Ok(Err(Refusal::Suspended));
    }
    let Some(trigger) = trigger::Entity::find_by_id(trigger_id).one(tx).await? else {
        return Ok(Err(Refusal::NotFound));
    };
    if !trigger.is_active {
        return Ok(Err(Refusal::NotFound));
    }
    let keys = signing_keys(vault, scope, &trigger, delivery.now).await?;
    let signature = delivery.signature.unwrap_or_default();
    let Ok(signed_at) = verify_signature(signature, delivery.body, &keys, delivery.now) else {
        return Ok(Err(Refusal::BadSignature));
    };
    let payload = match serde_json::from_slice::<Json>(delivery.body) {
        Ok(payload) if !crate::input::json_has_nul(&payload) => payload,
        _ => return Ok(Err(Refusal::NotJson)),
    };
    debug_assert!(delivery.body.len() <= MAX_PAYLOAD_BYTES);
    // The sender's delivery id names the delivery. Without one, the signed request
    // itself does (its timestamp and body, whatever else the header holds): replaying
    // it inside the signature window finds the run it already started.
    let key = match delivery
        .delivery_id
        .map(str::trim)
        .filter(|id| !id.is_empty())
    {
        Some(id) => format!("delivery:{}", id.chars().take(200).collect::<String>()),
        None => {
            let body_hash = ring::digest::digest(&ring::digest::SHA256, delivery.body);
            let hex: String = body_hash
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("signed:{signed_at}:{hex}")
        }
    };
    let firing = Firing {
        trigger_type: TriggerType::Webhook,
        payload: payload.clone(),
        input: payload,
        idempotency_key: key,
    };
    match fire(scope, settings, &trigger, firing).await {
        Ok(Fired::Started(started)) => Ok(Ok(*started)),
        // What the trigger starts does not run now: as if there were no trigger.
        Ok(Fired::Idle(_)) => Ok(Err(Refusal::NotFound)),
        Err(Error::Conflict {
            field: Some(field), ..
        }) if field == "idempotencyKey" => Ok(Err(Refusal::DeliveryReused)),
        Err(Error::Conflict { .. }) => Ok(Err(Refusal::NotFound)),
        Err(Error::RateLimited {
            retry_after_seconds,
        }) => Ok(Err(Refusal::OverBudget {
            retry_after_seconds,
        })),
        Err(Error::LimitReached { field, .. }) if field == crate::plans::MONTHLY_RUNS_FIELD => {
            Ok(Err(Refusal::MonthlyRunsUsed {
                retry_after_seconds: crate::agents::budget::seconds_to_next_month(delivery.now),
            }))
        }
        Err(other) => Err(other),
    }
}
