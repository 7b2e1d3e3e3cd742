-- Hand-written SQL baseline of the runs dashboard (bench/README.md, "Runs"), for pgbench:
--
--   pgbench -n -M prepared -f bench/dashboard_runs.sql -c 8 -j 2 -T 10 \
--       -D n=20 -D tenant=<tenant uuid> -D user=<user uuid> \
--       -h 127.0.0.1 -p <port> -U trellis_app trellis
--
-- It reads exactly what this GraphQL query returns:
--
--   workflows(first: n) { edges { node { key status
--     runs(first: 10) { edges { node { status createdAt finishedAt
--       stepRuns { stepKey status } } } } } } }
--
-- as the application role (NOSUPERUSER, NOBYPASSRLS) with row-level security in force,
-- and does the work the server does around it for a signed-in user
-- (crates/core/src/scope.rs): one transaction, the tenant and user set
-- transaction-locally, the membership re-check, then the reads. Differences, all in the
-- baseline's favour: one statement with joins where the server runs one per level
-- (workflows page, the latest runs of all of them, their step runs), exactly `n`
-- workflows and 10 runs each (the server fetches one more to know whether a next page
-- exists) and only the selected columns (the server selects whole rows).
--
-- Variables (pgbench -D): n (workflows per page), tenant and user (UUIDs).

BEGIN;

SELECT set_config('app.tenant_id', :tenant, true), set_config('app.user_id', :user, true);

-- The membership re-check; no row (not a member) aborts the client and fails the run.
SELECT (t.deleted_at IS NULL AND t.status <> 'suspended')::int AS granted
FROM memberships m JOIN tenants t ON t.id = m.tenant_id
WHERE m.tenant_id = :tenant AND m.user_id = :user \gset

\if :granted
-- The page of workflows (newest first, live ones), each workflow's 10 newest runs
-- (the index workflow_runs_workflow_created_idx) and each run's step runs in id order
-- (uuidv7: the version's order), as the server returns them.
SELECT w.key, w.status, r.status AS run_status, r.created_at, r.finished_at,
       s.step_key, s.status AS step_status
FROM (SELECT id, key, status, created_at FROM workflows
      WHERE tenant_id = :tenant AND deleted_at IS NULL
      ORDER BY created_at DESC, id DESC LIMIT :n) AS w
LEFT JOIN LATERAL (
    SELECT id, status, created_at, finished_at FROM workflow_runs
    WHERE tenant_id = :tenant AND workflow_id = w.id
    ORDER BY created_at DESC, id DESC LIMIT 10) AS r ON true
LEFT JOIN step_runs s ON s.tenant_id = :tenant AND s.run_id = r.id
ORDER BY w.created_at DESC, w.id DESC, r.created_at DESC, r.id DESC, s.id;
\endif

COMMIT;
