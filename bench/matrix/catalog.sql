-- Matrix twin of the connector catalog page (bench/README.md, "The connector catalog"
-- and "Matrix"), for pgbench -M prepared with -D n=<page> -D tenant=<uuid> -D user=<uuid>:
--
--   apps(first: n) { totalCount pageInfo { hasNextPage endCursor }
--     edges { node { id key name category isPublic latestVersion { version }
--       versions { id version isPublished actions { key name kind } } } } }
--
-- As the application role under row-level security (which admits the public apps and
-- the tenant's own), one transaction: set_config, the membership re-check, then one
-- statement: the page of live apps (newest first) with the total count, each app's
-- versions and each version's actions. isPublic, isPublished and latestVersion (the
-- newest published version) follow from the columns read; the client derives them.
-- Three statements besides BEGIN/COMMIT.

BEGIN;

SELECT set_config('app.tenant_id', :tenant, true), set_config('app.user_id', :user, true);

SELECT (t.deleted_at IS NULL AND t.status <> 'suspended')::int AS granted
FROM memberships m JOIN tenants t ON t.id = m.tenant_id
WHERE m.tenant_id = :tenant AND m.user_id = :user \gset

\if :granted
SELECT a.id, a.key, a.name, a.category, a.tenant_id IS NULL AS is_public,
       (SELECT count(*) FROM apps c WHERE c.deleted_at IS NULL) AS total_count,
       v.id AS version_id, v.version, v.published_at, x.key AS action_key, x.name AS action_name, x.kind
FROM (SELECT id, tenant_id, key, name, category, created_at FROM apps
      WHERE deleted_at IS NULL
      ORDER BY created_at DESC, id DESC LIMIT :n) AS a
LEFT JOIN app_versions v ON v.app_id = a.id
LEFT JOIN actions x ON x.app_version_id = v.id
ORDER BY a.created_at DESC, a.id DESC, v.created_at, v.id, x.key;
\endif

COMMIT;
