//! Tenant isolation of templates and skills (agent_templates, skills,
//! skill_installations). The threats: a tenant that reads, instantiates or installs
//! another tenant's private template or skill; an answer that tells another tenant's
//! ID apart from one never issued; a tenant that writes the platform-curated public
//! rows (or their install count) without the platform-admin path; an installation
//! that points at another tenant's agent or private skill.

use sea_orm::Value as SqlValue;
use serde_json::json;
use uuid::Uuid;

use crate::isolation_processes::{answer, attempt};
use crate::isolation_workflows::{count, made_up, sqlstate, uuid};
use crate::processes::text;
use crate::skills::{create_skill, platform_admin, skill_input, INSTALL};
use crate::support::{as_app, is_rls_violation, Member, TestApp};
use crate::templates::{source, INSTANTIATE};

const TABLES: [&str; 3] = ["agent_templates", "skills", "skill_installations"];

/// One tenant with an agent, a private skill installed on it (with the public one) and
/// a private template of it.
struct Fixture {
    owner: Member,
    agent: String,
    template: String,
    skill: String,
    installation: String,
}

async fn fixture(app: &TestApp, tenant: &str, public_skill: &str) -> Fixture {
    let owner = app.owner(tenant).await;
    let (agent, _, template) = source(app, &owner, public_skill, "desk").await;
    let data = app
        .ok(
            Some(&owner.token),
            "{ agent(slug: \"desk\") { skills { id skill { id public } } } }",
            json!({}),
        )
        .await;
    let mine = data["agent"]["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["skill"]["public"] == false)
        .unwrap()
        .clone();
    Fixture {
        owner,
        agent,
        template,
        skill: text(&mine["skill"]["id"]),
        installation: text(&mine["id"]),
    }
}

#[tokio::test]
async fn private_template_and_skill_rows_are_invisible_and_unwritable_in_sql() {
    let app = TestApp::new().await;
    let root = platform_admin(&app, "root@iso-ts.test").await;
    let public = create_skill(&app, &root, skill_input("mailer", true)).await;
    let a = fixture(&app, "ts-alpha", &public).await;
    let b = fixture(&app, "ts-bravo", &public).await;
    let (ta, tb) = (a.owner.tenant_uuid(), b.owner.tenant_uuid());
    let pool = app.db.app_pool(1).await;
    let admin = app.db.admin().await;
    for table in TABLES {
        let filtered = format!("SELECT count(*) FROM {table} WHERE tenant_id = $1");
        let a_rows = count(&admin, &filtered, vec![ta.into()]).await;
        assert!(a_rows > 0, "{table}");
        let tx = as_app(&pool, Some(ta), Some(a.owner.user_uuid())).await;
        assert_eq!(
            count(&tx, &filtered, vec![ta.into()]).await,
            a_rows,
            "{table}"
        );
        tx.rollback().await.unwrap();
        let tx = as_app(&pool, Some(tb), Some(b.owner.user_uuid())).await;
        assert_eq!(
            count(&tx, &filtered, vec![ta.into()]).await,
            0,
            "{table}: tenant B sees tenant A's rows"
        );
        tx.rollback().await.unwrap();
        // Without a tenant: only public rows, never a tenant's.
        let tx = as_app(&pool, None, None).await;
        assert_eq!(
            count(
                &tx,
                &format!("SELECT count(*) FROM {table} WHERE tenant_id IS NOT NULL"),
                vec![]
            )
            .await,
            0,
            "{table} without a tenant"
        );
        tx.rollback().await.unwrap();
    }
    // Public skills are readable by every tenant.
    let tx = as_app(&pool, Some(tb), Some(b.owner.user_uuid())).await;
    assert_eq!(
        count(
            &tx,
            "SELECT count(*) FROM skills WHERE tenant_id IS NULL",
            vec![]
        )
        .await,
        1
    );
    tx.rollback().await.unwrap();

    // Writes to tenant A's rows from tenant B match nothing.
    for sql in [
        "UPDATE agent_templates SET name = 'pwned' WHERE tenant_id = $1",
        "UPDATE skills SET name = 'pwned' WHERE tenant_id = $1",
        "DELETE FROM skill_installations WHERE tenant_id = $1",
    ] {
        let own = attempt(&pool, &a.owner, sql, vec![ta.into()], false).await;
        assert!(own.unwrap_or_else(|e| panic!("{sql}: {e}")) > 0, "{sql}");
        let foreign = attempt(&pool, &b.owner, sql, vec![ta.into()], false).await;
        assert_eq!(foreign.unwrap_or_else(|e| panic!("{sql}: {e}")), 0, "{sql}");
    }
    // Public rows: a tenant reads them but neither changes nor adds one.
    for sql in [
        "UPDATE skills SET name = 'pwned', status = 'removed' WHERE tenant_id IS NULL",
        "UPDATE agent_templates SET name = 'pwned' WHERE tenant_id IS NULL",
    ] {
        let changed = attempt(&pool, &b.owner, sql, vec![], false).await;
        assert_eq!(changed.unwrap_or_else(|e| panic!("{sql}: {e}")), 0, "{sql}");
    }
    let err = attempt(
        &pool,
        &b.owner,
        "INSERT INTO skills (id, tenant_id, key, name, category, version) VALUES ($1, NULL, 'forged', 'Forged', 'analytics', '1.0.0')",
        vec![Uuid::now_v7().into()],
        false,
    )
    .await
    .expect_err("a tenant inserted a public skill");
    assert!(is_rls_violation(&err), "{err}");
    let err = attempt(
        &pool,
        &b.owner,
        "INSERT INTO agent_templates (id, tenant_id, slug, name, category, role, model_tier, thinking_mode, tool_policy) VALUES ($1, NULL, 'forged', 'Forged', 'other', 'custom', 'haiku', 'off', '{\"tools\": {}, \"default\": \"ASK\"}')",
        vec![Uuid::now_v7().into()],
        false,
    )
    .await
    .expect_err("a tenant inserted a public template");
    assert!(is_rls_violation(&err), "{err}");
    // The install count is not the application's to write, public or private, and the
    // counting function is not callable.
    for sql in [
        "UPDATE skills SET install_count = 1000 WHERE tenant_id IS NULL",
        "UPDATE skills SET install_count = 1000 WHERE tenant_id = $1",
        "SELECT app.count_skill_installation()",
        "UPDATE skills SET tenant_id = $1",
        "UPDATE agent_templates SET tenant_id = $1",
        "UPDATE skill_installations SET tenant_id = $1",
    ] {
        let values = if sql.contains("$1") {
            vec![SqlValue::from(tb)]
        } else {
            vec![]
        };
        let err = attempt(&pool, &b.owner, sql, values, false)
            .await
            .expect_err(sql);
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{sql}: {err}");
    }
    // An installation of tenant B cannot name tenant A's agent or private skill: both
    // fail exactly as a made-up one does.
    const INSTALL_ROW: &str = "INSERT INTO skill_installations (id, tenant_id, agent_id, skill_id, skill_version) VALUES ($1, $2, $3, $4, '1.2.0')";
    let new = || SqlValue::from(Uuid::now_v7());
    for (foreign, missing) in [
        (
            vec![
                new(),
                tb.into(),
                uuid(&a.agent).into(),
                uuid(&public).into(),
            ],
            vec![
                new(),
                tb.into(),
                Uuid::now_v7().into(),
                uuid(&public).into(),
            ],
        ),
        (
            vec![
                new(),
                tb.into(),
                uuid(&b.agent).into(),
                uuid(&a.skill).into(),
            ],
            vec![
                new(),
                tb.into(),
                uuid(&b.agent).into(),
                Uuid::now_v7().into(),
            ],
        ),
    ] {
        let foreign = attempt(&pool, &b.owner, INSTALL_ROW, foreign, false)
            .await
            .expect_err("foreign reference");
        let missing = attempt(&pool, &b.owner, INSTALL_ROW, missing, false)
            .await
            .expect_err("missing reference");
        assert_eq!(
            sqlstate(&foreign),
            sqlstate(&missing),
            "{foreign} / {missing}"
        );
        assert_eq!(sqlstate(&foreign).as_deref(), Some("23503"), "{foreign}");
    }
    // And the public count is exactly the two installations.
    assert_eq!(
        count(
            &admin,
            "SELECT install_count FROM skills WHERE tenant_id IS NULL",
            vec![]
        )
        .await,
        2
    );
    admin.close().await.unwrap();
}

#[tokio::test]
async fn another_tenants_templates_and_skills_are_not_found_like_made_up_ones() {
    let app = TestApp::new().await;
    let root = platform_admin(&app, "root@iso-ts-gql.test").await;
    let public = create_skill(&app, &root, skill_input("mailer", true)).await;
    let a = fixture(&app, "ts-charlie", &public).await;
    let b = fixture(&app, "ts-delta", &public).await;
    let token = Some(b.owner.token.as_str());

    let node = "query($id: ID!) { node(id: $id) { id } }";
    for id in [&a.template, &a.skill, &a.installation] {
        let found = app
            .ok(Some(&a.owner.token), node, json!({ "id": id }))
            .await;
        assert_eq!(found["node"]["id"], id.as_str());
        let (_, foreign) = app.post(token, node, json!({ "id": id })).await;
        let (_, missing) = app.post(token, node, json!({ "id": made_up(id) })).await;
        assert_eq!(
            foreign["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "node({id}): {foreign:#}"
        );
        assert_eq!(answer(&foreign), answer(&missing), "node({id})");
    }

    // Every mutation that takes one of tenant A's IDs.
    let cases = vec![
        (INSTANTIATE, json!({ "t": a.template, "s": "stolen" }), json!({ "t": made_up(&a.template), "s": "stolen" })),
        (INSTALL, json!({ "a": b.agent, "s": a.skill, "c": { "channel": "x" } }), json!({ "a": b.agent, "s": made_up(&a.skill), "c": { "channel": "x" } })),
        (INSTALL, json!({ "a": a.agent, "s": public, "c": { "channel": "x" } }), json!({ "a": made_up(&a.agent), "s": public, "c": { "channel": "x" } })),
        (
            "mutation($a: ID!, $s: ID!) { uninstallSkill(input: {agentId: $a, skillId: $s}) { installation { id } userErrors { code field message } } }",
            json!({ "a": a.agent, "s": a.skill }),
            json!({ "a": made_up(&a.agent), "s": made_up(&a.skill) }),
        ),
        (
            "mutation($t: ID!) { publishTemplate(input: {templateId: $t}) { template { id } userErrors { code field message } } }",
            json!({ "t": a.template }),
            json!({ "t": made_up(&a.template) }),
        ),
        (
            "mutation($t: ID!) { deleteTemplate(input: {id: $t}) { template { id } userErrors { code field message } } }",
            json!({ "t": a.template }),
            json!({ "t": made_up(&a.template) }),
        ),
        (
            "mutation($t: ID!) { updateSkill(input: {id: $t, name: \"pwned\"}) { skill { id } userErrors { code field message } } }",
            json!({ "t": a.skill }),
            json!({ "t": made_up(&a.skill) }),
        ),
        (
            "mutation($t: ID!) { createTemplate(input: {versionId: $t, slug: \"stolen\", name: \"Stolen\", category: OTHER}) { template { id } userErrors { code field message } } }",
            json!({ "t": text(&app.ok(Some(&a.owner.token), "{ agent(slug: \"desk\") { versions { id } } }", json!({})).await["agent"]["versions"][0]["id"]) }),
            json!({ "t": made_up(&a.agent.replace("agt_", "agv_")) }),
        ),
    ];
    for (mutation, foreign, missing) in cases {
        let (_, foreign) = app.post(token, mutation, foreign).await;
        let (_, missing) = app.post(token, mutation, missing).await;
        assert_eq!(
            foreign["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{mutation}: {foreign:#}"
        );
        assert_eq!(answer(&foreign), answer(&missing), "{mutation}");
    }

    // Lists: tenant B sees the public skill and its own, never tenant A's; the public
    // skill's installations are tenant B's own only.
    let data = app
        .ok(
            token,
            "{ skills(first: 50) { edges { node { key public installCount installations { agent { id } } } } } templates(first: 50) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let skills = data["skills"]["edges"].as_array().unwrap();
    assert_eq!(skills.len(), 2, "{data:#}");
    for edge in skills {
        for installation in edge["node"]["installations"].as_array().unwrap() {
            assert_eq!(installation["agent"]["id"], b.agent.as_str());
        }
    }
    let public_node = skills.iter().find(|e| e["node"]["public"] == true).unwrap();
    assert_eq!(public_node["node"]["installCount"], 2);
    assert_eq!(
        public_node["node"]["installations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        data["templates"]["edges"],
        json!([{ "node": { "id": b.template } }])
    );
}
