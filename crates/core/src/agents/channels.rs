//! Agent channels: where an agent speaks to people (SLACK, EMAIL, WEBHOOK). A channel's
//! `config` holds only the non-secret settings of its type; its credentials (a Slack
//! bot token, SMTP login, a webhook signing key) live in a connection of the same
//! tenant, which the channel references through a composite foreign key. A config key
//! or value that looks like a credential is refused with a pointer to connections. An
//! agent has at most one active channel of each type (a partial unique index).

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value as Json};
use trellis_entity::{agent_channel, connection, ChannelType, IdKind, Role, Severity};
use uuid::Uuid;

use super::agent::find_agent;
use crate::audit::{self, Event};
use crate::scope::RequestScope;
use crate::{Error, Result};

/// The config keys of each channel type (the table's CHECK holds the same list).
fn keys_of(channel_type: ChannelType) -> &'static [&'static str] {
    match channel_type {
        ChannelType::Slack => &["channel"],
        ChannelType::Email => &["to", "subjectPrefix"],
        ChannelType::Webhook => &["url"],
    }
}

/// Whether a channel of this type needs a connection for its credentials.
fn needs_connection(channel_type: ChannelType) -> bool {
    matches!(channel_type, ChannelType::Slack)
}

const SECRET_HINT: &str =
    "secrets never go in a channel's config: store them in a connection and pass its connectionId";

/// Whether a string looks like a credential: a Slack token or incoming-webhook URL, a
/// bearer or basic authorization value, or a URL with a password.
fn looks_secret(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let slack_token = ["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xapp-"]
        .iter()
        .any(|p| lower.contains(p));
    let url_password = url::Url::parse(text).is_ok_and(|u| u.password().is_some());
    slack_token
        || lower.contains("hooks.slack.com/services/")
        || lower.starts_with("bearer ")
        || lower.starts_with("basic ")
        || url_password
}

/// Query parameters that carry credentials.
fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "token",
        "secret",
        "key",
        "password",
        "pass",
        "signature",
        "sig",
        "auth",
        "apikey",
        "api_key",
        "access_token",
    ]
    .iter()
    .any(|p| name == *p || name.ends_with(&format!("_{p}")) || name.ends_with(p))
}

fn check_email(address: &Json, field: &str) -> Result<()> {
    let ok = address
        .as_str()
        .is_some_and(|a| a.len() <= 254 && a.parse::<lettre::Address>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(field, "not a valid email address"))
    }
}

/// Checks a channel's config for its type; the first problem is named with its path
/// (`config.url`).
pub fn check_config(channel_type: ChannelType, config: Json) -> Result<Json> {
    let Some(map) = config.as_object() else {
        return Err(Error::bad_input("config", "config must be a JSON object"));
    };
    let keys = keys_of(channel_type);
    for (key, value) in map {
        let field = format!("config.{key}");
        if value.as_str().is_some_and(looks_secret) {
            return Err(Error::bad_input(field, SECRET_HINT));
        }
        if !keys.contains(&key.as_str()) {
            let message = if is_secret_param(key) {
                SECRET_HINT.to_owned()
            } else {
                format!(
                    "unknown key: this channel type's config has {}",
                    keys.join(", ")
                )
            };
            return Err(Error::bad_input(field, message));
        }
    }
    match channel_type {
        ChannelType::Slack => {
            let channel = map
                .get("channel")
                .and_then(Json::as_str)
                .unwrap_or_default();
            let valid = (2..=80).contains(&channel.len())
                && (channel.starts_with('#')
                    || channel
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
            if !valid {
                return Err(Error::bad_input(
                    "config.channel",
                    "a Slack channel: #name or a channel ID such as C0123456789",
                ));
            }
        }
        ChannelType::Email => {
            let to = map.get("to").and_then(Json::as_array);
            match to {
                Some(to) if (1..=20).contains(&to.len()) => {
                    for (i, address) in to.iter().enumerate() {
                        check_email(address, &format!("config.to.{i}"))?;
                    }
                }
                _ => {
                    return Err(Error::bad_input(
                        "config.to",
                        "a list of 1 to 20 email addresses",
                    ))
                }
            }
            if let Some(prefix) = map.get("subjectPrefix") {
                if prefix.as_str().is_none_or(|p| p.chars().count() > 100) {
                    return Err(Error::bad_input(
                        "config.subjectPrefix",
                        "at most 100 characters",
                    ));
                }
            }
        }
        ChannelType::Webhook => {
            let text = map.get("url").and_then(Json::as_str).unwrap_or_default();
            let url = url::Url::parse(text)
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
                .filter(|_| text.len() <= 2048)
                .ok_or_else(|| Error::bad_input("config.url", "an http or https URL"))?;
            if !url.username().is_empty()
                || url.query_pairs().any(|(name, _)| is_secret_param(&name))
            {
                return Err(Error::bad_input("config.url", SECRET_HINT));
            }
        }
    }
    Ok(config)
}

/// The connection holding a channel's credentials: a live connection of the active
/// tenant. Another tenant's is refused exactly like one that does not exist.
async fn check_connection(
    scope: &RequestScope,
    channel_type: ChannelType,
    connection_id: Option<Uuid>,
) -> Result<Option<Uuid>> {
    let Some(id) = connection_id else {
        if needs_connection(channel_type) {
            return Err(Error::bad_input(
                "connectionId",
                "this channel type needs a connection for its credentials",
            ));
        }
        return Ok(None);
    };
    connection::Entity::find_by_id(id)
        .filter(connection::Column::DeletedAt.is_null())
        .one(scope.tx().await?)
        .await?
        .map(|c| Some(c.id))
        .ok_or_else(|| Error::bad_input("connectionId", "no connection of this tenant has this ID"))
}

/// Adds a channel to an agent (builders, audited); CONFLICT (`type`) when the agent
/// already has an active channel of the type and this one is active too.
pub async fn create_channel(
    scope: &RequestScope,
    agent_id: Uuid,
    channel_type: ChannelType,
    config: Json,
    connection_id: Option<Uuid>,
    is_active: bool,
) -> Result<agent_channel::Model> {
    let ctx = scope.require(Role::Builder).await?;
    find_agent(scope, agent_id, false).await?;
    let config = check_config(channel_type, config)?;
    let connection_id = check_connection(scope, channel_type, connection_id).await?;
    let row = agent_channel::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        agent_id: Set(agent_id),
        channel_type: Set(channel_type),
        config: Set(config),
        connection_id: Set(connection_id),
        is_active: Set(is_active),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    }
    .insert(scope.tx().await?)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.channel.create")
            .target(IdKind::AgentChannel, row.id)
            .details(json!({ "agentId": agent_id, "type": channel_type, "active": is_active })),
    )
    .await?;
    Ok(row)
}

