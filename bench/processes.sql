-- Hand-written SQL twin of a cache-hit process call (bench/README.md, "Processes"),
-- for pgbench:
--
--   pgbench -n -M prepared -f bench/processes.sql -c 8 -j 2 -T 10 \
--       -D n=<primed inputs> -D tenant=<tenant uuid> -D key=<API key uuid> \
--       -D prefix=<API key prefix> -D process=<process key> -D env=production \
--       -D use_cache=true -D absent=- -h 127.0.0.1 -p <port> -U trellis_app trellis
--
-- The statements the server sends for `POST /v1/processes/{key}/invoke` answered from
-- the cache, in its order, as the application role with row-level security in force:
-- the API key look-up (crates/core/src/identity.rs `authenticate_api_key`, outside the
-- transaction), then one transaction: the tenant set transaction-locally, the key's
-- access re-check (crates/core/src/scope.rs, the `Principal::ApiKey` branch), the
-- RESOLVE statement (crates/core/src/processes/invoke.rs: process, served version, key
-- restrictions, admission by `app.admit_process_call`, cache entry) and the call log
-- with its hourly rollup (crates/core/src/processes/calls.rs `record`). The SQL text is
-- copied from the Rust source; when those statements change, change them here too.
--
-- Parameters: with -M prepared every :variable is a bind parameter, as in the server.
-- Where the server binds NULL, this binds NULLIF(:absent, '-') (pgbench cannot bind a
-- NULL), which plans like a NULL parameter. Differences, none of which adds work here:
-- - the input's hash is computed in SQL (sha256 of the canonical JSON text, the way
--   `trellis_core::runs::start::input_hash` does it in Rust) instead of bound, because
--   pgbench has no string variables to pick one of `n` hashes from; processes.py checks
--   that these hashes find all `n` primed entries before it measures;
-- - the call ID is gen_random_uuid() (v4) where the server binds a UUIDv7;
-- - constants of the log row (status, latency 1 ms, counts, no tokens to charge) are
--   literals, and the rollup adds to latency bucket 1 (the server binds the call's
--   bucket and its shard, from the call id; here the shard is random);
-- - redaction (the tenant has no rules) and the input and output schema checks are
--   the server's own work and have no SQL.
--
-- The input of primed call k (0 <= k < n) is {"text": "ticket k: the printer jams on
-- double-sided pages"} (processes.py INPUT_TEXT); its output is read from the cache
-- (RESOLVE's cached_output, kept with \gset r_) and logged, as the server does.

\set k random(0, :n - 1)

-- The API key, by its prefix (SECURITY DEFINER function: no tenant yet).
SELECT id, tenant_id, key_hash, scopes, expires_at, revoked_at FROM app.api_key_for_auth(:prefix);

BEGIN;

SELECT set_config('app.tenant_id', :tenant, true), set_config('app.user_id', '', true);

WITH touched AS (UPDATE api_keys SET last_used_at = now() WHERE id = :key
   AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute'))
 SELECT NULL::text AS role, t.status, t.deleted_at IS NOT NULL AS deleted,
   true AS session_live
 FROM tenants t JOIN api_keys k ON k.tenant_id = t.id AND k.id = :key
 WHERE t.id = :tenant AND k.revoked_at IS NULL
   AND (k.expires_at IS NULL OR k.expires_at > now());

-- RESOLVE, its by-key variant for the served version ($1 key, $3 environment, $5 input
-- hash, $6 API key, $7 read the cache, $8 tenant). Its lateral read of the provider's
-- connection (crates/core/src/integrations/connections.rs `connection_rows_sql`) runs
-- only on a miss, so never here.
SELECT p.id AS process_id, p.key AS process_key, p.updated_at AS process_updated_at,
  p.input_schema, p.output_schema, p.config,
  v.id AS version_id, v.number, v.environment AS version_environment,
  v.published_at IS NOT NULL AS published, v.system_prompt, v.user_prompt, v.provider,
  v.connection_id, v.model, v.temperature, v.max_tokens, v.response_format, v.timeout_ms,
  v.max_attempts, v.retry_backoff_ms, v.cache_ttl_seconds, v.input_price_per_mtok,
  v.output_price_per_mtok, s.settings_hash, c.state AS cache_state,
  c.output AS cached_output, c.expires_at > now() AS cache_fresh,
  k.process_environment AS key_environment, k.process_keys AS key_processes,
  t.settings AS tenant_settings,
  CASE WHEN (k.process_environment IS NULL OR k.process_environment = :env)
        AND (k.process_keys IS NULL OR p.key = ANY (k.process_keys))
    THEN app.admit_process_call(:key, p.id) END AS retry_after,
  set_config('synchronous_commit', 'off', true) AS durability, o.*
FROM processes p
JOIN tenants t ON t.id = p.tenant_id
LEFT JOIN process_deployments d
  ON d.tenant_id = p.tenant_id AND d.process_id = p.id AND d.environment = :env
LEFT JOIN process_versions v ON v.tenant_id = p.tenant_id AND v.process_id = p.id
  AND v.id = d.version_id
LEFT JOIN LATERAL (SELECT sha256(convert_to(jsonb_build_array(v.provider, v.connection_id,
  v.model, v.temperature, v.max_tokens, v.response_format, v.system_prompt, v.user_prompt,
  p.output_schema, p.config)::text, 'UTF8')) AS settings_hash) s ON v.id IS NOT NULL
LEFT JOIN response_cache c ON :use_cache::boolean AND v.published_at IS NOT NULL
  AND c.tenant_id = p.tenant_id AND c.version_id = v.id
  AND c.input_hash = sha256(convert_to('{"text":"ticket ' || :k || ': the printer jams on double-sided pages"}', 'UTF8'))
  AND c.settings_hash = s.settings_hash
LEFT JOIN api_keys k ON k.tenant_id = p.tenant_id AND k.id = :key
LEFT JOIN LATERAL (SELECT conn_app.key AS connection_app_key, conn.config AS connection_config,
    conn_field.field AS secret_field, conn_secret.id AS s_id, conn_secret.tenant_id AS s_tenant_id,
    conn_secret.name AS s_name, conn_secret.version AS s_version,
    conn_secret.data_key_generation AS s_data_key_generation,
    conn_secret.ciphertext AS s_ciphertext, conn_secret.created_by AS s_created_by,
    conn_secret.created_at AS s_created_at, conn_secret.updated_at AS s_updated_at,
    conn_secret.rotated_at AS s_rotated_at, conn_secret.last_used_at AS s_last_used_at,
    conn_key.tenant_id AS k_tenant_id, conn_key.generation AS k_generation,
    conn_key.master_key_id AS k_master_key_id, conn_key.wrapped AS k_wrapped,
    conn_key.created_at AS k_created_at, conn_key.rewrapped_at AS k_rewrapped_at
  FROM connections conn JOIN apps conn_app ON conn_app.id = conn.app_id
  LEFT JOIN connection_secrets conn_field ON conn_field.connection_id = conn.id
  LEFT JOIN secrets conn_secret ON conn_secret.id = conn_field.secret_id
  LEFT JOIN tenant_data_keys conn_key ON conn_key.tenant_id = conn_secret.tenant_id
    AND conn_key.generation = conn_secret.data_key_generation
  WHERE conn.id = v.connection_id AND conn.deleted_at IS NULL
    AND v.provider = 'openai_compatible'
    AND NOT coalesce(c.state = 'ready' AND c.expires_at > now(), false)
  OFFSET 0) o ON true
WHERE p.tenant_id = :tenant AND p.deleted_at IS NULL AND p.key = :process \gset r_

-- The call log and its hour's rollup, one statement (payload retention: the tenant's
-- setting, as RESOLVE read it, or 30 days).
WITH logged AS (
  INSERT INTO call_logs (id, tenant_id, process_id, version_id, environment,
    api_key_id, user_id, input_hash, status, cache_hit, latency_ms,
    provider_latency_ms, attempts, input_tokens, output_tokens, cost_nanos,
    error_code, error_message, input, output, payload_expires_at, created_at)
  SELECT gen_random_uuid(), :tenant::uuid, :r_process_id::uuid, :r_version_id::uuid, :env::text,
    :key::uuid, NULLIF(:absent, '-')::uuid,
    sha256(convert_to('{"text":"ticket ' || :k || ': the printer jams on double-sided pages"}', 'UTF8')),
    'succeeded', true, 1, NULLIF(:absent, '-')::int, 0, 0, 0, 0::bigint,
    NULLIF(:absent, '-')::text, NULLIF(:absent, '-')::text,
    ('{"text":"ticket ' || :k || ': the printer jams on double-sided pages"}')::jsonb,
    :r_cached_output::jsonb,
    now() + make_interval(days => app.setting_days(:r_tenant_settings::jsonb, 'payloadRetentionDays', 30)),
    coalesce(NULLIF(:absent, '-')::timestamptz, now())
  RETURNING created_at),
charged AS (
  SELECT app.charge_process_call(:key::uuid, :r_process_id::uuid, 0::bigint, 0::bigint)
  WHERE 0::bigint > 0 OR 0::bigint > 0)
INSERT INTO process_usage_hourly AS u (tenant_id, process_id, environment,
  api_key_id, hour, shard, calls, succeeded, failed, rate_limited, invalid_input,
  cache_hits, input_tokens, output_tokens, cost_nanos, latency_ms_sum,
  latency_buckets)
SELECT :tenant::uuid, :r_process_id::uuid, :env::text, :key::uuid, date_trunc('hour', created_at, 'UTC'),
  floor(random() * 8)::smallint, 1,
  1::bigint, 0::bigint, 0::bigint, 0::bigint, 1::int, 0, 0, 0::bigint, 1,
  '{1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0}'::bigint[]
FROM logged CROSS JOIN (SELECT count(*) AS n FROM charged) AS c
ON CONFLICT ON CONSTRAINT process_usage_hourly_key DO UPDATE SET
  calls = u.calls + 1, succeeded = u.succeeded + EXCLUDED.succeeded,
  failed = u.failed + EXCLUDED.failed,
  rate_limited = u.rate_limited + EXCLUDED.rate_limited,
  invalid_input = u.invalid_input + EXCLUDED.invalid_input,
  cache_hits = u.cache_hits + EXCLUDED.cache_hits,
  input_tokens = u.input_tokens + EXCLUDED.input_tokens,
  output_tokens = u.output_tokens + EXCLUDED.output_tokens,
  cost_nanos = u.cost_nanos + EXCLUDED.cost_nanos,
  latency_ms_sum = u.latency_ms_sum + EXCLUDED.latency_ms_sum,
  latency_buckets[1] = u.latency_buckets[1] + 1
RETURNING (SELECT created_at FROM logged) AS created_at,
  set_config('synchronous_commit', 'off', true) AS durability;

COMMIT;
