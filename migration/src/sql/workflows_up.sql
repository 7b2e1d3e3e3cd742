-- Workflows: clients, workflows, their versions and graphs (steps and transitions),
-- and triggers. Policies and grants are appended by the migration from `rls.rs`.
--
-- Every child row carries tenant_id and points at its parent through a composite
-- foreign key, so no row can reference another tenant's. Transitions reference their
-- endpoints by (tenant_id, version_id, step id): an edge cannot leave its version.

CREATE TABLE clients (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL CONSTRAINT clients_name_length CHECK (length(name) BETWEEN 1 AND 200),
    email text CONSTRAINT clients_email_format CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND length(email) <= 320),
    phone text CHECK (length(phone) <= 64),
    company text CHECK (length(company) <= 200),
    address text CHECK (length(address) <= 1000),
    notes text NOT NULL DEFAULT '' CHECK (length(notes) <= 10000),
    is_active boolean NOT NULL DEFAULT true,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT clients_tenant_id_id_key UNIQUE (tenant_id, id)
);
CREATE INDEX clients_tenant_created_idx ON clients (tenant_id, created_at, id);
CREATE INDEX clients_created_by_idx ON clients (created_by);

CREATE TABLE workflows (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key text NOT NULL CONSTRAINT workflows_key_format CHECK (key ~ '^[a-z][a-z0-9_-]{1,62}$'),
    name text NOT NULL CONSTRAINT workflows_name_length CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    status text NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'active', 'inactive', 'archived')),
    client_id uuid,
    active_version_id uuid,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT workflows_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT workflows_client_fkey FOREIGN KEY (tenant_id, client_id)
        REFERENCES clients (tenant_id, id) ON DELETE SET NULL (client_id)
);
CREATE UNIQUE INDEX workflows_tenant_key_key ON workflows (tenant_id, key) WHERE deleted_at IS NULL;
CREATE INDEX workflows_tenant_created_idx ON workflows (tenant_id, created_at, id);
CREATE INDEX workflows_client_idx ON workflows (tenant_id, client_id);
CREATE INDEX workflows_active_version_idx ON workflows (tenant_id, active_version_id);
CREATE INDEX workflows_created_by_idx ON workflows (created_by);

