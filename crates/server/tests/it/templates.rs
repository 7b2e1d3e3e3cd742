//! Agent templates: a template snapshots an agent version (spec, settings, skills) and
//! keeps it whatever later happens to the source; instantiating copies it into the
//! caller's tenant as a new agent with a draft version 1, recording the template and
//! its version, all or nothing; public templates are published by platform admins only
//! and every tenant can instantiate them; the list filters by category, search and
//! public; every mutation is audited; the templates list and the agents list with their
//! skills and template cost the same statements whatever the page size.

use std::sync::atomic::Ordering;

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::agents::create_agent;
use crate::processes::{payload, text};
use crate::skills::{create_skill, platform_admin, skill_input, INSTALL};
use crate::support::{Member, TestApp};

pub const CREATE_TEMPLATE: &str = "mutation($v: ID!, $s: String!, $c: TemplateCategory!) { createTemplate(input: {versionId: $v, slug: $s, name: \"Support desk\", description: \"Answers tickets\", category: $c, author: \"Ada\"}) { template { id slug public version sourceVersionNumber role spec specMarkdown skills { skillKey public version config } } userErrors { field message code } } }";
pub const INSTANTIATE: &str = "mutation($t: ID!, $s: String!) { instantiateTemplate(input: {templateId: $t, slug: $s, name: \"From template\"}) { agent { id slug role modelTier toolPolicy templateVersion template { id } skills { skill { key } config } versions { number status spec specMarkdown flow { status number steps { key type } workflow { key } } } } version { number status } skippedSkills userErrors { field message code } } }";
pub const PUBLISH: &str = "mutation($t: ID!, $s: String) { publishTemplate(input: {templateId: $t, slug: $s}) { template { id slug public skills { skillKey } } userErrors { field message code } } }";

/// An ENGINEERING agent `slug` with version 1 (spec v1), a public and a private skill
/// installed, and a private template of that version: (agent, version, template).
pub async fn source(
    app: &TestApp,
    owner: &Member,
    public_skill: &str,
    slug: &str,
) -> (String, String, String) {
    let t = Some(owner.token.as_str());
    let agent = create_agent(app, owner, slug).await;
    app.ok(
        t,
        "mutation($id: ID!, $p: JSON) { updateAgent(input: {id: $id, role: ENGINEERING, modelTier: OPUS, toolPolicy: $p}) { userErrors { field } } }",
        json!({ "id": agent, "p": { "tools": { "email.send": "ALLOW" }, "default": "DENY" } }),
    )
    .await;
    let flow = crate::agents::flow(app, owner, &format!("{slug}-source-flow"), true).await;
    let data = app
        .ok(
            t,
            crate::agents::CREATE_VERSION,
            json!({ "a": agent, "spec": { "instructions": "v1" }, "md": "# Triage\nLabel every issue.", "flow": flow }),
        )
        .await;
    let version = text(&payload(&data, "createAgentVersion")["version"]["id"]);
    let private = create_skill(app, owner, skill_input(&format!("{slug}-notes"), false)).await;
    for skill in [public_skill, private.as_str()] {
        let data = app
            .ok(
                t,
                INSTALL,
                json!({ "a": agent, "s": skill, "c": { "channel": "desk" } }),
            )
            .await;
        payload(&data, "installSkill");
    }
    let data = app
        .ok(
            t,
            CREATE_TEMPLATE,
            json!({ "v": version, "s": format!("{slug}-tpl"), "c": "SUPPORT" }),
        )
        .await;
    let template = text(&payload(&data, "createTemplate")["template"]["id"]);
    (agent, version, template)
}

