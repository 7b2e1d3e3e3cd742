//! The audit archive: a tenant's audit events stay in PostgreSQL for its retention
//! (`settings.auditRetentionDays`, else its plan's `auditRetentionDays` limit, else the
//! server's `TRELLIS_AUDIT_RETENTION_DAYS`, 90 by default); older ones are written to
//! gzip NDJSON files, one per tenant and
//! calendar month (UTC), and only then deleted from the table.
//!
//! Layout: `<dir>/<tenant uuid>/<YYYY-MM>.ndjson.gz`. The first line of a file is its
//! header (`{"archive": "trellis.audit-archive/1", "tenantId", "month", "firstSeq",
//! "lastSeq", "prevHash", "lastHash", "events"}`): `prevHash` is the hash of the event
//! before its first one (null for the chain's first event), `lastHash` the hash of its
//! last. Every other line is one event with every field its hash covers, `details`
//! last and written exactly as PostgreSQL prints the `jsonb`, so the hash can be
//! recomputed from the file alone ([`ArchivedEvent::chain_hash`]).
//!
//! The chain stays verifiable across the boundary: `app.audit_chain_heads` keeps, per
//! tenant, the sequence number and hash of the last archived event, the first event
//! still in the table chains from them, and `app.verify_audit_chain` starts there
//! (migration 000032). [`verify_tenant`] checks the files and the table together.
//!
//! A pass runs per tenant, in the tenant's own transaction as
//! [`crate::Principal::Upkeep`], at most `batch` events per transaction: it reads the
//! oldest events past the boundary (a prefix of the chain: it stops at the first event
//! younger than the cutoff), checks their hashes, writes each month's file whole to a
//! temporary file, fsyncs it, renames it over the old one and fsyncs the directory,
//! and only then deletes the events through `app.archive_audit_events`, which moves
//! the boundary in the same transaction. A crash after a rename and before the commit
//! leaves the events in the table and in the file: the next pass finds them in the
//! file (the same hashes), adds only the events the file does not have yet, and
//! deletes them. A month's file is rewritten whole, keeping the lines it already has.
//!
//! An event goes into the month of the latest `created_at` up to it in chain order
//! (and never a month before the tenant's last file): `created_at` is its
//! transaction's start, so an event recorded just after midnight by a transaction
//! begun before it stays after its predecessors, and files never interleave.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use sea_orm::{ConnectionTrait, FromQueryResult};
use serde_json::{json, Value};
use trellis_entity::Role;
use uuid::Uuid;

use crate::scope::{stmt, AppDb, RequestScope};
use crate::Result;

/// Days an audit event stays in PostgreSQL when neither the tenant's settings nor the
/// server say otherwise (seed 002).
pub const DEFAULT_AUDIT_RETENTION_DAYS: i32 = 90;

/// The `archive` value of a file's header line.
pub const FORMAT: &str = "trellis.audit-archive/1";

/// The advisory lock class of a tenant's archiving (two replicas never write the same
/// tenant's files at once).
const LOCK_CLASS: i32 = 0x6175_6469; // "audi"

/// How an archive pass runs.
#[derive(Clone, Debug)]
pub struct ArchiveSettings {
    /// The archive's root directory.
    pub dir: PathBuf,
    /// Retention of tenants without a valid `auditRetentionDays` setting whose plan sets
    /// none either.
    pub default_days: i32,
    /// Archive events older than this instead of each tenant's retention (the CLI's
    /// `--before`). Events younger than a day are never archived.
    pub before: Option<DateTime<Utc>>,
    /// Events per transaction.
    pub batch: i64,
    /// Tenants per pass.
    pub max_tenants: i32,
}

impl ArchiveSettings {
    /// Settings with the default retention, batch and tenants per pass.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            default_days: DEFAULT_AUDIT_RETENTION_DAYS,
            before: None,
            batch: 1000,
            max_tenants: 100,
        }
    }
}

/// What an archive pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchivePass {
    pub tenants: u64,
    pub failed: u64,
    /// Events written to files and deleted from the table.
    pub events_archived: u64,
    /// Month files written (created or rewritten).
    pub files_written: u64,
}

impl ArchivePass {
    fn add(&mut self, other: &ArchivePass) {
        self.tenants += other.tenants;
        self.failed += other.failed;
        self.events_archived += other.events_archived;
        self.files_written += other.files_written;
    }
}

