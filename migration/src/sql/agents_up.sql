-- Agents: agents, their numbered versions (a spec and, optionally, a flow: a published
-- workflow version of the same tenant), labels that point at versions (production,
-- staging, …) and the history of every label move. Policies and grants are appended
-- by the migration from `rls.rs`.
--
-- Every child row carries tenant_id and points at its parent through a composite
-- foreign key, so no row can reference another tenant's.

-- A tool policy: {"tools": {<tool key>: "ALLOW"|"ASK"|"DENY"}, "default": one of them}
-- and nothing else. `trellis-core` checks it first and names the bad field; this keeps
-- a row written any other way to the same shape.
CREATE FUNCTION app.is_tool_policy(policy jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
    SELECT jsonb_typeof(policy) = 'object'
       AND (SELECT count(*) FROM jsonb_object_keys(policy) k WHERE k NOT IN ('tools', 'default')) = 0
       AND policy->>'default' IN ('ALLOW', 'ASK', 'DENY')
       AND jsonb_typeof(policy->'tools') = 'object'
       AND NOT EXISTS (
           SELECT 1 FROM jsonb_each(policy->'tools') t
           WHERE jsonb_typeof(t.value) <> 'string' OR t.value #>> '{}' NOT IN ('ALLOW', 'ASK', 'DENY'))
$$;

CREATE TABLE agents (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    slug text NOT NULL CONSTRAINT agents_slug_format CHECK (slug ~ '^[a-z][a-z0-9_-]{1,62}$'),
    name text NOT NULL CONSTRAINT agents_name_length CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    role text NOT NULL DEFAULT 'custom'
        CHECK (role IN ('pm', 'engineering', 'operations', 'custom')),
    status text NOT NULL DEFAULT 'idle'
        CHECK (status IN ('active', 'idle', 'error', 'paused', 'provisioning')),
    model_tier text NOT NULL DEFAULT 'sonnet' CHECK (model_tier IN ('haiku', 'sonnet', 'opus')),
    thinking_mode text NOT NULL DEFAULT 'off' CHECK (thinking_mode IN ('off', 'low', 'high')),
    tool_policy jsonb NOT NULL DEFAULT '{"tools": {}, "default": "ASK"}'
        CONSTRAINT agents_tool_policy_shape CHECK (app.is_tool_policy(tool_policy)),
    -- {"monthlyCostLimit": USD, "monthlyTokenLimit": tokens}, either may be absent.
    -- Stored only: runs do not check it yet.
    budget jsonb NOT NULL DEFAULT '{}' CONSTRAINT agents_budget_shape CHECK (
        jsonb_typeof(budget) = 'object'
        AND budget - 'monthlyCostLimit' - 'monthlyTokenLimit' = '{}'
        AND coalesce(jsonb_typeof(budget->'monthlyCostLimit'), 'number') = 'number'
        AND coalesce(jsonb_typeof(budget->'monthlyTokenLimit'), 'number') = 'number'),
    -- The person the agent works for: a member of the same tenant.
    assisted_user_id uuid,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    active_version_id uuid,
    last_active_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT agents_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT agents_assisted_user_fkey FOREIGN KEY (tenant_id, assisted_user_id)
        REFERENCES memberships (tenant_id, user_id) ON DELETE SET NULL (assisted_user_id)
);
-- The slug is free again while its agent is deleted.
CREATE UNIQUE INDEX agents_tenant_slug_key ON agents (tenant_id, slug) WHERE deleted_at IS NULL;
CREATE INDEX agents_tenant_created_idx ON agents (tenant_id, created_at, id);
CREATE INDEX agents_assisted_user_idx ON agents (tenant_id, assisted_user_id);
CREATE INDEX agents_created_by_idx ON agents (created_by);

CREATE TABLE agent_versions (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id uuid NOT NULL,
    number integer NOT NULL CHECK (number >= 1),
    spec_markdown text NOT NULL DEFAULT '' CHECK (length(spec_markdown) <= 200000),
    -- Checked against the published JSON Schema (docs/agents.md) by `trellis-core`.
    spec jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(spec) = 'object'),
    -- The agent's flow graph: a workflow version of the same tenant, published before
    -- this version may become active.
    flow_version_id uuid,
    status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'archived')),
    activated_at timestamptz,
    archived_at timestamptz,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT agent_versions_number_key UNIQUE (tenant_id, agent_id, number),
    CONSTRAINT agent_versions_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT agent_versions_agent_id_key UNIQUE (tenant_id, agent_id, id),
    CONSTRAINT agent_versions_activated CHECK (status <> 'active' OR activated_at IS NOT NULL),
    CONSTRAINT agent_versions_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT agent_versions_flow_fkey FOREIGN KEY (tenant_id, flow_version_id)
        REFERENCES workflow_versions (tenant_id, id)
);
-- At most one active version per agent.
CREATE UNIQUE INDEX agent_versions_one_active_key ON agent_versions (tenant_id, agent_id)
    WHERE status = 'active';
CREATE INDEX agent_versions_flow_idx ON agent_versions (tenant_id, flow_version_id);
CREATE INDEX agent_versions_created_by_idx ON agent_versions (created_by);

-- The version an agent runs: one of its own (the trigger below: an active one).
ALTER TABLE agents ADD CONSTRAINT agents_active_version_fkey
    FOREIGN KEY (tenant_id, id, active_version_id)
    REFERENCES agent_versions (tenant_id, agent_id, id) ON DELETE SET NULL (active_version_id);