#[tokio::test]
async fn a_template_snapshots_a_version_and_instantiates_into_a_new_agent() {
    let app = TestApp::new().await;
    let root = platform_admin(&app, "root@tpl.test").await;
    let owner = app.owner("tpl-a").await;
    let t = Some(owner.token.as_str());
    let mailer = create_skill(&app, &root, skill_input("mailer", true)).await;
    let (_, version, template) = source(&app, &owner, &mailer, "desk").await;
    assert!(template.starts_with("tpl_"), "{template}");

    // The snapshot: the draft source changes afterwards, the template does not.
    app.ok(
        t,
        "mutation($id: ID!) { updateAgentVersion(input: {id: $id, spec: {instructions: \"changed\"}}) { userErrors { field } } }",
        json!({ "id": version }),
    )
    .await;
    let data = app
        .ok(
            t,
            "query($id: ID!) { node(id: $id) { ... on AgentTemplate { slug public version sourceVersionNumber category author role modelTier spec flow skills { skillKey public version config } } } }",
            json!({ "id": template }),
        )
        .await;
    assert_eq!(
        data["node"],
        json!({
            "slug": "desk-tpl", "public": false, "version": 1, "sourceVersionNumber": 1,
            "category": "SUPPORT", "author": "Ada", "role": "ENGINEERING", "modelTier": "OPUS",
            "spec": { "instructions": "v1" },
            "flow": {
                "steps": [{ "key": "wait", "name": "Wait", "type": "delay", "position": {}, "config": { "seconds": 1 }, "actionId": null, "isRequired": true, "description": "" }],
                "transitions": [],
            },
            "skills": [
                { "skillKey": "mailer", "public": true, "version": "1.2.0", "config": { "channel": "desk" } },
                { "skillKey": "desk-notes", "public": false, "version": "1.2.0", "config": { "channel": "desk" } },
            ],
        })
    );

    // Instantiated: a new agent with the template's settings, a draft v1 with its spec
    // and no flow, its skills installed, the template and its version recorded.
    let data = app
        .ok(t, INSTANTIATE, json!({ "t": template, "s": "desk-copy" }))
        .await;
    let made = payload(&data, "instantiateTemplate");
    assert_eq!(made["skippedSkills"], json!([]));
    assert_eq!(made["version"], json!({ "number": 1, "status": "DRAFT" }));
    let agent = &made["agent"];
    assert_eq!(agent["slug"], "desk-copy");
    assert_eq!(agent["role"], "ENGINEERING");
    assert_eq!(agent["modelTier"], "OPUS");
    assert_eq!(
        agent["toolPolicy"],
        json!({ "tools": { "email.send": "ALLOW" }, "default": "DENY" })
    );
    assert_eq!(agent["templateVersion"], 1);
    assert_eq!(agent["template"]["id"], template.as_str());
    assert_eq!(
        agent["versions"],
        json!([{
            "number": 1, "status": "DRAFT", "spec": { "instructions": "v1" },
            "specMarkdown": "# Triage\nLabel every issue.",
            "flow": { "status": "PUBLISHED", "number": 1, "steps": [{ "key": "wait", "type": "DELAY" }], "workflow": { "key": "desk-copy-flow" } },
        }])
    );
    assert_eq!(
        agent["skills"],
        json!([
            { "skill": { "key": "mailer" }, "config": { "channel": "desk" } },
            { "skill": { "key": "desk-notes" }, "config": { "channel": "desk" } },
        ])
    );

    // All or nothing: a taken slug leaves no agent, version or installation behind.
    let data = app
        .ok(t, INSTANTIATE, json!({ "t": template, "s": "desk-copy" }))
        .await;
    assert_eq!(
        data["instantiateTemplate"]["userErrors"][0]["field"], "slug",
        "{data:#}"
    );
    let data = app
        .ok(
            t,
            "{ agents(first: 100) { totalCount } mailer: skills(filter: {search: \"mailer\"}) { edges { node { installCount } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["agents"]["totalCount"], 2);
    assert_eq!(data["mailer"]["edges"][0]["node"]["installCount"], 2);

    // A skill no longer published is skipped, and named.
    app.ok(
        Some(&root.token),
        "mutation($id: ID!) { updateSkill(input: {id: $id, status: DEPRECATED}) { userErrors { field } } }",
        json!({ "id": mailer }),
    )
    .await;
    let data = app
        .ok(t, INSTANTIATE, json!({ "t": template, "s": "desk-third" }))
        .await;
    assert_eq!(
        payload(&data, "instantiateTemplate")["skippedSkills"],
        json!(["mailer"])
    );

    // Bad input names its field.
    for (vars, code) in [
        (
            json!({ "v": version, "s": "Bad Slug", "c": "SALES" }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "v": version, "s": "desk-tpl", "c": "SALES" }),
            "CONFLICT",
        ),
    ] {
        let data = app.ok(t, CREATE_TEMPLATE, vars).await;
        let error = &data["createTemplate"]["userErrors"][0];
        assert_eq!(error["field"], "slug", "{data:#}");
        assert_eq!(error["code"], code, "{data:#}");
    }

    let data = app
        .ok(
            t,
            "{ tenant { auditEvents(first: 100) { edges { node { action } } } } }",
            json!({}),
        )
        .await;
    let actions: Vec<String> = data["tenant"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| text(&e["node"]["action"]))
        .collect();
    for action in ["template.create", "template.instantiate"] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
}

