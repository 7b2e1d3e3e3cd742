DROP TABLE process_usage_hourly, response_cache, call_logs, process_promotions,
    process_deployments, process_versions, processes;
DROP FUNCTION app.process_versions_immutable(), app.check_process_deployment();
DELETE FROM api_keys WHERE 'invoke' = ANY (scopes);
ALTER TABLE api_keys DROP COLUMN process_environment, DROP COLUMN process_keys;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scopes_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_check
    CHECK (scopes <@ ARRAY['read', 'write', 'admin', 'runner']::text[] AND cardinality(scopes) > 0);
