//! Several look-ups in one statement. A page of agents selecting their active
//! versions, skills, latest activities and metrics costs a statement per relation
//! when each loads alone; the list builder reads such relations together instead.
//!
//! Each look-up is a [`Branch`]: a select with its own `$1…` placeholders and output
//! columns. Read together, every branch becomes a derived table tagged with its
//! number, and the tables are joined `FULL JOIN … ON false`: each row is one branch's
//! row, with the other branches' columns NULL. Unlike `UNION ALL`, which would need
//! each padding NULL cast to its column's type, the join keeps every column's own
//! type, and each branch's columns are renamed apart (`p0_id`, `p1_A_id`, …). A
//! branch's rows then decode exactly as they would alone ([`At`] says where its
//! columns are), and fill the dataloader's cache.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use futures::future::BoxFuture;
use sea_orm::{ConnectionTrait, QueryResult, Statement, Value};

use crate::loaders::{Loader, RequestLoader};

/// One look-up's select: its SQL (placeholders `$1…`), their values, and the names of
/// its output columns in order.
pub struct Branch {
    pub sql: String,
    pub values: Vec<Value>,
    pub columns: Vec<String>,
}

/// Where a branch's columns are in a row: alone, the row is the branch's; read
/// together, its columns carry a prefix and start after the other branches'.
#[derive(Clone, Debug, Default)]
pub struct At {
    prefix: String,
    offset: usize,
}

impl At {
    /// The prefix of the branch's column names (empty alone); a name `id` of the branch
    /// is `{prefix}id` in the row.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The position of the branch's first column in the row (0 alone).
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// A dataloader key whose look-up can share a statement with others.
pub trait Together: Sized + Clone + Eq + Hash + Send + Sync + 'static {
    /// What a key loads.
    type Value: Clone + Send + Sync + 'static;

    /// The selects answering `keys`, each with the keys it answers (keys of different
    /// shapes, say two metrics ranges, need a select each).
    fn branches(keys: &[Self]) -> Vec<(Vec<Self>, Branch)>;

    /// The values of `keys` from the rows of their branch, whose columns are `at`. A
    /// key whose value is a list gets an entry even without rows, so that the cache
    /// answers for it.
    fn decode(
        keys: &[Self],
        rows: &[&QueryResult],
        at: &At,
    ) -> trellis_core::Result<HashMap<Self, Self::Value>>;
}

/// Loads `keys` alone: a statement per branch.
pub async fn load_alone<K: Together>(
    tx: &impl ConnectionTrait,
    keys: &[K],
) -> Result<HashMap<K, K::Value>, Arc<trellis_core::Error>> {
    let mut out = HashMap::with_capacity(keys.len());
    for (keys, branch) in K::branches(keys) {
        let rows = tx
            .query_all(trellis_core::scope::stmt(&branch.sql, branch.values))
            .await
            .map_err(|e| Arc::new(e.into()))?;
        let rows: Vec<&QueryResult> = rows.iter().collect();
        out.extend(K::decode(&keys, &rows, &At::default()).map_err(Arc::new)?);
    }
    Ok(out)
}

/// A relation's keys, waiting to be read with other relations'.
pub trait Pending: Send {
    /// Its branches (taken: a second call returns none).
    fn take_branches(&mut self) -> Vec<Branch>;
    /// Decodes its branches' rows, `rows[i]` at `at[i]` for its `i`-th branch.
    fn decode(&mut self, rows: &[Vec<&QueryResult>], at: &[At]) -> trellis_core::Result<()>;
    /// Puts what it decoded in the request's cache.
    fn feed<'a>(self: Box<Self>, loader: &'a RequestLoader) -> BoxFuture<'a, ()>;
}

struct Keys<K: Together> {
    branches: Vec<(Vec<K>, Option<Branch>)>,
    values: HashMap<K, K::Value>,
}

/// `keys`, to be read with others by [`prefetch_together`].
pub fn pending<K>(keys: impl IntoIterator<Item = K>) -> Box<dyn Pending>
where
    K: Together,
    Loader: async_graphql::dataloader::Loader<K, Value = K::Value>,
{
    let unique: Vec<K> = keys
        .into_iter()
        .collect::<std::collections::HashSet<_>>()
        .into_iter()
        .collect();
    let branches = if unique.is_empty() {
        Vec::new()
    } else {
        K::branches(&unique)
    };
    Box::new(Keys {
        branches: branches
            .into_iter()
            .map(|(keys, branch)| (keys, Some(branch)))
            .collect(),
        values: HashMap::new(),
    })
}

