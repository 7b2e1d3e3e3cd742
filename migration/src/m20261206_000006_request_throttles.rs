//! Request throttles: login attempts per account and per client address, anonymous
//! mutations per client address, counted by narrow definer functions.

use sea_orm_migration::prelude::*;

use crate::rls::grant_to_app;
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000006_request_throttles"
    }
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = include_str!("sql/request_throttles_up.sql").to_owned();
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.throttle_hit(text, integer, integer, integer), app.throttle_clear(text), \
             app.purge_request_throttles()",
        ));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, include_str!("sql/request_throttles_down.sql")).await
    }
}
