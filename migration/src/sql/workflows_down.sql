DROP TABLE triggers, workflow_transitions, workflow_steps, workflow_versions, workflows, clients CASCADE;
DROP FUNCTION app.webhook_target(text), app.check_active_version(), app.workflow_graph_immutable(),
    app.workflow_versions_immutable(), app.check_step_action();
