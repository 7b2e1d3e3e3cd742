//! What subscriptions need: the connection's [`LiveSession`] (who subscribed, and how
//! to open request scopes for them), and [`InScope`], an event's value together with
//! the fresh request scope it was read in.
//!
//! A subscription holds no transaction while it waits. Each event is read again in a
//! new, short request scope of the subscriber (one transaction, tenant set
//! transaction-locally, RLS in force, membership checked again), and the value's
//! fields resolve through that same scope, which ends as soon as they have.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, Data, OutputType, Positioned, ServerResult, Value,
};
use trellis_core::runs::live::LiveEvents;
use trellis_core::{AppDb, Principal, RequestMeta, RequestScope};

use crate::context::RequestData;
use crate::error::to_graphql;
use crate::loaders::Loader;

/// Per-connection data of a graphql-ws connection, attached in `connection_init`.
#[derive(Clone, Debug)]
pub struct LiveSession {
    pub db: AppDb,
    /// Who authenticated in `connection_init`.
    pub principal: Principal,
    pub meta: RequestMeta,
    /// This process's live events.
    pub events: LiveEvents,
}

impl LiveSession {
    /// A fresh request scope of the subscriber: one transaction, begun on first use.
    pub fn scope(&self) -> Arc<RequestScope> {
        RequestScope::new(self.db.clone(), self.principal.clone(), self.meta.clone())
    }

    /// Maps a domain error for the client.
    pub(crate) fn error(&self, err: &trellis_core::Error) -> async_graphql::Error {
        to_graphql(err, &self.meta.request_id)
    }
}

/// The connection's session; subscriptions exist only over graphql-ws.
pub(crate) fn session(ctx: &Context<'_>) -> async_graphql::Result<LiveSession> {
    ctx.data::<LiveSession>().cloned().map_err(|_| {
        to_graphql(
            &trellis_core::Error::BadInput {
                field: String::new(),
                message: "subscriptions need the graphql-ws endpoint".into(),
            },
            "",
        )
    })
}

/// A subscription event's value with the scope it was read in. Its fields resolve with
/// that scope's [`RequestData`] (fresh dataloaders included); the scope then ends.
pub struct InScope<T> {
    scope: Mutex<Option<Arc<RequestScope>>>,
    value: T,
}

impl<T> InScope<T> {
    pub fn new(scope: Arc<RequestScope>, value: T) -> Self {
        Self {
            scope: Mutex::new(Some(scope)),
            value,
        }
    }
}

impl<T: OutputType> OutputType for InScope<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn introspection_type_name(&self) -> Cow<'static, str> {
        self.value.introspection_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let taken = self
            .scope
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(scope) = taken else {
            return self.value.resolve(ctx, field).await;
        };
        let mut data = Data::default();
        data.insert(RequestData {
            scope: scope.clone(),
            loader: Loader::for_request(scope.clone()),
        });
        let result = {
            // Execution data is consulted before the connection's and the schema's, so
            // the fields below see this event's request data.
            let mut scoped: ContextSelectionSet<'_> = ctx.clone();
            scoped.execute_data = Some(&data);
            self.value.resolve(&scoped, field).await
        };
        drop(data);
        let request_id = scope.meta().request_id.clone();
        let finished = RequestScope::finish_shared(scope, result.is_ok()).await;
        match (result, finished) {
            // The event was read, but its transaction did not end as it should have.
            (Ok(_), Err(err)) => Err(to_graphql(&err, &request_id).into_server_error(field.pos)),
            (result, _) => result,
        }
    }
}
