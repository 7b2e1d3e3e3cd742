//! Clients: a tenant's customers, whom workflows and runs may name. Builders edit
//! them; there is no hard delete, a client is deactivated.

use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::json;
use trellis_entity::{client, IdKind, Role};
use uuid::Uuid;

use crate::audit::{self, Event};
use crate::email::Email;
use crate::identity::required_text;
use crate::scope::RequestScope;
use crate::{Error, Result};

/// A client's fields. On create `None` leaves a field empty; on update `None` leaves
/// it alone, and `Some("")` clears an optional one.
#[derive(Default)]
pub struct ClientFields {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub address: Option<String>,
    pub notes: Option<String>,
    pub is_active: Option<bool>,
}

/// An optional text: trimmed, empty means none, at most `max` characters.
fn optional_text(value: &str, field: &str, max: usize) -> Result<Option<String>> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(Error::bad_input(
            field,
            format!("{field} is at most {max} characters"),
        ));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

fn apply(row: &mut client::ActiveModel, fields: ClientFields) -> Result<()> {
    if let Some(name) = fields.name {
        row.name = Set(required_text(&name, "name", 200)?);
    }
    if let Some(email) = fields.email {
        row.email = Set(match optional_text(&email, "email", 320)? {
            Some(email) => Some(Email::parse(&email, "email")?.as_str().to_owned()),
            None => None,
        });
    }
    if let Some(phone) = fields.phone {
        row.phone = Set(optional_text(&phone, "phone", 64)?);
    }
    if let Some(company) = fields.company {
        row.company = Set(optional_text(&company, "company", 200)?);
    }
    if let Some(address) = fields.address {
        row.address = Set(optional_text(&address, "address", 1000)?);
    }
    if let Some(notes) = fields.notes {
        row.notes = Set(optional_text(&notes, "notes", 10_000)?.unwrap_or_default());
    }
    if let Some(is_active) = fields.is_active {
        row.is_active = Set(is_active);
    }
    Ok(())
}

/// Creates a client (builders).
pub async fn create_client(scope: &RequestScope, fields: ClientFields) -> Result<client::Model> {
    let ctx = scope.require(Role::Builder).await?;
    if fields.name.is_none() {
        return Err(Error::bad_input("name", "name must be 1 to 200 characters"));
    }
    let mut row = client::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(ctx.tenant_id),
        notes: Set(String::new()),
        is_active: Set(true),
        created_by: Set(scope.user_id().ok()),
        ..Default::default()
    };
    apply(&mut row, fields)?;
    let row = row.insert(scope.tx().await?).await?;
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), "client.create")
            .target(IdKind::Client, row.id)
            .details(json!({ "name": row.name })),
    )
    .await?;
    Ok(row)
}

/// Changes a client (builders); `is_active: false` deactivates it.
pub async fn update_client(
    scope: &RequestScope,
    id: Uuid,
    fields: ClientFields,
) -> Result<client::Model> {
    let ctx = scope.require(Role::Builder).await?;
    let tx = scope.tx().await?;
    let current = client::Entity::find_by_id(id)
        .one(tx)
        .await?
        .ok_or(Error::NotFound)?;
    let mut row = client::ActiveModel {
        id: Set(id),
        ..Default::default()
    };
    let deactivating = fields.is_active == Some(false) && current.is_active;
    apply(&mut row, fields)?;
    if !row.is_changed() {
        return Ok(current);
    }
    let row = row.update(tx).await?;
    let action = if deactivating {
        "client.deactivate"
    } else {
        "client.update"
    };
    audit::record(
        scope,
        Event::new(Some(ctx.tenant_id), action).target(IdKind::Client, id),
    )
    .await?;
    Ok(row)
}
