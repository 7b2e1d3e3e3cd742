//! Plans' `monthlyRuns`, enforced: `run_counts` holds how many runs (not simulations)
//! each tenant started per calendar month (UTC), and the plan's limit as it was at the
//! last start. The statement that makes a run also counts it, in the same transaction:
//! the upsert locks the month's row until commit, so concurrent starts of one tenant
//! take turns and each sees the count the last one left, and `run_counts_within_plan`
//! refuses the one past the limit (the whole start rolls back). A start that rolls back
//! for any other reason takes its count with it.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000037_run_counts"
    }
}

fn policies() -> Vec<Policies<'static>> {
    vec![Policies::tenant("run_counts")]
}

const UP: &str = r#"
CREATE TABLE run_counts (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The first instant of the month, UTC.
    month timestamptz NOT NULL
        CONSTRAINT run_counts_month_start CHECK (month = date_trunc('month', month, 'UTC')),
    runs bigint NOT NULL CHECK (runs >= 0),
    -- The plan's monthlyRuns at the last start; NULL is no limit.
    run_limit bigint CHECK (run_limit >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT run_counts_pkey PRIMARY KEY (tenant_id, month),
    CONSTRAINT run_counts_within_plan CHECK (run_limit IS NULL OR runs <= run_limit)
);
CREATE TRIGGER run_counts_updated_at BEFORE UPDATE ON run_counts
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
"#;

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = UP.to_owned();
        for policies in policies() {
            sql.push_str(&policies.sql());
            sql.push_str(&policies.guard_sql());
        }
        sql.push_str(&grant_to_app("SELECT, INSERT, UPDATE", "run_counts"));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = String::new();
        for policies in policies() {
            sql.push_str(&policies.drop_sql());
        }
        sql.push_str("DROP TABLE run_counts;");
        run_script(manager, &sql).await
    }
}
