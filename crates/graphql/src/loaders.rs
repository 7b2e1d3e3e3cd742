//! Dataloaders: one per request, reading through that request's transaction, so RLS
//! applies and no cache outlives the request. A relation costs one statement per
//! request however many rows ask for it.

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use trellis_core::RequestScope;
use trellis_entity::{api_key, audit_event, invitation, membership, tenant, user};
use uuid::Uuid;

/// The per-request loader; each key type below is one batched look-up.
pub struct Loader {
    scope: Arc<RequestScope>,
}

impl Loader {
    pub fn new(scope: Arc<RequestScope>) -> Self {
        Self { scope }
    }
}

macro_rules! by_id {
    ($(#[$doc:meta])* $key:ident => $entity:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $key(pub Uuid);

        impl async_graphql::dataloader::Loader<$key> for Loader {
            type Value = $entity::Model;
            type Error = Arc<trellis_core::Error>;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                let ids = keys.iter().map(|k| k.0);
                let tx = self.scope.tx().await.map_err(Arc::new)?;
                let rows = $entity::Entity::find()
                    .filter($entity::Column::Id.is_in(ids))
                    .all(tx)
                    .await
                    .map_err(|e| Arc::new(e.into()))?;
                Ok(rows.into_iter().map(|row| ($key(row.id), row)).collect())
            }
        }
    };
}

by_id!(
    /// A tenant by id.
    TenantById => tenant
);
by_id!(
    /// A user by id.
    UserById => user
);
by_id!(
    /// A membership by id.
    MembershipById => membership
);
by_id!(
    /// An invitation by id.
    InvitationById => invitation
);
by_id!(
    /// An API key by id.
    ApiKeyById => api_key
);
by_id!(
    /// An audit event by id.
    AuditEventById => audit_event
);
