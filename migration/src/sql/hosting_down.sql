DROP FUNCTION app.tenants_with_health_upkeep(integer);
DROP TABLE container_health_hourly, container_health, agent_activities, agent_channels;
DROP FUNCTION app.is_channel_config(text, jsonb);
ALTER TABLE tenants DROP CONSTRAINT tenants_plan_fkey;
DROP INDEX tenants_plan_idx;
UPDATE tenants SET plan = CASE plan WHEN 'starter' THEN 'free' WHEN 'growth' THEN 'pro'
    WHEN 'free' THEN 'free' WHEN 'pro' THEN 'pro' ELSE 'enterprise' END;
ALTER TABLE tenants ADD CONSTRAINT tenants_plan_check CHECK (plan IN ('free', 'pro', 'enterprise'));
DROP TABLE plans;
DROP FUNCTION app.is_plan_limits(jsonb);
