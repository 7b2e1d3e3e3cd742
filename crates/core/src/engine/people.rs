//! People as steps name them: approvers of an APPROVAL step, recipients of an in-app
//! NOTIFICATION. A role name names members with that role or a higher one (`ADMIN`:
//! admins and owners), a user id (`usr_…`) one user, an email address one person
//! (compared without regard to case).

use trellis_entity::{IdKind, PrefixedId, Role};
use uuid::Uuid;

/// Someone, or a group of members, named in a step's config.
#[derive(Clone, Debug, PartialEq)]
pub enum Person {
    /// Members with this role or a higher one.
    Role(Role),
    User(Uuid),
    /// Lowercased.
    Email(String),
}

fn role_named(name: &str) -> Option<Role> {
    match name.to_ascii_uppercase().as_str() {
        "OWNER" => Some(Role::Owner),
        "ADMIN" => Some(Role::Admin),
        "BUILDER" => Some(Role::Builder),
        "OPERATOR" => Some(Role::Operator),
        "VIEWER" => Some(Role::Viewer),
        _ => None,
    }
}

/// Reads one entry of a list of people; `None` for one that names nobody.
pub fn parse_person(entry: &str) -> Option<Person> {
    let entry = entry.trim();
    if let Some(role) = role_named(entry) {
        return Some(Person::Role(role));
    }
    if let Some(id) = PrefixedId::parse(entry).filter(|id| id.kind == IdKind::User) {
        return Some(Person::User(id.uuid));
    }
    (entry.contains('@') && entry.len() <= 320).then(|| Person::Email(entry.to_lowercase()))
}

impl Person {
    /// Whether this names the member with this id, email and role.
    pub fn names(&self, user_id: Uuid, email: &str, role: Role) -> bool {
        match self {
            Person::Role(needed) => role.at_least(*needed),
            Person::User(id) => *id == user_id,
            Person::Email(address) => address.eq_ignore_ascii_case(email),
        }
    }
}
