//! Tenant isolation through the API: another tenant's IDs behave exactly like IDs that
//! do not exist (NOT_FOUND, never FORBIDDEN), and concurrent requests of two tenants
//! never see each other's rows.

use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{Member, TestApp};

/// Every ID-taking mutation, with an `$id` variable.
const ID_MUTATIONS: [&str; 4] = [
    "mutation($id: ID!) { revokeInvitation(input: {id: $id}) { invitation { id } } }",
    "mutation($id: ID!) { updateMemberRole(input: {id: $id, role: VIEWER}) { membership { id } } }",
    "mutation($id: ID!) { removeMember(input: {id: $id}) { membership { id } } }",
    "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { id } } }",
];

struct Ids {
    tenant: String,
    user: String,
    membership: String,
    invitation: String,
    api_key: String,
    audit_event: String,
}

async fn ids_of(app: &TestApp, owner: &Member) -> Ids {
    app.ok(
        Some(&owner.token),
        "mutation { inviteMember(input: {email: \"someone@x.test\", role: VIEWER}) { token } }",
        json!({}),
    )
    .await;
    app.api_key(owner, "READ").await;
    let data = app
        .ok(
            Some(&owner.token),
            "{ tenant { id members { edges { node { id user { id } } } } invitations { edges { node { id } } } apiKeys { edges { node { id } } } auditEvents { edges { node { id } } } } }",
            json!({}),
        )
        .await;
    let t = &data["tenant"];
    let first = |v: &Value| v["edges"][0]["node"]["id"].as_str().unwrap().to_owned();
    Ids {
        tenant: t["id"].as_str().unwrap().to_owned(),
        user: t["members"]["edges"][0]["node"]["user"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        membership: first(&t["members"]),
        invitation: first(&t["invitations"]),
        api_key: first(&t["apiKeys"]),
        audit_event: first(&t["auditEvents"]),
    }
}

fn made_up(id: &str) -> String {
    format!("{}_{}", &id[..3], Uuid::now_v7().simple())
}

#[tokio::test]
async fn another_tenants_ids_are_not_found_like_made_up_ones() {
    let app = TestApp::new().await;
    let a = app.owner("alpha").await;
    let b = app.owner("bravo").await;
    let theirs = ids_of(&app, &b).await;
    let node = "query($id: ID!) { node(id: $id) { id } }";
    for id in [
        &theirs.tenant,
        &theirs.user,
        &theirs.membership,
        &theirs.invitation,
        &theirs.api_key,
        &theirs.audit_event,
    ] {
        assert_eq!(
            app.error_code(Some(&a.token), node, json!({ "id": id }))
                .await,
            "NOT_FOUND",
            "{id}"
        );
        assert_eq!(
            app.error_code(Some(&a.token), node, json!({ "id": made_up(id) }))
                .await,
            "NOT_FOUND"
        );
    }
    let data = app
        .ok(
            Some(&a.token),
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            json!({ "ids": [theirs.tenant, theirs.api_key] }),
        )
        .await;
    assert_eq!(data["nodes"], json!([null, null]));

    let targets = [
        &theirs.invitation,
        &theirs.membership,
        &theirs.membership,
        &theirs.api_key,
    ];
    for (mutation, id) in ID_MUTATIONS.iter().zip(targets) {
        assert_eq!(
            app.error_code(Some(&a.token), mutation, json!({ "id": id }))
                .await,
            "NOT_FOUND",
            "{mutation}"
        );
        assert_eq!(
            app.error_code(Some(&a.token), mutation, json!({ "id": made_up(id) }))
                .await,
            "NOT_FOUND",
            "{mutation}"
        );
        // A wrong prefix is NOT_FOUND too.
        assert_eq!(
            app.error_code(Some(&a.token), mutation, json!({ "id": theirs.tenant }))
                .await,
            "NOT_FOUND",
            "{mutation}"
        );
    }
    let switch = "mutation($id: ID!) { switchTenant(input: {tenantId: $id}) { accessToken } }";
    assert_eq!(
        app.error_code(Some(&a.token), switch, json!({ "id": theirs.tenant }))
            .await,
        "NOT_FOUND"
    );
    assert_eq!(
        app.error_code(
            Some(&a.token),
            switch,
            json!({ "id": made_up(&theirs.tenant) })
        )
        .await,
        "NOT_FOUND"
    );

    // Tenant B's objects are untouched.
    let mine = app.ok(Some(&b.token), "{ tenant { apiKeys { edges { node { revokedAt } } } invitations { edges { node { status } } } members { totalCount } } }", json!({})).await;
    assert_eq!(
        mine["tenant"]["apiKeys"]["edges"][0]["node"]["revokedAt"],
        Value::Null
    );
    assert_eq!(
        mine["tenant"]["invitations"]["edges"][0]["node"]["status"],
        "PENDING"
    );
    assert_eq!(mine["tenant"]["members"]["totalCount"], 1);
}

#[tokio::test]
async fn a_token_for_a_tenant_the_user_left_is_refused() {
    let app = TestApp::new().await;
    let owner = app.owner("charlie").await;
    let member = app.member(&owner, "leaver@x.test", "BUILDER").await;
    let data = app
        .ok(
            Some(&member.token),
            "{ viewer { role } tenant { members { edges { node { id user { email } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["viewer"]["role"], "BUILDER");
    let membership = data["tenant"]["members"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["user"]["email"] == "leaver@x.test")
        .unwrap()["node"]["id"]
        .clone();
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { removeMember(input: {id: $id}) { membership { id } } }",
        json!({ "id": membership }),
    )
    .await;
    // The access token still names the tenant, but membership is re-checked per request.
    assert_eq!(
        app.error_code(
            Some(&member.token),
            "{ tenant { members { totalCount } } }",
            json!({})
        )
        .await,
        "FORBIDDEN"
    );
    let data = app
        .ok(
            Some(&member.token),
            "{ viewer { role activeTenant { id } memberships { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data,
        json!({ "viewer": { "role": null, "activeTenant": null, "memberships": [] } })
    );
}

#[tokio::test]
async fn concurrent_requests_of_two_tenants_only_see_their_own_rows() {
    let app = Arc::new(TestApp::new().await);
    let a = app.owner("delta").await;
    let b = app.owner("echo").await;
    for owner in [&a, &b] {
        for _ in 0..3 {
            app.api_key(owner, "READ").await;
        }
    }
    let query = "{ tenant { id members { edges { node { tenant { id } user { email } } } } apiKeys { edges { node { id } } } auditEvents(first: 50) { edges { node { id } } } } }";
    let mut tasks = vec![];
    for i in 0..40 {
        let (app, me) = (app.clone(), if i % 2 == 0 { a.clone() } else { b.clone() });
        tasks.push(tokio::spawn(async move {
            let data = app.ok(Some(&me.token), query, json!({})).await;
            (me, data)
        }));
    }
    for task in tasks {
        let (me, data) = task.await.unwrap();
        let tenant = &data["tenant"];
        assert_eq!(tenant["id"], me.tenant_id.as_str());
        for edge in tenant["members"]["edges"].as_array().unwrap() {
            assert_eq!(edge["node"]["tenant"]["id"], me.tenant_id.as_str());
            assert_eq!(edge["node"]["user"]["email"], me.email.as_str());
        }
        assert_eq!(tenant["apiKeys"]["edges"].as_array().unwrap().len(), 3);
        // Every audit event listed is one this tenant's chain holds.
        for edge in tenant["auditEvents"]["edges"].as_array().unwrap() {
            let id = edge["node"]["id"].as_str().unwrap();
            let check = app
                .ok(
                    Some(&me.token),
                    "query($id: ID!) { node(id: $id) { id } }",
                    json!({ "id": id }),
                )
                .await;
            assert_eq!(check["node"]["id"], id);
        }
    }
}
