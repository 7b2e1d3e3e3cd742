//! The RLS doctor: checks, table by table, that the database keeps the tenancy
//! contract. It runs as the application role, so "the role" below is the one the
//! server connects as.

use std::fmt;

use sea_orm::{ConnectionTrait, FromQueryResult};

use crate::scope::stmt;
use crate::Result;

/// One check on one subject (the role, a table or a function).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub subject: String,
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Every finding of one run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn is_healthy(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.ok)
    }

    fn push(&mut self, subject: &str, check: &'static str, ok: bool, detail: impl Into<String>) {
        self.findings.push(Finding {
            subject: subject.to_owned(),
            check,
            ok,
            detail: detail.into(),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut subject = "";
        for finding in &self.findings {
            if finding.subject != subject {
                subject = &finding.subject;
                writeln!(f, "{subject}")?;
            }
            let mark = if finding.ok { "ok  " } else { "FAIL" };
            write!(f, "  {mark} {}", finding.check)?;
            if !finding.detail.is_empty() {
                write!(f, ": {}", finding.detail)?;
            }
            writeln!(f)?;
        }
        let failed = self.failures().count();
        write!(f, "{} checks, {failed} failed", self.findings.len())
    }
}

#[derive(FromQueryResult)]
struct RoleRow {
    name: String,
    superuser: bool,
    bypass_rls: bool,
    owned: i64,
    member_of: Vec<String>,
}

#[derive(FromQueryResult)]
struct TableRow {
    name: String,
    rls: bool,
    forced: bool,
    granted: bool,
    has_tenant_id: bool,
    has_user_id: bool,
    tenant_leading_index: bool,
    uniques_without_tenant: Vec<String>,
}

#[derive(FromQueryResult)]
struct PolicyRow {
    table_name: String,
    name: String,
    restrictive: bool,
    cmd: String,
    qual: Option<String>,
    with_check: Option<String>,
}

#[derive(FromQueryResult)]
struct DefinerRow {
    name: String,
    pinned: bool,
    public_execute: bool,
}

const HELPERS: [&str; 2] = ["app.current_tenant_id()", "app.current_user_id()"];

/// The unique indexes on tenant tables that may leave `tenant_id` out, as (table,
/// index). A unique index across tenants lets a writer learn whether another tenant
/// holds a value, so each one here must hold values no tenant chooses or can learn:
///
/// - `invitations_token_hash_key`: the SHA-256 of an invitation token the server
///   draws (32 random bytes) and shows only to the inviter. The token is looked up
///   before any tenant is known, so its hash must name one invitation in the whole
///   database (migration 000033).
pub const GLOBAL_UNIQUES: [(&str, &str); 1] = [("invitations", "invitations_token_hash_key")];

/// True when every call of a helper in `expr` is wrapped as `(SELECT app.helper())`,
/// and at least one helper is called.
fn uses_wrapped_helpers(expr: &str) -> bool {
    let mut calls = 0;
    for helper in HELPERS {
        let bare = expr.matches(helper).count();
        let wrapped = expr.matches(&format!("SELECT {helper}")).count();
        if bare != wrapped {
            return false;
        }
        calls += bare;
    }
    calls > 0
}

/// True when `expr` (as PostgreSQL prints a policy expression) admits every row: the
/// constant `true`, `… OR true`, or a constant comparison such as `1 = 1`. A guard
/// against carelessness, not a prover: the RESTRICTIVE guard is what holds.
fn is_always_true(expr: &str) -> bool {
    let bare = expr.trim_matches(|c: char| c == '(' || c == ')' || c.is_whitespace());
    if bare.eq_ignore_ascii_case("true") {
        return true;
    }
    let words: Vec<String> = expr
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    words.windows(2).any(|pair| {
        matches!(
            (pair[0].as_str(), pair[1].as_str()),
            ("or", "true") | ("true", "or")
        )
    }) || words
        .windows(3)
        .any(|w| w[1] == "=" && w[0] == w[2] && w[0].bytes().all(|b| b.is_ascii_digit()))
}

/// Runs every check against the database `conn` is connected to.
pub async fn examine(conn: &impl ConnectionTrait) -> Result<Report> {
    let mut report = Report::default();

    let role = RoleRow::find_by_statement(stmt(
        "SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolbypassrls AS bypass_rls, \
           (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid) \
           + (SELECT count(*) FROM pg_proc p WHERE p.proowner = r.oid) \
           + (SELECT count(*) FROM pg_namespace n WHERE n.nspowner = r.oid) \
           + (SELECT count(*) FROM pg_type t WHERE t.typowner = r.oid) AS owned, \
           ARRAY(SELECT g.rolname::text FROM pg_roles g WHERE g.oid <> r.oid AND pg_has_role(r.oid, g.oid, 'MEMBER')) AS member_of \
         FROM pg_roles r WHERE r.rolname = current_user",
        [],
    ))
    .one(conn)
    .await?
    .ok_or_else(|| anyhow::anyhow!("current_user has no pg_roles row"))?;
    let subject = format!("role {}", role.name);
    report.push(&subject, "is not a superuser", !role.superuser, "");
    report.push(&subject, "does not bypass RLS", !role.bypass_rls, "");
    report.push(
        &subject,
        "owns nothing",
        role.owned == 0,
        format!("owns {} objects", role.owned),
    );
    report.push(
        &subject,
        "is a member of no other role",
        role.member_of.is_empty(),
        role.member_of.join(", "),
    );

    let tables = TableRow::find_by_statement(stmt(
        "SELECT c.relname::text AS name, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced, \
           has_table_privilege(current_user, c.oid, 'SELECT, INSERT, UPDATE, DELETE') AS granted, \
           t.attnum IS NOT NULL AS has_tenant_id, \
           EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped) AS has_user_id, \
           EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indkey[0] = t.attnum) AS tenant_leading_index, \
           ARRAY(SELECT x.relname::text FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid \
                 WHERE i.indrelid = c.oid AND i.indisunique AND NOT i.indisprimary \
                   AND (t.attnum IS NULL OR NOT t.attnum = ANY (i.indkey::int2[])) ORDER BY 1) AS uniques_without_tenant \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attribute t ON t.attrelid = c.oid AND t.attname = 'tenant_id' AND NOT t.attisdropped \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        [],
    ))
    .all(conn)
    .await?;
    let policies = PolicyRow::find_by_statement(stmt(
        "SELECT tablename::text AS table_name, policyname::text AS name, \
           permissive = 'RESTRICTIVE' AS restrictive, cmd, qual, with_check \
         FROM pg_policies WHERE schemaname = 'public' ORDER BY tablename, policyname",
        [],
    ))
    .all(conn)
    .await?;

    for table in &tables {
        let subject = format!("table {}", table.name);
        if !table.granted {
            report.push(
                &subject,
                "is not reachable by the role",
                true,
                "no privileges granted",
            );
            continue;
        }
        report.push(&subject, "has ENABLE ROW LEVEL SECURITY", table.rls, "");
        report.push(&subject, "has FORCE ROW LEVEL SECURITY", table.forced, "");
        let own: Vec<&PolicyRow> = policies
            .iter()
            .filter(|p| p.table_name == table.name)
            .collect();
        report.push(
            &subject,
            "has policies",
            !own.is_empty(),
            format!("{} policies", own.len()),
        );
        let guard = own.iter().find(|p| p.restrictive && p.cmd == "ALL");
        report.push(
            &subject,
            "has a RESTRICTIVE guard keyed by tenant or user",
            guard.is_some_and(|g| {
                g.qual.as_deref().is_some_and(uses_wrapped_helpers)
                    && g.with_check.as_deref().is_some_and(uses_wrapped_helpers)
            }),
            guard.map_or("none", |g| g.name.as_str()),
        );
        for policy in &own {
            let writes = matches!(policy.cmd.as_str(), "ALL" | "INSERT" | "UPDATE");
            if writes {
                report.push(
                    &subject,
                    "write policy has WITH CHECK",
                    policy.with_check.is_some(),
                    policy.name.clone(),
                );
            }
            let exprs = [policy.qual.as_deref(), policy.with_check.as_deref()];
            let wrapped = exprs.iter().flatten().all(|e| uses_wrapped_helpers(e));
            report.push(
                &subject,
                "policy uses (SELECT app.current_…()) helpers",
                wrapped,
                policy.name.clone(),
            );
            let always = exprs.iter().flatten().any(|e| is_always_true(e));
            report.push(
                &subject,
                "policy is not always true",
                !always,
                policy.name.clone(),
            );
        }
        if table.has_tenant_id {
            report.push(
                &subject,
                "has an index leading with tenant_id",
                table.tenant_leading_index,
                "",
            );
            let unlisted: Vec<&str> = table
                .uniques_without_tenant
                .iter()
                .map(String::as_str)
                .filter(|index| !GLOBAL_UNIQUES.contains(&(table.name.as_str(), *index)))
                .collect();
            report.push(
                &subject,
                "every unique constraint includes tenant_id",
                unlisted.is_empty(),
                unlisted.join(", "),
            );
        } else {
            let keyed = table.has_user_id
                || own
                    .iter()
                    .any(|p| p.qual.as_deref().is_some_and(uses_wrapped_helpers));
            report.push(&subject, "is keyed by tenant or user", keyed, "");
        }
    }

    let definers = DefinerRow::find_by_statement(stmt(
        "SELECT n.nspname || '.' || p.proname AS name, \
           coalesce(EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%'), false) AS pinned, \
           has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE p.prosecdef AND n.nspname IN ('public', 'app') ORDER BY 1",
        [],
    ))
    .all(conn)
    .await?;
    for function in definers {
        let subject = format!("function {} (SECURITY DEFINER)", function.name);
        report.push(&subject, "pins search_path", function.pinned, "");
        report.push(
            &subject,
            "is not executable by PUBLIC",
            !function.public_execute,
            "",
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::{is_always_true, uses_wrapped_helpers};

    #[test]
    fn recognises_always_true_expressions() {
        for expr in [
            "true",
            "(true)",
            "((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) OR true)",
            "(true OR (tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)))",
            "((tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id)) OR (1 = 1))",
        ] {
            assert!(is_always_true(expr), "{expr}");
        }
        for expr in [
            "(tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id))",
            "((tenant_id IS NULL) OR (is_public = true))",
        ] {
            assert!(!is_always_true(expr), "{expr}");
        }
    }

    #[test]
    fn recognises_wrapped_helpers() {
        assert!(uses_wrapped_helpers(
            "(tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id))"
        ));
        assert!(!uses_wrapped_helpers(
            "(tenant_id = app.current_tenant_id())"
        ));
        assert!(!uses_wrapped_helpers("true"));
    }
}