/// One archived event: a line of a file, or a row about to become one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedEvent {
    pub seq: i64,
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// `created_at` in UTC as the hash covers it (`YYYY-MM-DDTHH:MI:SS.US`).
    pub created: String,
    pub actor_type: String,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<Uuid>,
    pub severity: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The `jsonb` details as PostgreSQL prints them.
    pub details: String,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Vec<u8>,
}

/// A JSON string literal, escaped as PostgreSQL's `jsonb` output escapes it (`"`, `\`,
/// the short escapes and `\u00xx` for other control characters; nothing else).
fn json_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

fn json_or_null<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "null".to_owned(), |v| json_string(&v.to_string()))
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl ArchivedEvent {
    /// The text `app.audit_event_hash` hashes: the event's fields as PostgreSQL prints
    /// `jsonb_build_array(…)`.
    fn material(&self) -> String {
        format!(
            "[{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}]",
            json_string(&self.id.to_string()),
            json_string(&self.tenant_id.to_string()),
            self.seq,
            json_string(&self.actor_type),
            json_or_null(self.actor_id),
            json_string(&self.action),
            json_or_null(self.target_type.as_deref()),
            json_or_null(self.target_id),
            json_string(&self.severity),
            json_or_null(self.ip.as_deref()),
            json_or_null(self.user_agent.as_deref()),
            self.details,
            json_string(&self.created),
        )
    }

    /// The event's hash recomputed from its fields and previous hash, as the chain
    /// trigger computes it: SHA-256 of the previous hash and [`Self::material`].
    pub fn chain_hash(&self) -> Vec<u8> {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(self.prev_hash.as_deref().unwrap_or_default());
        context.update(self.material().as_bytes());
        context.finish().as_ref().to_vec()
    }

    /// The event as one line of a file (no newline), `details` last and verbatim.
    pub fn to_line(&self) -> String {
        let head = json!({
            "seq": self.seq,
            "id": self.id,
            "tenantId": self.tenant_id,
            "createdAt": format!("{}Z", self.created),
            "actorType": self.actor_type,
            "actorId": self.actor_id,
            "action": self.action,
            "targetType": self.target_type,
            "targetId": self.target_id,
            "severity": self.severity,
            "ip": self.ip,
            "userAgent": self.user_agent,
            "prevHash": self.prev_hash.as_deref().map(hex),
            "hash": hex(&self.hash),
        })
        .to_string();
        let open = head.strip_suffix('}').unwrap_or(&head);
        format!("{open},\"details\":{}}}", self.details)
    }

    /// Reads a line written by [`Self::to_line`].
    pub fn from_line(line: &str) -> anyhow::Result<Self> {
        let value: Value = serde_json::from_str(line).context("not JSON")?;
        // `details` is the last member, kept as written: inside a JSON string every
        // quote is escaped, so the first `,"details":` is the member's key.
        let at = line.find(",\"details\":").context("no details member")?;
        let details = line
            .get(at + ",\"details\":".len()..line.len().saturating_sub(1))
            .context("no details member")?
            .to_owned();
        let text = |key: &str| -> anyhow::Result<String> {
            value
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("{key} is missing"))
        };
        let optional = |key: &str| -> Option<String> {
            value.get(key).and_then(Value::as_str).map(str::to_owned)
        };
        let uuid = |key: &str| -> anyhow::Result<Option<Uuid>> {
            optional(key)
                .map(|s| Uuid::parse_str(&s).with_context(|| format!("{key} is not a UUID")))
                .transpose()
        };
        let created = text("createdAt")?;
        Ok(Self {
            seq: value
                .get("seq")
                .and_then(Value::as_i64)
                .context("seq is missing")?,
            id: uuid("id")?.context("id is missing")?,
            tenant_id: uuid("tenantId")?.context("tenantId is missing")?,
            created: created
                .strip_suffix('Z')
                .context("createdAt is not UTC")?
                .to_owned(),
            actor_type: text("actorType")?,
            actor_id: uuid("actorId")?,
            action: text("action")?,
            target_type: optional("targetType"),
            target_id: uuid("targetId")?,
            severity: text("severity")?,
            ip: optional("ip"),
            user_agent: optional("userAgent"),
            details,
            prev_hash: optional("prevHash")
                .map(|h| unhex(&h).context("prevHash is not hex"))
                .transpose()?,
            hash: unhex(&text("hash")?).context("hash is not hex")?,
        })
    }

    /// The calendar month (UTC) of `created`, `YYYY-MM`.
    fn month(&self) -> &str {
        self.created.get(..7).unwrap_or_default()
    }
}

