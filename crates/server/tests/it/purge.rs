//! Tenant purge and restore. Threats: a purge that leaves a deleted tenant's rows
//! behind in some table (a table added later and forgotten), that touches another
//! tenant's rows, that cannot go on after it was cut short, or that anybody but the
//! purge could use to delete append-only rows; and a restore that takes back a slug
//! another tenant has since taken, or comes back after the purge began.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult};
use serde_json::{json, Value};
use trellis_core::logs::{LogLevel, LogStore, NewLogEntry};
use trellis_core::purge::{purge_pass, PurgeLimits, PurgePass};
use trellis_core::scope::stmt;
use trellis_core::RequestScope;
use uuid::Uuid;

use crate::agents::{activate, create_agent, create_version};
use crate::catalog::private_app;
use crate::connections::{connect, create_secret};
use crate::engine::{executor, run_to_end, start, transform, workflow};
use crate::support::{as_app, Member, TestApp};

#[derive(FromQueryResult)]
struct Name {
    name: String,
}

/// Every table with a `tenant_id` column, read from the catalog.
async fn tenant_tables(admin: &DatabaseConnection) -> Vec<String> {
    Name::find_by_statement(stmt(
        "SELECT c.relname::text AS name FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' \
                            AND NOT a.attisdropped \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
         ORDER BY 1",
        [],
    ))
    .all(admin)
    .await
    .unwrap()
    .into_iter()
    .map(|n| n.name)
    .collect()
}

/// The tenant's rows in every table with a `tenant_id` (as the owner: no RLS), and
/// its `tenants` row.
async fn rows_of(admin: &DatabaseConnection, tenant: Uuid) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    let mut tables = tenant_tables(admin).await;
    tables.push("tenants".into());
    for table in tables {
        let column = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let n: i64 = admin
            .query_one(stmt(
                &format!("SELECT count(*) FROM \"{table}\" WHERE {column} = $1"),
                [tenant.into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        counts.insert(table, n);
    }
    counts
}

fn non_zero(counts: &BTreeMap<String, i64>) -> Vec<&str> {
    counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(t, _)| t.as_str())
        .collect()
}

/// Rows of a tenant in as many tables as the API makes: a workflow run by the
/// executor, with logs; a private app, a secret and a connection; an agent with an
/// active version; a client, an invitation, an API key, and audit events.
async fn populate(app: &TestApp, owner: &Member, tag: &str) {
    let t = Some(owner.token.as_str());
    let flow = workflow(
        app,
        owner,
        &format!("flow-{tag}"),
        json!([transform("shape", json!({ "who": "{{ input.name }}" }))]),
        json!([]),
    )
    .await;
    let run = start(app, owner, &flow, json!({ "name": tag })).await;
    let done = run_to_end(app, owner, &executor(app, 10), &run).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
    let scope = RequestScope::for_upkeep(app.state.db.clone(), owner.tenant_uuid());
    app.state
        .logs
        .for_tenant(&scope)
        .await
        .unwrap()
        .append(
            vec![NewLogEntry {
                run_id: Uuid::parse_str(&run[4..]).unwrap(),
                step_run_id: None,
                level: LogLevel::Info,
                message: format!("hello from {tag}"),
                context: json!({}),
                logged_at: None,
            }],
            &[],
        )
        .await
        .unwrap();
    RequestScope::finish_shared(scope, true).await.unwrap();

    let (_, version, _) = private_app(app, owner, &format!("crm{tag}")).await;
    let secret = create_secret(app, owner, &format!("key-{tag}"), "s3cret value").await;
    let connected = connect(
        app,
        owner,
        &version,
        &format!("crm-{tag}"),
        json!({ "region": "eu" }),
        json!([{ "field": "apiKey", "secretId": secret }]),
    )
    .await;
    assert_eq!(connected["userErrors"], json!([]), "{connected}");

    let agent = create_agent(app, owner, &format!("agent-{tag}")).await;
    let agent_version = create_version(app, owner, &agent, json!({})).await;
    activate(app, owner, &agent_version).await;

    for (query, vars) in [
        (
            "mutation($n: String!) { createClient(input: {name: $n}) { client { id } } }",
            json!({ "n": format!("client {tag}") }),
        ),
        (
            "mutation($e: String!) { inviteMember(input: {email: $e, role: VIEWER}) { token } }",
            json!({ "e": format!("invitee@{tag}.test") }),
        ),
        (
            "mutation($n: String!) { createApiKey(input: {name: $n, scopes: [READ]}) { secret } }",
            json!({ "n": format!("key {tag}") }),
        ),
    ] {
        let data = app.ok(t, query, vars).await;
        assert!(!data.to_string().contains("userErrors\":[{"), "{data}");
    }
}

pub(crate) async fn delete_tenant(app: &TestApp, owner: &Member, slug: &str) {
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($s: String!) { deleteTenant(input: {slug: $s}) { tenant { id } userErrors { message } } }",
            json!({ "s": slug }),
        )
        .await;
    assert_eq!(data["deleteTenant"]["userErrors"], json!([]), "{data}");
}

