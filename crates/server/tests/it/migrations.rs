//! Migrations go down and up again to an identical schema.

use sea_orm_migration::MigratorTrait;
use trellis_migration::Migrator;
use trellis_server::bootstrap::{self, DbNames};

use crate::support::TestDb;

fn schema_dump(url: &str) -> String {
    let bin = trellis_server::embedded_pg::find_binaries().unwrap();
    let out = std::process::Command::new(bin.join("pg_dump"))
        .args([
            "--schema-only",
            "--no-comments",
            "--exclude-table=seaql_migrations",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // pg_dump ≥ 15.14 brackets the dump with a random \restrict key; it is not schema.
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn migrations_go_up_down_and_up_to_the_same_schema() {
    let db = TestDb::new().await;
    let names = DbNames {
        database: db.name.clone(),
        owner_role: "trellis_owner".into(),
        app_role: "trellis_app".into(),
        app_password: "trellis_app".to_owned().into(),
    };
    let before = schema_dump(&db.admin_url);
    assert!(before.contains("FORCE ROW LEVEL SECURITY"));
    let owner = bootstrap::open_as_owner(&db.admin_url, &names)
        .await
        .unwrap();
    Migrator::down(&owner, None).await.unwrap();
    let empty = schema_dump(&db.admin_url);
    assert!(
        !empty.contains("CREATE TABLE public.tenants"),
        "down left tables behind"
    );
    Migrator::up(&owner, None).await.unwrap();
    owner.close().await.unwrap();
    assert_eq!(before, schema_dump(&db.admin_url));
}

/// The due look-up and the executor's claim test a step the same way: the function's
/// body holds the claim's test as `trellis_entity` writes it today. When the test
/// changes, a new migration must re-create the function.
#[tokio::test]
async fn the_due_look_up_tests_steps_as_the_claim_does() {
    use sea_orm::ConnectionTrait;
    let db = crate::support::TestDb::new().await;
    let admin = db.admin().await;
    let row = admin
        .query_one(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT prosrc FROM pg_proc WHERE proname = 'tenants_with_due_runs'",
        ))
        .await
        .unwrap()
        .unwrap();
    let body: String = row.try_get("", "prosrc").unwrap();
    let test = trellis_entity::workflow_step::foreign_step_sql("engine_types");
    assert!(body.contains(&test), "{body}\ndoes not hold\n{test}");
}
