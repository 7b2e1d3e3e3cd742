//! The request transaction (`trellis_core::tx`): `BEGIN` travels with the tenant entry,
//! and however a transaction ends, its connection goes back clean.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use trellis_core::scope::stmt;
use trellis_core::tx::{Head, RequestTx};
use trellis_core::{AppDb, RequestScope};

use crate::support::{scope_of, Member, TestApp};

/// The tenant's name, read in a fresh scope of `member`.
async fn tenant_name(db: &AppDb, member: &Member) -> String {
    let scope = scope_of(db, member);
    let row = scope
        .tx()
        .await
        .unwrap()
        .query_one(stmt(
            "SELECT name FROM tenants WHERE id = $1",
            [member.tenant_uuid().into()],
        ))
        .await
        .unwrap()
        .unwrap();
    RequestScope::finish_shared(scope, true).await.unwrap();
    row.try_get("", "name").unwrap()
}

/// What the one pooled connection carries between transactions: whether one is still
/// open on it (two statements sent one after the other share a transaction id only
/// then), and its tenant setting.
async fn between_transactions(db: &AppDb) -> (bool, String) {
    let read = || async {
        db.pool()
            .query_one(Statement::from_string(
                DbBackend::Postgres,
                "SELECT txid_current() AS xid, \
                        coalesce(current_setting('app.tenant_id', true), '') AS tenant",
            ))
            .await
            .unwrap()
            .unwrap()
    };
    let (first, second) = (read().await, read().await);
    let xid = |row: &sea_orm::QueryResult| row.try_get::<i64>("", "xid").unwrap();
    (
        xid(&first) == xid(&second),
        second.try_get("", "tenant").unwrap(),
    )
}

