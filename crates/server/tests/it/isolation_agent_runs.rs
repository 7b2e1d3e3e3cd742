//! Tenant isolation of agent runs (`workflow_runs.agent_id`, `agent_version_id`,
//! `tool_policy`). The threats: `runAgent` starting, or telling apart, another
//! customer's agent or version; a run row of one tenant that points at another
//! tenant's agent or version (or at a version of another agent), written by any path;
//! `agent.runs` or a run's `agent` showing another tenant's rows.

use sea_orm::{DbErr, Value as SqlValue};
use serde_json::json;

use crate::agent_runs::{agent_running, published_flow, started, version_with, RUN_AGENT};
use crate::agents::create_agent;
use crate::engine::transform;
use crate::isolation_processes::attempt;
use crate::isolation_workflows::{constraint, made_up, sqlstate, uuid};
use crate::processes::text;
use crate::support::{is_rls_violation, Member, TestApp};

/// A tenant with an agent (active version 1 running a one-step flow), one run of it,
/// and the flow's workflow and version.
struct Fixture {
    owner: Member,
    agent: String,
    version: String,
    run: String,
    workflow: String,
    flow: String,
}

async fn fixture(app: &TestApp, tenant: &str) -> Fixture {
    let owner = app.owner(tenant).await;
    let flow = published_flow(
        app,
        &owner,
        "echo-flow",
        json!([transform("echo", json!({ "ok": true }))]),
        json!([]),
    )
    .await;
    let (agent, version) = agent_running(app, &owner, "shared-slug", &flow, json!({})).await;
    let run = started(app, &owner, &agent, json!({})).await;
    let workflow = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on WorkflowVersion { workflow { id } } } }",
            json!({ "id": flow }),
        )
        .await["node"]["workflow"]["id"]
        .clone();
    Fixture {
        owner,
        agent,
        version,
        run,
        workflow: text(&workflow),
        flow,
    }
}

#[tokio::test]
async fn run_agent_answers_another_tenants_agent_or_version_as_never_issued() {
    let app = TestApp::new().await;
    let a = fixture(&app, "agent-runs-alpha").await;
    let b = fixture(&app, "agent-runs-bravo").await;

    for vars in [
        json!({ "a": a.agent }),
        json!({ "a": made_up(&a.agent) }),
        json!({ "a": b.agent, "v": a.version }),
        json!({ "a": b.agent, "v": made_up(&a.version) }),
    ] {
        let code = app
            .error_code(Some(&b.owner.token), RUN_AGENT, vars.clone())
            .await;
        assert_eq!(code, "NOT_FOUND", "{vars}");
    }
    // Another agent's version of the same tenant is no version of this agent either.
    let other = create_agent(&app, &b.owner, "other").await;
    let v = version_with(&app, &b.owner, &other, Some(&b.flow)).await;
    let code = app
        .error_code(
            Some(&b.owner.token),
            RUN_AGENT,
            json!({ "a": b.agent, "v": v }),
        )
        .await;
    assert_eq!(code, "NOT_FOUND");

    // Reading: A's agent and run are nothing to B, as IDs never issued.
    for id in [&a.agent, &a.run] {
        let code = app
            .error_code(
                Some(&b.owner.token),
                "query($id: ID!) { node(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        let never = app
            .error_code(
                Some(&b.owner.token),
                "query($id: ID!) { node(id: $id) { id } }",
                json!({ "id": made_up(id) }),
            )
            .await;
        assert_eq!(code, never, "{id}");
    }
    let seen = app
        .ok(
            Some(&b.owner.token),
            "{ agent(slug: \"shared-slug\") { runs { totalCount nodes { id agent { id } agentVersion { id } } } } runs { totalCount nodes { id agent { id } } } }",
            json!({}),
        )
        .await;
    // B's agent of the same slug lists B's one run (none of the refused calls started
    // one), and the tenant's runs are B's.
    assert_eq!(seen["agent"]["runs"]["totalCount"], 1, "{seen}");
    assert_eq!(seen["agent"]["runs"]["nodes"][0]["id"], b.run.as_str());
    assert_eq!(
        seen["agent"]["runs"]["nodes"][0]["agent"]["id"],
        b.agent.as_str()
    );
    assert_eq!(seen["runs"]["totalCount"], 1);
    assert_eq!(seen["runs"]["nodes"][0]["id"], b.run.as_str());
}

/// Inserts a run of B's flow with the given agent and version, as B (or `tenant`).
async fn insert_run(
    pool: &sea_orm::DatabaseConnection,
    me: &Member,
    tenant: ::uuid::Uuid,
    workflow: &str,
    flow: &str,
    agent: &str,
    version: &str,
) -> Result<u64, DbErr> {
    let values: Vec<SqlValue> = vec![
        tenant.into(),
        uuid(workflow).into(),
        uuid(flow).into(),
        uuid(agent).into(),
        uuid(version).into(),
    ];
    attempt(
        pool,
        me,
        "INSERT INTO workflow_runs (id, tenant_id, workflow_id, version_id, trigger_type, status, \
           is_simulation, agent_id, agent_version_id, tool_policy) \
         VALUES (gen_random_uuid(), $1, $2, $3, 'manual', 'pending', false, $4, $5, \
           '{\"tools\": {}, \"default\": \"ALLOW\"}')",
        values,
        false,
    )
    .await
}

#[tokio::test]
async fn no_run_can_point_at_another_tenants_agent_or_version_in_sql() {
    let app = TestApp::new().await;
    let a = fixture(&app, "agent-runs-charlie").await;
    let b = fixture(&app, "agent-runs-delta").await;
    let pool = app.db.app_pool(1).await;
    let tb = b.owner.tenant_uuid();

    // B's own agent and version: the insert works (rolled back).
    let own = insert_run(
        &pool,
        &b.owner,
        tb,
        &b.workflow,
        &b.flow,
        &b.agent,
        &b.version,
    )
    .await;
    assert_eq!(own.unwrap(), 1);
    // A's agent, A's version (with B's agent), both of A's: the composite keys refuse.
    for (agent, version) in [
        (&a.agent, &b.version),
        (&b.agent, &a.version),
        (&a.agent, &a.version),
    ] {
        let err = insert_run(&pool, &b.owner, tb, &b.workflow, &b.flow, agent, version)
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("23503"), "{err}");
        let name = constraint(&err).unwrap_or_default();
        assert!(name.starts_with("workflow_runs_agent"), "{name}");
    }
    // A run of B's written into A's tenant: RLS's WITH CHECK refuses it.
    let err = insert_run(
        &pool,
        &b.owner,
        a.owner.tenant_uuid(),
        &b.workflow,
        &b.flow,
        &b.agent,
        &b.version,
    )
    .await
    .unwrap_err();
    assert!(is_rls_violation(&err), "{err}");
    // Nor can B move its run onto A's agent.
    let err = attempt(
        &pool,
        &b.owner,
        "UPDATE workflow_runs SET agent_id = $1 WHERE id = $2",
        vec![uuid(&a.agent).into(), uuid(&b.run).into()],
        false,
    )
    .await
    .unwrap_err();
    assert!(sqlstate(&err).is_some(), "{err}");
    // And B's statements reach none of A's runs.
    let touched = attempt(
        &pool,
        &b.owner,
        "UPDATE workflow_runs SET input = '{}' WHERE agent_id = $1",
        vec![uuid(&a.agent).into()],
        false,
    )
    .await
    .unwrap();
    assert_eq!(touched, 0);
}
