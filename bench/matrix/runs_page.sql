-- Matrix twin of a runs page filtered by status (bench/README.md, "Matrix"), for
-- pgbench -M prepared with -D n=<page> -D tenant=<uuid> -D user=<uuid>:
--
--   runs(first: n, filter: {status: [SUCCEEDED]}) { edges { node { id status
--     createdAt finishedAt stepRuns { stepKey status } } } }
--
-- As the application role under row-level security, one transaction: set_config, the
-- membership re-check, then one statement: the tenant's n newest succeeded runs
-- joined with their step runs (in id order). Three statements besides BEGIN/COMMIT.

BEGIN;

SELECT set_config('app.tenant_id', :tenant, true), set_config('app.user_id', :user, true);

SELECT (t.deleted_at IS NULL AND t.status <> 'suspended')::int AS granted
FROM memberships m JOIN tenants t ON t.id = m.tenant_id
WHERE m.tenant_id = :tenant AND m.user_id = :user \gset

\if :granted
SELECT r.id, r.status, r.created_at, r.finished_at, s.step_key, s.status AS step_status
FROM (SELECT id, status, created_at, finished_at FROM workflow_runs
      WHERE tenant_id = :tenant AND status = 'succeeded'
      ORDER BY created_at DESC, id DESC LIMIT :n) AS r
LEFT JOIN step_runs s ON s.tenant_id = :tenant AND s.run_id = r.id
ORDER BY r.created_at DESC, r.id DESC, s.id;
\endif

COMMIT;
