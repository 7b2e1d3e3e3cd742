DROP INDEX agents_template_idx;
ALTER TABLE agents DROP COLUMN template_version, DROP COLUMN template_id;
DROP TABLE agent_templates, skill_installations, skills;
DROP FUNCTION app.count_skill_installation(), app.check_skill_installation();
