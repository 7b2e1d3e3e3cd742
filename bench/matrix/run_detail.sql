-- Matrix twin of a run's detail page (bench/README.md, "Matrix"; runs.py's
-- run_detail_query), for pgbench -M prepared with -D n=<log lines> -D tenant=<uuid>
-- -D user=<uuid> -D run=<run uuid>:
--
--   node(id: $run) { ... on WorkflowRun { status stepRuns { stepKey status }
--     logs(first: n) { edges { node { level message loggedAt } } } } }
--
-- As the application role under row-level security, one transaction: set_config, the
-- membership re-check, the run joined with its step runs (in id order: the version's
-- order), and the run's first n log lines from the PostgreSQL log store, oldest first,
-- unexpired (as crates/core/src/logs/postgres.rs reads them). Four statements besides
-- BEGIN/COMMIT.

BEGIN;

SELECT set_config('app.tenant_id', :tenant, true), set_config('app.user_id', :user, true);

SELECT (t.deleted_at IS NULL AND t.status <> 'suspended')::int AS granted
FROM memberships m JOIN tenants t ON t.id = m.tenant_id
WHERE m.tenant_id = :tenant AND m.user_id = :user \gset

\if :granted
SELECT r.status, s.step_key, s.status AS step_status
FROM workflow_runs r
LEFT JOIN step_runs s ON s.tenant_id = :tenant AND s.run_id = r.id
WHERE r.tenant_id = :tenant AND r.id = :run
ORDER BY s.id;

SELECT level, message, logged_at FROM execution_logs
WHERE tenant_id = :tenant AND run_id = :run AND expire_at > now()
ORDER BY logged_at, id LIMIT :n;
\endif

COMMIT;
