-- Foundation: helper functions, identity and tenancy tables, audit chain, auth look-ups.
-- Policies and grants are appended by the migration from `rls.rs`.

CREATE SCHEMA app;

-- The tenant of the current transaction, or NULL when unset, empty or not a UUID:
-- no tenant, no rows.
CREATE FUNCTION app.current_tenant_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT CASE WHEN s ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN s::uuid END
    FROM (SELECT current_setting('app.tenant_id', true) AS s) AS setting
$$;

-- The user of the current transaction, or NULL (same rules as the tenant).
CREATE FUNCTION app.current_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT CASE WHEN s ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN s::uuid END
    FROM (SELECT current_setting('app.user_id', true) AS s) AS setting
$$;

-- True only in a transaction the server opened for a verified platform admin.
CREATE FUNCTION app.is_platform_admin() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog AS $$
    SELECT coalesce(current_setting('app.platform_admin', true), '') = 'on'
$$;

-- Grants privileges to the application role named by the `trellis.app_role` setting of
-- the migrating session, so the role name stays configurable.
CREATE FUNCTION app.grant_to_app_role(privileges text, object text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    role_name text := nullif(current_setting('trellis.app_role', true), '');
BEGIN
    IF role_name IS NULL THEN
        RAISE EXCEPTION 'trellis.app_role is not set: run migrations through `trellis migrate`';
    END IF;
    EXECUTE format('GRANT %s ON %s TO %I', privileges, object, role_name);
END
$$;
REVOKE ALL ON FUNCTION app.grant_to_app_role(text, text) FROM PUBLIC;

CREATE FUNCTION app.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    slug text NOT NULL CONSTRAINT tenants_slug_format
        CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$'),
    name text NOT NULL CONSTRAINT tenants_name_length CHECK (length(name) BETWEEN 1 AND 200),
    plan text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
    status text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'suspended', 'provisioning', 'failed')),
    settings jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE UNIQUE INDEX tenants_slug_key ON tenants (slug);
CREATE INDEX tenants_created_at_idx ON tenants (created_at, id);

CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL CONSTRAINT users_email_format
        CHECK (email = lower(email) AND email ~ '^[^@\s]+@[^@\s]+$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    auth_provider text NOT NULL DEFAULT 'password',
    password_hash text,
    platform_role text NOT NULL DEFAULT 'none' CHECK (platform_role IN ('none', 'platform_admin')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE memberships (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'builder', 'operator', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT memberships_tenant_user_key UNIQUE (tenant_id, user_id),
    CONSTRAINT memberships_tenant_id_id_key UNIQUE (tenant_id, id)
);
CREATE INDEX memberships_user_id_idx ON memberships (user_id);
CREATE INDEX memberships_tenant_created_idx ON memberships (tenant_id, created_at, id);

CREATE TABLE invitations (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email text NOT NULL CHECK (email = lower(email) AND email ~ '^[^@\s]+@[^@\s]+$'),
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'builder', 'operator', 'viewer')),
    token_hash bytea NOT NULL CHECK (length(token_hash) = 32),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'accepted', 'revoked', 'expired')),
    expires_at timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT invitations_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT invitations_tenant_token_key UNIQUE (tenant_id, token_hash)
);
CREATE UNIQUE INDEX invitations_pending_email_key ON invitations (tenant_id, email)
    WHERE status = 'pending';
CREATE INDEX invitations_token_hash_idx ON invitations (token_hash);
CREATE INDEX invitations_tenant_created_idx ON invitations (tenant_id, created_at, id);
CREATE INDEX invitations_accepted_by_idx ON invitations (accepted_by);
CREATE INDEX invitations_created_by_idx ON invitations (created_by);

CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix text NOT NULL CHECK (prefix ~ '^[0-9a-zA-Z]{12}$'),
    key_hash bytea NOT NULL CHECK (length(key_hash) = 32),
    scopes text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'write', 'admin']::text[] AND cardinality(scopes) > 0),
    last_used_at timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT api_keys_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT api_keys_tenant_prefix_key UNIQUE (tenant_id, prefix)
);
CREATE UNIQUE INDEX api_keys_active_name_key ON api_keys (tenant_id, name) WHERE revoked_at IS NULL;
CREATE INDEX api_keys_prefix_idx ON api_keys (prefix);
CREATE INDEX api_keys_tenant_created_idx ON api_keys (tenant_id, created_at, id);
CREATE INDEX api_keys_created_by_idx ON api_keys (created_by);

-- Refresh tokens belong to a user, not a tenant: `active_tenant_id` only remembers which
-- tenant the next access token names (membership is re-checked on every request).
CREATE TABLE refresh_tokens (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id uuid NOT NULL,
    token_hash bytea NOT NULL CHECK (length(token_hash) = 32),
    active_tenant_id uuid REFERENCES tenants (id) ON DELETE SET NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    replaced_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX refresh_tokens_user_family_idx ON refresh_tokens (user_id, family_id);
CREATE INDEX refresh_tokens_active_tenant_idx ON refresh_tokens (active_tenant_id);

-- Append-only and hash-chained per tenant (tenant NULL: the chain of user-level and
-- platform events). `seq`, `prev_hash` and `hash` are filled by a trigger.
CREATE TABLE audit_events (
    id uuid PRIMARY KEY,
    tenant_id uuid REFERENCES tenants (id),
    seq bigint NOT NULL,
    actor_type text NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system')),
    actor_id uuid,
    action text NOT NULL,
    target_type text,
    target_id uuid,
    severity text NOT NULL DEFAULT 'info' CHECK (severity IN ('info', 'warning', 'critical')),
    ip text,
    user_agent text,
    details jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    prev_hash bytea,
    hash bytea NOT NULL,
    CONSTRAINT audit_events_tenant_seq_key UNIQUE NULLS NOT DISTINCT (tenant_id, seq)
);
CREATE INDEX audit_events_tenant_created_idx ON audit_events (tenant_id, created_at, id);
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id);

