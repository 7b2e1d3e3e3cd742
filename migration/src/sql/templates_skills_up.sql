-- Templates and the skills marketplace. Policies and grants are appended by the
-- migration from `rls.rs`.
--
-- Public rows (tenant_id NULL) are platform-curated, as public apps are: every tenant
-- reads them, only the audited platform-administration path writes them. A tenant's
-- private rows are its own. An installation is always a tenant's.

-- A skill: a packaged capability an agent can be given. `version` is the skill's
-- current version; an installation pins the version it was installed at.
CREATE TABLE skills (
    id uuid PRIMARY KEY,
    tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
    key text NOT NULL CONSTRAINT skills_key_format CHECK (key ~ '^[a-z][a-z0-9_-]{1,62}$'),
    name text NOT NULL CONSTRAINT skills_name_length CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    category text NOT NULL
        CHECK (category IN ('productivity', 'analytics', 'engineering', 'communication')),
    version text NOT NULL CONSTRAINT skills_version_format
        CHECK (version ~ '^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$'),
    -- The agent roles it works for; empty: none can install it.
    compatible_roles text[] NOT NULL DEFAULT '{}' CONSTRAINT skills_roles_known
        CHECK (compatible_roles <@ ARRAY['pm', 'engineering', 'operations', 'custom']),
    -- What it needs to do its work (`email.send`, `repo:read`, …); a tenant's
    -- `allowedSkillPermissions` setting decides which it accepts.
    permissions text[] NOT NULL DEFAULT '{}' CONSTRAINT skills_permissions_format
        CHECK (array_to_string(permissions, ' ') ~ '^([a-z][a-z0-9_.:-]{0,62}( |$))*$'),
    capabilities jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(capabilities) = 'object'),
    -- A JSON Schema every installation's config satisfies (checked by `trellis-core`).
    config_schema jsonb NOT NULL DEFAULT '{"type": "object"}'
        CHECK (jsonb_typeof(config_schema) = 'object'),
    rating double precision CHECK (rating BETWEEN 0 AND 5),
    -- Kept exact by the installation trigger below; the application role cannot write it.
    install_count bigint NOT NULL DEFAULT 0 CHECK (install_count >= 0),
    status text NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'published', 'deprecated', 'removed')),
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT skills_tenant_id_id_key UNIQUE (tenant_id, id)
);
-- Keys are unique within the public marketplace and within each tenant.
CREATE UNIQUE INDEX skills_tenant_key_key ON skills (tenant_id, key) NULLS NOT DISTINCT;
CREATE INDEX skills_tenant_created_idx ON skills (tenant_id, created_at, id);
CREATE INDEX skills_created_by_idx ON skills (created_by);

-- One skill installed on one agent, at the skill's version of the time, with its
-- config. Uninstalling deletes the row.
CREATE TABLE skill_installations (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id uuid NOT NULL,
    -- Public or the installation's tenant's own: the trigger below checks.
    skill_id uuid NOT NULL REFERENCES skills (id),
    skill_version text NOT NULL,
    config jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    installed_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT skill_installations_agent_skill_key UNIQUE (tenant_id, agent_id, skill_id),
    CONSTRAINT skill_installations_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT skill_installations_agent_fkey FOREIGN KEY (tenant_id, agent_id)
        REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX skill_installations_skill_idx ON skill_installations (skill_id, tenant_id);
CREATE INDEX skill_installations_tenant_created_idx
    ON skill_installations (tenant_id, created_at, id);
CREATE INDEX skill_installations_installed_by_idx ON skill_installations (installed_by);

-- An installation's skill is public or its tenant's own, and published when installed.
-- The look-up runs as the writer, under RLS.
CREATE FUNCTION app.check_skill_installation() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM skills s
        WHERE s.id = NEW.skill_id AND (s.tenant_id IS NULL OR s.tenant_id = NEW.tenant_id)
          AND s.status = 'published'
    ) THEN
        RAISE EXCEPTION 'no such published skill for this tenant'
            USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'skill_installations_skill_tenant_fkey';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER skill_installations_skill BEFORE INSERT OR UPDATE ON skill_installations
    FOR EACH ROW EXECUTE FUNCTION app.check_skill_installation();

