//! Reading a row by column position, and only the columns a list needs.
//!
//! sea-orm's derived `FromQueryResult` finds every column by name (it formats the name,
//! hashes it and compares strings) and turns each NULL into a formatted error before
//! making it `None`, for each column of each row. The lists a request reads by the
//! thousand (the step runs and runs of a page) decode with sqlx by position instead.
//!
//! Such a list also reads only the columns its GraphQL selection needs, a
//! [`ColumnSet`]: the select list names them in [`sea_orm::Iterable`] column order, and
//! the entity's decoder walks its fields in that same order, reading the next column of
//! the row for a field in the set and leaving the others at their `Default`. A model
//! read this way holds real values only in the set's fields; whoever builds the set
//! vouches that nothing reads the rest, and the set is part of the dataloader key, so
//! such a model never answers another selection.

use sea_orm::sqlx::postgres::{PgRow, Postgres};
use sea_orm::sqlx::{Decode, Row, Type};
use sea_orm::{ActiveEnum, DbErr, EntityTrait, IdenStatic, Iterable, QueryResult};

/// Some of an entity's columns, by their position in `Column` order. Positions past
/// 64 can only be had all together ([`ColumnSet::ALL`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ColumnSet(u64);

impl ColumnSet {
    /// Every column.
    pub const ALL: Self = Self(u64::MAX);
    /// No column.
    pub const NONE: Self = Self(0);

    /// This set and `column`.
    #[must_use]
    pub fn with<C: IdenStatic + Iterable>(self, column: C) -> Self {
        let name = column.as_str();
        match C::iter().position(|c| c.as_str() == name) {
            Some(position) if position < 64 => Self(self.0 | 1 << position),
            // Not representable: read everything rather than too little.
            _ => Self::ALL,
        }
    }

    /// This set and every one of `columns`.
    #[must_use]
    pub fn with_all<C: IdenStatic + Iterable>(self, columns: impl IntoIterator<Item = C>) -> Self {
        columns.into_iter().fold(self, Self::with)
    }

    /// Both sets' columns.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether the column at `position` (in `Column` order) is in the set.
    pub fn contains(self, position: usize) -> bool {
        match position {
            0..64 => self.0 & (1 << position) != 0,
            // Past the bits: only "every column" holds them.
            _ => self == Self::ALL,
        }
    }

    /// The names of `E`'s columns in the set, in `Column` order.
    pub fn names<E: EntityTrait>(self) -> impl Iterator<Item = String> {
        E::Column::iter()
            .enumerate()
            .filter(move |(position, _)| self.contains(*position))
            .map(|(_, c)| c.as_str().to_owned())
    }

    /// `alias.column, …` of `E`'s columns in the set, in `Column` order.
    pub fn select_list<E: EntityTrait>(self, alias: &str) -> String {
        E::Column::iter()
            .enumerate()
            .filter(|(position, _)| self.contains(*position))
            .map(|(_, c)| format!("{alias}.{}", c.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A PostgreSQL row read field by field in `Column` order: the next column of the row
/// for a field in the set, the field's `Default` for the others.
pub struct Columns<'a> {
    row: &'a PgRow,
    set: ColumnSet,
    /// The next field's position in `Column` order.
    field: usize,
    /// The next column of the row.
    column: usize,
}

impl<'a> Columns<'a> {
    /// Starts at `row`'s first column; `set` says which fields the row holds.
    pub fn new(row: &'a QueryResult, set: ColumnSet) -> Result<Self, DbErr> {
        Self::starting_at(row, set, 0)
    }

    /// Starts at `row`'s column `first` (the row holds other columns before).
    pub fn starting_at(row: &'a QueryResult, set: ColumnSet, first: usize) -> Result<Self, DbErr> {
        let row = row
            .try_as_pg_row()
            .ok_or_else(|| DbErr::Type("not a PostgreSQL row".into()))?;
        Ok(Self {
            row,
            set,
            field: 0,
            column: first,
        })
    }

    /// The next field's value (`Option<T>` for a nullable column), or its `Default`
    /// when the set leaves it out.
    pub fn read<T>(&mut self) -> Result<T, DbErr>
    where
        T: for<'r> Decode<'r, Postgres> + Type<Postgres> + Default,
    {
        let field = self.field;
        self.field += 1;
        if !self.set.contains(field) {
            return Ok(T::default());
        }
        let index = self.column;
        self.column += 1;
        self.row
            .try_get(index)
            .map_err(|e| DbErr::Type(format!("column {index}: {e}")))
    }

    /// The next field's value, a text enum; it has no default, so the set must hold it.
    pub fn read_enum<E: ActiveEnum<Value = String>>(&mut self) -> Result<E, DbErr> {
        if !self.set.contains(self.field) {
            return Err(DbErr::Type(format!(
                "field {} is an enum and must be read",
                self.field
            )));
        }
        let text: String = self.read()?;
        E::try_from_value(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::ColumnSet;
    use crate::step_run::{Column, Entity};

    #[test]
    fn a_set_selects_its_columns_in_column_order() {
        let set = ColumnSet::NONE
            .with(Column::Status)
            .with(Column::Id)
            .with(Column::FinishedAt);
        assert_eq!(
            set.select_list::<Entity>("s"),
            "s.id, s.status, s.finished_at"
        );
        assert!(set.contains(0) && !set.contains(1));
        assert_eq!(
            ColumnSet::ALL
                .select_list::<Entity>("s")
                .matches(", ")
                .count()
                + 1,
            <Column as sea_orm::Iterable>::iter().count()
        );
        assert_eq!(
            set.union(ColumnSet::NONE.with(Column::RunId)),
            set.with(Column::RunId)
        );
    }
}
