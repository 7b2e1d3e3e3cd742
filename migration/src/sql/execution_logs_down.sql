DROP FUNCTION app.purge_expired_execution_logs(integer), app.log_outbox_tenants(integer);
DROP TABLE log_outbox, execution_logs;