-- The head of each chain, written only by the chain trigger (never granted to the app).
CREATE TABLE app.audit_chain_heads (
    chain_key uuid PRIMARY KEY,
    last_seq bigint NOT NULL,
    last_hash bytea NOT NULL
);

-- The content hash of one event, chained to the previous event's hash.
CREATE FUNCTION app.audit_event_hash(e public.audit_events) RETURNS bytea
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT sha256(coalesce(e.prev_hash, '\x'::bytea) || convert_to(jsonb_build_array(
        e.id, e.tenant_id, e.seq, e.actor_type, e.actor_id, e.action, e.target_type,
        e.target_id, e.severity, e.ip, e.user_agent, e.details,
        to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
    )::text, 'UTF8'))
$$;

CREATE FUNCTION app.audit_events_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    chain uuid := coalesce(NEW.tenant_id, '00000000-0000-0000-0000-000000000000');
    head app.audit_chain_heads;
BEGIN
    -- The row lock on the head serialises concurrent writers of one chain.
    INSERT INTO app.audit_chain_heads (chain_key, last_seq, last_hash)
    VALUES (chain, 0, '\x') ON CONFLICT (chain_key) DO NOTHING;
    SELECT * INTO head FROM app.audit_chain_heads WHERE chain_key = chain FOR UPDATE;
    NEW.seq := head.last_seq + 1;
    NEW.prev_hash := nullif(head.last_hash, '\x'::bytea);
    NEW.hash := app.audit_event_hash(NEW);
    UPDATE app.audit_chain_heads SET last_seq = NEW.seq, last_hash = NEW.hash
    WHERE chain_key = chain;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app.audit_events_chain() FROM PUBLIC;
CREATE TRIGGER audit_events_chain BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION app.audit_events_chain();

-- The first sequence number at which a chain is broken (edited, reordered or missing
-- rows), or NULL when the chain verifies. Runs with the caller's rights: a tenant
-- verifies its own chain.
CREATE FUNCTION app.verify_audit_chain(chain_tenant uuid) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT min(seq) FROM (
        SELECT e.seq, e.hash, e.prev_hash,
               app.audit_event_hash(e) AS recomputed,
               lag(e.hash) OVER w AS previous_hash,
               coalesce(lag(e.seq) OVER w, 0) AS previous_seq
        FROM public.audit_events e
        WHERE e.tenant_id IS NOT DISTINCT FROM chain_tenant
        WINDOW w AS (ORDER BY e.seq)
    ) AS chain
    WHERE hash <> recomputed
       OR prev_hash IS DISTINCT FROM previous_hash
       OR seq <> previous_seq + 1
$$;

-- Look-ups before a tenant is known. SECURITY DEFINER with a pinned search_path, not
-- executable by PUBLIC, each returning only what authentication needs.
CREATE FUNCTION app.user_for_login(login_email text)
RETURNS TABLE (id uuid, password_hash text, platform_role text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT u.id, u.password_hash, u.platform_role FROM public.users u
    WHERE u.email = lower(login_email)
$$;

CREATE FUNCTION app.platform_role_of(user_id uuid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT u.platform_role FROM public.users u WHERE u.id = user_id
$$;

CREATE FUNCTION app.api_key_for_auth(key_prefix text)
RETURNS TABLE (id uuid, tenant_id uuid, key_hash bytea, scopes text[],
               expires_at timestamptz, revoked_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT k.id, k.tenant_id, k.key_hash, k.scopes, k.expires_at, k.revoked_at
    FROM public.api_keys k WHERE k.prefix = key_prefix
$$;

CREATE FUNCTION app.invitation_for_token(hash bytea)
RETURNS TABLE (id uuid, tenant_id uuid, email text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT i.id, i.tenant_id, i.email FROM public.invitations i WHERE i.token_hash = hash
$$;

CREATE FUNCTION app.refresh_token_for_hash(hash bytea)
RETURNS TABLE (id uuid, user_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT r.id, r.user_id FROM public.refresh_tokens r WHERE r.token_hash = hash
$$;

REVOKE ALL ON FUNCTION app.user_for_login(text), app.platform_role_of(uuid),
    app.api_key_for_auth(text), app.invitation_for_token(bytea),
    app.refresh_token_for_hash(bytea) FROM PUBLIC;

CREATE TRIGGER tenants_updated_at BEFORE UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER memberships_updated_at BEFORE UPDATE ON memberships
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER invitations_updated_at BEFORE UPDATE ON invitations
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER api_keys_updated_at BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER refresh_tokens_updated_at BEFORE UPDATE ON refresh_tokens
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