impl<K> Pending for Keys<K>
where
    K: Together,
    Loader: async_graphql::dataloader::Loader<K, Value = K::Value>,
{
    fn take_branches(&mut self) -> Vec<Branch> {
        self.branches
            .iter_mut()
            .filter_map(|(_, branch)| branch.take())
            .collect()
    }

    fn decode(&mut self, rows: &[Vec<&QueryResult>], at: &[At]) -> trellis_core::Result<()> {
        for (((keys, _), rows), at) in self.branches.iter().zip(rows).zip(at) {
            self.values.extend(K::decode(keys, rows, at)?);
        }
        Ok(())
    }

    fn feed<'a>(self: Box<Self>, loader: &'a RequestLoader) -> BoxFuture<'a, ()> {
        Box::pin(loader.feed_many(self.values))
    }
}

/// Reads every one of `pending` in one statement and puts the values in the request's
/// cache; with a single branch in all, that branch's select alone.
pub async fn prefetch_together(
    loader: &RequestLoader,
    mut pending: Vec<Box<dyn Pending>>,
) -> Result<(), Arc<trellis_core::Error>> {
    let branches: Vec<Vec<Branch>> = pending.iter_mut().map(|p| p.take_branches()).collect();
    let counts: Vec<usize> = branches.iter().map(Vec::len).collect();
    let count: usize = counts.iter().sum();
    let mut branches = branches.into_iter().flatten();
    let (statement, at) = match (branches.next(), count) {
        (None, _) => return Ok(()),
        (Some(branch), 1) => (
            trellis_core::scope::stmt(&branch.sql, branch.values),
            vec![At::default()],
        ),
        (Some(first), _) => joined(std::iter::once(first).chain(branches)),
    };
    let tx = loader.loader().scope().tx().await.map_err(Arc::new)?;
    let rows = tx
        .query_all(statement)
        .await
        .map_err(|e| Arc::new(e.into()))?;
    // Each row's branch: the only one, or the joined statement's `part` column.
    let mut by_branch: Vec<Vec<&QueryResult>> = vec![Vec::new(); count];
    for row in &rows {
        let branch = if count == 1 {
            0
        } else {
            let part: i32 = row.try_get("", "part").map_err(|e| Arc::new(e.into()))?;
            part as usize
        };
        if let Some(rows) = by_branch.get_mut(branch) {
            rows.push(row);
        }
    }
    let mut first = 0;
    for (relation, count) in pending.iter_mut().zip(&counts) {
        let range = first..first + count;
        relation
            .decode(&by_branch[range.clone()], &at[range])
            .map_err(Arc::new)?;
        first += count;
    }
    for relation in pending {
        relation.feed(loader).await;
    }
    Ok(())
}

/// One statement reading every branch: each a derived table tagged with its number,
/// joined `FULL JOIN … ON false`, its columns renamed `p{n}_{column}`. Returns the
/// statement and where each branch's columns are.
fn joined(branches: impl Iterator<Item = Branch>) -> (Statement, Vec<At>) {
    let mut values: Vec<Value> = Vec::new();
    let mut select = Vec::new();
    let mut from = String::new();
    let mut at = Vec::new();
    let mut tags = Vec::new();
    // The tag is column 0; each branch's columns follow the previous branch's.
    let mut offset = 1;
    for (n, branch) in branches.enumerate() {
        let prefix = format!("p{n}_");
        let columns: Vec<String> = branch
            .columns
            .iter()
            .map(|c| format!("x.\"{c}\" AS \"{prefix}{c}\""))
            .collect();
        for c in &branch.columns {
            select.push(format!("b{n}.\"{prefix}{c}\""));
        }
        let table = format!(
            "(SELECT {n} AS part, {} FROM ({}) AS x) AS b{n}",
            columns.join(", "),
            renumbered(&branch.sql, values.len()),
        );
        if n == 0 {
            from.push_str(&table);
        } else {
            from.push_str(&format!(" FULL JOIN {table} ON false"));
        }
        values.extend(branch.values);
        tags.push(format!("b{n}.part"));
        at.push(At { prefix, offset });
        offset += branch.columns.len();
    }
    let sql = format!(
        "SELECT coalesce({}) AS part, {} FROM {from}",
        tags.join(", "),
        select.join(", ")
    );
    (trellis_core::scope::stmt(&sql, values), at)
}

/// `sql` with each placeholder `$n` made `$(n + by)`, outside quoted literals and
/// identifiers.
fn renumbered(sql: &str, by: usize) -> String {
    if by == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut number = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    number.push(d);
                    chars.next();
                }
                let n: usize = number.parse().unwrap_or(0);
                out.push_str(&format!("${}", n + by));
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_outside_quotes() {
        assert_eq!(
            renumbered("SELECT $1, '$2', \"$3\", $10 FROM t WHERE a = $2", 3),
            "SELECT $4, '$2', \"$3\", $13 FROM t WHERE a = $5"
        );
        assert_eq!(renumbered("SELECT $1", 0), "SELECT $1");
    }
}