#[tokio::test]
async fn public_templates_are_published_by_platform_admins_and_used_by_every_tenant() {
    let app = TestApp::new().await;
    let mut root = platform_admin(&app, "root@tpl-pub.test").await;
    let owner = app.owner("tpl-pub-a").await;
    let other = app.owner("tpl-pub-b").await;
    let mailer = create_skill(&app, &root, skill_input("mailer", true)).await;
    let (_, _, template) = source(&app, &owner, &mailer, "desk").await;

    // A tenant owner cannot publish.
    assert_eq!(
        app.error_code(Some(&owner.token), PUBLISH, json!({ "t": template }))
            .await,
        "FORBIDDEN"
    );
    // The platform admin publishes from a tenant of its own; private skills stay out
    // of the public copy.
    let tenant = app
        .ok(
            Some(&root.token),
            "mutation { createTenant(input: {slug: \"curators\", name: \"Curators\"}) { tenant { id } } }",
            json!({}),
        )
        .await["createTenant"]["tenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.switch(&mut root, &tenant).await;
    let (_, _, curated) = source(&app, &root, &mailer, "curated").await;
    let data = app
        .ok(
            Some(&root.token),
            PUBLISH,
            json!({ "t": curated, "s": "support-desk" }),
        )
        .await;
    let published = payload(&data, "publishTemplate")["template"].clone();
    assert_eq!(published["public"], true);
    assert_eq!(published["slug"], "support-desk");
    assert_eq!(published["skills"], json!([{ "skillKey": "mailer" }]));
    let public = text(&published["id"]);

    // Every tenant lists it; only its own private ones besides.
    for (member, own) in [(&owner, vec!["desk-tpl"]), (&other, vec![])] {
        let data = app
            .ok(
                Some(&member.token),
                "{ all: templates(first: 50, orderBy: CREATED_AT_ASC) { edges { node { slug public } } } pub: templates(filter: {public: true, category: [SUPPORT], search: \"desk\"}) { edges { node { slug } } } none: templates(filter: {category: [TRADING]}) { edges { node { slug } } } }",
                json!({}),
            )
            .await;
        let mut slugs: Vec<Value> = own
            .iter()
            .map(|s| json!({ "slug": s, "public": false }))
            .collect();
        slugs.push(json!({ "slug": "support-desk", "public": true }));
        let got: Vec<Value> = data["all"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"].clone())
            .collect();
        assert_eq!(got, slugs, "{data:#}");
        assert_eq!(
            data["pub"]["edges"],
            json!([{ "node": { "slug": "support-desk" } }])
        );
        assert_eq!(data["none"]["edges"], json!([]));
    }

    // Another tenant instantiates the public template.
    let data = app
        .ok(
            Some(&other.token),
            INSTANTIATE,
            json!({ "t": public, "s": "helpdesk" }),
        )
        .await;
    let made = payload(&data, "instantiateTemplate");
    assert_eq!(made["agent"]["template"]["id"], public.as_str());
    assert_eq!(
        made["agent"]["skills"],
        json!([{ "skill": { "key": "mailer" }, "config": { "channel": "desk" } }])
    );

    // A tenant cannot delete the public template; the platform admin can.
    assert_eq!(
        app.error_code(
            Some(&other.token),
            "mutation($id: ID!) { deleteTemplate(input: {id: $id}) { template { id } } }",
            json!({ "id": public })
        )
        .await,
        "FORBIDDEN"
    );
    let data = app
        .ok(
            Some(&root.token),
            "mutation($id: ID!) { deleteTemplate(input: {id: $id}) { template { deletedAt } userErrors { field } } }",
            json!({ "id": public }),
        )
        .await;
    assert!(payload(&data, "deleteTemplate")["template"]["deletedAt"].is_string());
    // The agent made from it keeps working.
    let data = app
        .ok(
            Some(&other.token),
            "{ agent(slug: \"helpdesk\") { templateVersion } }",
            json!({}),
        )
        .await;
    assert_eq!(data["agent"]["templateVersion"], 1);
}

#[tokio::test]
async fn template_and_agent_lists_cost_the_same_statements_at_5_and_20_rows() {
    let app = TestApp::new().await;
    let root = platform_admin(&app, "root@tpl-dash.test").await;
    let owner = app.owner("tpl-dash").await;
    let t = Some(owner.token.as_str());
    let mailer = create_skill(&app, &root, skill_input("mailer", true)).await;
    let (_, version, template) = source(&app, &owner, &mailer, "desk").await;
    for i in 0..20 {
        let data = app
            .ok(
                t,
                CREATE_TEMPLATE,
                json!({ "v": version, "s": format!("tpl-{i:02}"), "c": "SALES" }),
            )
            .await;
        payload(&data, "createTemplate");
        let data = app
            .ok(
                t,
                INSTANTIATE,
                json!({ "t": template, "s": format!("copy-{i:02}") }),
            )
            .await;
        payload(&data, "instantiateTemplate");
    }
    let query = "query($n: Int!) { templates(first: $n, filter: {category: [SALES]}) { edges { node { slug createdBy { email } } } } agents(first: $n) { edges { node { slug template { slug } skills { skillVersion } } } } }";
    let mut counts = vec![];
    for n in [5, 20] {
        for _ in 0..2 {
            let before = app.state.statements.load(Ordering::Relaxed);
            let data = app.ok(t, query, json!({ "n": n })).await;
            counts.push(app.state.statements.load(Ordering::Relaxed) - before);
            let templates = data["templates"]["edges"].as_array().unwrap();
            assert_eq!(templates.len(), n as usize, "{data:#}");
            assert_eq!(templates[0]["node"]["createdBy"]["email"], owner.email);
            let agents = data["agents"]["edges"].as_array().unwrap();
            assert_eq!(agents.len(), n as usize, "{data:#}");
            // Newest first: a copy, made from the template, with its two skills.
            assert_eq!(agents[0]["node"]["template"]["slug"], "desk-tpl");
            assert_eq!(agents[0]["node"]["skills"].as_array().unwrap().len(), 2);
        }
    }
    eprintln!("templates and agents: SQL statements per request at 5 and 20 rows: {counts:?}");
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "statements per request changed with the page: {counts:?}"
    );
}

#[tokio::test]
async fn an_instantiation_that_fails_late_leaves_nothing_behind() {
    let app = TestApp::new().await;
    let root = platform_admin(&app, "root@tpl-atomic.test").await;
    let owner = app.owner("tpl-atomic").await;
    let t = Some(owner.token.as_str());
    let mailer = create_skill(&app, &root, skill_input("mailer", true)).await;
    let (_, _, template) = source(&app, &owner, &mailer, "desk").await;
    // A flow the workflow rules refuse (a transition to a step that does not exist):
    // the agent, its version and the workflow are written before the graph is checked.
    app.db
        .admin()
        .await
        .execute(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "UPDATE agent_templates SET flow = jsonb_set(flow, '{transitions}', '[{\"key\": \"broken\", \"from\": \"wait\", \"to\": \"nowhere\", \"condition\": null, \"isDefault\": false}]') WHERE id = $1",
            [crate::isolation_workflows::uuid(&template).into()],
        ))
        .await
        .unwrap();
    let counts = "{ agents(first: 100) { totalCount } workflows(first: 100) { totalCount } skills(filter: {public: true}) { edges { node { installCount } } } }";
    let before = app.ok(t, counts, json!({})).await;
    let data = app
        .ok(t, INSTANTIATE, json!({ "t": template, "s": "half-made" }))
        .await;
    let errors = data["instantiateTemplate"]["userErrors"]
        .as_array()
        .unwrap();
    assert!(!errors.is_empty(), "{data:#}");
    assert_eq!(data["instantiateTemplate"]["agent"], Value::Null);
    assert_eq!(app.ok(t, counts, json!({})).await, before);
}

