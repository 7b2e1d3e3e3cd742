//! The skills marketplace: platform admins write public skills, builders their
//! tenant's; installing checks status, role, the tenant's allowed permissions and the
//! config schema, and names the field it refuses; the install count is exact under
//! concurrent installs; every mutation is audited; the skills list costs the same
//! statements whatever its page size.

use std::sync::atomic::Ordering;

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::agents::create_agent;
use crate::processes::{payload, text};
use crate::support::{Member, TestApp};

pub const CREATE_SKILL: &str = "mutation($in: CreateSkillInput!) { createSkill(input: $in) { skill { id key public status installCount version compatibleRoles permissions } userErrors { field message code } } }";
pub const INSTALL: &str = "mutation($a: ID!, $s: ID!, $c: JSON) { installSkill(input: {agentId: $a, skillId: $s, config: $c}) { installation { id skillVersion config installedBy { email } } skill { installCount } userErrors { field message code } } }";
pub const UNINSTALL: &str = "mutation($a: ID!, $s: ID!) { uninstallSkill(input: {agentId: $a, skillId: $s}) { installation { id } skill { installCount } userErrors { field message code } } }";

/// A signed-up user made platform admin out of band, as an operator would.
pub async fn platform_admin(app: &TestApp, email: &str) -> Member {
    let root = app.sign_up(email).await;
    app.db
        .admin()
        .await
        .execute_unprepared(&format!(
            "UPDATE users SET platform_role = 'platform_admin' WHERE email = '{email}'"
        ))
        .await
        .unwrap();
    root
}

/// The input of a published skill for ENGINEERING and CUSTOM agents that asks for
/// `email.send` and wants a `channel` in its config.
pub fn skill_input(key: &str, public: bool) -> Value {
    json!({
        "key": key,
        "name": format!("Skill {key}"),
        "category": "COMMUNICATION",
        "version": "1.2.0",
        "compatibleRoles": ["ENGINEERING", "CUSTOM"],
        "permissions": ["email.send"],
        "capabilities": { "sends": ["email"] },
        "configSchema": {
            "type": "object",
            "properties": { "channel": { "type": "string" } },
            "required": ["channel"],
            "additionalProperties": false
        },
        "status": "PUBLISHED",
        "public": public,
    })
}

/// Creates a skill; its ID.
pub async fn create_skill(app: &TestApp, who: &Member, input: Value) -> String {
    let data = app
        .ok(Some(&who.token), CREATE_SKILL, json!({ "in": input }))
        .await;
    text(&payload(&data, "createSkill")["skill"]["id"])
}

fn first_error(data: &Value, field: &str) -> (String, String) {
    let error = &data[field]["userErrors"][0];
    assert!(error.is_object(), "{field}: no userErrors in {data:#}");
    (text(&error["code"]), text(&error["field"]))
}