-- The install count follows the installations, exactly: one atomic UPDATE per
-- installed or removed row, in the installing transaction, under the skill's row lock
-- (concurrent installs queue on it). SECURITY DEFINER because a public skill is not
-- the tenant's to write; it changes `install_count` and nothing else, only by the
-- row that fired it, and PUBLIC cannot call it.
CREATE FUNCTION app.count_skill_installation() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE public.skills SET install_count = install_count + 1 WHERE id = NEW.skill_id;
        RETURN NEW;
    END IF;
    UPDATE public.skills SET install_count = greatest(install_count - 1, 0)
    WHERE id = OLD.skill_id;
    RETURN OLD;
END
$$;
REVOKE ALL ON FUNCTION app.count_skill_installation() FROM PUBLIC;
CREATE TRIGGER skill_installations_count AFTER INSERT OR DELETE ON skill_installations
    FOR EACH ROW EXECUTE FUNCTION app.count_skill_installation();

-- A template: a snapshot of an agent version (its spec, tool policy, model settings
-- and skill installations) that instantiating copies into the caller's tenant as a new
-- agent. The snapshot lives in the row, so a template stays usable whatever happens
-- to its source, and a public template never points into its publisher's tenant.
CREATE TABLE agent_templates (
    id uuid PRIMARY KEY,
    tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
    slug text NOT NULL CONSTRAINT agent_templates_slug_format
        CHECK (slug ~ '^[a-z][a-z0-9_-]{1,62}$'),
    name text NOT NULL CONSTRAINT agent_templates_name_length
        CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    category text NOT NULL
        CHECK (category IN ('trading', 'sales', 'marketing', 'support', 'operations', 'other')),
    author text NOT NULL DEFAULT '' CHECK (length(author) <= 200),
    -- 1 for now: a template is one immutable snapshot. Copies record it.
    version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    -- Where the snapshot came from, for the record only (no foreign key: a public
    -- template's source is in its publisher's tenant, and may go away).
    source_agent_id uuid,
    source_version_id uuid,
    source_version_number integer,
    -- The snapshot.
    role text NOT NULL CHECK (role IN ('pm', 'engineering', 'operations', 'custom')),
    model_tier text NOT NULL CHECK (model_tier IN ('haiku', 'sonnet', 'opus')),
    thinking_mode text NOT NULL CHECK (thinking_mode IN ('off', 'low', 'high')),
    tool_policy jsonb NOT NULL CONSTRAINT agent_templates_tool_policy_shape
        CHECK (app.is_tool_policy(tool_policy)),
    spec_markdown text NOT NULL DEFAULT '' CHECK (length(spec_markdown) <= 200000),
    spec jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(spec) = 'object'),
    -- The source version's flow graph, by step key: {"steps": [{key, name, type,
    -- position, config, actionId, isRequired}], "transitions": [{key, from, to,
    -- condition, isDefault}]}; NULL when it had none. Connections are not kept: they
    -- are the source tenant's.
    flow jsonb CHECK (flow IS NULL OR jsonb_typeof(flow) = 'object'),
    -- [{"skillKey": …, "public": bool, "version": …, "config": {…}}, …]
    skills jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(skills) = 'array'),
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT agent_templates_tenant_id_id_key UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX agent_templates_tenant_slug_key ON agent_templates (tenant_id, slug)
    NULLS NOT DISTINCT WHERE deleted_at IS NULL;
CREATE INDEX agent_templates_tenant_created_idx ON agent_templates (tenant_id, created_at, id);
CREATE INDEX agent_templates_created_by_idx ON agent_templates (created_by);

-- An agent made from a template remembers which, and at which template version. The
-- template may be public (no tenant) or the agent's tenant's own; it may be deleted
-- later, and the agent keeps working.
ALTER TABLE agents ADD COLUMN template_id uuid
    REFERENCES agent_templates (id) ON DELETE SET NULL;
ALTER TABLE agents ADD COLUMN template_version integer;
CREATE INDEX agents_template_idx ON agents (template_id);

CREATE TRIGGER skills_updated_at BEFORE UPDATE ON skills
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER agent_templates_updated_at BEFORE UPDATE ON agent_templates
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