/// The header line of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub tenant_id: Uuid,
    pub month: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub prev_hash: Option<Vec<u8>>,
    pub last_hash: Vec<u8>,
    pub events: u64,
}

impl Header {
    fn to_line(&self) -> String {
        json!({
            "archive": FORMAT,
            "tenantId": self.tenant_id,
            "month": self.month,
            "firstSeq": self.first_seq,
            "lastSeq": self.last_seq,
            "prevHash": self.prev_hash.as_deref().map(hex),
            "lastHash": hex(&self.last_hash),
            "events": self.events,
        })
        .to_string()
    }

    fn from_line(line: &str) -> anyhow::Result<Self> {
        let value: Value = serde_json::from_str(line).context("header: not JSON")?;
        if value.get("archive").and_then(Value::as_str) != Some(FORMAT) {
            bail!("header: not a {FORMAT} file");
        }
        let text = |key: &str| value.get(key).and_then(Value::as_str);
        let number = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_i64)
                .with_context(|| format!("header: {key} is missing"))
        };
        Ok(Self {
            tenant_id: Uuid::parse_str(text("tenantId").unwrap_or_default())
                .context("header: tenantId")?,
            month: text("month").context("header: month")?.to_owned(),
            first_seq: number("firstSeq")?,
            last_seq: number("lastSeq")?,
            prev_hash: text("prevHash")
                .map(|h| unhex(h).context("header: prevHash"))
                .transpose()?,
            last_hash: unhex(text("lastHash").unwrap_or("-")).context("header: lastHash")?,
            events: u64::try_from(number("events")?).context("header: events")?,
        })
    }
}

/// One month's file, read.
#[derive(Clone, Debug)]
pub struct ArchiveFile {
    pub header: Header,
    pub events: Vec<ArchivedEvent>,
    /// The event lines as written (kept verbatim when the file is rewritten).
    lines: Vec<String>,
}

/// A tenant's directory in the archive.
pub fn tenant_dir(dir: &Path, tenant_id: Uuid) -> PathBuf {
    dir.join(tenant_id.to_string())
}

fn month_path(tenant_dir: &Path, month: &str) -> PathBuf {
    tenant_dir.join(format!("{month}.ndjson.gz"))
}

/// The months a tenant has files for, oldest first.
pub fn months(tenant_dir: &Path) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(tenant_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(err) => return Err(err).with_context(|| format!("reading {}", tenant_dir.display())),
    };
    let mut months = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        if let Some(month) = name.to_str().and_then(|n| n.strip_suffix(".ndjson.gz")) {
            if !month.starts_with('.') {
                months.push(month.to_owned());
            }
        }
    }
    months.sort();
    Ok(months)
}

/// Deletes a tenant's directory of the archive with every file in it, when its purge
/// has deleted the tenant's rows; returns how many month files it held (0 when it had
/// none).
pub fn remove_tenant(dir: &Path, tenant_id: Uuid) -> anyhow::Result<u64> {
    let tenant_dir = tenant_dir(dir, tenant_id);
    let files = months(&tenant_dir)?.len() as u64;
    match std::fs::remove_dir_all(&tenant_dir) {
        Ok(()) => Ok(files),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(err) => Err(err).with_context(|| format!("removing {}", tenant_dir.display())),
    }
}

/// Reads a file: its header and events, each line parsed (not verified).
pub fn read_file(path: &Path) -> anyhow::Result<ArchiveFile> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut lines = BufReader::new(MultiGzDecoder::new(file)).lines();
    let header = lines
        .next()
        .context("empty file")?
        .with_context(|| format!("reading {}", path.display()))?;
    let header = Header::from_line(&header)?;
    let mut events = Vec::new();
    let mut raw = Vec::new();
    for (n, line) in lines.enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.is_empty() {
            continue;
        }
        events.push(ArchivedEvent::from_line(&line).with_context(|| format!("line {}", n + 2))?);
        raw.push(line);
    }
    Ok(ArchiveFile {
        header,
        events,
        lines: raw,
    })
}

