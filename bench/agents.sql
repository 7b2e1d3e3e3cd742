-- Hand-written SQL twin of the agents dashboard (bench/README.md, "Agents"), for
-- pgbench -M prepared:
--
--   pgbench -n -M prepared -f bench/agents.sql -c 8 -j 2 -T 10 \
--       -D n=20 -D tenant=<tenant uuid> -D user=<user uuid> \
--       -D from=2026-12-07T00:00:00Z -D to=2026-12-08T00:00:00Z \
--       -h 127.0.0.1 -p <port> -U trellis_app trellis
--
-- It reads exactly what bench/agents.py's query returns:
--
--   agents(first: n) { edges { node { id slug name status
--     activeVersion { id number }
--     skills { skillVersion skill { key name } }
--     activities(first: 10) { edges { node { type summary at } } }
--     metrics(period: DAY, from: $from, to: $to) { periodStart runs failedRuns: errors
--       inputTokens outputTokens costMicros p50LatencyMs p95LatencyMs } } } }
--
-- as the application role (NOSUPERUSER, NOBYPASSRLS) with row-level security in force,
-- in one transaction: the tenant and user set transaction-locally, the membership
-- re-check (no row aborts the client and fails the run), then one statement: the page
-- of live agents (newest first) joined with each one's active version, and per agent
-- (LATERAL) its installed skills oldest first, its 10 newest activities and its day
-- buckets of the range, every bucket present (zero counts where no row exists), as the
-- server answers; each list one jsonb array (jsonb: json_agg's text breaks lines). Three statements besides BEGIN/COMMIT. In the baseline's favour:
-- one statement where the server runs one per level, exactly `n` agents and 10
-- activities each (the server fetches one more of each to know whether a next page
-- exists), only the selected columns (the server selects whole rows).
--
-- Variables (pgbench -D): n (agents per page), tenant and user (UUIDs), from and to
-- (RFC 3339 instants: the metrics range; buckets begin before `to`).

BEGIN;

SELECT set_config('app.tenant_id', :tenant, true), set_config('app.user_id', :user, true);

SELECT (t.deleted_at IS NULL AND t.status <> 'suspended')::int AS granted
FROM memberships m JOIN tenants t ON t.id = m.tenant_id
WHERE m.tenant_id = :tenant AND m.user_id = :user \gset

\if :granted
SELECT a.id, a.slug, a.name, a.status, v.id AS version_id, v.number AS version_number,
       sk.skills, ac.activities, mt.metrics
FROM (SELECT id, slug, name, status, active_version_id, created_at FROM agents
      WHERE tenant_id = :tenant AND deleted_at IS NULL
      ORDER BY created_at DESC, id DESC LIMIT :n) AS a
LEFT JOIN agent_versions v ON v.tenant_id = :tenant AND v.id = a.active_version_id
CROSS JOIN LATERAL (
    SELECT coalesce(jsonb_agg(jsonb_build_array(i.skill_version, s.key, s.name)
                             ORDER BY i.created_at, i.id), '[]') AS skills
    FROM skill_installations i JOIN skills s ON s.id = i.skill_id
    WHERE i.tenant_id = :tenant AND i.agent_id = a.id) AS sk
CROSS JOIN LATERAL (
    SELECT coalesce(jsonb_agg(jsonb_build_array(x.type, x.summary, x.created_at)
                             ORDER BY x.created_at DESC, x.id DESC), '[]') AS activities
    FROM (SELECT id, type, summary, created_at FROM agent_activities
          WHERE tenant_id = :tenant AND agent_id = a.id
          ORDER BY created_at DESC, id DESC LIMIT 10) AS x) AS ac
CROSS JOIN LATERAL (
    SELECT jsonb_agg(jsonb_build_array(d.start, coalesce(m.runs, 0), coalesce(m.errors, 0),
                                     coalesce(m.input_tokens, 0), coalesce(m.output_tokens, 0),
                                     coalesce(m.cost_micros, 0), m.p50_latency_ms, m.p95_latency_ms)
                    ORDER BY d.start) AS metrics
    FROM generate_series(date_trunc('day', :from::timestamptz, 'UTC'),
                         :to::timestamptz - interval '1 microsecond', interval '24 hours') AS d(start)
    LEFT JOIN agent_metrics m ON m.tenant_id = :tenant AND m.agent_id = a.id
        AND m.period = 'day' AND m.period_start = d.start) AS mt
ORDER BY a.created_at DESC, a.id DESC;
\endif

COMMIT;
