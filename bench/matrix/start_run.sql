-- Matrix twin of the `startRun` mutation (bench/README.md, "Matrix"), for pgbench -M
-- prepared with -D tenant=<uuid> -D user=<uuid> -D workflow=<workflow uuid>:
--
--   startRun(input: {workflowId, input: {"n": 1}, idempotencyKey}) { run { id status } }
--
-- As the application role under row-level security, one transaction: set_config, the
-- membership re-check (with the role: operators and above start runs), then one
-- statement that writes what crates/core/src/runs/start.rs writes: the workflow and its
-- published active version read, the idempotency key (unique per transaction: a fresh
-- random UUID), the run, one pending step run per step of the version, the audit event
-- (the chain trigger sets its sequence number and hash, as for the server's), the
-- plan's monthlyRuns read, and the run counted against it when the plan sets one
-- (run_counts; the matrix tenants are on `enterprise`, which sets none) and the
-- NOTIFY live subscribers wait for; it returns the run's ID and how many rows of each
-- kind it wrote. IDs are random (v4) UUIDs where the server makes v7. The input hash is
-- SHA-256 of the canonical JSON of the input (no spaces), written with a space that
-- `replace` takes out: pgbench would read a colon before a digit as a variable. Three statements besides BEGIN/COMMIT.

BEGIN;

SELECT set_config('app.tenant_id', :tenant, true), set_config('app.user_id', :user, true);

SELECT (t.deleted_at IS NULL AND t.status <> 'suspended'
        AND m.role IN ('owner', 'admin', 'operator'))::int AS granted
FROM memberships m JOIN tenants t ON t.id = m.tenant_id
WHERE m.tenant_id = :tenant AND m.user_id = :user \gset

\if :granted
WITH w AS (
    SELECT w.id, w.tenant_id, w.key, w.client_id, v.id AS version_id, v.number,
           'pgbench-' || gen_random_uuid()::text AS idempotency_key
    FROM workflows w
    JOIN workflow_versions v ON v.tenant_id = w.tenant_id AND v.id = w.active_version_id
    WHERE w.tenant_id = :tenant AND w.id = :workflow AND w.deleted_at IS NULL
      AND w.status <> 'archived' AND v.status = 'published'
), r AS (
    INSERT INTO workflow_runs (id, tenant_id, workflow_id, version_id, trigger_type, client_id, status,
                               input, is_simulation, idempotency_key, created_by)
    SELECT gen_random_uuid(), tenant_id, id, version_id, 'manual', client_id, 'pending',
           '{"n": 1}'::jsonb, false, idempotency_key, :user::uuid
    FROM w
    RETURNING id, tenant_id, workflow_id, version_id, idempotency_key
), k AS (
    INSERT INTO run_idempotency_keys (tenant_id, workflow_id, key, run_id, input_hash, expires_at)
    SELECT tenant_id, workflow_id, idempotency_key, id, sha256(convert_to(replace('{"n": 1}', ' ', ''), 'UTF8')),
           now() + interval '24 hours'
    FROM r
    RETURNING 1
), s AS (
    INSERT INTO step_runs (id, tenant_id, run_id, step_id, step_key, status, attempt)
    SELECT gen_random_uuid(), r.tenant_id, r.id, st.id, st.key, 'pending', 0
    FROM r JOIN workflow_steps st ON st.tenant_id = r.tenant_id AND st.version_id = r.version_id
    RETURNING 1
), a AS (
    INSERT INTO audit_events (id, tenant_id, actor_type, actor_id, action, target_type, target_id,
                              severity, ip, user_agent, details)
    SELECT gen_random_uuid(), r.tenant_id, 'user', :user::uuid, 'run.start', 'run', r.id, 'info',
           '127.0.0.1', 'pgbench',
           jsonb_build_object('workflow', w.key, 'version', w.number, 'trigger', 'MANUAL',
                              'simulation', false, 'retryOf', NULL)
    FROM r CROSS JOIN w
    RETURNING 1
), c AS (
    INSERT INTO run_counts AS c (tenant_id, month, runs, run_limit)
    SELECT r.tenant_id, date_trunc('month', now(), 'UTC'), 1, l.runs
    FROM r CROSS JOIN LATERAL (
        SELECT (p.limits ->> 'monthlyRuns')::bigint AS runs FROM tenants t
        JOIN plans p ON p.key = t.plan WHERE t.id = r.tenant_id) l
    WHERE l.runs IS NOT NULL
    ON CONFLICT (tenant_id, month) DO UPDATE
      SET runs = c.runs + 1, run_limit = EXCLUDED.run_limit
    RETURNING 1
)
SELECT r.id, (SELECT count(*) FROM s) AS step_runs, (SELECT count(*) FROM k) AS keys,
       (SELECT count(*) FROM a) AS audit_events, (SELECT count(*) FROM c) AS counted,
       pg_notify('trellis_runs', json_build_object('tenantId', r.tenant_id, 'runId', r.id,
                                                   'workflowId', r.workflow_id)::text) IS NULL AS notified
FROM r;
\endif

COMMIT;
