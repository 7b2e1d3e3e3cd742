-- Matrix twin of a workflows page (bench/README.md, "Matrix"), for pgbench -M prepared
-- with -D n=<page> -D tenant=<uuid> -D user=<uuid>:
--
--   workflows(first: n) { edges { node { id key name status
--     activeVersion { number status stepCount } } } }
--
-- As the application role under row-level security, one transaction: set_config of
-- tenant and user, the membership re-check (no row aborts the client and fails the
-- run), then one statement: the page of live workflows (newest first), each joined
-- with its active version and that version's step count. Three statements besides
-- BEGIN/COMMIT.

BEGIN;

SELECT set_config('app.tenant_id', :tenant, true), set_config('app.user_id', :user, true);

SELECT (t.deleted_at IS NULL AND t.status <> 'suspended')::int AS granted
FROM memberships m JOIN tenants t ON t.id = m.tenant_id
WHERE m.tenant_id = :tenant AND m.user_id = :user \gset

\if :granted
SELECT w.id, w.key, w.name, w.status, v.number, v.status AS version_status,
       (SELECT count(*) FROM workflow_steps s
        WHERE s.tenant_id = :tenant AND s.version_id = v.id) AS step_count
FROM (SELECT id, key, name, status, active_version_id, created_at FROM workflows
      WHERE tenant_id = :tenant AND deleted_at IS NULL
      ORDER BY created_at DESC, id DESC LIMIT :n) AS w
LEFT JOIN workflow_versions v ON v.tenant_id = :tenant AND v.id = w.active_version_id
ORDER BY w.created_at DESC, w.id DESC;
\endif

COMMIT;
