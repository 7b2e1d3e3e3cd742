//! Reading a row by column position.
//!
//! sea-orm's derived `FromQueryResult` finds every column by name (it formats the name,
//! hashes it and compares strings) and turns each NULL into a formatted error before
//! making it `None`, for each column of each row. The lists a request reads by the
//! thousand (the step runs and runs of a page) decode with sqlx by position instead,
//! from a select list in [`sea_orm::Iterable`] column order.

use sea_orm::sqlx::postgres::{PgRow, Postgres};
use sea_orm::sqlx::{Decode, Row, Type};
use sea_orm::{ActiveEnum, DbErr, QueryResult};

/// A PostgreSQL row's columns, read one after another from the first.
pub struct Columns<'a> {
    row: &'a PgRow,
    next: usize,
}

impl<'a> Columns<'a> {
    /// Starts at `row`'s first column.
    pub fn new(row: &'a QueryResult) -> Result<Self, DbErr> {
        let row = row
            .try_as_pg_row()
            .ok_or_else(|| DbErr::Type("not a PostgreSQL row".into()))?;
        Ok(Self { row, next: 0 })
    }

    /// The value of the next column (`Option<T>` for a nullable one).
    pub fn read<T>(&mut self) -> Result<T, DbErr>
    where
        T: for<'r> Decode<'r, Postgres> + Type<Postgres>,
    {
        let index = self.next;
        self.next += 1;
        self.row
            .try_get(index)
            .map_err(|e| DbErr::Type(format!("column {index}: {e}")))
    }

    /// The value of the next column, a text enum.
    pub fn read_enum<E: ActiveEnum<Value = String>>(&mut self) -> Result<E, DbErr> {
        let text: String = self.read()?;
        E::try_from_value(&text)
    }
}