CREATE INDEX agents_active_version_idx ON agents (tenant_id, id, active_version_id);

-- Only drafts change. A version that is not a draft keeps its content for ever; only
-- its status moves (active ⇄ archived) with the matching timestamps. A version is
-- never deleted by the application role (no privilege); an agent's rows go with its
-- tenant.
CREATE FUNCTION app.agent_versions_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF OLD.status = 'draft' THEN
        RETURN NEW;
    END IF;
    IF NEW.status <> 'draft'
       AND (to_jsonb(NEW) - 'status' - 'activated_at' - 'archived_at' - 'updated_at')
           IS NOT DISTINCT FROM (to_jsonb(OLD) - 'status' - 'activated_at' - 'archived_at' - 'updated_at') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'an agent version that is not a draft cannot change'
        USING ERRCODE = 'integrity_constraint_violation', TABLE = TG_TABLE_NAME,
              CONSTRAINT = 'agent_versions_active_immutable';
END
$$;
CREATE TRIGGER agent_versions_immutable BEFORE UPDATE ON agent_versions
    FOR EACH ROW EXECUTE FUNCTION app.agent_versions_immutable();

-- A version that is not a draft runs a flow that cannot change either: a published
-- (or archived) workflow version. The look-up runs as the writer, under RLS.
CREATE FUNCTION app.check_agent_version_flow() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF NEW.status <> 'draft' AND NEW.flow_version_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM workflow_versions w
        WHERE w.tenant_id = NEW.tenant_id AND w.id = NEW.flow_version_id AND w.status <> 'draft'
    ) THEN
        RAISE EXCEPTION 'the flow of an active agent version must be a published workflow version'
            USING ERRCODE = 'check_violation', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'agent_versions_flow_published';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER agent_versions_flow BEFORE INSERT OR UPDATE ON agent_versions
    FOR EACH ROW EXECUTE FUNCTION app.check_agent_version_flow();

-- An agent's active version is active.
CREATE FUNCTION app.check_agent_active_version() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF NEW.active_version_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM agent_versions v
        WHERE v.tenant_id = NEW.tenant_id AND v.agent_id = NEW.id
          AND v.id = NEW.active_version_id AND v.status = 'active'
    ) THEN
        RAISE EXCEPTION 'an agent runs only one of its active versions'
            USING ERRCODE = 'check_violation', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'agents_active_version_active';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER agents_active_version BEFORE INSERT OR UPDATE OF active_version_id
    ON agents FOR EACH ROW EXECUTE FUNCTION app.check_agent_active_version();

-- A named pointer at one of the agent's versions (production, staging, …).
CREATE TABLE agent_labels (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id uuid NOT NULL,
    name text NOT NULL CONSTRAINT agent_labels_name_format CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    version_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT agent_labels_name_key UNIQUE (tenant_id, agent_id, name),
    CONSTRAINT agent_labels_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT agent_labels_agent_id_key UNIQUE (tenant_id, agent_id, id),
    CONSTRAINT agent_labels_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT agent_labels_version_fkey FOREIGN KEY (tenant_id, agent_id, version_id)
        REFERENCES agent_versions (tenant_id, agent_id, id)
);
CREATE INDEX agent_labels_version_idx ON agent_labels (tenant_id, agent_id, version_id);

-- Every move of a label: who, when, from which version to which. Append-only.
CREATE TABLE agent_label_moves (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id uuid NOT NULL,
    label_id uuid NOT NULL,
    from_version_id uuid,
    to_version_id uuid NOT NULL,
    moved_by uuid REFERENCES users (id) ON DELETE SET NULL,
    moved_by_key uuid,
    -- When the move happened (not when its transaction began): concurrent moves queue
    -- on their agent's lock, and history reads in the order they moved.
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT agent_label_moves_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT agent_label_moves_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT agent_label_moves_label_fkey FOREIGN KEY (tenant_id, agent_id, label_id)
        REFERENCES agent_labels (tenant_id, agent_id, id) ON DELETE CASCADE,
    CONSTRAINT agent_label_moves_from_fkey FOREIGN KEY (tenant_id, agent_id, from_version_id)
        REFERENCES agent_versions (tenant_id, agent_id, id),
    CONSTRAINT agent_label_moves_to_fkey FOREIGN KEY (tenant_id, agent_id, to_version_id)
        REFERENCES agent_versions (tenant_id, agent_id, id),
    CONSTRAINT agent_label_moves_key_fkey FOREIGN KEY (tenant_id, moved_by_key)
        REFERENCES api_keys (tenant_id, id) ON DELETE SET NULL (moved_by_key)
);
CREATE INDEX agent_label_moves_agent_idx ON agent_label_moves (tenant_id, agent_id, created_at DESC, id DESC);
CREATE INDEX agent_label_moves_label_idx ON agent_label_moves (tenant_id, agent_id, label_id);
CREATE INDEX agent_label_moves_from_idx ON agent_label_moves (tenant_id, agent_id, from_version_id);
CREATE INDEX agent_label_moves_to_idx ON agent_label_moves (tenant_id, agent_id, to_version_id);
CREATE INDEX agent_label_moves_key_idx ON agent_label_moves (tenant_id, moved_by_key);
CREATE INDEX agent_label_moves_moved_by_idx ON agent_label_moves (moved_by);

CREATE TRIGGER agents_updated_at BEFORE UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER agent_versions_updated_at BEFORE UPDATE ON agent_versions
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER agent_labels_updated_at BEFORE UPDATE ON agent_labels
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
