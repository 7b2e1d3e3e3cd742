-- Hosting (issue 18 §4/§5): agent channels, the activity feed, container health (raw
-- samples and hourly aggregates), and plans as data. Policies and grants are appended
-- by the migration from `rls.rs`.
--
-- Every tenant row carries tenant_id and points at its parents through composite
-- foreign keys, so no row can reference another tenant's agent, connection or key.

-- Plans: platform-level rows with their limits. `limits` holds only the keys Trellis
-- knows, each a whole number from 0; a key that is absent means "no limit".
CREATE FUNCTION app.is_plan_limits(limits jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
    SELECT jsonb_typeof(limits) = 'object'
       AND NOT EXISTS (
           SELECT 1 FROM jsonb_each(limits) l
           WHERE l.key NOT IN ('agents', 'monthlyRuns', 'maxConcurrentRuns',
                               'logRetentionDays', 'auditRetentionDays')
              OR jsonb_typeof(l.value) <> 'number'
              OR (l.value #>> '{}') !~ '^[0-9]{1,9}$')
$$;

CREATE TABLE plans (
    key text PRIMARY KEY CONSTRAINT plans_key_format CHECK (key ~ '^[a-z][a-z0-9_-]{1,31}$'),
    name text NOT NULL CONSTRAINT plans_name_length CHECK (length(name) BETWEEN 1 AND 100),
    limits jsonb NOT NULL DEFAULT '{}' CONSTRAINT plans_limits_shape CHECK (app.is_plan_limits(limits)),
    -- The order plans are listed in (cheapest first).
    position integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER plans_updated_at BEFORE UPDATE ON plans
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

-- Today's plans keep the limits the code held (log retention 7/30/90 days, concurrent
-- runs 5/25/100); seed 002's starter, growth and enterprise join them.
INSERT INTO plans (key, name, position, limits) VALUES
    ('free', 'Free', 0, '{"agents": 25, "monthlyRuns": 1000, "maxConcurrentRuns": 5, "logRetentionDays": 7, "auditRetentionDays": 30}'),
    ('starter', 'Starter', 1, '{"agents": 50, "monthlyRuns": 5000, "maxConcurrentRuns": 10, "logRetentionDays": 14, "auditRetentionDays": 90}'),
    ('pro', 'Pro', 2, '{"agents": 100, "monthlyRuns": 50000, "maxConcurrentRuns": 25, "logRetentionDays": 30, "auditRetentionDays": 180}'),
    ('growth', 'Growth', 3, '{"agents": 250, "monthlyRuns": 200000, "maxConcurrentRuns": 50, "logRetentionDays": 60, "auditRetentionDays": 365}'),
    ('enterprise', 'Enterprise', 4, '{"maxConcurrentRuns": 100, "logRetentionDays": 90, "auditRetentionDays": 400}');

-- A tenant's plan is a plan's key (the CHECK of three values goes).
ALTER TABLE tenants DROP CONSTRAINT tenants_plan_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_plan_fkey FOREIGN KEY (plan) REFERENCES plans (key);
CREATE INDEX tenants_plan_idx ON tenants (plan);

-- Channels an agent speaks through. Secrets (a Slack token, an SMTP password, a
-- webhook signing key) live in the referenced connection, never in config: the
-- config holds only the keys of its type (CHECK below, and `trellis-core` names the
-- bad field first).
CREATE FUNCTION app.is_channel_config(channel_type text, config jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
    SELECT jsonb_typeof(config) = 'object'
       AND NOT EXISTS (
           SELECT 1 FROM jsonb_object_keys(config) k
           WHERE k <> ALL (CASE channel_type
               WHEN 'slack' THEN ARRAY['channel']
               WHEN 'email' THEN ARRAY['to', 'subjectPrefix']
               WHEN 'webhook' THEN ARRAY['url']
               ELSE ARRAY[]::text[] END))
$$;

CREATE TABLE agent_channels (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id uuid NOT NULL,
    type text NOT NULL CHECK (type IN ('slack', 'email', 'webhook')),
    config jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT agent_channels_config_shape CHECK (app.is_channel_config(type, config)),
    -- The credentials: a connection of the same tenant.
    connection_id uuid,
    is_active boolean NOT NULL DEFAULT true,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT agent_channels_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT agent_channels_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT agent_channels_connection_fkey FOREIGN KEY (tenant_id, connection_id)
        REFERENCES connections (tenant_id, id)
);
-- One active channel per type per agent.
CREATE UNIQUE INDEX agent_channels_one_active_key ON agent_channels (tenant_id, agent_id, type)
    WHERE is_active;
CREATE INDEX agent_channels_agent_idx ON agent_channels (tenant_id, agent_id, created_at, id);
CREATE INDEX agent_channels_connection_idx ON agent_channels (tenant_id, connection_id);
CREATE INDEX agent_channels_created_by_idx ON agent_channels (created_by);
CREATE TRIGGER agent_channels_updated_at BEFORE UPDATE ON agent_channels
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

-- What an agent did or said: written by runs and by runners (`recordAgentActivity`).
-- Append-only for the application.
CREATE TABLE agent_activities (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id uuid NOT NULL,
    type text NOT NULL CHECK (type IN ('message', 'task', 'alert')),
    summary text NOT NULL CONSTRAINT agent_activities_summary_length
        CHECK (length(summary) BETWEEN 1 AND 1000),
    details jsonb NOT NULL DEFAULT '{}' CONSTRAINT agent_activities_details_shape
        CHECK (jsonb_typeof(details) = 'object' AND pg_column_size(details) <= 65536),
    -- The run it happened in, when a run wrote it.
    run_id uuid,
    recorded_by uuid REFERENCES users (id) ON DELETE SET NULL,
    recorded_by_key uuid,
    -- When it happened (the moment of the insert, not of its transaction's start), so
    -- the feed reads in the order things happened.
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT agent_activities_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT agent_activities_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT agent_activities_run_fkey FOREIGN KEY (tenant_id, run_id)
        REFERENCES workflow_runs (tenant_id, id) ON DELETE SET NULL (run_id),
    CONSTRAINT agent_activities_key_fkey FOREIGN KEY (tenant_id, recorded_by_key)
        REFERENCES api_keys (tenant_id, id) ON DELETE SET NULL (recorded_by_key)
);
CREATE INDEX agent_activities_agent_idx
    ON agent_activities (tenant_id, agent_id, created_at DESC, id DESC);
CREATE INDEX agent_activities_agent_type_idx
    ON agent_activities (tenant_id, agent_id, type, created_at DESC, id DESC);
CREATE INDEX agent_activities_run_idx ON agent_activities (tenant_id, run_id);
CREATE INDEX agent_activities_key_idx ON agent_activities (tenant_id, recorded_by_key);
CREATE INDEX agent_activities_recorded_by_idx ON agent_activities (recorded_by);

-- Container health samples as runners report them; kept 24 hours, after the hourly
-- aggregation below has counted them.
CREATE TABLE container_health (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The agent the container hosts, when known.
    agent_id uuid,
    status text NOT NULL CHECK (status IN ('healthy', 'degraded', 'unhealthy')),
    -- CPU in percent of one core (a busy 4-core container reports up to 400).
    cpu double precision NOT NULL CHECK (cpu >= 0 AND cpu <= 100000),
    memory_bytes bigint NOT NULL CHECK (memory_bytes >= 0),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    reported_by_key uuid,
    -- Set when the hourly aggregation counted the sample.
    aggregated_at timestamptz,
    CONSTRAINT container_health_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT container_health_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT container_health_key_fkey FOREIGN KEY (tenant_id, reported_by_key)
        REFERENCES api_keys (tenant_id, id) ON DELETE SET NULL (reported_by_key)
);
CREATE INDEX container_health_recorded_idx ON container_health (tenant_id, recorded_at);
CREATE INDEX container_health_agent_idx ON container_health (tenant_id, agent_id, recorded_at DESC);
CREATE INDEX container_health_pending_idx ON container_health (tenant_id, recorded_at)
    WHERE aggregated_at IS NULL;
CREATE INDEX container_health_key_idx ON container_health (tenant_id, reported_by_key);

-- Hourly aggregates per tenant and agent (agent NULL: the tenant's samples without
-- one), kept 30 days. Sums, not averages, so a late batch adds to its hour.
CREATE TABLE container_health_hourly (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id uuid,
    hour timestamptz NOT NULL CHECK (hour = date_trunc('hour', hour, 'UTC')),
    samples integer NOT NULL CHECK (samples > 0),
    healthy integer NOT NULL CHECK (healthy >= 0),
    degraded integer NOT NULL CHECK (degraded >= 0),
    unhealthy integer NOT NULL CHECK (unhealthy >= 0),
    cpu_sum double precision NOT NULL,
    cpu_max double precision NOT NULL,
    memory_sum numeric NOT NULL,
    memory_max bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT container_health_hourly_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT container_health_hourly_hour_key UNIQUE NULLS NOT DISTINCT (tenant_id, agent_id, hour),
    CONSTRAINT container_health_hourly_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT container_health_hourly_counts CHECK (healthy + degraded + unhealthy = samples)
);
CREATE INDEX container_health_hourly_tenant_hour_idx ON container_health_hourly (tenant_id, hour);
CREATE TRIGGER container_health_hourly_updated_at BEFORE UPDATE ON container_health_hourly
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

-- The tenants with health upkeep due: samples of a closed hour not aggregated yet,
-- samples older than a day, aggregates older than 30 days. Ids only.
CREATE FUNCTION app.tenants_with_health_upkeep(max_tenants integer)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT t.id FROM public.tenants t
    WHERE EXISTS (SELECT 1 FROM public.container_health h
                  WHERE h.tenant_id = t.id AND h.aggregated_at IS NULL
                    AND h.recorded_at < date_trunc('hour', now(), 'UTC'))
       OR EXISTS (SELECT 1 FROM public.container_health h
                  WHERE h.tenant_id = t.id AND h.recorded_at < now() - interval '24 hours')
       OR EXISTS (SELECT 1 FROM public.container_health_hourly a
                  WHERE a.tenant_id = t.id AND a.hour < now() - interval '30 days')
    ORDER BY t.id
    LIMIT max_tenants
$$;
REVOKE ALL ON FUNCTION app.tenants_with_health_upkeep(integer) FROM PUBLIC;
