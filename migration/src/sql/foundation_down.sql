DROP TABLE audit_events, refresh_tokens, api_keys, invitations, memberships, users, tenants CASCADE;
DROP SCHEMA app CASCADE;
