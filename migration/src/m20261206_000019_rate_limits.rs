//! Rate limits and quotas of process calls, as data: per tenant, per API key, per
//! process (or per key on one process). Each row holds its limits and their state: a
//! token bucket for requests and one for tokens per window, and calendar-month
//! counters for the quotas. `app.admit_process_call` decides a call in one statement,
//! locking the rows that apply in id order; `app.charge_process_call` charges a call's
//! tokens and cost afterwards. Both run as the caller, under its tenant's RLS.

use sea_orm_migration::prelude::*;

use crate::rls::{grant_to_app, Policies};
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000019_rate_limits"
    }
}

pub(crate) fn policies() -> Vec<Policies<'static>> {
    vec![Policies::tenant("rate_limits")]
}

const UP: &str = r#"
CREATE TABLE rate_limits (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Whose calls it counts: NULL and NULL is the whole tenant.
    api_key_id uuid,
    process_id uuid,
    requests_per_window integer CHECK (requests_per_window BETWEEN 1 AND 100000000),
    tokens_per_window bigint CHECK (tokens_per_window BETWEEN 1 AND 1000000000000),
    window_seconds integer NOT NULL DEFAULT 60 CHECK (window_seconds BETWEEN 1 AND 86400),
    monthly_calls bigint CHECK (monthly_calls >= 1),
    monthly_tokens bigint CHECK (monthly_tokens >= 1),
    monthly_cost_nanos bigint CHECK (monthly_cost_nanos >= 1),
    -- State: what each bucket holds as of refilled_at, and this month's counts.
    request_allowance double precision NOT NULL DEFAULT 0,
    token_allowance double precision NOT NULL DEFAULT 0,
    refilled_at timestamptz NOT NULL DEFAULT now(),
    month_start timestamptz NOT NULL DEFAULT date_trunc('month', now(), 'UTC'),
    month_calls bigint NOT NULL DEFAULT 0,
    month_tokens bigint NOT NULL DEFAULT 0,
    month_cost_nanos bigint NOT NULL DEFAULT 0,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rate_limits_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT rate_limits_subject_key UNIQUE NULLS NOT DISTINCT (tenant_id, api_key_id, process_id),
    CONSTRAINT rate_limits_something CHECK (num_nonnulls(requests_per_window, tokens_per_window,
        monthly_calls, monthly_tokens, monthly_cost_nanos) > 0),
    CONSTRAINT rate_limits_key_fkey FOREIGN KEY (tenant_id, api_key_id)
        REFERENCES api_keys (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT rate_limits_process_fkey FOREIGN KEY (tenant_id, process_id)
        REFERENCES processes (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX rate_limits_process_idx ON rate_limits (tenant_id, process_id);
CREATE INDEX rate_limits_created_by_idx ON rate_limits (created_by);
CREATE TRIGGER rate_limits_updated_at BEFORE UPDATE ON rate_limits
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

-- Admits a call of p_process by p_api_key (NULL: a person) in the current tenant, or
-- refuses it: NULL when admitted (one request taken from every request bucket and the
-- call counted in every month), else the seconds until it would be. A refusal changes
-- nothing. Token buckets refuse once empty; the tokens are charged after the call.
CREATE FUNCTION app.admit_process_call(p_api_key uuid, p_process uuid) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_month timestamptz := date_trunc('month', clock_timestamp(), 'UTC');
    v_wait double precision := 0;
    v_elapsed double precision;
    v_allowance double precision;
    v_found boolean := false;
    r record;
BEGIN
    FOR r IN
        SELECT * FROM rate_limits l
        WHERE l.tenant_id = (SELECT app.current_tenant_id())
          AND (l.api_key_id IS NULL OR l.api_key_id = p_api_key)
          AND (l.process_id IS NULL OR l.process_id = p_process)
        ORDER BY l.id FOR UPDATE
    LOOP
        v_found := true;
        v_elapsed := greatest(0, extract(epoch FROM v_now - r.refilled_at));
        IF r.requests_per_window IS NOT NULL THEN
            v_allowance := least(r.requests_per_window,
                r.request_allowance + v_elapsed * r.requests_per_window / r.window_seconds);
            IF v_allowance < 1 THEN
                v_wait := greatest(v_wait, (1 - v_allowance) * r.window_seconds / r.requests_per_window);
            END IF;
        END IF;
        IF r.tokens_per_window IS NOT NULL THEN
            v_allowance := least(r.tokens_per_window,
                r.token_allowance + v_elapsed * r.tokens_per_window / r.window_seconds);
            IF v_allowance <= 0 THEN
                v_wait := greatest(v_wait, (1 - v_allowance) * r.window_seconds / r.tokens_per_window);
            END IF;
        END IF;
        IF r.month_start = v_month AND (
               r.month_calls >= r.monthly_calls OR r.month_tokens >= r.monthly_tokens
               OR r.month_cost_nanos >= r.monthly_cost_nanos) THEN
            v_wait := greatest(v_wait, extract(epoch FROM v_month + interval '1 month' - v_now));
        END IF;
    END LOOP;
    IF v_wait > 0 THEN
        RETURN greatest(1, ceil(v_wait))::integer;
    END IF;
    IF v_found THEN
        UPDATE rate_limits l SET
            request_allowance = CASE WHEN l.requests_per_window IS NULL THEN 0 ELSE
                least(l.requests_per_window, l.request_allowance
                    + greatest(0, extract(epoch FROM v_now - l.refilled_at)) * l.requests_per_window / l.window_seconds) - 1 END,
            token_allowance = CASE WHEN l.tokens_per_window IS NULL THEN 0 ELSE
                least(l.tokens_per_window, l.token_allowance
                    + greatest(0, extract(epoch FROM v_now - l.refilled_at)) * l.tokens_per_window / l.window_seconds) END,
            refilled_at = greatest(v_now, l.refilled_at),
            month_calls = CASE WHEN l.month_start = v_month THEN l.month_calls ELSE 0 END + 1,
            month_tokens = CASE WHEN l.month_start = v_month THEN l.month_tokens ELSE 0 END,
            month_cost_nanos = CASE WHEN l.month_start = v_month THEN l.month_cost_nanos ELSE 0 END,
            month_start = v_month
        WHERE l.tenant_id = (SELECT app.current_tenant_id())
          AND (l.api_key_id IS NULL OR l.api_key_id = p_api_key)
          AND (l.process_id IS NULL OR l.process_id = p_process);
    END IF;
    RETURN NULL;
END
$$;

-- Charges an answered call's tokens and cost to every limit that counts it.
CREATE FUNCTION app.charge_process_call(p_api_key uuid, p_process uuid, p_tokens bigint,
    p_cost_nanos bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_month timestamptz := date_trunc('month', clock_timestamp(), 'UTC');
BEGIN
    UPDATE rate_limits l SET
        token_allowance = CASE WHEN l.tokens_per_window IS NULL THEN 0 ELSE
            least(l.tokens_per_window, l.token_allowance
                + greatest(0, extract(epoch FROM v_now - l.refilled_at)) * l.tokens_per_window / l.window_seconds) - p_tokens END,
        request_allowance = CASE WHEN l.requests_per_window IS NULL THEN 0 ELSE
            least(l.requests_per_window, l.request_allowance
                + greatest(0, extract(epoch FROM v_now - l.refilled_at)) * l.requests_per_window / l.window_seconds) END,
        refilled_at = greatest(v_now, l.refilled_at),
        month_calls = CASE WHEN l.month_start = v_month THEN l.month_calls ELSE 0 END,
        month_tokens = CASE WHEN l.month_start = v_month THEN l.month_tokens ELSE 0 END + p_tokens,
        month_cost_nanos = CASE WHEN l.month_start = v_month THEN l.month_cost_nanos ELSE 0 END + p_cost_nanos,
        month_start = v_month
    WHERE l.tenant_id = (SELECT app.current_tenant_id())
      AND (l.api_key_id IS NULL OR l.api_key_id = p_api_key)
      AND (l.process_id IS NULL OR l.process_id = p_process);
END
$$;
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
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.admit_process_call(uuid, uuid), app.charge_process_call(uuid, uuid, bigint, bigint)",
        ));
        sql.push_str(&grant_to_app(
            "SELECT, INSERT, DELETE, UPDATE (requests_per_window, tokens_per_window, window_seconds, \
             monthly_calls, monthly_tokens, monthly_cost_nanos, request_allowance, token_allowance, \
             refilled_at, month_start, month_calls, month_tokens, month_cost_nanos)",
            "rate_limits",
        ));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "DROP FUNCTION app.admit_process_call(uuid, uuid), \
               app.charge_process_call(uuid, uuid, bigint, bigint);\nDROP TABLE rate_limits;\n",
        )
        .await
    }
}