/// A channel of the active tenant (of a live agent), NOT_FOUND otherwise.
async fn find_channel(scope: &RequestScope, id: Uuid) -> Result<agent_channel::Model> {
    let row = agent_channel::Entity::find_by_id(id)
        .one(scope.tx().await?)
        .await?
        .ok_or(Error::NotFound)?;
    find_agent(scope, row.agent_id, false).await?;
    Ok(row)
}

/// A channel's changes; `None` leaves a field as it is, `connection_id: Some(None)`
/// clears the connection.
#[derive(Clone, Debug, Default)]
pub struct ChannelChanges {
    pub config: Option<Json>,
    pub connection_id: Option<Option<Uuid>>,
    pub is_active: Option<bool>,
}

/// Changes a channel (builders, audited): its config (checked again for its type), its
/// connection, whether it is active.
pub async fn update_channel(
    scope: &RequestScope,
    id: Uuid,
    changes: ChannelChanges,
) -> Result<agent_channel::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let current = find_channel(scope, id).await?;
    let channel_type = current.channel_type;
    let mut row: agent_channel::ActiveModel = current.clone().into();
    let mut changed = Vec::new();
    if let Some(config) = changes.config {
        row.config = Set(check_config(channel_type, config)?);
        changed.push("config");
    }
    if let Some(connection_id) = changes.connection_id {
        row.connection_id = Set(check_connection(scope, channel_type, connection_id).await?);
        changed.push("connectionId");
    }
    if let Some(active) = changes.is_active {
        row.is_active = Set(active);
        changed.push("isActive");
    }
    if changed.is_empty() {
        return Ok(current);
    }
    let row = row.update(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.channel.update")
            .target(IdKind::AgentChannel, id)
            .details(json!({ "agentId": row.agent_id, "changed": changed })),
    )
    .await?;
    Ok(row)
}

/// Deletes a channel (builders, audited).
pub async fn delete_channel(scope: &RequestScope, id: Uuid) -> Result<agent_channel::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let row = find_channel(scope, id).await?;
    agent_channel::Entity::delete_by_id(id)
        .exec(scope.tx().await?)
        .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.channel.delete")
            .target(IdKind::AgentChannel, id)
            .severity(Severity::Warning)
            .details(json!({ "agentId": row.agent_id, "type": row.channel_type })),
    )
    .await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<Json>) -> String {
        match result {
            Err(Error::BadInput { field, .. }) => field,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn each_type_takes_only_its_keys() {
        assert!(check_config(ChannelType::Slack, json!({"channel": "#ops"})).is_ok());
        assert!(check_config(
            ChannelType::Email,
            json!({"to": ["a@example.com"], "subjectPrefix": "[bot]"})
        )
        .is_ok());
        assert!(check_config(
            ChannelType::Webhook,
            json!({"url": "https://example.com/hook?team=1"})
        )
        .is_ok());
        assert_eq!(
            field_of(check_config(
                ChannelType::Slack,
                json!({"channel": "#ops", "colour": 1})
            )),
            "config.colour"
        );
        assert_eq!(
            field_of(check_config(ChannelType::Email, json!({"to": ["nope"]}))),
            "config.to.0"
        );
        assert_eq!(
            field_of(check_config(
                ChannelType::Webhook,
                json!({"url": "ftp://x"})
            )),
            "config.url"
        );
    }

    #[test]
    fn secrets_are_refused_wherever_they_hide() {
        for (kind, config, field) in [
            (
                ChannelType::Slack,
                json!({"channel": "#ops", "token": "abc"}),
                "config.token",
            ),
            (
                ChannelType::Slack,
                json!({"channel": "xoxb-123-456"}),
                "config.channel",
            ),
            (
                ChannelType::Webhook,
                json!({"url": "https://hooks.slack.com/services/T/B/X"}),
                "config.url",
            ),
            (
                ChannelType::Webhook,
                json!({"url": "https://user:pw@example.com/"}),
                "config.url",
            ),
            (
                ChannelType::Webhook,
                json!({"url": "https://example.com/?access_token=1"}),
                "config.url",
            ),
            (
                ChannelType::Email,
                json!({"to": ["a@example.com"], "smtpPassword": "x"}),
                "config.smtpPassword",
            ),
        ] {
            match check_config(kind, config) {
                Err(Error::BadInput { field: f, message }) => {
                    assert_eq!(f, field);
                    assert_eq!(message, SECRET_HINT);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