#[tokio::test]
async fn installing_checks_status_role_permissions_and_config() {
    let app = TestApp::new().await;
    let root = platform_admin(&app, "root@skills.test").await;
    let owner = app.owner("skills-a").await;
    let t = Some(owner.token.as_str());

    // Tenants may not write public skills; the platform admin may.
    assert_eq!(
        app.error_code(
            t,
            CREATE_SKILL,
            json!({ "in": skill_input("mailer", true) })
        )
        .await,
        "FORBIDDEN"
    );
    let public = create_skill(&app, &root, skill_input("mailer", true)).await;
    assert!(public.starts_with("skl_"), "{public}");
    let private = create_skill(&app, &owner, skill_input("notes", false)).await;
    let mut draft = skill_input("drafty", false);
    draft["status"] = json!("DRAFT");
    let draft = create_skill(&app, &owner, draft).await;

    let agent = create_agent(&app, &owner, "coder").await;
    app.ok(
        t,
        "mutation($id: ID!) { updateAgent(input: {id: $id, role: ENGINEERING}) { userErrors { field } } }",
        json!({ "id": agent }),
    )
    .await;
    let pm = create_agent(&app, &owner, "planner").await;
    app.ok(
        t,
        "mutation($id: ID!) { updateAgent(input: {id: $id, role: PM}) { userErrors { field } } }",
        json!({ "id": pm }),
    )
    .await;

    // Bad config, incompatible role, draft skill: each refused with its field.
    let data = app
        .ok(
            t,
            INSTALL,
            json!({ "a": agent, "s": public, "c": { "channel": 7 } }),
        )
        .await;
    assert_eq!(
        first_error(&data, "installSkill"),
        ("BAD_USER_INPUT".to_owned(), "config/channel".to_owned())
    );
    let data = app
        .ok(
            t,
            INSTALL,
            json!({ "a": pm, "s": public, "c": { "channel": "ops" } }),
        )
        .await;
    assert_eq!(
        first_error(&data, "installSkill"),
        ("BAD_USER_INPUT".to_owned(), "skillId".to_owned())
    );
    let data = app
        .ok(
            t,
            INSTALL,
            json!({ "a": agent, "s": draft, "c": { "channel": "ops" } }),
        )
        .await;
    assert_eq!(
        first_error(&data, "installSkill"),
        ("CONFLICT".to_owned(), "skillId".to_owned())
    );

    // The tenant's policy: a setting that is not a list of permissions is refused on
    // save; one that leaves out email.send refuses the skill.
    let settings =
        "mutation($s: JSON!) { updateTenant(input: {settings: $s}) { userErrors { field code } } }";
    let data = app
        .ok(
            t,
            settings,
            json!({ "s": { "allowedSkillPermissions": ["Bad Perm"] } }),
        )
        .await;
    assert_eq!(
        data["updateTenant"]["userErrors"][0]["field"], "settings.allowedSkillPermissions.0",
        "{data:#}"
    );
    let data = app
        .ok(
            t,
            settings,
            json!({ "s": { "allowedSkillPermissions": ["calendar.read"] } }),
        )
        .await;
    assert_eq!(data["updateTenant"]["userErrors"], json!([]), "{data:#}");
    let data = app
        .ok(
            t,
            INSTALL,
            json!({ "a": agent, "s": public, "c": { "channel": "ops" } }),
        )
        .await;
    assert_eq!(
        first_error(&data, "installSkill"),
        ("BAD_USER_INPUT".to_owned(), "skillId".to_owned())
    );
    assert!(text(&data["installSkill"]["userErrors"][0]["message"]).contains("email.send"));
    app.ok(
        t,
        settings,
        json!({ "s": { "allowedSkillPermissions": ["calendar.read", "email.send"] } }),
    )
    .await;

    // Installed: pinned at the skill's version, counted, listed both ways.
    let data = app
        .ok(
            t,
            INSTALL,
            json!({ "a": agent, "s": public, "c": { "channel": "ops" } }),
        )
        .await;
    let done = payload(&data, "installSkill");
    assert_eq!(done["installation"]["skillVersion"], "1.2.0");
    assert_eq!(done["installation"]["config"], json!({ "channel": "ops" }));
    assert_eq!(done["installation"]["installedBy"]["email"], owner.email);
    assert_eq!(done["skill"]["installCount"], 1);
    let data = app
        .ok(
            t,
            INSTALL,
            json!({ "a": agent, "s": private, "c": { "channel": "x" } }),
        )
        .await;
    payload(&data, "installSkill");
    // Twice is CONFLICT, and the count does not move.
    let data = app
        .ok(
            t,
            INSTALL,
            json!({ "a": agent, "s": public, "c": { "channel": "ops" } }),
        )
        .await;
    assert_eq!(first_error(&data, "installSkill").0, "CONFLICT");
    let data = app
        .ok(
            t,
            "{ agent(slug: \"coder\") { skills { skill { key installCount } skillVersion } } skills(filter: {public: true}) { edges { node { key installations { agent { slug } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["agent"]["skills"],
        json!([
            { "skill": { "key": "mailer", "installCount": 1 }, "skillVersion": "1.2.0" },
            { "skill": { "key": "notes", "installCount": 1 }, "skillVersion": "1.2.0" },
        ])
    );
    assert_eq!(
        data["skills"]["edges"],
        json!([{ "node": { "key": "mailer", "installations": [{ "agent": { "slug": "coder" } }] } }])
    );

    // A new skill version leaves the installation pinned.
    app.ok(
        Some(&root.token),
        "mutation($id: ID!) { updateSkill(input: {id: $id, version: \"2.0.0\", rating: 4.5}) { skill { version rating } userErrors { field } } }",
        json!({ "id": public }),
    )
    .await;
    let data = app
        .ok(
            t,
            "{ agent(slug: \"coder\") { skills { skillVersion skill { version rating } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["agent"]["skills"][0],
        json!({ "skillVersion": "1.2.0", "skill": { "version": "2.0.0", "rating": 4.5 } })
    );
    // A tenant cannot change the public skill.
    assert_eq!(
        app.error_code(
            t,
            "mutation($id: ID!) { updateSkill(input: {id: $id, name: \"pwned\"}) { skill { id } } }",
            json!({ "id": public })
        )
        .await,
        "FORBIDDEN"
    );

    // Uninstalled: counted down.
    let data = app
        .ok(t, UNINSTALL, json!({ "a": agent, "s": public }))
        .await;
    assert_eq!(payload(&data, "uninstallSkill")["skill"]["installCount"], 0);
    assert_eq!(
        app.error_code(t, UNINSTALL, json!({ "a": agent, "s": public }))
            .await,
        "NOT_FOUND"
    );

    // Every mutation is in the audit log.
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
    for action in ["skill.create", "skill.install", "skill.uninstall"] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
}

