-- Runs: workflow_runs and step_runs, idempotency keys, and the workflow_reports
-- rollups. Policies and grants are appended by the migration from `rls.rs`.

-- API keys may carry the `runner` scope: workers that claim and execute runs.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scopes_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_check
    CHECK (scopes <@ ARRAY['read', 'write', 'admin', 'runner']::text[] AND cardinality(scopes) > 0);

CREATE TABLE workflow_runs (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    workflow_id uuid NOT NULL,
    version_id uuid NOT NULL,
    trigger_id uuid,
    trigger_type text NOT NULL CHECK (trigger_type IN ('manual', 'schedule', 'webhook', 'event')),
    client_id uuid,
    retry_of_id uuid,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    trigger_payload jsonb,
    input jsonb,
    output jsonb,
    error jsonb,
    is_simulation boolean NOT NULL DEFAULT false,
    idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    -- The runner lease: which claim holds the run, until when.
    lease_token uuid,
    lease_owner uuid,
    lease_expires_at timestamptz,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    cancelled_at timestamptz,
    -- Set when the retention job cleared input, output and trigger payload.
    payloads_purged_at timestamptz,
    CONSTRAINT workflow_runs_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT workflow_runs_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES workflows (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT workflow_runs_version_fkey FOREIGN KEY (tenant_id, version_id)
        REFERENCES workflow_versions (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT workflow_runs_trigger_fkey FOREIGN KEY (tenant_id, trigger_id)
        REFERENCES triggers (tenant_id, id) ON DELETE SET NULL (trigger_id),
    CONSTRAINT workflow_runs_client_fkey FOREIGN KEY (tenant_id, client_id)
        REFERENCES clients (tenant_id, id) ON DELETE SET NULL (client_id),
    CONSTRAINT workflow_runs_retry_of_fkey FOREIGN KEY (tenant_id, retry_of_id)
        REFERENCES workflow_runs (tenant_id, id) ON DELETE SET NULL (retry_of_id)
);
CREATE INDEX workflow_runs_tenant_created_idx ON workflow_runs (tenant_id, created_at, id);
CREATE INDEX workflow_runs_workflow_created_idx ON workflow_runs (tenant_id, workflow_id, created_at, id);
CREATE INDEX workflow_runs_version_idx ON workflow_runs (tenant_id, version_id);
CREATE INDEX workflow_runs_trigger_idx ON workflow_runs (tenant_id, trigger_id);
CREATE INDEX workflow_runs_client_idx ON workflow_runs (tenant_id, client_id);
CREATE INDEX workflow_runs_retry_of_idx ON workflow_runs (tenant_id, retry_of_id);
CREATE INDEX workflow_runs_created_by_idx ON workflow_runs (created_by);
-- What runners claim: open runs, oldest first.
CREATE INDEX workflow_runs_open_idx ON workflow_runs (tenant_id, created_at)
    WHERE status IN ('pending', 'running');
-- What the payload retention job clears: finished runs whose payloads remain.
CREATE INDEX workflow_runs_payload_retention_idx ON workflow_runs (tenant_id, finished_at)
    WHERE payloads_purged_at IS NULL AND finished_at IS NOT NULL;

-- An idempotency key names one run of a workflow until it expires; a caller that
-- repeats the key with the same input gets that run back.
CREATE TABLE run_idempotency_keys (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    workflow_id uuid NOT NULL,
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    run_id uuid NOT NULL,
    input_hash bytea NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, workflow_id, key),
    CONSTRAINT run_idempotency_keys_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES workflows (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT run_idempotency_keys_run_fkey FOREIGN KEY (tenant_id, run_id)
        REFERENCES workflow_runs (tenant_id, id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX run_idempotency_keys_run_idx ON run_idempotency_keys (tenant_id, run_id);
CREATE INDEX run_idempotency_keys_expires_idx ON run_idempotency_keys (tenant_id, expires_at);

CREATE TABLE step_runs (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    run_id uuid NOT NULL,
    step_id uuid,
    step_key text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled')),
    attempt integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    input jsonb,
    output jsonb,
    error jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    CONSTRAINT step_runs_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT step_runs_run_step_key UNIQUE (tenant_id, run_id, step_key),
    CONSTRAINT step_runs_run_fkey FOREIGN KEY (tenant_id, run_id)
        REFERENCES workflow_runs (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT step_runs_step_fkey FOREIGN KEY (tenant_id, step_id)
        REFERENCES workflow_steps (tenant_id, id) ON DELETE SET NULL (step_id)
);
CREATE INDEX step_runs_step_idx ON step_runs (tenant_id, step_id);

-- Closed-period rollups of a workflow's runs, written by the reports job.
CREATE TABLE workflow_reports (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    workflow_id uuid NOT NULL,
    period text NOT NULL CHECK (period IN ('day', 'week', 'month')),
    period_start timestamptz NOT NULL,
    total integer NOT NULL DEFAULT 0,
    succeeded integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0,
    cancelled integer NOT NULL DEFAULT 0,
    avg_duration_ms double precision,
    p95_duration_ms double precision,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, workflow_id, period, period_start),
    CONSTRAINT workflow_reports_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES workflows (tenant_id, id) ON DELETE CASCADE
);

CREATE TRIGGER workflow_runs_updated_at BEFORE UPDATE ON workflow_runs
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER step_runs_updated_at BEFORE UPDATE ON step_runs
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