pub(crate) async fn backdate(app: &TestApp, tenant: Uuid, days: i32) {
    app.db
        .admin()
        .await
        .execute(stmt(
            "UPDATE tenants SET deleted_at = now() - make_interval(days => $2) WHERE id = $1",
            [tenant.into(), days.into()],
        ))
        .await
        .unwrap();
}

const RESTORE: &str = "mutation($id: ID!) { restoreTenant(input: {tenantId: $id}) { tenant { id slug } userErrors { field message code } } }";

#[derive(Debug, FromQueryResult, PartialEq)]
struct LogRow {
    slug: String,
    finished: bool,
    rows_deleted: i64,
}

async fn purge_log(admin: &DatabaseConnection, tenant: Uuid) -> Option<LogRow> {
    LogRow::find_by_statement(stmt(
        "SELECT slug, finished_at IS NOT NULL AS finished, rows_deleted \
         FROM app.tenant_purges WHERE tenant_id = $1",
        [tenant.into()],
    ))
    .one(admin)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_purged_tenant_leaves_no_row_in_any_table_and_others_are_untouched() {
    let app = TestApp::new().await;
    let gone = app.owner("purge-gone").await;
    let kept = app.owner("purge-kept").await;
    populate(&app, &gone, "gone").await;
    populate(&app, &kept, "kept").await;
    let admin = app.db.admin().await;
    let before = rows_of(&admin, gone.tenant_uuid()).await;
    let kept_before = rows_of(&admin, kept.tenant_uuid()).await;
    let filled = non_zero(&before);
    for table in [
        "workflows",
        "workflow_versions",
        "workflow_steps",
        "workflow_runs",
        "step_runs",
        "execution_logs",
        "apps",
        "app_versions",
        "actions",
        "secrets",
        "connections",
        "connection_secrets",
        "tenant_data_keys",
        "agents",
        "agent_versions",
        "clients",
        "invitations",
        "api_keys",
        "memberships",
        "audit_events",
    ] {
        assert!(
            filled.contains(&table),
            "no {table} rows to purge: {before:?}"
        );
    }

    delete_tenant(&app, &gone, "purge-gone").await;
    let limits = PurgeLimits::default();
    // Inside the grace period nothing happens.
    let idle = purge_pass(&app.state.db, &app.state.logs, None, limits)
        .await
        .unwrap();
    assert_eq!(idle, PurgePass::default());
    backdate(&app, gone.tenant_uuid(), 31).await;

    // Cut short after one small batch: some rows went, the log says it is under way.
    let cut = PurgeLimits {
        batch: 7,
        max_batches: Some(1),
        ..limits
    };
    let first = purge_pass(&app.state.db, &app.state.logs, None, cut)
        .await
        .unwrap();
    assert_eq!(
        (
            first.tenants,
            first.purged,
            first.failed,
            first.rows_deleted
        ),
        (1, 0, 0, 7),
        "{first:?}"
    );
    let midway = rows_of(&admin, gone.tenant_uuid()).await;
    assert_eq!(midway["tenants"], 1);
    assert_eq!(
        midway.values().sum::<i64>(),
        before.values().sum::<i64>() + 1 - 7,
        "only the batch went (deleteTenant added its audit event): {midway:?}"
    );
    assert_eq!(
        purge_log(&admin, gone.tenant_uuid()).await,
        Some(LogRow {
            slug: "purge-gone".into(),
            finished: false,
            rows_deleted: 7
        })
    );
    // Too late to restore now.
    let late = app
        .ok(Some(&gone.token), RESTORE, json!({ "id": gone.tenant_id }))
        .await;
    assert_eq!(
        late["restoreTenant"]["userErrors"][0]["code"], "CONFLICT",
        "{late}"
    );

    // The next pass takes it up again and finishes, in batches.
    let rest = purge_pass(
        &app.state.db,
        &app.state.logs,
        None,
        PurgeLimits {
            batch: 50,
            ..limits
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (rest.tenants, rest.purged, rest.failed),
        (1, 1, 0),
        "{rest:?}"
    );
    let after = rows_of(&admin, gone.tenant_uuid()).await;
    assert_eq!(non_zero(&after), Vec::<&str>::new(), "{after:?}");
    assert_eq!(rows_of(&admin, kept.tenant_uuid()).await, kept_before);
    let logged = purge_log(&admin, gone.tenant_uuid()).await.unwrap();
    assert!(logged.finished, "{logged:?}");
    assert_eq!(
        logged.rows_deleted,
        7 + i64::try_from(rest.rows_deleted).unwrap()
    );
    // The other tenant still works, and the purged one's slug is free.
    let data = app
        .ok(
            Some(&kept.token),
            "{ workflows(first: 5) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(data["workflows"]["totalCount"], 1, "{data}");
    let again = app
        .ok(
            Some(&gone.token),
            "mutation { createTenant(input: {slug: \"purge-gone\", name: \"Again\"}) { tenant { id } userErrors { message } } }",
            json!({}),
        )
        .await;
    assert_eq!(again["createTenant"]["userErrors"], json!([]), "{again}");
    // Nothing is left to do.
    let idle = purge_pass(&app.state.db, &app.state.logs, None, limits)
        .await
        .unwrap();
    assert_eq!(idle, PurgePass::default());
}

fn refused_because(err: &sea_orm::DbErr, why: &str) -> bool {
    err.to_string().contains(why)
}

/// Outside a purge nobody can delete append-only rows: not the tenant's own
/// transaction, not another tenant's, not a deleted tenant's inside its grace period;
/// `app.purge_rows` works only for the transaction's own tenant while its purge is in
/// progress, and only on tenant tables; the purge log is not readable by the
/// application.
#[tokio::test]
async fn only_a_tenants_purge_deletes_its_append_only_rows() {
    let app = TestApp::new().await;
    let alice = app.owner("purge-alice").await;
    let bob = app.owner("purge-bob").await;
    for owner in [&alice, &bob] {
        app.ok(
            Some(&owner.token),
            "mutation { createWorkflow(input: {key: \"w\", name: \"W\"}) { workflow { id } } }",
            json!({}),
        )
        .await;
    }
    let pool = app.state.db.pool();
    for tenant in [alice.tenant_uuid(), bob.tenant_uuid()] {
        for table in ["audit_events", "workflows"] {
            let tx = as_app(pool, Some(tenant), Some(alice.user_uuid())).await;
            let err = tx
                .execute(stmt(
                    &format!("DELETE FROM {table} WHERE tenant_id = $1"),
                    [alice.tenant_uuid().into()],
                ))
                .await
                .unwrap_err();
            assert!(refused_because(&err, "permission denied"), "{table}: {err}");
        }
    }
    delete_tenant(&app, &alice, "purge-alice").await;
    // Inside the grace period: no purge, whatever days the caller names.
    let tx = as_app(pool, Some(alice.tenant_uuid()), None).await;
    let err = tx
        .query_one(stmt("SELECT app.purge_rows('audit_events', 100)", []))
        .await
        .unwrap_err();
    assert!(refused_because(&err, "no purge"), "{err}");
    drop(tx);
    let tx = as_app(pool, None, None).await;
    let begun: bool = tx
        .query_one(stmt(
            "SELECT app.begin_tenant_purge($1, 0)",
            [alice.tenant_uuid().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert!(!begun);
    let err = tx
        .query_one(stmt("SELECT count(*) FROM app.tenant_purges", []))
        .await
        .unwrap_err();
    assert!(refused_because(&err, "permission denied"), "{err}");
    drop(tx);

    // Past it, the purge begins; only Alice's own transaction can use it.
    backdate(&app, alice.tenant_uuid(), 31).await;
    let tx = as_app(pool, None, None).await;
    tx.execute(stmt(
        "SELECT app.begin_tenant_purge($1, 30)",
        [alice.tenant_uuid().into()],
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let tx = as_app(pool, Some(bob.tenant_uuid()), None).await;
    let err = tx
        .query_one(stmt("SELECT app.purge_rows('audit_events', 100)", []))
        .await
        .unwrap_err();
    assert!(refused_because(&err, "no purge"), "{err}");
    drop(tx);
    for table in ["users", "tenants", "nonsense"] {
        let tx = as_app(pool, Some(alice.tenant_uuid()), None).await;
        let err = tx
            .query_one(stmt("SELECT app.purge_rows($1, 100)", [table.into()]))
            .await
            .unwrap_err();
        assert!(
            refused_because(&err, "not a tenant table"),
            "{table}: {err}"
        );
    }
    let admin = app.db.admin().await;
    let before = rows_of(&admin, bob.tenant_uuid()).await;
    let tx = as_app(pool, Some(alice.tenant_uuid()), None).await;
    let gone: i64 = tx
        .query_one(stmt("SELECT app.purge_rows('audit_events', 100)", []))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert!(gone > 0);
    tx.commit().await.unwrap();
    assert_eq!(
        rows_of(&admin, alice.tenant_uuid()).await["audit_events"],
        0
    );
    assert_eq!(rows_of(&admin, bob.tenant_uuid()).await, before);
}

#[tokio::test]
async fn an_owner_restores_a_deleted_tenant_unless_its_slug_was_taken() {
    let app = TestApp::new().await;
    let owner = app.owner("restore-me").await;
    let admin_member = app.member(&owner, "admin@restore.test", "ADMIN").await;
    delete_tenant(&app, &owner, "restore-me").await;

    // Its owner finds it (and when it was deleted) among their memberships, and a
    // platform admin among the deleted tenants, which the default list leaves out.
    let mine = app
        .ok(
            Some(&owner.token),
            "{ viewer { memberships { role tenant { id deletedAt } } } }",
            json!({}),
        )
        .await;
    let found = &mine["viewer"]["memberships"][0];
    assert_eq!(
        (&found["role"], &found["tenant"]["id"]),
        (&json!("OWNER"), &json!(owner.tenant_id)),
        "{mine}"
    );
    assert!(found["tenant"]["deletedAt"].is_string(), "{mine}");
    let root = app.sign_up("root@restore.test").await;
    app.db
        .admin()
        .await
        .execute_unprepared(
            "UPDATE users SET platform_role = 'platform_admin' WHERE email = 'root@restore.test'",
        )
        .await
        .unwrap();
    let listed = |deleted: bool| {
        let token = root.token.clone();
        let app = &app;
        async move {
            let data = app
                .ok(
                    Some(&token),
                    "query($d: Boolean!) { tenants(filter: {deleted: $d}) { nodes { slug deletedAt } } }",
                    json!({ "d": deleted }),
                )
                .await;
            data["tenants"]["nodes"].clone()
        }
    };
    let gone = listed(true).await;
    assert_eq!(gone.as_array().unwrap().len(), 1, "{gone}");
    assert_eq!(gone[0]["slug"], "restore-me");
    assert!(gone[0]["deletedAt"].is_string());
    let live = listed(false).await;
    assert!(
        live.as_array()
            .unwrap()
            .iter()
            .all(|t| t["slug"] != "restore-me"),
        "{live}"
    );

    // An admin is not an owner; a stranger does not see it; both NOT_FOUND.
    let stranger = app.sign_up("stranger@restore.test").await;
    for who in [&admin_member, &stranger] {
        let code = app
            .error_code(Some(&who.token), RESTORE, json!({ "id": owner.tenant_id }))
            .await;
        assert_eq!(code, "NOT_FOUND", "{}", who.email);
    }
    // The slug is free while it is deleted: another tenant takes it...
    let taker = app.sign_up("taker@restore.test").await;
    let created = app
        .ok(
            Some(&taker.token),
            "mutation { createTenant(input: {slug: \"restore-me\", name: \"Taker\"}) { tenant { id } userErrors { message } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        created["createTenant"]["userErrors"],
        json!([]),
        "{created}"
    );
    let mut taker = taker;
    let taken = created["createTenant"]["tenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.switch(&mut taker, &taken).await;
    let data = app
        .ok(
            Some(&owner.token),
            RESTORE,
            json!({ "id": owner.tenant_id }),
        )
        .await;
    assert_eq!(
        data["restoreTenant"]["userErrors"],
        json!([{ "field": "slug", "message": "a tenant with this slug already exists", "code": "CONFLICT" }]),
        "{data}"
    );
    // ...and gives it up again: now the restore works, and is audited.
    app.ok(
        Some(&taker.token),
        "mutation { updateTenant(input: {slug: \"restore-taker\"}) { tenant { slug } } }",
        json!({}),
    )
    .await;
    let data = app
        .ok(
            Some(&owner.token),
            RESTORE,
            json!({ "id": owner.tenant_id }),
        )
        .await;
    assert_eq!(
        data["restoreTenant"],
        json!({ "tenant": { "id": owner.tenant_id, "slug": "restore-me" }, "userErrors": [] }),
        "{data}"
    );
    let data = app
        .ok(Some(&owner.token), "{ tenant { slug } }", json!({}))
        .await;
    assert_eq!(data["tenant"]["slug"], "restore-me", "{data}");
    let last = Name::find_by_statement(stmt(
        "SELECT action AS name FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
        [owner.tenant_uuid().into()],
    ))
    .one(&app.db.admin().await)
    .await
    .unwrap()
    .unwrap();
    assert_eq!(last.name, "tenant.restore");
    // A live tenant is not restored twice.
    let data = app
        .ok(
            Some(&owner.token),
            RESTORE,
            json!({ "id": owner.tenant_id }),
        )
        .await;
    assert_eq!(
        data["restoreTenant"]["userErrors"][0]["code"], "CONFLICT",
        "{data}"
    );
}

/// The password of every test account (`TestApp::sign_up`).
const PASSWORD: &str = "correct horse battery";

fn code(data: &Value, field: &str) -> String {
    data[field]["userErrors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_deleted_account_keeps_no_session_membership_or_key() {
    let app = TestApp::new().await;
    let owner = app.owner("account-a").await;
    let leaver = app.member(&owner, "leaver@account.test", "ADMIN").await;
    let (key, key_id) = app.api_key(&leaver, "READ").await;
    const DELETE: &str = "mutation($p: String!) { deleteAccount(input: {password: $p}) { deleted membershipsRemoved apiKeysRevoked userErrors { field message code } } }";

    // The last owner of a live tenant is refused.
    let refused = app
        .ok(Some(&owner.token), DELETE, json!({ "p": PASSWORD }))
        .await;
    assert_eq!(code(&refused, "deleteAccount"), "CONFLICT", "{refused}");
    assert!(
        refused["deleteAccount"]["userErrors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("last owner of tenant \"account-a\""),
        "{refused}"
    );
    // A wrong password changes nothing.
    let wrong = app
        .ok(
            Some(&leaver.token),
            DELETE,
            json!({ "p": "not the password" }),
        )
        .await;
    assert_eq!(code(&wrong, "deleteAccount"), "BAD_USER_INPUT", "{wrong}");

    let done = app
        .ok(Some(&leaver.token), DELETE, json!({ "p": PASSWORD }))
        .await;
    assert_eq!(
        done["deleteAccount"],
        json!({ "deleted": true, "membershipsRemoved": 1, "apiKeysRevoked": 1, "userErrors": [] }),
        "{done}"
    );
    // The old access token, the refresh token and the key are dead; the password
    // signs nobody in.
    let (_, body) = app
        .post(
            Some(&leaver.token),
            "{ viewer { user { email } } }",
            json!({}),
        )
        .await;
    assert!(
        body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            || body["data"]["viewer"]["user"].is_null(),
        "{body}"
    );
    let (_, body) = app
        .post(
            None,
            "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { session { accessToken } } }",
            json!({ "t": leaver.refresh_token }),
        )
        .await;
    assert!(
        body["data"]["refreshSession"]["session"].is_null(),
        "{body}"
    );
    let (_, body) = app
        .post(
            None,
            "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { session { accessToken } } }",
            json!({ "e": "leaver@account.test", "p": PASSWORD }),
        )
        .await;
    assert!(body["data"]["login"]["session"].is_null(), "{body}");
    let (_, body) = app.post(Some(&key), "{ tenant { slug } }", json!({})).await;
    assert!(body["data"]["tenant"].is_null(), "{body}");

    // The tenant lists no such member; its audit log keeps the actor's id.
    let admin = app.db.admin().await;
    let left: i64 = admin
        .query_one(stmt(
            "SELECT count(*) FROM memberships WHERE user_id = $1",
            [leaver.user_uuid().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(left, 0);
    let revoked: bool = admin
        .query_one(stmt(
            "SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = $1",
            [Uuid::parse_str(&key_id[4..]).unwrap().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert!(revoked);
    let actions = Name::find_by_statement(stmt(
        "SELECT action AS name FROM audit_events WHERE actor_id = $1 ORDER BY seq",
        [leaver.user_uuid().into()],
    ))
    .all(&admin)
    .await
    .unwrap()
    .into_iter()
    .map(|n| n.name)
    .collect::<Vec<_>>();
    assert!(
        actions.contains(&"member.account_deleted".to_owned()),
        "{actions:?}"
    );
    assert!(actions.contains(&"user.deleted".to_owned()), "{actions:?}");
    // The address is free for a new account.
    app.sign_up("leaver@account.test").await;
}

/// Appends one line to a run of `owner`'s tenant in `store`.
async fn log_line(app: &TestApp, store: &LogStore, owner: &Member, run: &str) {
    let scope = RequestScope::for_upkeep(app.state.db.clone(), owner.tenant_uuid());
    store
        .for_tenant(&scope)
        .await
        .unwrap()
        .append(
            vec![NewLogEntry {
                run_id: Uuid::parse_str(&run[4..]).unwrap(),
                step_run_id: None,
                level: LogLevel::Info,
                message: "a line".into(),
                context: json!({}),
                logged_at: None,
            }],
            &[],
        )
        .await
        .unwrap();
    RequestScope::finish_shared(scope, true).await.unwrap();
}

/// With MongoDB as the log store, a purged tenant's documents go too, and only
/// theirs.
#[tokio::test]
async fn a_purge_deletes_the_tenants_mongodb_logs_only() {
    let app = TestApp::new().await;
    let url = crate::mongo::fresh_url();
    let store = LogStore::mongodb(&url).await.unwrap();
    let gone = app.owner("mongo-gone").await;
    let kept = app.owner("mongo-kept").await;
    for owner in [&gone, &kept] {
        let flow = workflow(
            &app,
            owner,
            "logged",
            json!([transform("shape", json!({ "x": "1" }))]),
            json!([]),
        )
        .await;
        let run = start(&app, owner, &flow, json!({})).await;
        for _ in 0..3 {
            log_line(&app, &store, owner, &run).await;
        }
    }
    delete_tenant(&app, &gone, "mongo-gone").await;
    backdate(&app, gone.tenant_uuid(), 31).await;
    let pass = purge_pass(&app.state.db, &store, None, PurgeLimits::default())
        .await
        .unwrap();
    assert_eq!((pass.purged, pass.logs_deleted), (1, 3), "{pass:?}");
    let raw = crate::mongo::raw_collection(&url).await;
    for (owner, left) in [(&gone, 0), (&kept, 3)] {
        let n = raw
            .count_documents(mongodb::bson::doc! { "tenantId": owner.tenant_uuid().to_string() })
            .await
            .unwrap();
        assert_eq!(n, left, "{}", owner.tenant_id);
    }
}
