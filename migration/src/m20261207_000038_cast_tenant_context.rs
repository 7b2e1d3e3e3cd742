//! `app.current_tenant_id()` and `app.current_user_id()` cast their setting instead of
//! matching it against a pattern first.
//!
//! Every policy evaluates `(SELECT app.current_tenant_id())` once per statement, and a
//! statement touches many policies: a process call's RESOLVE evaluated it about 25
//! times, its log about 15. The case-insensitive pattern match of migration 000031 cost
//! 2.6 µs per evaluation on the benchmark machine, the cast alone 0.45 µs; a
//! transaction holding RESOLVE took 0.74 ms against 0.61 ms with the cast (pgbench, one
//! client).
//!
//! What they return: the setting as a UUID, NULL when it is unset or empty (no tenant,
//! no rows). A value that is not a UUID, which the server never sets, now fails the
//! statement (`22P02`) where it used to read as NULL: still closed, and loudly. Any
//! name in the bodies is qualified by `pg_catalog` and they stay inlined.

use sea_orm_migration::prelude::*;

use crate::m20261207_000031_inline_tenant_context::UUID_PATTERN;
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000038_cast_tenant_context"
    }
}

/// The function returning the setting `setting` as a UUID: cast (up), or checked
/// against the pattern first (down).
fn uuid_setting(name: &str, setting: &str, cast: bool) -> String {
    let test = if cast {
        "OPERATOR(pg_catalog.<>) ''".to_owned()
    } else {
        format!("OPERATOR(pg_catalog.~*) {UUID_PATTERN}")
    };
    format!(
        "CREATE OR REPLACE FUNCTION app.{name}() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN pg_catalog.current_setting('{setting}', true) {test}
                THEN pg_catalog.current_setting('{setting}', true)::pg_catalog.uuid END
$$;
"
    )
}

fn script(cast: bool) -> String {
    [
        uuid_setting("current_tenant_id", "app.tenant_id", cast),
        uuid_setting("current_user_id", "app.user_id", cast),
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
