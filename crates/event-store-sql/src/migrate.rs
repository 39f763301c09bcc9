//! Numbered migrations and which ones a schema still needs.

/// One migration: a version (the order they apply in), a name and idempotent SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The version, from 1, increasing.
    pub version: i64,
    /// A short name (recorded with the version).
    pub name: &'static str,
    /// The SQL, safe to run more than once.
    pub sql: &'static str,
}

/// A migration applied to a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Its version (1, 2, …).
    pub version: i64,
    /// What it does.
    pub name: String,
    /// When it was applied.
    pub applied_at: chrono::DateTime<chrono::Utc>,
}

/// A store's migrations: what was applied, and what this release would apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Applied, in order.
    pub applied: Vec<AppliedMigration>,
    /// This release's migrations not applied yet, in order: version and name.
    pub pending: Vec<(i64, &'static str)>,
}

impl MigrationStatus {
    /// The status of `applied` against this release's migrations `all`.
    pub fn new(all: &'static [Migration], applied: Vec<AppliedMigration>) -> Self {
        let versions: Vec<i64> = applied.iter().map(|m| m.version).collect();
        let pending = pending(all, &versions)
            .into_iter()
            .map(|m| (m.version, m.name))
            .collect();
        Self { applied, pending }
    }
}

/// The migrations of `all` whose versions are not in `applied`, in order.
pub fn pending<'a>(all: &'a [Migration], applied: &[i64]) -> Vec<&'a Migration> {
    all.iter()
        .filter(|m| !applied.contains(&m.version))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_keeps_the_order_and_skips_what_is_applied() {
        let all = [
            Migration {
                version: 1,
                name: "a",
                sql: "",
            },
            Migration {
                version: 2,
                name: "b",
                sql: "",
            },
            Migration {
                version: 3,
                name: "c",
                sql: "",
            },
        ];
        let names: Vec<_> = pending(&all, &[2]).iter().map(|m| m.name).collect();
        assert_eq!(names, ["a", "c"]);
        assert!(pending(&all, &[1, 2, 3]).is_empty());
    }
}
