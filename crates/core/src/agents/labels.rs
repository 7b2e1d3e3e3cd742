//! Labels: named pointers (production, staging, …) at an agent's versions. A label
//! points only at a version that is not a draft, so what it names cannot change under
//! it. Every move is kept (who, when, from, to); moves of one agent queue on the
//! agent's row lock, so each history row's `from` is the version the move before it
//! left.

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;
use trellis_entity::{
    agent_label, agent_label_move, agent_version, AgentVersionStatus, IdKind, Role,
};
use uuid::Uuid;

use super::agent::find_agent;
use crate::audit::{self, Event};
use crate::scope::RequestScope;
use crate::{Error, Result};

/// A label name: 1 to 63 lowercase letters, digits, '_' or '-', starting with a letter
/// (`production`, `staging`, `canary-eu`).
fn check_label(name: &str) -> Result<String> {
    let name = name.trim();
    let valid = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(Error::bad_input(
            "label",
            "a label is 1 to 63 lowercase letters, digits, '_' or '-', starting with a letter",
        ))
    }
}

/// What a move did: the label as it is now, and its history row (none when the label
/// already pointed at the version).
pub struct Moved {
    pub label: agent_label::Model,
    pub history: Option<agent_label_move::Model>,
}

/// Points `label` of the version's agent at `version_id` (builders), creating the
/// label on its first move. A draft is CONFLICT: labels name versions that cannot
/// change. Moving a label to the version it points at changes nothing.
pub async fn move_label(scope: &RequestScope, version_id: Uuid, label: &str) -> Result<Moved> {
    let ctx = scope.require(Role::Builder).await?;
    let name = check_label(label)?;
    let tx = scope.tx().await?;
    let version = agent_version::Entity::find_by_id(version_id)
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    // Serialises the moves of one agent's labels (and its version changes).
    let agent = find_agent(scope, version.agent_id, true).await?;
    if version.status == AgentVersionStatus::Draft {
        return Err(Error::conflict(
            Some("versionId"),
            format!(
                "version {} is a draft: activate it before a label points at it",
                version.number
            ),
        ));
    }
    let current = agent_label::Entity::find()
        .filter(agent_label::Column::AgentId.eq(agent.id))
        .filter(agent_label::Column::Name.eq(name.as_str()))
        .one(tx)
        .await?;
    let (label, from) = match current {
        Some(current) if current.version_id == version_id => {
            return Ok(Moved {
                label: current,
                history: None,
            })
        }
        Some(current) => {
            let from = current.version_id;
            let label = agent_label::ActiveModel {
                id: Set(current.id),
                version_id: Set(version_id),
                ..Default::default()
            }
            .update(tx)
            .await?;
            (label, Some(from))
        }
        None => {
            let label = agent_label::ActiveModel {
                id: Set(Uuid::now_v7()),
                tenant_id: Set(ctx.tenant_id),
                agent_id: Set(agent.id),
                name: Set(name.clone()),
                version_id: Set(version_id),
                ..Default::default()
            }
            .insert(tx)
            .await?;
            (label, None)
        }
    };
    let history = agent_label_move::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        agent_id: Set(agent.id),
        label_id: Set(label.id),
        from_version_id: Set(from),
        to_version_id: Set(version_id),
        moved_by: Set(scope.user_id().ok()),
        moved_by_key: Set(scope.api_key_id()),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "agent.label.move")
            .target(IdKind::AgentLabel, label.id)
            .details(json!({
                "agent": agent.slug,
                "label": name,
                "from": from,
                "to": version_id,
                "number": version.number,
            })),
    )
    .await?;
    Ok(Moved {
        label,
        history: Some(history),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names() {
        assert_eq!(check_label(" production ").unwrap(), "production");
        assert!(check_label("canary-eu_2").is_ok());
        for bad in ["", "Production", "2nd", "a b", &"x".repeat(64)] {
            assert!(check_label(bad).is_err(), "{bad}");
        }
    }
}
