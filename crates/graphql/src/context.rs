//! Per-request data a resolver reaches through its `Context`.

use std::sync::Arc;

use async_graphql::{Context, Request};
use trellis_core::identity::IdentityConfig;
use trellis_core::RequestScope;

use crate::error::{to_graphql, user_errors, UserError};
use crate::loaders::{forget_all, Loader, RequestLoader};

/// Everything one request needs, created fresh for it.
pub struct RequestData {
    pub scope: Arc<RequestScope>,
    pub loader: RequestLoader,
}

/// Attaches a request's scope and fresh dataloaders to a GraphQL request.
pub fn request_data(request: Request, scope: Arc<RequestScope>) -> Request {
    let loader = Loader::for_request(scope.clone());
    request.data(RequestData { scope, loader })
}

/// Shared, read-only services configured at start-up.
pub struct Services {
    pub identity: IdentityConfig,
    /// Seals and opens tenant secrets.
    pub vault: trellis_core::integrations::secrets::Vault,
    /// Settings of runs (idempotency-key lifetime).
    pub runs: trellis_core::runs::RunSettings,
    /// The execution-log store, reached per tenant.
    pub logs: trellis_core::logs::LogStore,
    /// The one guard (and HTTP client) of outbound calls.
    pub egress: trellis_core::egress::Egress,
}

pub(crate) trait ContextExt {
    fn request(&self) -> async_graphql::Result<&RequestData>;
    fn scope(&self) -> async_graphql::Result<&Arc<RequestScope>> {
        Ok(&self.request()?.scope)
    }
    fn loader(&self) -> async_graphql::Result<&RequestLoader> {
        Ok(&self.request()?.loader)
    }
    fn services(&self) -> async_graphql::Result<&Services>;
}

impl ContextExt for Context<'_> {
    fn request(&self) -> async_graphql::Result<&RequestData> {
        self.data::<RequestData>()
            .map_err(|_| internal("request data missing"))
    }

    fn services(&self) -> async_graphql::Result<&Services> {
        self.data::<Services>()
            .map_err(|_| internal("services missing"))
    }
}

/// A relation the database guarantees (a NOT NULL foreign key inside the tenant): its
/// absence is an internal error, logged, and the field's non-null type then nulls its
/// parent as the specification says.
pub(crate) fn present<T>(value: Option<T>, what: &str) -> async_graphql::Result<T> {
    value.ok_or_else(|| internal(&format!("{what} is missing")))
}

fn internal(what: &str) -> async_graphql::Error {
    to_graphql(
        &trellis_core::Error::Internal(trellis_core::anyhow::anyhow!("{what}")),
        "",
    )
}

/// Runs a domain operation and maps its error for the client.
pub(crate) async fn run<T>(
    ctx: &Context<'_>,
    result: impl std::future::IntoFuture<Output = trellis_core::Result<T>>,
) -> async_graphql::Result<T> {
    let scope = ctx.scope()?;
    result.into_future().await.map_err(|e| {
        scope.mark_failed();
        to_graphql(&e, &scope.meta().request_id)
    })
}

/// Runs a mutation: input problems become the payload's userErrors (and the request's
/// transaction rolls back), anything else a GraphQL error.
pub(crate) async fn mutate<T>(
    ctx: &Context<'_>,
    result: impl std::future::IntoFuture<Output = trellis_core::Result<T>>,
) -> async_graphql::Result<(Option<T>, Vec<UserError>)> {
    let scope = ctx.scope()?;
    forget_all(ctx.loader()?);
    match result.into_future().await {
        Ok(value) => Ok((Some(value), vec![])),
        Err(err) => {
            scope.mark_failed();
            match user_errors(err) {
                Ok(user_errors) => Ok((None, user_errors)),
                Err(err) => Err(to_graphql(&err, &scope.meta().request_id)),
            }
        }
    }
}

/// Loads one key through the request's dataloader (cached and batched), with its error
/// mapped for the client.
pub(crate) async fn load<K>(
    ctx: &Context<'_>,
    key: K,
) -> async_graphql::Result<Option<<Loader as async_graphql::dataloader::Loader<K>>::Value>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    Loader: async_graphql::dataloader::Loader<K, Error = std::sync::Arc<trellis_core::Error>>,
{
    ctx.loader()?
        .load_one(key)
        .await
        .map_err(|e| load_error(ctx, &e))
}

/// Maps a dataloader's shared error for the client.
pub(crate) fn load_error(ctx: &Context<'_>, err: &trellis_core::Error) -> async_graphql::Error {
    let request_id = ctx
        .scope()
        .map(|s| s.meta().request_id.clone())
        .unwrap_or_default();
    to_graphql(err, &request_id)
}
