//! Tenant isolation of the engine's tables (step_attempts). The threat: a tenant that
//! reads another's step history (errors hold response bodies), rewrites it, or files
//! rows against another tenant's step runs, through SQL with no application filter.

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

#[tokio::test]
async fn another_tenants_step_attempts_cannot_be_read_written_or_referenced() {
    let app = TestApp::new().await;
    let a = app.owner("attempts-a").await;
    let b = app.owner("attempts-b").await;
    let theirs = retried_step(&app, &a).await;
    let ours = retried_step(&app, &b).await;
    let db = app.db.app_pool(2).await;

    // Each tenant sees its own attempt, and only it.
    assert_eq!(
        count(&db, &a, "SELECT count(*) FROM step_attempts").await,
        1
    );
    assert_eq!(
        count(&db, &b, "SELECT count(*) FROM step_attempts").await,
        1
    );

    let tx = as_app(&db, Some(b.tenant_uuid()), Some(b.user_uuid())).await;
    // Deleting another tenant's attempts touches nothing; attempts are history, which
    // the app role may not change at all.
    let done = tx
        .execute(stmt(
            "DELETE FROM step_attempts WHERE step_run_id = $1",
            [theirs.into()],
        ))
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 0);
    tx.execute_unprepared("SAVEPOINT probe").await.unwrap();
    let rewrite = tx
        .execute(stmt(
            "UPDATE step_attempts SET error = '\"pwned\"' WHERE step_run_id = $1",
            [theirs.into()],
        ))
        .await
        .unwrap_err();
    assert!(
        rewrite.to_string().contains("permission denied"),
        "{rewrite}"
    );
    tx.execute_unprepared("ROLLBACK TO SAVEPOINT probe")
        .await
        .unwrap();
    // Writing a row into another tenant is refused by the policy.
    let forged = tx
        .execute(stmt(
            "INSERT INTO step_attempts (id, tenant_id, step_run_id, attempt) VALUES ($1, $2, $3, 9)",
            [Uuid::now_v7().into(), a.tenant_uuid().into(), theirs.into()],
        ))
        .await
        .unwrap_err();
    assert!(is_rls_violation(&forged), "{forged}");
    tx.rollback().await.unwrap();

    // Referencing another tenant's step run fails exactly like a made-up id: the
    // foreign key cannot see it, so it cannot confirm that it exists.
    let mut messages = Vec::new();
    for target in [theirs, Uuid::now_v7()] {
        let tx = as_app(&db, Some(b.tenant_uuid()), Some(b.user_uuid())).await;
        let err = tx
            .execute(stmt(
                "INSERT INTO step_attempts (id, tenant_id, step_run_id, attempt) VALUES ($1, $2, $3, 9)",
                [Uuid::now_v7().into(), b.tenant_uuid().into(), target.into()],
            ))
            .await
            .unwrap_err();
        messages.push(err.to_string().replace(&target.to_string(), "<id>"));
        tx.rollback().await.unwrap();
    }
    assert!(
        messages[0].contains("step_attempts_step_run_fkey"),
        "{}",
        messages[0]
    );
    assert_eq!(messages[0], messages[1]);

    // Through GraphQL, B's step run shows its own attempts, and A's step run is not
    // found, exactly like a made-up one.
    let node = |id: Uuid| format!("srn_{}", id.simple());
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