#[tokio::test]
async fn the_tenant_entry_is_sent_with_begin_and_counted_once() {
    let app = TestApp::new().await;
    let owner = app.owner("tx-count").await;
    let statements = Arc::new(AtomicUsize::new(0));
    let seen = statements.clone();
    let db = AppDb::new(app.db.app_pool(1).await).with_statement_hook(Arc::new(move |info| {
        seen.fetch_add(1, Ordering::Relaxed);
        // The hook sees the statement with parameters, never the values written into
        // the text that went out.
        if info.statement.sql.contains("enter_request") {
            assert!(info.statement.sql.contains("$1"), "{}", info.statement.sql);
        }
    }));
    let scope = scope_of(&db, &owner);
    // Access is known as soon as the transaction is: the tenant entry came back with it.
    let tenant = scope.active_tenant().await.unwrap().unwrap();
    assert_eq!(tenant.tenant_id, owner.tenant_uuid());
    assert_eq!(statements.load(Ordering::Relaxed), 1);
    let row = scope
        .tx()
        .await
        .unwrap()
        .query_one(stmt(
            "SELECT current_setting('app.tenant_id') AS tenant, \
                    now() = statement_timestamp() AS fresh",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    // The setting holds inside the transaction that BEGIN opened (the statement's
    // timestamp is later than the transaction's).
    assert_eq!(
        row.try_get::<String>("", "tenant").unwrap(),
        owner.tenant_uuid().to_string()
    );
    assert!(!row.try_get::<bool>("", "fresh").unwrap());
    assert_eq!(statements.load(Ordering::Relaxed), 2);
    RequestScope::finish_shared(scope, true).await.unwrap();
    assert_eq!(between_transactions(&db).await, (false, String::new()));
}

#[tokio::test]
async fn a_scope_dropped_open_rolls_back_and_its_connection_comes_back_clean() {
    let app = TestApp::new().await;
    let owner = app.owner("tx-drop").await;
    let db = AppDb::new(app.db.app_pool(1).await);
    let before = tenant_name(&db, &owner).await;

    let scope = scope_of(&db, &owner);
    let renamed = scope
        .tx()
        .await
        .unwrap()
        .execute(stmt(
            "UPDATE tenants SET name = 'never saved' WHERE id = $1",
            [owner.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    assert_eq!(renamed.rows_affected(), 1);
    // A cancelled request: the scope goes without finishing.
    drop(scope);

    // The pool has one connection: the next transaction waits for the rollback.
    assert_eq!(tenant_name(&db, &owner).await, before);
    assert_eq!(between_transactions(&db).await, (false, String::new()));
}

#[tokio::test]
async fn a_failing_first_statement_rolls_its_begin_back() {
    let app = TestApp::new().await;
    let pool = app.db.app_pool(1).await;
    let head = Head {
        sql: "SELECT set_config('app.tenant_id', 'left behind', true), 1 / 0".into(),
        shown: "SELECT 1 / 0",
    };
    let failed = RequestTx::begin(pool.get_postgres_connection_pool(), Some(&head), None).await;
    let Err(err) = failed else {
        panic!("a division by zero began a transaction")
    };
    assert_eq!(
        trellis_core::error::database_error(&err)
            .and_then(|e| e.code())
            .as_deref(),
        Some("22012"),
        "{err:?}"
    );
    let db = AppDb::new(pool);
    assert_eq!(between_transactions(&db).await, (false, String::new()));

    // A transaction that ends by commit or rollback leaves nothing behind either.
    for commit in [true, false] {
        let (tx, rows) = RequestTx::begin(
            db.pool().get_postgres_connection_pool(),
            Some(&Head {
                sql: "SELECT set_config('app.tenant_id', 'inside', true) AS tenant".into(),
                shown: "SELECT set_config('app.tenant_id', $1, true)",
            }),
            None,
        )
        .await
        .unwrap();
        assert_eq!(rows.len(), 1);
        let row = tx
            .query_one(stmt("SELECT current_setting('app.tenant_id') AS t", []))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<String>("", "t").unwrap(), "inside");
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        assert_eq!(between_transactions(&db).await, (false, String::new()));
    }
}

/// What a scope's transaction sees of its tenant: the tenant setting and how many
/// memberships RLS shows.
async fn seen(scope: &RequestScope) -> (String, i64) {
    let row = scope
        .tx()
        .await
        .unwrap()
        .query_one(stmt(
            "SELECT current_setting('app.tenant_id') AS tenant, \
                    (SELECT count(*) FROM memberships) AS members",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    (
        row.try_get("", "tenant").unwrap(),
        row.try_get("", "members").unwrap(),
    )
}

#[tokio::test]
async fn a_continuation_carries_on_in_the_granted_tenant_and_grants_nothing_new() {
    let app = TestApp::new().await;
    let owner = app.owner("tx-continue").await;
    let member = app
        .member(&owner, "tx-continue-member@example.com", "VIEWER")
        .await;
    let other = app.owner("tx-continue-other").await;
    let statements = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_sql = statements.clone();
    let db = AppDb::new(app.db.app_pool(2).await).with_statement_hook(Arc::new(move |info| {
        seen_sql.lock().unwrap().push(info.statement.sql.clone());
    }));

    // The member's first transaction is admitted; then the member is removed.
    let first = scope_of(&db, &member);
    let granted = first.active_tenant().await.unwrap().unwrap();
    assert_eq!(granted.tenant_id, owner.tenant_uuid());
    let next = first.continuation();
    RequestScope::finish_shared(first, true).await.unwrap();
    let admin = app.db.admin().await;
    admin
        .execute(stmt(
            "DELETE FROM memberships WHERE user_id = $1",
            [member.user_uuid().into()],
        ))
        .await
        .unwrap();

    // The same request's next transaction carries on in that tenant, under its RLS
    // (the owner's membership is all that is left to see), without checking again.
    statements.lock().unwrap().clear();
    assert_eq!(next.active_tenant().await.unwrap(), Some(granted));
    assert_eq!(seen(&next).await, (owner.tenant_uuid().to_string(), 1));
    let sent = statements.lock().unwrap().clone();
    assert!(
        sent.iter().all(|sql| !sql.contains("enter_request")),
        "{sent:?}"
    );
    RequestScope::finish_shared(next, true).await.unwrap();

    // A new request of the removed member is refused, and so is its continuation.
    let refused = scope_of(&db, &member);
    assert_eq!(refused.active_tenant().await.unwrap(), None);
    let after_refusal = refused.continuation();
    RequestScope::finish_shared(refused, true).await.unwrap();
    assert_eq!(after_refusal.active_tenant().await.unwrap(), None);
    assert_eq!(seen(&after_refusal).await, (String::new(), 0));
    RequestScope::finish_shared(after_refusal, true)
        .await
        .unwrap();

    // A continuation is of its own principal's tenant only: another owner's carries on
    // in theirs, and sees none of the first tenant's rows.
    let theirs = scope_of(&db, &other);
    theirs.active_tenant().await.unwrap().unwrap();
    let theirs_next = theirs.continuation();
    RequestScope::finish_shared(theirs, true).await.unwrap();
    assert_eq!(
        seen(&theirs_next).await,
        (other.tenant_uuid().to_string(), 1)
    );
    RequestScope::finish_shared(theirs_next, true)
        .await
        .unwrap();
}
