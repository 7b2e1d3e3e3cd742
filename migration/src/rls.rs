//! The one place row-level security policies are written.
//!
//! Every policy compares against `(SELECT app.current_tenant_id())` or
//! `(SELECT app.current_user_id())`: wrapped in a sub-select so PostgreSQL evaluates the
//! helper once per statement (an init plan), not once per row. Every policy that admits
//! writes has a `WITH CHECK`, so a row can neither be written into nor moved to another
//! tenant.

/// The predicate that admits the rows of the tenant of the current transaction.
pub const TENANT_MATCH: &str = "tenant_id = (SELECT app.current_tenant_id())";
/// True in a transaction opened on the audited platform-administration path.
pub const PLATFORM_ADMIN: &str = "(SELECT app.is_platform_admin())";
/// The predicate that admits the rows of the user of the current transaction.
pub const USER_MATCH: &str = "user_id = (SELECT app.current_user_id())";

/// Which commands a table lets the application role run, and under which predicates.
pub struct Policies<'a> {
    table: &'a str,
    read: Vec<String>,
    write: String,
    commands: &'a [&'a str],
}

impl<'a> Policies<'a> {
    /// The table these policies are for.
    pub fn table(&self) -> &'a str {
        self.table
    }

    /// A tenant-owned table: its tenant reads and writes it, nobody else sees it.
    pub fn tenant(table: &'a str) -> Self {
        Self::custom(table, TENANT_MATCH)
    }

    /// A table whose rows are admitted by `predicate` for reading and writing.
    pub fn custom(table: &'a str, predicate: &str) -> Self {
        Self {
            table,
            read: vec![predicate.to_owned()],
            write: predicate.to_owned(),
            commands: &["SELECT", "INSERT", "UPDATE", "DELETE"],
        }
    }

    /// Also admit rows matching `predicate` for reading only.
    pub fn also_readable_when(mut self, predicate: &str) -> Self {
        self.read.push(predicate.to_owned());
        self
    }

    /// Limit the policies to these commands (an append-only table: SELECT and INSERT).
    pub fn only(mut self, commands: &'a [&'a str]) -> Self {
        self.commands = commands;
        self
    }

    /// Replace the write predicate (`WITH CHECK` of INSERT and UPDATE, `USING` of
    /// UPDATE and DELETE).
    pub fn writable_when(mut self, predicate: &str) -> Self {
        predicate.clone_into(&mut self.write);
        self
    }

    /// The SQL that enables and forces RLS and creates one policy per command.
    pub fn sql(&self) -> String {
        let t = self.table;
        let read = self.read_predicate();
        let write = &self.write;
        let mut sql = format!(
            "ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;\nALTER TABLE {t} FORCE ROW LEVEL SECURITY;\n"
        );
        for command in self.commands {
            let name = format!("{t}_{}", command.to_lowercase());
            let clauses = match *command {
                "SELECT" => format!("USING ({read})"),
                "INSERT" => format!("WITH CHECK ({write})"),
                "UPDATE" => format!("USING ({write}) WITH CHECK ({write})"),
                "DELETE" => format!("USING ({write})"),
                other => panic!("unknown policy command {other}"),
            };
            sql.push_str(&format!(
                "CREATE POLICY {name} ON {t} AS PERMISSIVE FOR {command} TO PUBLIC {clauses};\n"
            ));
        }
        sql
    }

    /// The table's guard: one RESTRICTIVE policy that holds every command within what
    /// the permissive policies above admit (reads within the read predicates, writes
    /// within the write predicate). PostgreSQL ORs permissive policies together, so a
    /// permissive policy added later without care (`USING (true)`) would widen access;
    /// with the guard it can only admit rows inside the same envelope. Every table with
    /// policies has one; the doctor checks.
    pub fn guard_sql(&self) -> String {
        let t = self.table;
        let write = &self.write;
        format!(
            "CREATE POLICY {t}_guard ON {t} AS RESTRICTIVE FOR ALL TO PUBLIC \
             USING ({} OR ({write})) WITH CHECK ({write});\n",
            self.read_predicate()
        )
    }

    fn read_predicate(&self) -> String {
        self.read
            .iter()
            .map(|p| format!("({p})"))
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    /// The SQL that undoes [`Self::sql`] and [`Self::guard_sql`].
    pub fn drop_sql(&self) -> String {
        let t = self.table;
        let mut sql: String = self
            .commands
            .iter()
            .map(|c| format!("DROP POLICY IF EXISTS {t}_{} ON {t};\n", c.to_lowercase()))
            .collect();
        sql.push_str(&format!("DROP POLICY IF EXISTS {t}_guard ON {t};\n"));
        sql
    }
}

/// `GRANT privileges ON object TO <the application role>`, the role's name being read
/// from the session setting `trellis.app_role` at migration time.
pub fn grant_to_app(privileges: &str, object: &str) -> String {
    format!("SELECT app.grant_to_app_role('{privileges}', '{object}');\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_policy_has_a_check() {
        let sql = Policies::tenant("things").sql();
        assert!(sql.contains("FORCE ROW LEVEL SECURITY"));
        assert!(sql.contains(
            "FOR INSERT TO PUBLIC WITH CHECK (tenant_id = (SELECT app.current_tenant_id()))"
        ));
        assert!(sql.contains("FOR UPDATE TO PUBLIC USING (tenant_id = (SELECT app.current_tenant_id())) WITH CHECK (tenant_id = (SELECT app.current_tenant_id()))"));
    }

    #[test]
    fn the_guard_is_restrictive_and_checks_writes() {
        let sql = Policies::tenant("things")
            .also_readable_when("tenant_id IS NULL")
            .guard_sql();
        assert_eq!(
            sql,
            "CREATE POLICY things_guard ON things AS RESTRICTIVE FOR ALL TO PUBLIC \
             USING ((tenant_id = (SELECT app.current_tenant_id())) OR (tenant_id IS NULL) \
             OR (tenant_id = (SELECT app.current_tenant_id()))) \
             WITH CHECK (tenant_id = (SELECT app.current_tenant_id()));\n"
        );
    }

    #[test]
    fn append_only_has_no_update_or_delete_policy() {
        let sql = Policies::tenant("log").only(&["SELECT", "INSERT"]).sql();
        assert!(!sql.contains("FOR UPDATE"));
        assert!(!sql.contains("FOR DELETE"));
    }
}
