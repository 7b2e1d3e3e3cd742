DROP TABLE workflow_reports, step_runs, run_idempotency_keys, workflow_runs CASCADE;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scopes_check;
DELETE FROM api_keys WHERE 'runner' = ANY (scopes);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_check
    CHECK (scopes <@ ARRAY['read', 'write', 'admin']::text[] AND cardinality(scopes) > 0);
