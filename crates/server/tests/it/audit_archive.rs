//! The audit archive. Threats: an event deleted from the table before it is safely in
//! a file; a chain that can no longer be verified once its head is archived (or that
//! verifies although an archived line was changed); one tenant's events in another's
//! files, or deleted by another's pass; a second pass, or a pass after a crash, that
//! loses or duplicates events; one tenant's bad settings or broken chain stopping
//! everybody's archive; the app role using the archive function to erase recent or
//! other tenants' events.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{json, Value};
use trellis_core::audit_archive::{
    archive_pass, read_file, verify_tenant, ArchivePass, ArchiveSettings,
};
use trellis_core::purge::{purge_pass, PurgeLimits};
use trellis_core::scope::stmt;
use uuid::Uuid;

use crate::support::{as_app, trellis_command, Member, TestApp};

/// A fresh archive directory for one test.
fn archive_dir() -> PathBuf {
    std::env::temp_dir().join(format!("trellis-audit-archive-{}", Uuid::new_v4().simple()))
}

fn settings(dir: &Path) -> ArchiveSettings {
    ArchiveSettings::new(dir.to_owned())
}

/// The month `back` months before this one, `YYYY-MM` (as PostgreSQL counts).
async fn month(admin: &DatabaseConnection, back: i32) -> String {
    admin
        .query_one(stmt(
            "SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') \
                            - make_interval(months => $1), 'YYYY-MM')",
            [back.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

/// Replaces the tenant's audit history (as a superuser) with a chain that starts
/// with four old events, two in the month five months back (the second half a
/// second before the next month), two in the month four months back, then one ten
/// days old and one now: the four are past the default 90 days, the last two are not.
async fn old_history(admin: &DatabaseConnection, tenant: Uuid) {
    admin
        .execute(stmt(
            "DELETE FROM audit_events WHERE tenant_id = $1",
            [tenant.into()],
        ))
        .await
        .unwrap();
    admin
        .execute(stmt(
            "DELETE FROM app.audit_chain_heads WHERE chain_key = $1",
            [tenant.into()],
        ))
        .await
        .unwrap();
    let start = "date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'";
    for (n, at) in [
        format!("{start} - interval '5 months' + interval '9 days'"),
        format!("{start} - interval '4 months' - interval '0.5 seconds'"),
        format!("{start} - interval '4 months' + interval '1 second'"),
        format!("{start} - interval '4 months' + interval '2 days'"),
        "now() - interval '10 days'".to_owned(),
        "now()".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        admin
            .execute(stmt(
                &format!(
                    "INSERT INTO audit_events (id, tenant_id, actor_type, action, user_agent, \
                       details, created_at) \
                     VALUES ($1, $2, 'system', $3, $4, $5::text::jsonb, {at})"
                ),
                [
                    Uuid::now_v7().into(),
                    tenant.into(),
                    format!("old.event{}", n + 1).into(),
                    "agent \"quoted\"\n\u{e9}".into(),
                    // 1.50 as typed: the archive keeps PostgreSQL's text of the jsonb.
                    format!(
                        r#"{{"n": {}, "amount": 1.50, "nested": {{"b": [1, "x\ty"], "a": null}}}}"#,
                        n + 1
                    )
                    .into(),
                ],
            ))
            .await
            .unwrap();
    }
}

/// The (seq, action) of the tenant's events in the table.
async fn table_events(admin: &DatabaseConnection, tenant: Uuid) -> Vec<(i64, String)> {
    admin
        .query_all(stmt(
            "SELECT seq, action FROM audit_events WHERE tenant_id = $1 ORDER BY seq",
            [tenant.into()],
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.try_get("", "seq").unwrap(),
                r.try_get("", "action").unwrap(),
            )
        })
        .collect()
}

fn file_of(dir: &Path, tenant: Uuid, month: &str) -> PathBuf {
    dir.join(tenant.to_string())
        .join(format!("{month}.ndjson.gz"))
}

/// The decompressed lines of a file: the header, then one event a line.
fn lines(path: &Path) -> Vec<Value> {
    let file = std::fs::File::open(path).unwrap();
    BufReader::new(flate2::read::MultiGzDecoder::new(file))
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

async fn chain_broken_at(app: &TestApp, member: &Member) -> Value {
    app.ok(
        Some(&member.token),
        "{ tenant { auditChainBrokenAt } }",
        json!({}),
    )
    .await["tenant"]["auditChainBrokenAt"]
        .clone()
}

#[tokio::test]
async fn old_events_go_to_their_months_files_and_the_chain_verifies_across_the_boundary() {
    let app = TestApp::new().await;
    let a = app.owner("archive-a").await;
    let b = app.owner("archive-b").await;
    let admin = app.db.admin().await;
    old_history(&admin, a.tenant_uuid()).await;
    old_history(&admin, b.tenant_uuid()).await;
    let (older, old) = (month(&admin, 5).await, month(&admin, 4).await);
    let dir = archive_dir();

    let pass = archive_pass(&app.state.db, &settings(&dir), None)
        .await
        .unwrap();
    assert_eq!(
        pass,
        ArchivePass {
            tenants: 2,
            failed: 0,
            events_archived: 8,
            files_written: 4
        }
    );

    for member in [&a, &b] {
        let tenant = member.tenant_uuid();
        // Newer events untouched, still chained to the archived ones.
        assert_eq!(
            table_events(&admin, tenant).await,
            [(5, "old.event5".to_owned()), (6, "old.event6".to_owned())]
        );
        let first = lines(&file_of(&dir, tenant, &older));
        let second = lines(&file_of(&dir, tenant, &old));
        let actions = |l: &[Value]| -> Vec<String> {
            l[1..]
                .iter()
                .map(|e| e["action"].as_str().unwrap().to_owned())
                .collect()
        };
        // The event half a second before midnight stays in its month.
        assert_eq!(actions(&first), ["old.event1", "old.event2"]);
        assert_eq!(actions(&second), ["old.event3", "old.event4"]);
        for event in first[1..].iter().chain(&second[1..]) {
            assert_eq!(event["tenantId"], tenant.to_string(), "only its own events");
        }
        assert_eq!(first[0]["archive"], "trellis.audit-archive/1");
        assert_eq!(
            (first[0]["firstSeq"].clone(), first[0]["lastSeq"].clone()),
            (json!(1), json!(2))
        );
        assert_eq!(first[0]["prevHash"], Value::Null);
        assert_eq!(second[0]["prevHash"], first[0]["lastHash"]);
        assert_eq!(second[0]["lastHash"], second[2]["hash"]);
        // Details kept as PostgreSQL printed them (1.50, not 1.5).
        assert!(std::io::read_to_string(flate2::read::MultiGzDecoder::new(
            std::fs::File::open(file_of(&dir, tenant, &old)).unwrap()
        ))
        .unwrap()
        .contains("\"amount\": 1.50"),);
        // The hot chain starts at the archived boundary: it verifies in the API…
        assert_eq!(chain_broken_at(&app, member).await, Value::Null);
        // …and the whole chain, files and table, verifies.
        let verified = verify_tenant(&app.state.db, &dir, tenant).await.unwrap();
        assert_eq!(verified.problem, None);
        assert_eq!((verified.files, verified.archived_events), (2, 4));
        assert_eq!(verified.boundary.archived_seq, 4);
    }
    // The boundary cannot be forged by deleting the oldest hot event.
    admin
        .execute(stmt(
            "DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 5",
            [a.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    assert_eq!(chain_broken_at(&app, &a).await, json!(6));
    assert_eq!(chain_broken_at(&app, &b).await, Value::Null);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rewrites one gzip file with `edit` applied to its text.
fn tamper(path: &Path, edit: impl Fn(&str) -> String) {
    let text = std::io::read_to_string(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(path).unwrap(),
    ))
    .unwrap();
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing");
    let mut gzip = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    gzip.write_all(edited.as_bytes()).unwrap();
    gzip.finish().unwrap();
}

#[tokio::test]
async fn the_cli_archives_and_verifies_and_a_tampered_line_fails_verification() {
    let app = TestApp::new().await;
    let a = app.owner("cli-archive").await;
    let admin = app.db.admin().await;
    old_history(&admin, a.tenant_uuid()).await;
    let dir = archive_dir();
    let tenant = a.tenant_uuid().to_string();
    let run = |subcommand: &str| {
        let mut command = trellis_command(&app, subcommand);
        command
            .env("TRELLIS_AUDIT_ARCHIVE_DIR", &dir)
            .args(["--tenant", &tenant]);
        command
    };
    let out = run("audit-archive").output().await.unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("archived 4 audit event(s) of 1 tenant(s) into 2 file(s)"),
        "{said}"
    );
    assert_eq!(table_events(&admin, a.tenant_uuid()).await.len(), 2);

    let out = run("audit-verify").output().await.unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("4 archived event(s) in 2 file(s), then the table from event 5"),
        "{said}"
    );

    // An archived event edited in its file: the recomputed hash gives it away.
    let file = file_of(&dir, a.tenant_uuid(), &month(&admin, 5).await);
    tamper(&file, |text| {
        text.replacen("\"action\":\"old.event2\"", "\"action\":\"forged\"", 1)
    });
    let out = run("audit-verify").output().await.unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("line 3: event 2 does not match its hash"),
        "{said}"
    );
    let verified = verify_tenant(&app.state.db, &dir, a.tenant_uuid())
        .await
        .unwrap();
    assert!(verified.problem.is_some());

    // An archived event removed from its file (hash and all): the next one no longer
    // follows.
    tamper(&file, |text| {
        text.lines()
            .filter(|l| !l.contains("\"forged\""))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let verified = verify_tenant(&app.state.db, &dir, a.tenant_uuid())
        .await
        .unwrap();
    assert!(
        verified
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("header does not match")),
        "{verified:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn rerunning_is_idempotent_and_a_pass_cut_short_after_writing_is_finished_later() {
    let app = TestApp::new().await;
    let a = app.owner("rerun-archive").await;
    let admin = app.db.admin().await;
    old_history(&admin, a.tenant_uuid()).await;
    let dir = archive_dir();
    // One event per transaction: each month's file is written, then rewritten whole
    // with the next event added.
    let one_by_one = ArchiveSettings {
        batch: 1,
        ..settings(&dir)
    };

    // The pass dies between the files and the delete (the delete is refused here):
    // the files are written, the events stay in the table.
    admin
        .execute_unprepared(
            "REVOKE EXECUTE ON FUNCTION app.archive_audit_events(bigint, bytea) FROM trellis_app",
        )
        .await
        .unwrap();
    let pass = archive_pass(&app.state.db, &one_by_one, Some(a.tenant_uuid()))
        .await
        .unwrap();
    assert_eq!((pass.failed, pass.events_archived), (1, 0), "{pass:?}");
    assert_eq!(table_events(&admin, a.tenant_uuid()).await.len(), 6);
    let older = file_of(&dir, a.tenant_uuid(), &month(&admin, 5).await);
    assert_eq!(lines(&older).len(), 2, "the first event is in its file");
    let verified = verify_tenant(&app.state.db, &dir, a.tenant_uuid())
        .await
        .unwrap();
    assert_eq!(
        verified.problem, None,
        "archived but not yet deleted still verifies"
    );
    admin
        .execute_unprepared(
            "GRANT EXECUTE ON FUNCTION app.archive_audit_events(bigint, bytea) TO trellis_app",
        )
        .await
        .unwrap();

    // The next pass finds event 1 in its file, does not add it twice, and goes on.
    let pass = archive_pass(&app.state.db, &one_by_one, Some(a.tenant_uuid()))
        .await
        .unwrap();
    assert_eq!(
        (pass.failed, pass.events_archived, pass.files_written),
        (0, 4, 3),
        "{pass:?}"
    );
    let first = lines(&older);
    assert_eq!(first.len(), 3);
    assert_eq!(first[0]["events"], 2);
    let newer = file_of(&dir, a.tenant_uuid(), &month(&admin, 4).await);
    let written = std::fs::read(&newer).unwrap();
    assert_eq!(lines(&newer).len(), 3);

    // Once more: nothing to do, nothing rewritten.
    let pass = archive_pass(&app.state.db, &settings(&dir), None)
        .await
        .unwrap();
    assert_eq!(
        (pass.events_archived, pass.files_written),
        (0, 0),
        "{pass:?}"
    );
    assert_eq!(std::fs::read(&newer).unwrap(), written);
    assert_eq!(
        read_file(&newer)
            .unwrap()
            .events
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [3, 4]
    );
    let verified = verify_tenant(&app.state.db, &dir, a.tenant_uuid())
        .await
        .unwrap();
    assert_eq!(verified.problem, None);
    assert_eq!(table_events(&admin, a.tenant_uuid()).await.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn one_tenants_bad_setting_or_broken_chain_does_not_stop_anothers_archive() {
    let app = TestApp::new().await;
    let bad = app.owner("bad-setting").await;
    let broken = app.owner("broken-chain").await;
    let short = app.owner("short-retention").await;
    let admin = app.db.admin().await;
    for member in [&bad, &broken, &short] {
        old_history(&admin, member.tenant_uuid()).await;
    }
    // Saved behind the validation's back: read as the default (90 days).
    admin
        .execute(stmt(
            "UPDATE tenants SET settings = '{\"auditRetentionDays\": -5}' WHERE id = $1",
            [bad.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    admin
        .execute(stmt(
            "UPDATE audit_events SET action = 'forged' WHERE tenant_id = $1 AND seq = 2",
            [broken.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    // Validated on save: a whole number of days from 1 to 3650.
    let save =
        "mutation($s: JSON!) { updateTenant(input: {settings: $s}) { userErrors { field } } }";
    for wrong in [json!(0), json!("30"), json!(2.5), json!(4000)] {
        let data = app
            .ok(
                Some(&short.token),
                save,
                json!({ "s": { "auditRetentionDays": wrong } }),
            )
            .await;
        assert_eq!(
            data["updateTenant"]["userErrors"][0]["field"], "settings.auditRetentionDays",
            "{wrong}"
        );
    }
    let data = app
        .ok(
            Some(&short.token),
            save,
            json!({ "s": { "auditRetentionDays": 2 } }),
        )
        .await;
    assert_eq!(data["updateTenant"]["userErrors"], json!([]));
    // Saving audited one more (young) event after the six.
    let dir = archive_dir();
    let pass = archive_pass(&app.state.db, &settings(&dir), None)
        .await
        .unwrap();
    assert_eq!(pass.failed, 1, "the broken chain: {pass:?}");
    assert_eq!(pass.events_archived, 4 + 5, "{pass:?}");
    assert_eq!(table_events(&admin, bad.tenant_uuid()).await.len(), 2);
    assert_eq!(
        table_events(&admin, broken.tenant_uuid()).await.len(),
        6,
        "nothing of a chain that does not verify leaves the table"
    );
    assert!(!dir.join(broken.tenant_uuid().to_string()).exists());
    // Two days: the event ten days old goes too.
    assert_eq!(
        table_events(&admin, short.tenant_uuid()).await,
        [
            (6, "old.event6".to_owned()),
            (7, "tenant.update".to_owned())
        ]
    );
    let verified = verify_tenant(&app.state.db, &dir, short.tenant_uuid())
        .await
        .unwrap();
    assert_eq!((verified.problem, verified.archived_events), (None, 5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_plans_audit_retention_applies_unless_the_tenants_setting_says_otherwise() {
    let app = TestApp::new().await;
    let on_plan = app.owner("plan-retention").await;
    let own_setting = app.owner("own-retention").await;
    let on_free = app.owner("free-retention").await;
    let admin = app.db.admin().await;
    admin
        .execute(stmt(
            "INSERT INTO plans (key, name, limits) \
             VALUES ('short-audit', 'Short audit', '{\"auditRetentionDays\": 5}')",
            [],
        ))
        .await
        .unwrap();
    for member in [&on_plan, &own_setting] {
        admin
            .execute(stmt(
                "UPDATE tenants SET plan = 'short-audit' WHERE id = $1",
                [member.tenant_uuid().into()],
            ))
            .await
            .unwrap();
    }
    admin
        .execute(stmt(
            "UPDATE tenants SET settings = '{\"auditRetentionDays\": 400}' WHERE id = $1",
            [own_setting.tenant_uuid().into()],
        ))
        .await
        .unwrap();
    for member in [&on_plan, &own_setting, &on_free] {
        old_history(&admin, member.tenant_uuid()).await;
    }
    let dir = archive_dir();
    let pass = archive_pass(&app.state.db, &settings(&dir), None)
        .await
        .unwrap();
    assert_eq!(pass.failed, 0, "{pass:?}");
    // Five days: the event ten days old goes too.
    assert_eq!(
        table_events(&admin, on_plan.tenant_uuid()).await,
        [(6, "old.event6".to_owned())]
    );
    // The tenant's 400 days win over the plan's five.
    assert_eq!(
        table_events(&admin, own_setting.tenant_uuid()).await.len(),
        6
    );
    // `free` keeps 30 days: the four old events go, the one ten days old stays.
    assert_eq!(table_events(&admin, on_free.tenant_uuid()).await.len(), 2);
    assert_eq!(pass.events_archived, 5 + 4, "{pass:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_archive_function_deletes_only_the_own_tenants_old_chain_prefix() {
    let app = TestApp::new().await;
    let a = app.owner("fn-archive-a").await;
    let b = app.owner("fn-archive-b").await;
    let admin = app.db.admin().await;
    old_history(&admin, a.tenant_uuid()).await;
    old_history(&admin, b.tenant_uuid()).await;
    let hash_of = |tenant: Uuid, seq: i64| {
        let admin = &admin;
        async move {
            admin
                .query_one(stmt(
                    "SELECT hash FROM audit_events WHERE tenant_id = $1 AND seq = $2",
                    [tenant.into(), seq.into()],
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index::<Vec<u8>>(0)
                .unwrap()
        }
    };
    let pool = app.db.app_pool(1).await;
    let call = |tenant: Uuid, seq: i64, hash: Vec<u8>| {
        let pool = &pool;
        async move {
            let tx = as_app(pool, Some(tenant), None).await;
            let result = tx
                .query_one(stmt(
                    "SELECT app.archive_audit_events($1, $2)",
                    [seq.into(), hash.into()],
                ))
                .await;
            match result {
                Ok(row) => {
                    tx.commit().await.unwrap();
                    Ok(row.unwrap().try_get_by_index::<i64>(0).unwrap())
                }
                Err(err) => Err(err),
            }
        }
    };
    // B's event named from A's transaction: not A's chain.
    let err = call(a.tenant_uuid(), 2, hash_of(b.tenant_uuid(), 2).await)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not event 2"), "{err}");
    // Events younger than a day never go, whatever the caller says.
    let err = call(a.tenant_uuid(), 6, hash_of(a.tenant_uuid(), 6).await)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("younger than a day"), "{err}");
    assert_eq!(table_events(&admin, a.tenant_uuid()).await.len(), 6);
    assert_eq!(table_events(&admin, b.tenant_uuid()).await.len(), 6);
    // Without a tenant: refused.
    let tx = as_app(&pool, None, None).await;
    let err = tx
        .query_one(stmt(
            "SELECT app.archive_audit_events(2, $1)",
            [hash_of(a.tenant_uuid(), 2).await.into()],
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no current tenant"), "{err}");
    drop(tx);
    // A's own old prefix: deleted, and only A's.
    assert_eq!(
        call(a.tenant_uuid(), 2, hash_of(a.tenant_uuid(), 2).await)
            .await
            .unwrap(),
        2
    );
    assert_eq!(table_events(&admin, a.tenant_uuid()).await.len(), 4);
    assert_eq!(table_events(&admin, b.tenant_uuid()).await.len(), 6);
    // The boundary is A's own to read: from B's transaction, A's is not there.
    let head = |reader: Uuid| {
        let pool = &pool;
        let tenant = a.tenant_uuid();
        async move {
            let tx = as_app(pool, Some(reader), None).await;
            tx.query_all(stmt(
                "SELECT archived_seq FROM app.audit_archive_head($1)",
                [tenant.into()],
            ))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.try_get_by_index::<i64>(0).unwrap())
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(head(a.tenant_uuid()).await, [2]);
    assert_eq!(head(b.tenant_uuid()).await, Vec::<i64>::new());
    // A's API answer: the chain verifies from the boundary; B's is untouched.
    assert_eq!(chain_broken_at(&app, &a).await, Value::Null);
    assert_eq!(chain_broken_at(&app, &b).await, Value::Null);
}

#[tokio::test]
async fn the_maintenance_loop_archives_and_counts_in_metrics() {
    let dir = archive_dir();
    let app = TestApp::with_args(&[
        "--maintenance-interval",
        "1",
        "--audit-archive-dir",
        dir.to_str().unwrap(),
    ])
    .await;
    let a = app.owner("loop-archive").await;
    let admin = app.db.admin().await;
    old_history(&admin, a.tenant_uuid()).await;
    // The process's recorder, installed before the loop counts.
    trellis_server::telemetry::exporter();
    let config = crate::support::test_config(
        &app.db.app_url,
        &[
            "--maintenance-interval",
            "1",
            "--audit-archive-dir",
            dir.to_str().unwrap(),
        ],
    );
    trellis_server::app::spawn_maintenance(&config, &app.state);
    let mut archived = false;
    for _ in 0..100 {
        if table_events(&admin, a.tenant_uuid()).await.len() == 2 {
            archived = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(archived, "the loop archived the old events");
    let (_, metrics) = app
        .send(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    let metrics = metrics.as_str().unwrap().to_owned();
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        counter("trellis_maintenance_rows_total{job=\"audit_archive\"}") >= 4.0,
        "{metrics}"
    );
    assert!(
        counter("trellis_audit_archive_files_total") >= 2.0,
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_purge_deletes_the_tenants_archive_files_only() {
    let app = TestApp::new().await;
    let gone = app.owner("archive-purged").await;
    let kept = app.owner("archive-kept").await;
    let admin = app.db.admin().await;
    old_history(&admin, gone.tenant_uuid()).await;
    old_history(&admin, kept.tenant_uuid()).await;
    let dir = archive_dir();
    let archived = archive_pass(&app.state.db, &settings(&dir), None)
        .await
        .unwrap();
    assert_eq!(archived.files_written, 4);

    crate::purge::delete_tenant(&app, &gone, "archive-purged").await;
    crate::purge::backdate(&app, gone.tenant_uuid(), 31).await;
    let pass = purge_pass(
        &app.state.db,
        &app.state.logs,
        Some(&dir),
        PurgeLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (pass.purged, pass.archive_files_deleted),
        (1, 2),
        "{pass:?}"
    );
    assert!(!dir.join(gone.tenant_uuid().to_string()).exists());
    // The other tenant's files are all there and its chain still verifies.
    let verified = verify_tenant(&app.state.db, &dir, kept.tenant_uuid())
        .await
        .unwrap();
    assert_eq!(verified.problem, None);
    assert_eq!((verified.files, verified.archived_events), (2, 4));
    let _ = std::fs::remove_dir_all(&dir);
}