#[tokio::test]
async fn the_install_count_is_exact_under_20_concurrent_installs() {
    let app = TestApp::new().await;
    let root = platform_admin(&app, "root@skills-race.test").await;
    let owner = app.owner("skills-race").await;
    let skill = create_skill(&app, &root, skill_input("mailer", true)).await;
    let mut agents = vec![];
    for i in 0..20 {
        agents.push(create_agent(&app, &owner, &format!("agent-{i:02}")).await);
    }
    let installs = agents.iter().map(|agent| {
        let (app, token, skill) = (&app, owner.token.clone(), skill.clone());
        async move {
            app.post(
                Some(&token),
                INSTALL,
                json!({ "a": agent, "s": skill, "c": { "channel": "ops" } }),
            )
            .await
        }
    });
    for (status, body) in futures::future::join_all(installs).await {
        assert!(status.is_success(), "{body:#}");
        assert_eq!(
            body["data"]["installSkill"]["userErrors"],
            json!([]),
            "{body:#}"
        );
    }
    let data = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on Skill { installCount installations { id } } } }",
            json!({ "id": skill }),
        )
        .await;
    assert_eq!(data["node"]["installCount"], 20, "{data:#}");
    assert_eq!(data["node"]["installations"].as_array().unwrap().len(), 20);
    // And as many concurrent uninstalls bring it back to zero.
    let removals = agents.iter().map(|agent| {
        let (app, token, skill) = (&app, owner.token.clone(), skill.clone());
        async move {
            app.post(Some(&token), UNINSTALL, json!({ "a": agent, "s": skill }))
                .await
        }
    });
    for (status, body) in futures::future::join_all(removals).await {
        assert!(status.is_success(), "{body:#}");
    }
    let data = app
        .ok(
            Some(&owner.token),
            "query($id: ID!) { node(id: $id) { ... on Skill { installCount } } }",
            json!({ "id": skill }),
        )
        .await;
    assert_eq!(data["node"]["installCount"], 0, "{data:#}");
}

#[tokio::test]
async fn the_skills_list_costs_the_same_statements_at_5_and_20_skills() {
    let app = TestApp::new().await;
    let owner = app.owner("skills-dash").await;
    let agent = create_agent(&app, &owner, "coder").await;
    for i in 0..20 {
        let skill = create_skill(&app, &owner, skill_input(&format!("skill-{i:02}"), false)).await;
        let data = app
            .ok(
                Some(&owner.token),
                INSTALL,
                json!({ "a": agent, "s": skill, "c": { "channel": "ops" } }),
            )
            .await;
        payload(&data, "installSkill");
    }
    let query = "query($n: Int!) { skills(first: $n, filter: {category: [COMMUNICATION], compatibleWith: CUSTOM}) { edges { node { key installCount installations { skillVersion config } } } } }";
    let mut counts = vec![];
    for n in [5, 20] {
        for _ in 0..2 {
            let before = app.state.statements.load(Ordering::Relaxed);
            let data = app.ok(Some(&owner.token), query, json!({ "n": n })).await;
            counts.push(app.state.statements.load(Ordering::Relaxed) - before);
            let edges = data["skills"]["edges"].as_array().unwrap();
            assert_eq!(edges.len(), n as usize, "{data:#}");
            assert_eq!(edges[0]["node"]["installCount"], 1);
            assert_eq!(
                edges[0]["node"]["installations"][0]["config"],
                json!({ "channel": "ops" })
            );
        }
    }
    eprintln!("skills list: SQL statements per request at 5 and 20 skills: {counts:?}");
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "statements per request changed with the page: {counts:?}"
    );
}

#[tokio::test]
async fn an_agents_skills_come_with_their_skill_in_one_statement() {
    let app = TestApp::new().await;
    let owner = app.owner("skills-joined").await;
    let agent = create_agent(&app, &owner, "coder").await;
    let mut keys = vec![];
    for i in 0..3 {
        let key = format!("joined-{i}");
        let skill = create_skill(&app, &owner, skill_input(&key, false)).await;
        let data = app
            .ok(
                Some(&owner.token),
                INSTALL,
                json!({ "a": agent, "s": skill, "c": { "channel": "ops" } }),
            )
            .await;
        payload(&data, "installSkill");
        keys.push(key);
    }
    let statements = |query: &'static str| {
        let app = &app;
        let token = owner.token.clone();
        async move {
            let before = app.state.statements.load(Ordering::Relaxed);
            let data = app.ok(Some(&token), query, json!({})).await;
            (app.state.statements.load(Ordering::Relaxed) - before, data)
        }
    };
    let (bare, data) = statements("{ agents { nodes { skills { skillVersion } } } }").await;
    assert_eq!(
        data["agents"]["nodes"][0]["skills"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let (joined, data) = statements(
        "{ agents { nodes { skills { skillVersion skill { key name installCount } } } } }",
    )
    .await;
    // The skills arrive with their installations: nothing more than without them.
    assert_eq!(joined, bare, "{data:#}");
    let listed: Vec<&str> = data["agents"]["nodes"][0]["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["skill"]["key"].as_str().unwrap())
        .collect();
    assert_eq!(listed, keys.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        data["agents"]["nodes"][0]["skills"][0]["skill"]["installCount"],
        1
    );
}
