-- Hand-written SQL baseline of the tenant dashboard (bench/README.md), for pgbench:
--
--   pgbench -n -M prepared -f bench/dashboard.sql -c 8 -j 2 -T 10 \
--       -D n=10 -D tenant=<tenant uuid> -D user=<user uuid> \
--       -h 127.0.0.1 -p <port> -U trellis_app trellis
--
-- It reads exactly what the GraphQL dashboard query returns, as the application role
-- (NOSUPERUSER, NOBYPASSRLS) with row-level security in force, and does the work the
-- server does around it for a signed-in user (crates/core/src/scope.rs): one
-- transaction per request, the tenant and user set transaction-locally first, then the
-- membership re-check (role, tenant suspended or deleted) that gates every read, then
-- the reads. Differences, all in the baseline's favour of doing less: joins instead of
-- separate look-ups (the server runs the user look-ups and the members count as their
-- own statements), exactly `n` rows per page (the server fetches n+1 to know whether
-- there is a next page) and only the selected columns (the server selects whole rows).
--
-- Variables (pgbench -D): n (page size of members and audit events), tenant and user
-- (UUIDs). With -M prepared every :variable is a bind parameter.

BEGIN;

-- One round trip sets both, transaction-locally (the server's first statement).
SELECT set_config('app.tenant_id', :tenant, true), set_config('app.user_id', :user, true);

-- The membership re-check, which also reads the tenant's id and name (the server reads
-- the tenant row in a statement of its own). No row (not a member) makes pgbench abort
-- the client: the run then fails, as the GraphQL run would.
SELECT t.id AS tenant_id, t.name AS tenant_name,
       (t.deleted_at IS NULL AND t.status <> 'suspended')::int AS granted,
       (m.role IN ('owner', 'admin'))::int AS admin
FROM memberships m JOIN tenants t ON t.id = m.tenant_id
WHERE m.tenant_id = :tenant AND m.user_id = :user \gset

-- members(first: n) { totalCount edges { node { role user { id email name } } } }
-- (any role may list members)
\if :granted
SELECT m.role, u.id, u.email, u.name,
       (SELECT count(*) FROM memberships c WHERE c.tenant_id = :tenant) AS total_count
FROM (SELECT role, user_id, created_at, id FROM memberships
      WHERE tenant_id = :tenant
      ORDER BY created_at DESC, id DESC LIMIT :n) AS m
LEFT JOIN users u ON u.id = m.user_id
ORDER BY m.created_at DESC, m.id DESC;

-- apiKeys and auditEvents need the admin role.
\if :admin
-- apiKeys(first: 10) { edges { node { name prefix lastUsedAt } } }
SELECT name, prefix, last_used_at FROM api_keys
WHERE tenant_id = :tenant
ORDER BY created_at DESC, id DESC LIMIT 10;

-- auditEvents(first: n) { edges { node { action seq createdAt actor { email } } } }
SELECT a.action, a.seq, a.created_at, u.email
FROM (SELECT action, seq, created_at, id, actor_type, actor_id FROM audit_events
      WHERE tenant_id = :tenant
      ORDER BY created_at DESC, id DESC LIMIT :n) AS a
LEFT JOIN users u ON a.actor_type = 'user' AND u.id = a.actor_id
ORDER BY a.created_at DESC, a.id DESC;
\endif
\endif

COMMIT;
