-- Processes: prompt logic served as versioned APIs. Processes and their versions, the
-- version current in each environment and the history of promotions, the call log, the
-- response cache and hourly usage rollups. Policies and grants are appended by the
-- migration from `rls.rs`.
--
-- Every child row carries tenant_id and points at its parent through a composite
-- foreign key, so no row can reference another tenant's.

-- API keys may carry the `invoke` scope (invoke processes, nothing else), and be held
-- to one environment and to a list of process keys.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scopes_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_check
    CHECK (scopes <@ ARRAY['read', 'write', 'admin', 'runner', 'invoke']::text[] AND cardinality(scopes) > 0);
ALTER TABLE api_keys
    ADD COLUMN process_environment text CHECK (process_environment IN ('sandbox', 'production')),
    ADD COLUMN process_keys text[] CHECK (cardinality(process_keys) BETWEEN 1 AND 100);

CREATE TABLE processes (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key text NOT NULL CONSTRAINT processes_key_format CHECK (key ~ '^[a-z][a-z0-9_-]{1,62}$'),
    name text NOT NULL CONSTRAINT processes_name_length CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    input_schema jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(input_schema) = 'object'),
    output_schema jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(output_schema) = 'object'),
    config jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT processes_tenant_id_id_key UNIQUE (tenant_id, id)
);
-- The key is free again while its process is deleted.
CREATE UNIQUE INDEX processes_tenant_key_key ON processes (tenant_id, key) WHERE deleted_at IS NULL;
CREATE INDEX processes_tenant_created_idx ON processes (tenant_id, created_at, id);
CREATE INDEX processes_created_by_idx ON processes (created_by);

CREATE TABLE process_versions (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    process_id uuid NOT NULL,
    number integer NOT NULL CHECK (number >= 1),
    -- The furthest environment the version has reached: SANDBOX until it is first
    -- promoted to PRODUCTION.
    environment text NOT NULL DEFAULT 'sandbox' CHECK (environment IN ('sandbox', 'production')),
    system_prompt text NOT NULL DEFAULT '' CHECK (length(system_prompt) <= 100000),
    user_prompt text NOT NULL CHECK (length(user_prompt) BETWEEN 1 AND 100000),
    provider text NOT NULL CHECK (provider IN ('template', 'openai_compatible')),
    connection_id uuid,
    model text NOT NULL DEFAULT '' CHECK (length(model) <= 200),
    temperature double precision CHECK (temperature BETWEEN 0 AND 2),
    max_tokens integer CHECK (max_tokens BETWEEN 1 AND 1000000),
    response_format text NOT NULL DEFAULT 'text' CHECK (response_format IN ('text', 'json')),
    timeout_ms integer NOT NULL DEFAULT 30000 CHECK (timeout_ms BETWEEN 100 AND 300000),
    max_attempts integer NOT NULL DEFAULT 2 CHECK (max_attempts BETWEEN 1 AND 5),
    retry_backoff_ms integer NOT NULL DEFAULT 500 CHECK (retry_backoff_ms BETWEEN 0 AND 60000),
    cache_ttl_seconds integer NOT NULL DEFAULT 86400 CHECK (cache_ttl_seconds BETWEEN 0 AND 2592000),
    -- USD per million tokens, for the cost of a call.
    input_price_per_mtok double precision NOT NULL DEFAULT 0 CHECK (input_price_per_mtok BETWEEN 0 AND 100000),
    output_price_per_mtok double precision NOT NULL DEFAULT 0 CHECK (output_price_per_mtok BETWEEN 0 AND 100000),
    notes text NOT NULL DEFAULT '' CHECK (length(notes) <= 4000),
    published_at timestamptz,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT process_versions_number_key UNIQUE (tenant_id, process_id, number),
    CONSTRAINT process_versions_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT process_versions_process_id_key UNIQUE (tenant_id, process_id, id),
    CONSTRAINT process_versions_model_connection CHECK (
        provider = 'template' OR (connection_id IS NOT NULL AND model <> '')),
    CONSTRAINT process_versions_production_published CHECK (
        environment = 'sandbox' OR published_at IS NOT NULL),
    CONSTRAINT process_versions_process_fkey FOREIGN KEY (tenant_id, process_id)
        REFERENCES processes (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT process_versions_connection_fkey FOREIGN KEY (tenant_id, connection_id)
        REFERENCES connections (tenant_id, id)
);
CREATE INDEX process_versions_connection_idx ON process_versions (tenant_id, connection_id);
CREATE INDEX process_versions_created_by_idx ON process_versions (created_by);

-- A published version never changes, except that promotion moves its environment
-- from SANDBOX to PRODUCTION; it is never deleted. A cascade from a deleted process
-- finds no process row and passes.
CREATE FUNCTION app.process_versions_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.published_at IS NULL THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF OLD.published_at IS NULL OR NOT EXISTS (
            SELECT 1 FROM processes p WHERE p.tenant_id = OLD.tenant_id AND p.id = OLD.process_id
        ) THEN
            RETURN OLD;
        END IF;
    ELSIF (to_jsonb(NEW) - 'environment' - 'updated_at')
              IS NOT DISTINCT FROM (to_jsonb(OLD) - 'environment' - 'updated_at')
          AND (OLD.environment = NEW.environment OR NEW.environment = 'production') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'a published process version cannot change'
        USING ERRCODE = 'integrity_constraint_violation', TABLE = TG_TABLE_NAME,
              CONSTRAINT = 'process_versions_published_immutable';
END
$$;
CREATE TRIGGER process_versions_immutable BEFORE UPDATE OR DELETE ON process_versions
    FOR EACH ROW EXECUTE FUNCTION app.process_versions_immutable();

-- The version each environment of a process serves: one row per (process, environment).
CREATE TABLE process_deployments (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    process_id uuid NOT NULL,
    environment text NOT NULL CHECK (environment IN ('sandbox', 'production')),
    version_id uuid NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, process_id, environment),
    CONSTRAINT process_deployments_process_fkey FOREIGN KEY (tenant_id, process_id)
        REFERENCES processes (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT process_deployments_version_fkey FOREIGN KEY (tenant_id, process_id, version_id)
        REFERENCES process_versions (tenant_id, process_id, id) ON DELETE CASCADE
);
CREATE INDEX process_deployments_version_idx ON process_deployments (tenant_id, process_id, version_id);

-- Only published versions are served, and PRODUCTION serves only versions promoted to it.
CREATE FUNCTION app.check_process_deployment() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM process_versions v
        WHERE v.tenant_id = NEW.tenant_id AND v.id = NEW.version_id
          AND v.published_at IS NOT NULL
          AND (NEW.environment = 'sandbox' OR v.environment = 'production')
    ) THEN
        RAISE EXCEPTION 'an environment serves only a published version promoted to it'
            USING ERRCODE = 'check_violation', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'process_deployments_version_published';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER process_deployments_version BEFORE INSERT OR UPDATE ON process_deployments
    FOR EACH ROW EXECUTE FUNCTION app.check_process_deployment();

