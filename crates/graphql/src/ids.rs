//! Global IDs at the GraphQL edge: `ten_…`, `usr_…`. A malformed ID or one of the wrong
//! kind is NOT_FOUND, exactly like an ID of another tenant.

use async_graphql::ID;
use trellis_entity::{IdKind, PrefixedId};
use uuid::Uuid;

/// The GraphQL ID of an object.
pub fn gid(kind: IdKind, uuid: Uuid) -> ID {
    ID(PrefixedId::new(kind, uuid).to_string())
}

/// The UUID behind an ID that must name a `kind`.
pub fn parse(id: &ID, kind: IdKind) -> trellis_core::Result<Uuid> {
    PrefixedId::parse_as(id, kind).ok_or(trellis_core::Error::NotFound)
}
