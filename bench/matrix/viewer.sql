-- Matrix twin of `{ viewer { role user { id email name } } tenant { id name slug } }`
-- (bench/README.md, "Matrix"), for pgbench -M prepared with -D tenant=<uuid> -D user=<uuid>.
--
-- As the application role, with row-level security in force, one transaction: the
-- tenant and user set transaction-locally (as bench/dashboard.sql does), then one
-- statement that is both the membership re-check (the tenant live, the user a member)
-- and the read of everything the query returns: the member's role, the user and the
-- tenant. A refused check reads nothing (no row). Two statements besides BEGIN/COMMIT.

BEGIN;

SELECT set_config('app.tenant_id', :tenant, true), set_config('app.user_id', :user, true);

SELECT m.role, u.id AS user_id, u.email, u.name AS user_name, t.id AS tenant_id, t.name AS tenant_name, t.slug
FROM memberships m
JOIN tenants t ON t.id = m.tenant_id
JOIN users u ON u.id = m.user_id
WHERE m.tenant_id = :tenant AND m.user_id = :user
  AND t.deleted_at IS NULL AND t.status <> 'suspended';

COMMIT;
