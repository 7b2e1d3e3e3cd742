//! Tenant isolation of the engine's tables (step_attempts, approval_decisions). The
//! threat: a tenant that reads another's step history (errors hold response bodies)
//! or decisions, rewrites them, decides on another tenant's approvals, or files rows
//! against another tenant's step runs, through GraphQL or through SQL with no
//! application filter.

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::json;
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::engine::{executor, flaky_api, run_to_end, start, workflow};
use crate::support::{as_app, is_rls_violation, Member, TestApp};

async fn count(db: &DatabaseConnection, tenant: &Member, sql: &str) -> i64 {
    let tx = as_app(db, Some(tenant.tenant_uuid()), Some(tenant.user_uuid())).await;
    let n = tx
        .query_one(stmt(sql, []))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    tx.rollback().await.unwrap();
    n
}

/// A run of `owner`'s whose one step failed once and was retried; the step run's id.
async fn retried_step(app: &TestApp, owner: &Member) -> Uuid {
    let (api, _) = flaky_api(1).await;
    let steps = json!([{ "key": "call", "name": "call", "type": "HTTP", "config": {
        "url": format!("{api}/flaky"),
        "retry": { "maxAttempts": 2, "backoff": { "initialSeconds": 0.05 }, "jitter": false } } }]);
    let wf = workflow(app, owner, "flaky", steps, json!([])).await;
    let id = start(app, owner, &wf, json!({})).await;
    let done = run_to_end(app, owner, &executor(app, 10), &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let admin = app.db.admin().await;
    admin
        .query_one(stmt(
            "SELECT step_run_id FROM step_attempts WHERE tenant_id = $1",
            [owner.tenant_uuid().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "step_run_id")
        .unwrap()
}

/// Raw SQL as `b`'s app role on `table`, whose rows hang off step runs (`column`):
/// `b` sees only its own rows; nobody may delete or change them (they are history, gone
/// only with their run); no row can be written into `a`; and a reference
/// to `a`'s step run fails exactly like one to a made-up id. `insert` takes the row's
/// id, tenant and step run as $1, $2, $3.
async fn sealed(app: &TestApp, a: &Member, b: &Member, table: &str, theirs: Uuid, insert: &str) {
    let db = app.db.app_pool(2).await;
    let all = format!("SELECT count(*) FROM {table}");
    assert_eq!(count(&db, a, &all).await, 1, "{table}: a sees its row");
    assert_eq!(count(&db, b, &all).await, 1, "{table}: b sees only its own");

    let tx = as_app(&db, Some(b.tenant_uuid()), Some(b.user_uuid())).await;
    for change in [
        format!("DELETE FROM {table} WHERE step_run_id = $1"),
        format!("UPDATE {table} SET tenant_id = tenant_id WHERE step_run_id = $1"),
    ] {
        tx.execute_unprepared("SAVEPOINT probe").await.unwrap();
        let refused = tx
            .execute(stmt(&change, [theirs.into()]))
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("permission denied"),
            "{change}: {refused}"
        );
        tx.execute_unprepared("ROLLBACK TO SAVEPOINT probe")
            .await
            .unwrap();
    }
    let forged = tx
        .execute(stmt(
            insert,
            [Uuid::now_v7().into(), a.tenant_uuid().into(), theirs.into()],
        ))
        .await
        .unwrap_err();
    assert!(is_rls_violation(&forged), "{table}: {forged}");
    tx.rollback().await.unwrap();

    let mut messages = Vec::new();
    for target in [theirs, Uuid::now_v7()] {
        let tx = as_app(&db, Some(b.tenant_uuid()), Some(b.user_uuid())).await;
        let err = tx
            .execute(stmt(
                insert,
                [Uuid::now_v7().into(), b.tenant_uuid().into(), target.into()],
            ))
            .await
            .unwrap_err();
        messages.push(err.to_string().replace(&target.to_string(), "<id>"));
        tx.rollback().await.unwrap();
    }
    assert!(
        messages[0].contains(&format!("{table}_step_run_fkey")),
        "{}",
        messages[0]
    );
    assert_eq!(messages[0], messages[1], "{table}");
}

fn node(id: Uuid) -> String {
    format!("srn_{}", id.simple())
}

#[tokio::test]
async fn another_tenants_step_attempts_cannot_be_read_written_or_referenced() {
    let app = TestApp::new().await;
    let a = app.owner("attempts-a").await;
    let b = app.owner("attempts-b").await;
    let theirs = retried_step(&app, &a).await;
    let ours = retried_step(&app, &b).await;
    sealed(
        &app,
        &a,
        &b,
        "step_attempts",
        theirs,
        "INSERT INTO step_attempts (id, tenant_id, step_run_id, attempt) VALUES ($1, $2, $3, 9)",
    )
    .await;

    // Through GraphQL, B's step run shows its own attempts, and A's step run is not
    // found, exactly like a made-up one.
    let data = app
        .ok(
            Some(&b.token),
            "query($id: ID!) { node(id: $id) { ... on StepRun { attempts { attempt status } } } }",
            json!({ "id": node(ours) }),
        )
        .await;
    assert_eq!(
        data["node"]["attempts"],
        json!([{ "attempt": 1, "status": "FAILED" }, { "attempt": 2, "status": "SUCCEEDED" }])
    );
    let query = "query($id: ID!) { node(id: $id) { ... on StepRun { attempts { error } } } }";
    let theirs = app
        .error_code(Some(&b.token), query, json!({ "id": node(theirs) }))
        .await;
    let made_up = app
        .error_code(Some(&b.token), query, json!({ "id": node(Uuid::now_v7()) }))
        .await;
    assert_eq!(
        (theirs.as_str(), made_up.as_str()),
        ("NOT_FOUND", "NOT_FOUND")
    );
}

/// A run of `owner`'s waiting on an approval that `owner` may decide and has decided
/// once (two approvals required); the step run's id.
async fn decided_approval(app: &TestApp, owner: &Member) -> Uuid {
    let steps = json!([{ "key": "approve", "name": "approve", "type": "APPROVAL",
                         "config": { "required": 2, "allowSelfApproval": true } }]);
    let wf = workflow(app, owner, "approved", steps, json!([])).await;
    let id = start(app, owner, &wf, json!({})).await;
    executor(app, 10).tick().await.unwrap();
    let listed = app
        .ok(
            Some(&owner.token),
            "{ approvalsPending { stepRun { id } } }",
            json!({}),
        )
        .await;
    let step_run = listed["approvalsPending"][0]["stepRun"]["id"].clone();
    let decided = app
        .ok(
            Some(&owner.token),
            "mutation($s: ID!) { decideApproval(input: {stepRunId: $s, decision: APPROVE}) { userErrors { message } } }",
            json!({ "s": step_run }),
        )
        .await;
    assert_eq!(
        decided["decideApproval"]["userErrors"],
        json!([]),
        "{decided}"
    );
    let _ = id;
    Uuid::parse_str(&step_run.as_str().unwrap()[4..]).unwrap()
}

#[tokio::test]
async fn another_tenants_approvals_cannot_be_listed_decided_read_or_referenced() {
    let app = TestApp::new().await;
    let a = app.owner("approvals-a").await;
    let b = app.owner("approvals-b").await;
    let theirs = decided_approval(&app, &a).await;
    let ours = decided_approval(&app, &b).await;
    sealed(
        &app,
        &a,
        &b,
        "approval_decisions",
        theirs,
        "INSERT INTO approval_decisions (id, tenant_id, step_run_id, decision) VALUES ($1, $2, $3, 'approve')",
    )
    .await;

    // B lists only its own waiting approval (already decided by B, so none), and
    // deciding on A's is NOT_FOUND exactly like deciding on a made-up step run.
    let listed = app
        .ok(
            Some(&b.token),
            "{ approvalsPending { stepRun { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["approvalsPending"], json!([]));
    let decide = "mutation($s: ID!) { decideApproval(input: {stepRunId: $s, decision: REJECT}) { userErrors { message } } }";
    let on_theirs = app
        .error_code(Some(&b.token), decide, json!({ "s": node(theirs) }))
        .await;
    let on_made_up = app
        .error_code(Some(&b.token), decide, json!({ "s": node(Uuid::now_v7()) }))
        .await;
    assert_eq!(
        (on_theirs.as_str(), on_made_up.as_str()),
        ("NOT_FOUND", "NOT_FOUND")
    );
    // A's approval is untouched and still waits for its second approval.
    let data = app
        .ok(
            Some(&a.token),
            "query($id: ID!) { node(id: $id) { ... on StepRun { status decisions { decision } } } }",
            json!({ "id": node(theirs) }),
        )
        .await;
    assert_eq!(
        data["node"],
        json!({ "status": "WAITING", "decisions": [{ "decision": "APPROVE" }] })
    );
    let data = app
        .ok(
            Some(&b.token),
            "query($id: ID!) { node(id: $id) { ... on StepRun { decisions { decision } } } }",
            json!({ "id": node(ours) }),
        )
        .await;
    assert_eq!(
        data["node"]["decisions"],
        json!([{ "decision": "APPROVE" }])
    );
}
