//! The row-level security helpers `app.current_tenant_id()`, `app.current_user_id()`
//! and `app.is_platform_admin()` become functions PostgreSQL inlines.
//!
//! Every policy compares a row with `(SELECT app.current_tenant_id())`. Migration
//! 000001 declared the helpers with `SET search_path = pg_catalog` and a `FROM`
//! clause, and either stops the planner from inlining a SQL function: each evaluation
//! then ran the body as a query of its own, planned afresh, with the setting saved and
//! restored around it. A cached process call evaluated it about 57 times (every
//! policy of every table its statements touch, foreign-key checks and the PL/pgSQL
//! functions' queries), which `pg_stat_statements` showed as a third of PostgreSQL's
//! CPU for that call.
//!
//! The new bodies are a single expression with every name qualified by `pg_catalog`,
//! so they inline into the statement that uses them and no `search_path` can redirect
//! them. What they return is unchanged: the setting as a UUID, NULL when it is unset,
//! empty or not a UUID (no tenant, no rows), and `is_platform_admin()` true only for
//! `on`.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000031_inline_tenant_context"
    }
}

/// A UUID in the canonical text form, any case.
const UUID_PATTERN: &str = "'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'";

/// The function returning the setting `setting` as a UUID, or NULL.
fn uuid_setting(name: &str, setting: &str, inlined: bool) -> String {
    if inlined {
        format!(
            "CREATE OR REPLACE FUNCTION app.{name}() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN pg_catalog.current_setting('{setting}', true)
                     OPERATOR(pg_catalog.~*) {UUID_PATTERN}
                THEN pg_catalog.current_setting('{setting}', true)::pg_catalog.uuid END
$$;
"
        )
    } else {
        // Migration 000001's definition, for `down`.
        format!(
            "CREATE OR REPLACE FUNCTION app.{name}() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT CASE WHEN s ~* {UUID_PATTERN}
                THEN s::uuid END
    FROM (SELECT current_setting('{setting}', true) AS s) AS setting
$$;
"
        )
    }
}

fn script(inlined: bool) -> String {
    let admin = if inlined {
        "CREATE OR REPLACE FUNCTION app.is_platform_admin() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(pg_catalog.current_setting('app.platform_admin', true), '')
           OPERATOR(pg_catalog.=) 'on'
$$;
"
    } else {
        "CREATE OR REPLACE FUNCTION app.is_platform_admin() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT coalesce(current_setting('app.platform_admin', true), '') = 'on'
$$;
"
    };
    [
        uuid_setting("current_tenant_id", "app.tenant_id", inlined),
        uuid_setting("current_user_id", "app.user_id", inlined),
        admin.to_owned(),
    ]
    .concat()
}

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &script(true)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &script(false)).await
    }
}
