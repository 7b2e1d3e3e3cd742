//! The audit log is append-only for the application and hash-chained: the app role
//! cannot change or remove an event, and an event edited behind its back (by a
//! superuser or owner) breaks the chain where it was edited.

use sea_orm::ConnectionTrait;
use serde_json::json;
use trellis_core::scope::stmt;

use crate::support::{as_app, TestApp};

#[tokio::test]
async fn the_app_role_cannot_change_audit_events_and_edits_break_the_chain() {
    let app = TestApp::new().await;
    let owner = app.owner("audited").await;
    for name in ["one", "two", "three"] {
        app.ok(
            Some(&owner.token),
            "mutation($n: String!) { updateTenant(input: {name: $n}) { tenant { name } } }",
            json!({ "n": name }),
        )
        .await;
    }
    let chain = "{ tenant { auditChainBrokenAt auditEvents(orderBy: CREATED_AT_ASC) { totalCount edges { node { seq action } } } } }";
    let data = app.ok(Some(&owner.token), chain, json!({})).await;
    assert_eq!(
        data["tenant"]["auditChainBrokenAt"],
        serde_json::Value::Null
    );
    let seqs: Vec<i64> = data["tenant"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);

    let pool = app.db.app_pool(1).await;
    for sql in [
        "UPDATE audit_events SET action = 'nothing'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let tx = as_app(&pool, Some(owner.tenant_uuid()), Some(owner.user_uuid())).await;
        let err = tx.execute_unprepared(sql).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
    }

    let admin = app.db.admin().await;
    let original: serde_json::Value = admin
        .query_one(stmt(
            "SELECT details FROM audit_events WHERE tenant_id = $1 AND seq = 3",
            [owner.tenant_uuid().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    admin
        .execute(stmt("UPDATE audit_events SET details = '{\"forged\": true}' WHERE tenant_id = $1 AND seq = 3", [owner.tenant_uuid().into()]))
        .await
        .unwrap();
    let data = app.ok(Some(&owner.token), chain, json!({})).await;
    assert_eq!(data["tenant"]["auditChainBrokenAt"], 3);

    // Removing an event is caught too (the next one no longer links).
    admin
        .execute(stmt(
            "UPDATE audit_events SET details = $2 WHERE tenant_id = $1 AND seq = 3",
            [owner.tenant_uuid().into(), original.into()],
        ))
        .await
        .unwrap();
    let data = app.ok(Some(&owner.token), chain, json!({})).await;
    assert_eq!(
        data["tenant"]["auditChainBrokenAt"],
        serde_json::Value::Null,
        "restoring the content restores the chain"
    );
    admin
        .execute(stmt(
            "DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 2",
            [owner.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    let data = app.ok(Some(&owner.token), chain, json!({})).await;
    assert_eq!(data["tenant"]["auditChainBrokenAt"], 3);
}

#[tokio::test]
async fn every_mutation_writes_an_audit_event_and_failures_write_none() {
    let app = TestApp::new().await;
    let owner = app.owner("journal").await;
    let (_, key_id) = app.api_key(&owner, "READ").await;
    app.ok(
        Some(&owner.token),
        "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { id } } }",
        json!({ "id": key_id }),
    )
    .await;
    // A failing mutation rolls back, audit event included.
    let failed = app.ok(Some(&owner.token), "mutation { updateTenant(input: {slug: \"Not A Slug\"}) { userErrors { field code } } }", json!({})).await;
    assert_eq!(
        failed["updateTenant"]["userErrors"][0],
        json!({ "field": "slug", "code": "BAD_USER_INPUT" })
    );
    let data = app.ok(Some(&owner.token), "{ tenant { auditEvents(orderBy: CREATED_AT_ASC) { edges { node { action actorType targetId } } } } }", json!({})).await;
    let actions: Vec<&str> = data["tenant"]["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "tenant.create",
            "session.switch_tenant",
            "api_key.create",
            "api_key.revoke"
        ]
    );
    assert_eq!(
        data["tenant"]["auditEvents"]["edges"][3]["node"]["targetId"],
        key_id.as_str()
    );
}

/// A request that audits more events than one insert carries and announces a change
/// writes every event and still sends its notification (which rides on the last
/// insert), once it commits.
#[tokio::test]
async fn many_audit_events_and_a_notification_are_all_written_and_sent() {
    use trellis_core::audit::{record, Event};
    use trellis_core::runs::live::{LiveEvent, LiveEvents};
    use trellis_core::RequestScope;
    let app = TestApp::new().await;
    let owner = app.owner("audit-many").await;
    let live = LiveEvents::listen(&app.db.app_url).await;
    let mut events = live.subscribe();
    let scope = RequestScope::for_engine(app.state.db.clone(), owner.tenant_uuid(), "test");
    for _ in 0..501 {
        record(&scope, Event::new(Some(owner.tenant_uuid()), "test.many"))
            .await
            .unwrap();
    }
    let run_id = uuid::Uuid::now_v7();
    scope.announce(
        trellis_core::runs::events::RUNS_CHANNEL,
        json!({ "tenantId": owner.tenant_uuid(), "runId": run_id, "workflowId": run_id })
            .to_string(),
    );
    RequestScope::finish_shared(scope, true).await.unwrap();
    let heard = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            if let Ok(LiveEvent::RunChanged { run_id: r, .. }) = events.recv().await {
                if r == run_id {
                    return;
                }
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "the notification was not sent");
    let written: i64 = app
        .db
        .admin()
        .await
        .query_one(stmt(
            "SELECT count(*) FROM audit_events WHERE action = 'test.many'",
            [],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(written, 501);
}