/// Writes `lines` under `header` to `path` so that a crash leaves either the old file
/// or the new one: a temporary file beside it, fsynced, renamed over it, and the
/// directory fsynced.
fn write_atomically(path: &Path, header: &Header, lines: &[String]) -> anyhow::Result<()> {
    let dir = path.parent().context("an archive file has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("an archive file has a name")?;
    let temporary = dir.join(format!(".{name}.tmp"));
    let file =
        File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
    let mut gzip = GzEncoder::new(std::io::BufWriter::new(file), Compression::default());
    gzip.write_all(header.to_line().as_bytes())?;
    gzip.write_all(b"\n")?;
    for line in lines {
        gzip.write_all(line.as_bytes())?;
        gzip.write_all(b"\n")?;
    }
    let file = gzip
        .finish()?
        .into_inner()
        .map_err(|err| anyhow!("writing {}: {}", temporary.display(), err.error()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", temporary.display()))?;
    drop(file);
    std::fs::rename(&temporary, path)
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// Adds `events` (consecutive, one month's) to the month's file, creating it or
/// rewriting it whole with its old lines first. Events the file already has (a pass
/// cut short after the rename) must be the same events, and are not added again.
/// Returns whether the file was written.
fn add_to_month(
    tenant_dir: &Path,
    tenant_id: Uuid,
    month: &str,
    events: &[ArchivedEvent],
) -> anyhow::Result<bool> {
    let Some(first) = events.first() else {
        return Ok(false);
    };
    let path = month_path(tenant_dir, month);
    let (mut header, mut lines, new) = if path.exists() {
        let file = read_file(&path)?;
        if file.header.tenant_id != tenant_id || file.header.month != month {
            bail!("{} belongs to another tenant or month", path.display());
        }
        for event in events.iter().filter(|e| e.seq <= file.header.last_seq) {
            let kept = usize::try_from(event.seq - file.header.first_seq)
                .ok()
                .and_then(|i| file.events.get(i));
            if kept.map(|k| &k.hash) != Some(&event.hash) {
                bail!(
                    "{} has another event {} than the table",
                    path.display(),
                    event.seq
                );
            }
        }
        let new: Vec<&ArchivedEvent> = events
            .iter()
            .filter(|e| e.seq > file.header.last_seq)
            .collect();
        match new.first() {
            None => return Ok(false),
            Some(next) if next.seq != file.header.last_seq + 1 => {
                bail!("{} ends before event {}", path.display(), next.seq - 1)
            }
            Some(_) => {}
        }
        (file.header, file.lines, new)
    } else {
        let header = Header {
            tenant_id,
            month: month.to_owned(),
            first_seq: first.seq,
            last_seq: first.seq - 1,
            prev_hash: first.prev_hash.clone(),
            last_hash: Vec::new(),
            events: 0,
        };
        (header, Vec::new(), events.iter().collect())
    };
    for event in new {
        lines.push(event.to_line());
        header.last_seq = event.seq;
        header.last_hash.clone_from(&event.hash);
        header.events += 1;
    }
    write_atomically(&path, &header, &lines)?;
    Ok(true)
}

#[derive(FromQueryResult)]
struct EventRow {
    id: Uuid,
    seq: i64,
    actor_type: String,
    actor_id: Option<Uuid>,
    action: String,
    target_type: Option<String>,
    target_id: Option<Uuid>,
    severity: String,
    ip: Option<String>,
    user_agent: Option<String>,
    details: String,
    created: String,
    young: bool,
    prev_hash: Option<Vec<u8>>,
    hash: Vec<u8>,
}

/// The boundary of a tenant's chain: the last archived event's number and hash.
#[derive(Clone, Debug, Default, FromQueryResult, PartialEq, Eq)]
pub struct Boundary {
    pub archived_seq: i64,
    pub archived_hash: Option<Vec<u8>>,
}

async fn boundary(conn: &impl ConnectionTrait, tenant_id: Uuid) -> Result<Boundary> {
    Ok(Boundary::find_by_statement(stmt(
        "SELECT coalesce((SELECT b.archived_seq FROM app.audit_archive_head($1) b), 0) \
                AS archived_seq, \
                (SELECT b.archived_hash FROM app.audit_archive_head($1) b) AS archived_hash",
        [tenant_id.into()],
    ))
    .one(conn)
    .await?
    .unwrap_or_default())
}

/// One transaction of a tenant's archiving: at most `batch` events. Returns what it
/// did and whether more events are due.
async fn archive_batch(
    db: &AppDb,
    tenant_id: Uuid,
    settings: &ArchiveSettings,
) -> Result<(ArchivePass, bool)> {
    let scope = RequestScope::for_upkeep(db.clone(), tenant_id);
    scope.require(Role::Viewer).await?;
    let tx = scope.tx().await?;
    let locked = tx
        .query_one(stmt(
            "SELECT pg_try_advisory_xact_lock($1, hashtext($2)) AS locked",
            [LOCK_CLASS.into(), tenant_id.to_string().into()],
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "locked"))
        .transpose()?
        .unwrap_or(false);
    if !locked {
        // Another process is archiving this tenant now.
        RequestScope::finish_shared(scope, true).await?;
        return Ok((ArchivePass::default(), false));
    }
    let head = boundary(tx, tenant_id).await?;
    // The oldest events past the boundary, in chain order; `young` marks those inside
    // the retention (or after `before`), where the prefix stops.
    let rows = EventRow::find_by_statement(stmt(
        "WITH cutoff AS ( \
           SELECT least(coalesce($3::timestamptz, now() - make_interval( \
                    days => app.setting_days(t.settings, 'auditRetentionDays', \
                              coalesce((p.limits->>'auditRetentionDays')::int, $4)))), \
                  now() - interval '1 day') AS at \
           FROM tenants t LEFT JOIN plans p ON p.key = t.plan WHERE t.id = $1) \
         SELECT e.id, e.seq, e.actor_type, e.actor_id, e.action, e.target_type, \
                e.target_id, e.severity, e.ip, e.user_agent, e.details::text AS details, \
                to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') \
                  AS created, \
                e.created_at >= c.at AS young, e.prev_hash, e.hash \
         FROM audit_events e CROSS JOIN cutoff c \
         WHERE e.tenant_id = $1 AND e.seq > $2 \
         ORDER BY e.seq LIMIT $5",
        [
            tenant_id.into(),
            head.archived_seq.into(),
            settings.before.into(),
            settings.default_days.into(),
            settings.batch.max(1).into(),
        ],
    ))
    .all(tx)
    .await?;
    let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= settings.batch.max(1);
    let mut events = Vec::new();
    let mut reached_young = false;
    for row in rows {
        if row.young {
            reached_young = true;
            break;
        }
        events.push(ArchivedEvent {
            seq: row.seq,
            id: row.id,
            tenant_id,
            created: row.created,
            actor_type: row.actor_type,
            actor_id: row.actor_id,
            action: row.action,
            target_type: row.target_type,
            target_id: row.target_id,
            severity: row.severity,
            ip: row.ip,
            user_agent: row.user_agent,
            details: row.details,
            prev_hash: row.prev_hash,
            hash: row.hash,
        });
    }
    let Some(last) = events.last().cloned() else {
        RequestScope::finish_shared(scope, true).await?;
        return Ok((ArchivePass::default(), false));
    };
    // Nothing leaves the table that the files could not prove: the chain is checked
    // from the boundary, every hash recomputed as the verifier will.
    let (mut seq, mut prev) = (head.archived_seq, head.archived_hash);
    for event in &events {
        if event.seq != seq + 1 || event.prev_hash != prev || event.chain_hash() != event.hash {
            return Err(anyhow!(
                "tenant {tenant_id}: the audit chain does not verify at event {}; nothing archived",
                event.seq
            )
            .into());
        }
        seq = event.seq;
        prev = Some(event.hash.clone());
    }
    let dir = tenant_dir(&settings.dir, tenant_id);
    let files_written = tokio::task::spawn_blocking(move || write_months(&dir, tenant_id, &events))
        .await
        .map_err(|err| anyhow!("archive writer: {err}"))??;
    let deleted = tx
        .query_one(stmt(
            "SELECT app.archive_audit_events($1, $2) AS n",
            [last.seq.into(), last.hash.clone().into()],
        ))
        .await?
        .map(|row| row.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    RequestScope::finish_shared(scope, true).await?;
    let done = ArchivePass {
        tenants: 0,
        failed: 0,
        events_archived: u64::try_from(deleted).unwrap_or(0),
        files_written,
    };
    Ok((done, full && !reached_young))
}

/// Writes checked, consecutive events to their months' files. Returns how many files
/// were written.
fn write_months(dir: &Path, tenant_id: Uuid, events: &[ArchivedEvent]) -> anyhow::Result<u64> {
    // Never a month before the tenant's last file, and never before an earlier event's.
    let mut month = months(dir)?.pop().unwrap_or_default();
    let mut groups: Vec<(String, Vec<ArchivedEvent>)> = Vec::new();
    for event in events {
        if event.month() > month.as_str() {
            event.month().clone_into(&mut month);
        }
        match groups.last_mut() {
            Some((m, group)) if *m == month => group.push(event.clone()),
            _ => groups.push((month.clone(), vec![event.clone()])),
        }
    }
    let mut written = 0;
    for (month, group) in &groups {
        if add_to_month(dir, tenant_id, month, group)? {
            written += 1;
        }
    }
    Ok(written)
}

/// Archives a tenant's events older than its retention, batch by batch.
pub async fn archive_tenant(
    db: &AppDb,
    tenant_id: Uuid,
    settings: &ArchiveSettings,
) -> Result<ArchivePass> {
    let mut total = ArchivePass {
        tenants: 1,
        ..ArchivePass::default()
    };
    loop {
        let (done, more) = archive_batch(db, tenant_id, settings).await?;
        total.add(&done);
        if !more {
            return Ok(total);
        }
    }
}

/// One pass over the tenants with events to archive (at most `settings.max_tenants`),
/// or over `only` when given. One tenant's failure is logged and counted, and the
/// others go on.
pub async fn archive_pass(
    db: &AppDb,
    settings: &ArchiveSettings,
    only: Option<Uuid>,
) -> Result<ArchivePass> {
    #[derive(FromQueryResult)]
    struct Id {
        id: Uuid,
    }
    let tenants = match only {
        Some(id) => vec![Id { id }],
        None => {
            Id::find_by_statement(stmt(
                "SELECT t AS id FROM app.tenants_with_audit_to_archive($1, $2, $3) AS t",
                [
                    settings.default_days.into(),
                    settings.max_tenants.into(),
                    settings.before.into(),
                ],
            ))
            .all(db.pool())
            .await?
        }
    };
    let mut pass = ArchivePass::default();
    for Id { id } in tenants {
        match archive_tenant(db, id, settings).await {
            Ok(done) => pass.add(&done),
            Err(err) => {
                pass.failed += 1;
                tracing::warn!(tenant = %id, error = ?err, "audit archive failed");
            }
        }
    }
    Ok(pass)
}

/// What [`verify_tenant`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    pub files: u64,
    pub archived_events: u64,
    /// The boundary the table keeps.
    pub boundary: Boundary,
    /// The first problem found (file, line and what), or `None` when the whole chain
    /// verifies: the files one after the other from the chain's first event, the
    /// table's boundary at their end, and the events in the table from there.
    pub problem: Option<String>,
}

/// Checks a tenant's files alone: each line's hash recomputed, each line chained to
/// the one before, across files, from the chain's first event; each header true to
/// its lines. Returns the files, the events and the last (number, hash), or the first
/// problem.
pub fn verify_files(
    dir: &Path,
    tenant_id: Uuid,
) -> std::result::Result<(u64, u64, Boundary), String> {
    let dir = tenant_dir(dir, tenant_id);
    let months = months(&dir).map_err(|err| format!("{err:#}"))?;
    let mut end = Boundary::default();
    let mut events = 0;
    for month in &months {
        let path = month_path(&dir, month);
        let name = path.display();
        let file = read_file(&path).map_err(|err| format!("{name}: {err:#}"))?;
        let header = &file.header;
        if header.tenant_id != tenant_id || &header.month != month {
            return Err(format!("{name}: the header names another tenant or month"));
        }
        if header.first_seq != end.archived_seq + 1 || header.prev_hash != end.archived_hash {
            return Err(format!(
                "{name}: does not follow event {} of the chain",
                end.archived_seq
            ));
        }
        for (n, event) in file.events.iter().enumerate() {
            let line = n + 2;
            if event.tenant_id != tenant_id {
                return Err(format!("{name} line {line}: another tenant's event"));
            }
            if event.seq != end.archived_seq + 1 || event.prev_hash != end.archived_hash {
                return Err(format!(
                    "{name} line {line}: event {} does not follow event {}",
                    event.seq, end.archived_seq
                ));
            }
            if event.chain_hash() != event.hash {
                return Err(format!(
                    "{name} line {line}: event {} does not match its hash",
                    event.seq
                ));
            }
            end.archived_seq = event.seq;
            end.archived_hash = Some(event.hash.clone());
        }
        if header.last_seq != end.archived_seq
            || Some(&header.last_hash) != end.archived_hash.as_ref()
            || header.events != file.events.len() as u64
        {
            return Err(format!("{name}: the header does not match its lines"));
        }
        events += header.events;
    }
    Ok((months.len() as u64, events, end))
}

/// Verifies a tenant's whole audit chain: its archive files ([`verify_files`]), the
/// boundary the table keeps (the files must end there, or past it when a pass was cut
/// short before its commit and the same events are still in the table), and the
/// events in the table from the boundary on (`app.verify_audit_chain`). Runs in the
/// tenant's transaction as [`crate::Principal::Upkeep`].
pub async fn verify_tenant(db: &AppDb, dir: &Path, tenant_id: Uuid) -> Result<Verification> {
    let root = dir.to_owned();
    let files = tokio::task::spawn_blocking(move || verify_files(&root, tenant_id))
        .await
        .map_err(|err| anyhow!("archive verifier: {err}"))?;
    let scope = RequestScope::for_upkeep(db.clone(), tenant_id);
    scope.require(Role::Viewer).await?;
    let tx = scope.tx().await?;
    let head = boundary(tx, tenant_id).await?;
    let mut verification = Verification {
        boundary: head.clone(),
        ..Verification::default()
    };
    match files {
        Err(problem) => verification.problem = Some(problem),
        Ok((files, events, end)) => {
            verification.files = files;
            verification.archived_events = events;
            if end.archived_seq < head.archived_seq {
                verification.problem = Some(format!(
                    "the files end at event {} but the table's chain starts after event {}",
                    end.archived_seq, head.archived_seq
                ));
            } else if end.archived_seq > head.archived_seq {
                // Archived, not yet deleted: the table must still have the same event.
                let same = tx
                    .query_one(stmt(
                        "SELECT count(*) AS n FROM audit_events \
                         WHERE tenant_id = $1 AND seq = $2 AND hash = $3",
                        [
                            tenant_id.into(),
                            end.archived_seq.into(),
                            end.archived_hash.clone().into(),
                        ],
                    ))
                    .await?
                    .map(|row| row.try_get::<i64>("", "n"))
                    .transpose()?
                    .unwrap_or(0);
                if same != 1 {
                    verification.problem = Some(format!(
                        "the files' event {} is not the table's",
                        end.archived_seq
                    ));
                }
            } else if end.archived_hash != head.archived_hash {
                verification.problem = Some(format!(
                    "the files' last hash is not the table's boundary (event {})",
                    end.archived_seq
                ));
            }
        }
    }
    if verification.problem.is_none() {
        if let Some(seq) = crate::audit::verify_chain(tx, Some(tenant_id)).await? {
            verification.problem = Some(format!("the table's chain breaks at event {seq}"));
        }
    }
    RequestScope::finish_shared(scope, true).await?;
    Ok(verification)
}

#[cfg(test)]
mod tests {
    use super::{hex, unhex, ArchivedEvent};
    use uuid::Uuid;

    fn event() -> ArchivedEvent {
        ArchivedEvent {
            seq: 7,
            id: Uuid::nil(),
            tenant_id: Uuid::max(),
            created: "2026-09-01T10:00:00.123456".into(),
            actor_type: "user".into(),
            actor_id: None,
            action: "app.create".into(),
            target_type: Some("app".into()),
            target_id: None,
            severity: "info".into(),
            ip: None,
            user_agent: Some("agent \"quoted\", \"details\": x\n".into()),
            details: r#"{"a": 1.50, "name": "x,\"details\":"}"#.into(),
            prev_hash: Some(vec![1, 2, 255]),
            hash: vec![9; 32],
        }
    }

    #[test]
    fn a_line_reads_back_as_written() {
        let event = event();
        let line = event.to_line();
        assert!(!line.contains('\n'));
        assert_eq!(ArchivedEvent::from_line(&line).unwrap(), event);
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(unhex("000fff"), Some(vec![0, 15, 255]));
        assert_eq!(unhex("0g"), None);
    }

    #[test]
    fn the_hash_covers_every_field() {
        let event = event();
        let mut other = event.clone();
        other.details = r#"{"a": 1.5, "name": "x,\"details\":"}"#.into();
        assert_ne!(event.chain_hash(), other.chain_hash());
    }
}