CREATE TABLE workflow_versions (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    workflow_id uuid NOT NULL,
    number integer NOT NULL CHECK (number >= 1),
    spec text NOT NULL DEFAULT '' CHECK (length(spec) <= 200000),
    status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published', 'archived')),
    published_at timestamptz,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_versions_number_key UNIQUE (tenant_id, workflow_id, number),
    CONSTRAINT workflow_versions_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT workflow_versions_published_at CHECK ((status = 'draft') = (published_at IS NULL)),
    CONSTRAINT workflow_versions_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES workflows (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX workflow_versions_created_by_idx ON workflow_versions (created_by);

-- The version a workflow runs: one of its own, published.
ALTER TABLE workflows ADD CONSTRAINT workflows_active_version_fkey
    FOREIGN KEY (tenant_id, active_version_id)
    REFERENCES workflow_versions (tenant_id, id) ON DELETE SET NULL (active_version_id);

CREATE TABLE workflow_steps (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version_id uuid NOT NULL,
    key text NOT NULL CHECK (key ~ '^[A-Za-z][A-Za-z0-9_-]{0,63}$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    type text NOT NULL CHECK (type IN ('action', 'condition', 'approval', 'notification', 'delay', 'http', 'agent', 'code', 'transform')),
    position jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(position) = 'object'),
    config jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    action_id uuid REFERENCES actions (id),
    connection_id uuid,
    is_required boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_steps_version_key_key UNIQUE (tenant_id, version_id, key),
    CONSTRAINT workflow_steps_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT workflow_steps_tenant_version_id_key UNIQUE (tenant_id, version_id, id),
    CONSTRAINT workflow_steps_version_fkey FOREIGN KEY (tenant_id, version_id)
        REFERENCES workflow_versions (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT workflow_steps_connection_fkey FOREIGN KEY (tenant_id, connection_id)
        REFERENCES connections (tenant_id, id)
);
CREATE INDEX workflow_steps_action_idx ON workflow_steps (action_id);
CREATE INDEX workflow_steps_connection_idx ON workflow_steps (tenant_id, connection_id);

CREATE TABLE workflow_transitions (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version_id uuid NOT NULL,
    key text NOT NULL CHECK (key ~ '^[A-Za-z0-9][A-Za-z0-9_>.-]{0,160}$'),
    from_step_id uuid NOT NULL,
    to_step_id uuid NOT NULL,
    condition jsonb,
    is_default boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_transitions_version_key_key UNIQUE (tenant_id, version_id, key),
    CONSTRAINT workflow_transitions_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT workflow_transitions_no_self_loop CHECK (from_step_id <> to_step_id),
    CONSTRAINT workflow_transitions_version_fkey FOREIGN KEY (tenant_id, version_id)
        REFERENCES workflow_versions (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT workflow_transitions_from_fkey FOREIGN KEY (tenant_id, version_id, from_step_id)
        REFERENCES workflow_steps (tenant_id, version_id, id) ON DELETE CASCADE,
    CONSTRAINT workflow_transitions_to_fkey FOREIGN KEY (tenant_id, version_id, to_step_id)
        REFERENCES workflow_steps (tenant_id, version_id, id) ON DELETE CASCADE
);
-- At most one default transition leaves a step.
CREATE UNIQUE INDEX workflow_transitions_one_default_key
    ON workflow_transitions (tenant_id, from_step_id) WHERE is_default;
CREATE INDEX workflow_transitions_from_idx ON workflow_transitions (tenant_id, version_id, from_step_id);
CREATE INDEX workflow_transitions_to_idx ON workflow_transitions (tenant_id, version_id, to_step_id);

-- A step's action is public or the step's tenant's own, and a trigger-kind action
-- cannot be a step. The look-up runs as the writer, so row-level security hides other
-- tenants' actions as if they did not exist.
CREATE FUNCTION app.check_step_action() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF NEW.action_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM actions a
        WHERE a.id = NEW.action_id AND a.kind = 'action'
          AND (a.tenant_id IS NULL OR a.tenant_id = NEW.tenant_id)
    ) THEN
        RAISE EXCEPTION 'no such action for this tenant'
            USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'workflow_steps_action_tenant_fkey';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER workflow_steps_action BEFORE INSERT OR UPDATE OF action_id, tenant_id
    ON workflow_steps FOR EACH ROW EXECUTE FUNCTION app.check_step_action();

-- Only drafts change. A published version may only be archived (its graph never
-- changes); the graph of a version that is not a draft cannot be written. A cascade
-- from a deleted version finds no version row and passes.
CREATE FUNCTION app.workflow_versions_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF OLD.status = 'draft' THEN
        RETURN NEW;
    END IF;
    IF OLD.status = 'published' AND NEW.status = 'archived'
       AND (NEW.spec, NEW.number, NEW.workflow_id, NEW.tenant_id, NEW.published_at)
           IS NOT DISTINCT FROM (OLD.spec, OLD.number, OLD.workflow_id, OLD.tenant_id, OLD.published_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'a published workflow version cannot change'
        USING ERRCODE = 'integrity_constraint_violation', TABLE = TG_TABLE_NAME,
              CONSTRAINT = 'workflow_versions_published_immutable';
END
$$;
CREATE TRIGGER workflow_versions_immutable BEFORE UPDATE ON workflow_versions
    FOR EACH ROW EXECUTE FUNCTION app.workflow_versions_immutable();

CREATE FUNCTION app.workflow_graph_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM workflow_versions v
        WHERE v.status <> 'draft'
          AND v.id IN (CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.version_id END,
                       CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.version_id END)
    ) THEN
        RAISE EXCEPTION 'the graph of a published workflow version cannot change'
            USING ERRCODE = 'integrity_constraint_violation', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'workflow_versions_published_immutable';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER workflow_steps_immutable BEFORE INSERT OR UPDATE OR DELETE ON workflow_steps
    FOR EACH ROW EXECUTE FUNCTION app.workflow_graph_immutable();
CREATE TRIGGER workflow_transitions_immutable BEFORE INSERT OR UPDATE OR DELETE ON workflow_transitions
    FOR EACH ROW EXECUTE FUNCTION app.workflow_graph_immutable();

-- A workflow's active version is published.
CREATE FUNCTION app.check_active_version() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF NEW.active_version_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM workflow_versions v
        WHERE v.id = NEW.active_version_id AND v.workflow_id = NEW.id AND v.status = 'published'
    ) THEN
        RAISE EXCEPTION 'the active version must be a published version of this workflow'
            USING ERRCODE = 'check_violation', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'workflows_active_version_published';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER workflows_active_version BEFORE INSERT OR UPDATE OF active_version_id
    ON workflows FOR EACH ROW EXECUTE FUNCTION app.check_active_version();

CREATE TABLE triggers (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key text NOT NULL CONSTRAINT triggers_key_format CHECK (key ~ '^[a-z][a-z0-9_-]{1,62}$'),
    workflow_id uuid NOT NULL,
    type text NOT NULL CHECK (type IN ('manual', 'schedule', 'webhook', 'event')),
    config jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    is_active boolean NOT NULL DEFAULT true,
    -- Webhooks: the unguessable public path id and the signing secrets. The previous
    -- secret stays valid until previous_secret_expires_at.
    webhook_path text CONSTRAINT triggers_webhook_path_format CHECK (webhook_path ~ '^[A-Za-z0-9_-]{32,64}$'),
    signing_secret_id uuid,
    previous_signing_secret_id uuid,
    previous_secret_expires_at timestamptz,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT triggers_tenant_key_key UNIQUE (tenant_id, key),
    CONSTRAINT triggers_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT triggers_webhook_shape CHECK (
        (type = 'webhook') = (webhook_path IS NOT NULL AND signing_secret_id IS NOT NULL)),
    CONSTRAINT triggers_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES workflows (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT triggers_signing_secret_fkey FOREIGN KEY (tenant_id, signing_secret_id)
        REFERENCES secrets (tenant_id, id) ON DELETE RESTRICT,
    CONSTRAINT triggers_previous_secret_fkey FOREIGN KEY (tenant_id, previous_signing_secret_id)
        REFERENCES secrets (tenant_id, id) ON DELETE RESTRICT
);
-- Webhook paths are looked up before the tenant is known; unique across tenants and
-- leading with tenant_id for the doctor, the look-up goes through a narrow function.
CREATE UNIQUE INDEX triggers_webhook_path_key ON triggers (webhook_path, tenant_id)
    WHERE webhook_path IS NOT NULL;
CREATE INDEX triggers_workflow_idx ON triggers (tenant_id, workflow_id);
CREATE INDEX triggers_signing_secret_idx ON triggers (tenant_id, signing_secret_id);
CREATE INDEX triggers_previous_secret_idx ON triggers (tenant_id, previous_signing_secret_id);
CREATE INDEX triggers_created_by_idx ON triggers (created_by);

CREATE TRIGGER clients_updated_at BEFORE UPDATE ON clients
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER workflows_updated_at BEFORE UPDATE ON workflows
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER workflow_versions_updated_at BEFORE UPDATE ON workflow_versions
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER workflow_steps_updated_at BEFORE UPDATE ON workflow_steps
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER workflow_transitions_updated_at BEFORE UPDATE ON workflow_transitions
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER triggers_updated_at BEFORE UPDATE ON triggers
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

-- The trigger behind a public webhook path, looked up before the tenant is known.
-- Returns only what the intake needs to open the tenant's transaction.
CREATE FUNCTION app.webhook_target(path text) RETURNS TABLE (tenant_id uuid, trigger_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT t.tenant_id, t.id FROM triggers t WHERE t.webhook_path = path
$$;
REVOKE ALL ON FUNCTION app.webhook_target(text) FROM PUBLIC;