#[tokio::test]
async fn a_flow_bound_to_a_private_action_is_not_published() {
    let app = TestApp::new().await;
    let mut root = platform_admin(&app, "root@tpl-private-action.test").await;
    let tenant = app
        .ok(
            Some(&root.token),
            "mutation { createTenant(input: {slug: \"curators\", name: \"Curators\"}) { tenant { id } } }",
            json!({}),
        )
        .await["createTenant"]["tenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.switch(&mut root, &tenant).await;
    let mailer = create_skill(&app, &root, skill_input("mailer", true)).await;
    let (_, _, template) = source(&app, &root, &mailer, "desk").await;
    let admin = app.db.admin().await;
    let bind = |action: &str| {
        sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            format!("UPDATE agent_templates SET flow = jsonb_set(flow, '{{steps,0,actionId}}', to_jsonb(({action})::text)) WHERE id = $1"),
            [crate::isolation_workflows::uuid(&template).into()],
        )
    };
    // Bound to a public action: every tenant can see it, so it publishes.
    admin
        .execute(bind(
            "SELECT id FROM actions WHERE tenant_id IS NULL LIMIT 1",
        ))
        .await
        .unwrap();
    let data = app
        .ok(
            Some(&root.token),
            PUBLISH,
            json!({ "t": template, "s": "public-ok" }),
        )
        .await;
    assert_eq!(
        payload(&data, "publishTemplate")["template"]["public"],
        true
    );
    // Bound to an action of the tenant's private app: refused, naming the template.
    admin
        .execute_unprepared(&format!(
            "INSERT INTO apps (id, tenant_id, key, name, category) VALUES ('00000000-0000-7000-8000-000000000001', '{t}', 'mine', 'Mine', 'core');
             INSERT INTO app_versions (id, tenant_id, app_id, version, manifest) VALUES ('00000000-0000-7000-8000-000000000002', '{t}', '00000000-0000-7000-8000-000000000001', '1.0.0', '{{}}');
             INSERT INTO actions (id, tenant_id, app_version_id, key, name, kind, input_schema, output_schema) VALUES ('00000000-0000-7000-8000-000000000003', '{t}', '00000000-0000-7000-8000-000000000002', 'doIt', 'Do it', 'action', '{{}}', '{{}}');",
            t = crate::isolation_workflows::uuid(&tenant)
        ))
        .await
        .unwrap();
    admin
        .execute(bind("SELECT '00000000-0000-7000-8000-000000000003'::uuid"))
        .await
        .unwrap();
    let data = app
        .ok(
            Some(&root.token),
            PUBLISH,
            json!({ "t": template, "s": "public-no" }),
        )
        .await;
    assert_eq!(
        data["publishTemplate"]["userErrors"][0]["field"], "templateId",
        "{data:#}"
    );
    admin.close().await.unwrap();
}
