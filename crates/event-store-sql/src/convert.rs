//! Integer conversions between the store's unsigned numbers and SQL's signed ones.

use event_store::{Error, Position, Result};

/// `v` as a SQL `bigint`, clamped to `i64::MAX` (a position, version or limit that large means
/// "after everything" or "no limit").
pub fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `n` (a count or a limit) as a SQL `bigint`, clamped.
pub fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `bigint` read from `column`, which holds only non-negative values; a negative one is a
/// backend error naming the column.
pub fn unsigned(backend: &'static str, column: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| {
        Error::backend(
            backend,
            format!("column `{column}` holds {v}, where only values from 0 are stored"),
        )
    })
}

/// A position read from two columns (`high`, `low`).
pub fn position(
    backend: &'static str,
    (high_column, high): (&str, i64),
    (low_column, low): (&str, i64),
) -> Result<Position> {
    Ok(Position::from_parts(
        unsigned(backend, high_column, high)?,
        unsigned(backend, low_column, low)?,
    ))
}

/// A position's two parts as `bigint`s, clamped.
pub fn position_parts(p: Position) -> (i64, i64) {
    let (high, low) = p.parts();
    (clamp(high), clamp(low))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_values_are_errors_naming_the_column() {
        let e = unsigned("sql", "version", -3).unwrap_err();
        assert!(e.to_string().contains("`version` holds -3"), "{e}");
        assert_eq!(unsigned("sql", "version", 3).ok(), Some(3));
        assert_eq!(clamp(u64::MAX), i64::MAX);
        assert_eq!(limit(usize::MAX), i64::MAX);
        assert!(position("sql", ("tx", 1), ("seq", -1)).is_err());
    }
}
