//! The ids of the master keys stored tenant data keys are wrapped under, for the
//! start-up check that refuses to serve secrets no configured key can open.

use sea_orm_migration::prelude::*;

use crate::rls::grant_to_app;
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000008_master_key_ids"
    }
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = "\
            CREATE FUNCTION app.master_key_ids_in_use() RETURNS SETOF text \
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$ \
                SELECT DISTINCT master_key_id FROM public.tenant_data_keys \
            $$;\n\
            REVOKE ALL ON FUNCTION app.master_key_ids_in_use() FROM PUBLIC;\n"
            .to_owned();
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.master_key_ids_in_use()",
        ));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, "DROP FUNCTION app.master_key_ids_in_use();").await
    }
}
