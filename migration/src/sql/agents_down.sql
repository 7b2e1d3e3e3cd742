DROP TABLE agent_label_moves, agent_labels;
ALTER TABLE agents DROP CONSTRAINT agents_active_version_fkey;
DROP TABLE agent_versions, agents;
DROP FUNCTION app.agent_versions_immutable(), app.check_agent_version_flow(),
    app.check_agent_active_version(), app.is_tool_policy(jsonb);
