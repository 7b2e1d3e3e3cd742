//! The audit archive: events older than a tenant's retention leave PostgreSQL for
//! gzip NDJSON files (`crates/core/src/audit_archive.rs`), and the hash chain stays
//! verifiable across the boundary.
//!
//! - `app.audit_chain_heads` keeps, per chain, the last archived event's sequence
//!   number and hash (`archived_seq`, `archived_hash`): the first event still in the
//!   table chains from them. The application can neither read nor write that table.
//! - `app.audit_archive_head(tenant)` returns them for the transaction's own tenant
//!   only (nothing for any other chain).
//! - `app.verify_audit_chain(tenant)` now starts at that boundary: the first hot event
//!   must carry the archived hash as its previous hash and follow the archived
//!   sequence number. A chain that was never archived verifies as before.
//! - `app.archive_audit_events(upto_seq, upto_hash)` deletes the transaction's own
//!   tenant's events from the boundary up to `upto_seq` and moves the boundary there,
//!   and nothing else: only a contiguous prefix of the chain, only when the caller
//!   names the hash of its last event (what the archive file recorded), and never an
//!   event younger than a day. The audit table stays append-only for the application
//!   in every other way.
//! - `app.tenants_with_audit_to_archive(default_days, max, before)` returns the ids of
//!   tenants with events older than their `settings.auditRetentionDays` (read by
//!   `app.setting_days`, so a bad value is the default) or than `before`.

use sea_orm_migration::prelude::*;

use crate::rls::grant_to_app;
use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000032_audit_archive"
    }
}

const UP: &str = r#"
ALTER TABLE app.audit_chain_heads
    ADD COLUMN archived_seq bigint NOT NULL DEFAULT 0,
    ADD COLUMN archived_hash bytea;

CREATE FUNCTION app.audit_archive_head(chain_tenant uuid)
RETURNS TABLE (archived_seq bigint, archived_hash bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT h.archived_seq, h.archived_hash FROM app.audit_chain_heads h
    WHERE h.chain_key = chain_tenant AND chain_tenant = app.current_tenant_id()
$$;
REVOKE ALL ON FUNCTION app.audit_archive_head(uuid) FROM PUBLIC;

CREATE OR REPLACE FUNCTION app.verify_audit_chain(chain_tenant uuid) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    WITH boundary AS (
        SELECT coalesce((SELECT b.archived_seq FROM app.audit_archive_head(chain_tenant) b), 0)
                   AS archived_seq,
               (SELECT b.archived_hash FROM app.audit_archive_head(chain_tenant) b)
                   AS archived_hash
    )
    SELECT min(seq) FROM (
        SELECT e.seq, e.hash, e.prev_hash,
               app.audit_event_hash(e) AS recomputed,
               CASE WHEN row_number() OVER w = 1 THEN b.archived_hash
                    ELSE lag(e.hash) OVER w END AS previous_hash,
               coalesce(lag(e.seq) OVER w, b.archived_seq) AS previous_seq
        FROM public.audit_events e CROSS JOIN boundary b
        WHERE e.tenant_id IS NOT DISTINCT FROM chain_tenant
        WINDOW w AS (ORDER BY e.seq)
    ) AS chain
    WHERE hash <> recomputed
       OR prev_hash IS DISTINCT FROM previous_hash
       OR seq <> previous_seq + 1
$$;

CREATE FUNCTION app.archive_audit_events(upto_seq bigint, upto_hash bytea) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    tenant uuid := app.current_tenant_id();
    head app.audit_chain_heads;
    deleted bigint;
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'no current tenant' USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- The writers' lock: no event is chained while the boundary moves.
    SELECT * INTO head FROM app.audit_chain_heads WHERE chain_key = tenant FOR UPDATE;
    IF NOT FOUND OR upto_seq <= head.archived_seq THEN
        RETURN 0;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.audit_events e
                   WHERE e.tenant_id = tenant AND e.seq = upto_seq AND e.hash = upto_hash) THEN
        RAISE EXCEPTION 'the last archived event is not event % of the chain', upto_seq
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM public.audit_events e
               WHERE e.tenant_id = tenant AND e.seq > head.archived_seq AND e.seq <= upto_seq
                 AND e.created_at >= now() - interval '1 day') THEN
        RAISE EXCEPTION 'audit events younger than a day are not archived'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM public.audit_events e
    WHERE e.tenant_id = tenant AND e.seq > head.archived_seq AND e.seq <= upto_seq;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    IF deleted <> upto_seq - head.archived_seq THEN
        RAISE EXCEPTION 'audit chain has gaps before event %', upto_seq
            USING ERRCODE = 'data_corrupted';
    END IF;
    UPDATE app.audit_chain_heads SET archived_seq = upto_seq, archived_hash = upto_hash
    WHERE chain_key = tenant;
    RETURN deleted;
END
$$;
REVOKE ALL ON FUNCTION app.archive_audit_events(bigint, bytea) FROM PUBLIC;

CREATE FUNCTION app.tenants_with_audit_to_archive(default_days integer, max_tenants integer,
                                                  before timestamptz)
RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT t.id FROM public.tenants t
    WHERE EXISTS (
        SELECT 1 FROM public.audit_events e
        WHERE e.tenant_id = t.id
          AND e.seq > coalesce((SELECT h.archived_seq FROM app.audit_chain_heads h
                                WHERE h.chain_key = t.id), 0)
          AND e.created_at < least(
                coalesce(before, now() - make_interval(
                    days => app.setting_days(t.settings, 'auditRetentionDays', default_days))),
                now() - interval '1 day'))
    ORDER BY t.id
    LIMIT greatest(max_tenants, 0)
$$;
REVOKE ALL ON FUNCTION app.tenants_with_audit_to_archive(integer, integer, timestamptz)
    FROM PUBLIC;
"#;

// async-trait's expansion needs the elided lifetime the trait itself declares.
#[expect(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut sql = UP.to_owned();
        sql.push_str(&grant_to_app(
            "EXECUTE",
            "FUNCTION app.audit_archive_head(uuid), \
             app.archive_audit_events(bigint, bytea), \
             app.tenants_with_audit_to_archive(integer, integer, timestamptz)",
        ));
        run_script(manager, &sql).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            r#"
CREATE OR REPLACE FUNCTION app.verify_audit_chain(chain_tenant uuid) RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT min(seq) FROM (
        SELECT e.seq, e.hash, e.prev_hash,
               app.audit_event_hash(e) AS recomputed,
               lag(e.hash) OVER w AS previous_hash,
               coalesce(lag(e.seq) OVER w, 0) AS previous_seq
        FROM public.audit_events e
        WHERE e.tenant_id IS NOT DISTINCT FROM chain_tenant
        WINDOW w AS (ORDER BY e.seq)
    ) AS chain
    WHERE hash <> recomputed
       OR prev_hash IS DISTINCT FROM previous_hash
       OR seq <> previous_seq + 1
$$;
DROP FUNCTION app.tenants_with_audit_to_archive(integer, integer, timestamptz);
DROP FUNCTION app.archive_audit_events(bigint, bytea);
DROP FUNCTION app.audit_archive_head(uuid);
ALTER TABLE app.audit_chain_heads DROP COLUMN archived_hash, DROP COLUMN archived_seq;
"#,
        )
        .await
    }
}