-- Every move of a version into an environment: who, when, from which version to which.
CREATE TABLE process_promotions (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    process_id uuid NOT NULL,
    environment text NOT NULL CHECK (environment IN ('sandbox', 'production')),
    from_version_id uuid,
    to_version_id uuid NOT NULL,
    promoted_by uuid REFERENCES users (id) ON DELETE SET NULL,
    promoted_by_key uuid,
    -- When the move happened (not when its transaction began): concurrent promotions
    -- queue on their process's lock, and history reads in the order they moved.
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT process_promotions_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT process_promotions_process_fkey FOREIGN KEY (tenant_id, process_id)
        REFERENCES processes (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT process_promotions_from_fkey FOREIGN KEY (tenant_id, process_id, from_version_id)
        REFERENCES process_versions (tenant_id, process_id, id) ON DELETE CASCADE,
    CONSTRAINT process_promotions_to_fkey FOREIGN KEY (tenant_id, process_id, to_version_id)
        REFERENCES process_versions (tenant_id, process_id, id) ON DELETE CASCADE,
    CONSTRAINT process_promotions_key_fkey FOREIGN KEY (tenant_id, promoted_by_key)
        REFERENCES api_keys (tenant_id, id) ON DELETE SET NULL (promoted_by_key)
);
CREATE INDEX process_promotions_process_idx ON process_promotions (tenant_id, process_id, created_at DESC, id DESC);
CREATE INDEX process_promotions_from_idx ON process_promotions (tenant_id, process_id, from_version_id);
CREATE INDEX process_promotions_to_idx ON process_promotions (tenant_id, process_id, to_version_id);
CREATE INDEX process_promotions_key_idx ON process_promotions (tenant_id, promoted_by_key);
CREATE INDEX process_promotions_promoted_by_idx ON process_promotions (promoted_by);

-- Every invocation. Payloads (input, output) are kept until payload_expires_at (the
-- tenant's payload retention, fixed when the call is logged); the rest much longer.
CREATE TABLE call_logs (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    process_id uuid NOT NULL,
    version_id uuid,
    environment text NOT NULL CHECK (environment IN ('sandbox', 'production')),
    api_key_id uuid,
    user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    input_hash bytea NOT NULL CHECK (length(input_hash) = 32),
    status text NOT NULL CHECK (status IN ('succeeded', 'failed', 'rate_limited', 'invalid_input')),
    cache_hit boolean NOT NULL DEFAULT false,
    latency_ms integer NOT NULL CHECK (latency_ms >= 0),
    provider_latency_ms integer CHECK (provider_latency_ms >= 0),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    input_tokens integer NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens integer NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cost_nanos bigint NOT NULL DEFAULT 0 CHECK (cost_nanos >= 0),
    error_code text CHECK (length(error_code) <= 64),
    error_message text CHECK (length(error_message) <= 1000),
    input jsonb,
    output jsonb,
    payload_expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT call_logs_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT call_logs_process_fkey FOREIGN KEY (tenant_id, process_id)
        REFERENCES processes (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT call_logs_version_fkey FOREIGN KEY (tenant_id, process_id, version_id)
        REFERENCES process_versions (tenant_id, process_id, id) ON DELETE CASCADE,
    CONSTRAINT call_logs_key_fkey FOREIGN KEY (tenant_id, api_key_id)
        REFERENCES api_keys (tenant_id, id) ON DELETE SET NULL (api_key_id)
);
CREATE INDEX call_logs_tenant_created_idx ON call_logs (tenant_id, created_at DESC, id DESC);
CREATE INDEX call_logs_process_created_idx ON call_logs (tenant_id, process_id, created_at DESC, id DESC);
CREATE INDEX call_logs_version_idx ON call_logs (tenant_id, process_id, version_id);
CREATE INDEX call_logs_key_idx ON call_logs (tenant_id, api_key_id);
CREATE INDEX call_logs_user_idx ON call_logs (user_id);
CREATE INDEX call_logs_payload_expiry_idx ON call_logs (tenant_id, payload_expires_at)
    WHERE input IS NOT NULL OR output IS NOT NULL;

-- Answers of published versions, keyed by the SHA-256 of the canonical input and of
-- the model settings. A PENDING row is a miss some caller is answering now: identical
-- misses wait for it instead of calling the provider again (until lease_until).
CREATE TABLE response_cache (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version_id uuid NOT NULL,
    input_hash bytea NOT NULL CHECK (length(input_hash) = 32),
    settings_hash bytea NOT NULL CHECK (length(settings_hash) = 32),
    state text NOT NULL CHECK (state IN ('pending', 'ready')),
    output jsonb,
    input_tokens integer NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens integer NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    lease_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, version_id, input_hash, settings_hash),
    CONSTRAINT response_cache_shape CHECK (
        (state = 'ready') = (output IS NOT NULL) AND (state = 'pending') = (lease_until IS NOT NULL)),
    CONSTRAINT response_cache_version_fkey FOREIGN KEY (tenant_id, version_id)
        REFERENCES process_versions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX response_cache_expiry_idx ON response_cache (tenant_id, expires_at);

-- Per process, environment, caller (an API key, or NULL for people), hour and shard:
-- what `process.usage` and `tenant.usage` read (summing the shards). Each call adds to
-- one of 8 shards, so concurrent calls of one caller do not queue on one row's lock.
-- latency_buckets counts calls by total latency (bounds in crates/core/src/processes/calls.rs).
CREATE TABLE process_usage_hourly (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    process_id uuid NOT NULL,
    environment text NOT NULL CHECK (environment IN ('sandbox', 'production')),
    api_key_id uuid,
    hour timestamptz NOT NULL CHECK (date_trunc('hour', hour) = hour),
    shard smallint NOT NULL DEFAULT 0 CHECK (shard BETWEEN 0 AND 7),
    calls bigint NOT NULL DEFAULT 0,
    succeeded bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    rate_limited bigint NOT NULL DEFAULT 0,
    invalid_input bigint NOT NULL DEFAULT 0,
    cache_hits bigint NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cost_nanos bigint NOT NULL DEFAULT 0,
    latency_ms_sum bigint NOT NULL DEFAULT 0,
    latency_buckets bigint[] NOT NULL DEFAULT array_fill(0::bigint, ARRAY[16]),
    CONSTRAINT process_usage_hourly_key UNIQUE NULLS NOT DISTINCT
        (tenant_id, process_id, environment, api_key_id, hour, shard),
    CONSTRAINT process_usage_hourly_process_fkey FOREIGN KEY (tenant_id, process_id)
        REFERENCES processes (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT process_usage_hourly_key_fkey FOREIGN KEY (tenant_id, api_key_id)
        REFERENCES api_keys (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX process_usage_hourly_tenant_hour_idx ON process_usage_hourly (tenant_id, hour);
CREATE INDEX process_usage_hourly_key_idx ON process_usage_hourly (tenant_id, api_key_id, hour);

CREATE TRIGGER processes_updated_at BEFORE UPDATE ON processes
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER process_versions_updated_at BEFORE UPDATE ON process_versions
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
