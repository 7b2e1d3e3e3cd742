-- Integrations: the connector catalog (apps, app versions, actions), tenant data keys,
-- secrets and connections. Policies and grants are appended by the migration from
-- `rls.rs`; the built-in public catalog is inserted by the migration from
-- `catalog/builtin.json`.

-- A catalog row's parent must be visible to the writer and belong to the same tenant
-- (both NULL for the public catalog). A composite foreign key cannot say this for
-- public rows, whose NULL tenant skips the check. The look-up runs as the writer, so
-- row-level security hides other tenants' parents as if they did not exist.
CREATE FUNCTION app.check_catalog_parent() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    parent_table text := TG_ARGV[0];
    parent_column text := TG_ARGV[1];
    parent_id uuid := (to_jsonb(NEW) ->> parent_column)::uuid;
    found boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE id = $1 AND tenant_id IS NOT DISTINCT FROM $2)', parent_table)
        INTO found USING parent_id, NEW.tenant_id;
    IF NOT found THEN
        RAISE EXCEPTION 'no such % for this tenant', parent_table
            USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = TG_TABLE_NAME || '_' || parent_column || '_tenant_fkey';
    END IF;
    RETURN NEW;
END
$$;

-- Published app versions, and their actions, never change, and a published version is
-- never deleted on its own (which would also take its actions with it: the actions'
-- trigger no longer sees a published parent during the cascade). A delete cascading
-- from its app or tenant (trigger depth above 1) is a purge and goes through.
CREATE FUNCTION app.app_versions_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF OLD.published_at IS NOT NULL AND NOT (TG_OP = 'DELETE' AND pg_trigger_depth() > 1) THEN
        RAISE EXCEPTION 'a published app version cannot change'
            USING ERRCODE = 'integrity_constraint_violation', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'app_versions_published_immutable';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE FUNCTION app.actions_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM app_versions v
        WHERE v.published_at IS NOT NULL
          AND v.id IN (CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.app_version_id END,
                       CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.app_version_id END)
    ) THEN
        RAISE EXCEPTION 'the actions of a published app version cannot change'
            USING ERRCODE = 'integrity_constraint_violation', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'app_versions_published_immutable';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TABLE apps (
    id uuid PRIMARY KEY,
    tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
    key text NOT NULL CONSTRAINT apps_key_format CHECK (key ~ '^[a-z][a-z0-9_-]{1,62}$'),
    name text NOT NULL CONSTRAINT apps_name_length CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    category text NOT NULL
        CHECK (category IN ('core', 'communication', 'developer', 'productivity', 'email')),
    icon_url text CHECK (icon_url ~ '^https?://'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT apps_tenant_id_id_key UNIQUE (tenant_id, id)
);
-- Keys are unique within the public catalog and within each tenant.
CREATE UNIQUE INDEX apps_tenant_key_key ON apps (tenant_id, key) NULLS NOT DISTINCT
    WHERE deleted_at IS NULL;
CREATE INDEX apps_tenant_created_idx ON apps (tenant_id, created_at, id);

CREATE TABLE app_versions (
    id uuid PRIMARY KEY,
    tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
    app_id uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    version text NOT NULL CONSTRAINT app_versions_version_format
        CHECK (version ~ '^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$'),
    manifest jsonb NOT NULL CHECK (jsonb_typeof(manifest) = 'object'),
    published_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT app_versions_app_version_key UNIQUE NULLS NOT DISTINCT (tenant_id, app_id, version),
    CONSTRAINT app_versions_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT app_versions_tenant_app_fkey FOREIGN KEY (tenant_id, app_id)
        REFERENCES apps (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX app_versions_tenant_idx ON app_versions (tenant_id);
CREATE INDEX app_versions_app_idx ON app_versions (app_id, created_at, id);

CREATE TABLE actions (
    id uuid PRIMARY KEY,
    tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
    app_version_id uuid NOT NULL REFERENCES app_versions (id) ON DELETE CASCADE,
    key text NOT NULL CONSTRAINT actions_key_format CHECK (key ~ '^[a-zA-Z][a-zA-Z0-9_]{0,63}$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    kind text NOT NULL CHECK (kind IN ('trigger', 'action')),
    input_schema jsonb NOT NULL,
    output_schema jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT actions_version_key_key UNIQUE NULLS NOT DISTINCT (tenant_id, app_version_id, key),
    CONSTRAINT actions_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT actions_tenant_version_fkey FOREIGN KEY (tenant_id, app_version_id)
        REFERENCES app_versions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX actions_tenant_idx ON actions (tenant_id);
CREATE INDEX actions_version_idx ON actions (app_version_id, key);

CREATE TRIGGER app_versions_parent BEFORE INSERT OR UPDATE ON app_versions
    FOR EACH ROW EXECUTE FUNCTION app.check_catalog_parent('apps', 'app_id');
CREATE TRIGGER app_versions_immutable BEFORE UPDATE OR DELETE ON app_versions
    FOR EACH ROW EXECUTE FUNCTION app.app_versions_immutable();
CREATE TRIGGER actions_parent BEFORE INSERT OR UPDATE ON actions
    FOR EACH ROW EXECUTE FUNCTION app.check_catalog_parent('app_versions', 'app_version_id');
CREATE TRIGGER actions_immutable BEFORE INSERT OR UPDATE OR DELETE ON actions
    FOR EACH ROW EXECUTE FUNCTION app.actions_immutable();

-- A tenant's data keys, wrapped by a master key. Secrets are sealed with the newest
-- generation; older generations exist only while a rotation re-encrypts.
CREATE TABLE tenant_data_keys (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    generation integer NOT NULL CHECK (generation >= 1),
    master_key_id text NOT NULL CHECK (master_key_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    wrapped bytea NOT NULL CHECK (length(wrapped) = 60),
    created_at timestamptz NOT NULL DEFAULT now(),
    rewrapped_at timestamptz,
    PRIMARY KEY (tenant_id, generation)
);
CREATE INDEX tenant_data_keys_master_key_idx ON tenant_data_keys (master_key_id);

CREATE TABLE secrets (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL CONSTRAINT secrets_name_format
        CHECK (name ~ '^[A-Za-z][A-Za-z0-9_.-]{0,127}$'),
    version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    data_key_generation integer NOT NULL,
    ciphertext bytea NOT NULL CHECK (length(ciphertext) >= 28),
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz,
    last_used_at timestamptz,
    CONSTRAINT secrets_tenant_name_key UNIQUE (tenant_id, name),
    CONSTRAINT secrets_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT secrets_data_key_fkey FOREIGN KEY (tenant_id, data_key_generation)
        REFERENCES tenant_data_keys (tenant_id, generation)
);
CREATE INDEX secrets_tenant_created_idx ON secrets (tenant_id, created_at, id);
CREATE INDEX secrets_created_by_idx ON secrets (created_by);

CREATE TABLE connections (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    app_id uuid NOT NULL REFERENCES apps (id),
    app_version_id uuid NOT NULL REFERENCES app_versions (id),
    name text NOT NULL CONSTRAINT connections_name_length CHECK (length(name) BETWEEN 1 AND 200),
    config jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    is_active boolean NOT NULL DEFAULT true,
    rotated_at timestamptz,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT connections_tenant_id_id_key UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX connections_tenant_name_key ON connections (tenant_id, name)
    WHERE deleted_at IS NULL;
CREATE INDEX connections_tenant_created_idx ON connections (tenant_id, created_at, id);
CREATE INDEX connections_app_idx ON connections (app_id);
CREATE INDEX connections_app_version_idx ON connections (app_version_id);
CREATE INDEX connections_created_by_idx ON connections (created_by);

-- A connection's app is public or the connection's tenant's own, its version belongs
-- to that app, and it is published (drafts may still change under the connection).
CREATE FUNCTION app.check_connection_app() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM app_versions v JOIN apps a ON a.id = v.app_id
        WHERE v.id = NEW.app_version_id AND a.id = NEW.app_id
          AND (a.tenant_id IS NULL OR a.tenant_id = NEW.tenant_id)
          AND v.published_at IS NOT NULL
    ) THEN
        RAISE EXCEPTION 'no such published app version for this tenant'
            USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME,
                  CONSTRAINT = 'connections_app_version_tenant_fkey';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER connections_app BEFORE INSERT OR UPDATE OF app_id, app_version_id, tenant_id
    ON connections FOR EACH ROW EXECUTE FUNCTION app.check_connection_app();

-- Which secret fills each secret field of a connection. A secret in use cannot be
-- deleted (RESTRICT).
CREATE TABLE connection_secrets (
    tenant_id uuid NOT NULL,
    connection_id uuid NOT NULL,
    field text NOT NULL CHECK (field ~ '^[a-zA-Z][a-zA-Z0-9_]{0,63}$'),
    secret_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, field),
    CONSTRAINT connection_secrets_connection_fkey FOREIGN KEY (tenant_id, connection_id)
        REFERENCES connections (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT connection_secrets_secret_fkey FOREIGN KEY (tenant_id, secret_id)
        REFERENCES secrets (tenant_id, id) ON DELETE RESTRICT
);
CREATE INDEX connection_secrets_secret_idx ON connection_secrets (tenant_id, secret_id);

CREATE TRIGGER apps_updated_at BEFORE UPDATE ON apps
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER app_versions_updated_at BEFORE UPDATE ON app_versions
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER actions_updated_at BEFORE UPDATE ON actions
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER secrets_updated_at BEFORE UPDATE ON secrets
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER connections_updated_at BEFORE UPDATE ON connections
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
