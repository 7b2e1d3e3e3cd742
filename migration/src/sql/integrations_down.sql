DROP TABLE connection_secrets, connections, secrets, tenant_data_keys, actions, app_versions, apps CASCADE;
DROP FUNCTION app.check_connection_app(), app.actions_immutable(), app.app_versions_immutable(),
    app.check_catalog_parent();
