-- Execution logs: the PostgreSQL log store (used when no MongoDB is configured) and the
-- outbox that holds entries for MongoDB while it is unreachable. Policies and grants
-- are appended by the migration from `rls.rs`.

-- One line a run (or one of its steps) logged, already redacted. Immutable: the
-- application inserts, reads and deletes, never updates.
CREATE TABLE execution_logs (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    run_id uuid NOT NULL,
    step_run_id uuid,
    level text NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message text NOT NULL CONSTRAINT execution_logs_message_length CHECK (length(message) <= 16384),
    context jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT execution_logs_context_size CHECK (octet_length(context::text) <= 262144),
    logged_at timestamptz NOT NULL,
    -- logged_at + the tenant's log retention; the purge job deletes the row after it.
    expire_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT execution_logs_run_fkey FOREIGN KEY (tenant_id, run_id)
        REFERENCES workflow_runs (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT execution_logs_step_run_fkey FOREIGN KEY (tenant_id, step_run_id)
        REFERENCES step_runs (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX execution_logs_run_time_idx ON execution_logs (tenant_id, run_id, logged_at, id);
CREATE INDEX execution_logs_step_run_time_idx ON execution_logs (tenant_id, step_run_id, logged_at, id);
CREATE INDEX execution_logs_level_time_idx ON execution_logs (tenant_id, level, logged_at, id);
CREATE INDEX execution_logs_expire_idx ON execution_logs (tenant_id, expire_at);

-- Entries waiting for MongoDB, in the order they were written (seq). Bounded per
-- tenant by the application (see docs/logs.md); replay moves them to MongoDB and
-- deletes them.
CREATE TABLE log_outbox (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id uuid NOT NULL,
    run_id uuid NOT NULL,
    step_run_id uuid,
    level text NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message text NOT NULL CONSTRAINT log_outbox_message_length CHECK (length(message) <= 16384),
    context jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT log_outbox_context_size CHECK (octet_length(context::text) <= 262144),
    logged_at timestamptz NOT NULL,
    expire_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq),
    CONSTRAINT log_outbox_run_fkey FOREIGN KEY (tenant_id, run_id)
        REFERENCES workflow_runs (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT log_outbox_step_run_fkey FOREIGN KEY (tenant_id, step_run_id)
        REFERENCES step_runs (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX log_outbox_run_idx ON log_outbox (tenant_id, run_id);
CREATE INDEX log_outbox_step_run_idx ON log_outbox (tenant_id, step_run_id);

-- Maintenance that crosses tenants, narrowed to what it needs. SECURITY DEFINER with a
-- pinned search_path, not executable by PUBLIC.

-- The tenants that have entries waiting in the outbox (ids only): replay then opens
-- one transaction per tenant with app.tenant_id set, so RLS still applies to the rows.
CREATE FUNCTION app.log_outbox_tenants(max_tenants integer) RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT DISTINCT o.tenant_id FROM public.log_outbox o
    LIMIT greatest(least(max_tenants, 10000), 1)
$$;

-- Deletes at most `batch` expired execution logs, skipping rows another purge holds;
-- returns how many it deleted. Walks tenant by tenant on (tenant_id, expire_at).
CREATE FUNCTION app.purge_expired_execution_logs(batch integer) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
    WITH candidates AS (
        SELECT x.id FROM public.tenants t
        CROSS JOIN LATERAL (
            SELECT e.id FROM public.execution_logs e
            WHERE e.tenant_id = t.id AND e.expire_at <= now()
            LIMIT greatest(least(batch, 10000), 1)
        ) x
        LIMIT greatest(least(batch, 10000), 1)
    ), doomed AS (
        SELECT e.id FROM public.execution_logs e
        WHERE e.id IN (SELECT c.id FROM candidates c)
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM public.execution_logs e USING doomed d WHERE e.id = d.id RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;

REVOKE ALL ON FUNCTION app.log_outbox_tenants(integer), app.purge_expired_execution_logs(integer)
    FROM PUBLIC;
