//! Validated names: a projection's, and the tables of a SQL read model.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Longest projection name, in bytes.
pub const MAX_PROJECTION_NAME_BYTES: usize = 63;

/// Longest logical table name of a SQL read model, in bytes (the generation's suffix makes the
/// physical name longer; PostgreSQL's limit is 63).
pub const MAX_TABLE_NAME_BYTES: usize = 48;

/// A projection's name: 1 to 63 bytes of `a–z 0–9 _ - .`, starting with a letter or digit. It
/// names the projection's rows in the store, its leases (a lock file's name on SQLite) and its
/// lines in `event-store projections list`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProjectionName(String);

impl ProjectionName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= MAX_PROJECTION_NAME_BYTES
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
            });
        if !ok {
            return Err(Error::invalid(
                "projection",
                format!(
                    "`{}` is not a projection name: 1 to {MAX_PROJECTION_NAME_BYTES} bytes of a-z 0-9 _ - ., starting with a letter or digit",
                    name.escape_debug()
                ),
            ));
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProjectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ProjectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ProjectionName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for ProjectionName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl Serialize for ProjectionName {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ProjectionName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The tables of one generation of a SQL read model: each logical name (what readers query) and
/// its physical table (what the handler writes).
///
/// Readers query a view named by the logical name; each generation writes tables of its own
/// (`orders__g2`), and switching generations replaces the views in one transaction, so readers
/// see the old model until the new one is complete, then the new one (blue/green).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    generation: u64,
    names: Vec<(String, String)>,
}

impl Tables {
    /// The tables of `generation` for the logical names `logical`, which must be SQL identifiers
    /// (1 to 48 bytes of `a–z 0–9 _`, starting with a letter or `_`), each once.
    pub fn new(logical: &[&str], generation: u64) -> Result<Self> {
        let mut names: Vec<(String, String)> = Vec::with_capacity(logical.len());
        for &name in logical {
            check_table(name)?;
            if names.iter().any(|(l, _)| l == name) {
                return Err(Error::invalid(
                    "tables",
                    format!("table `{name}` is declared twice"),
                ));
            }
            names.push((name.to_owned(), physical(name, generation)));
        }
        Ok(Self { generation, names })
    }

    /// The generation these tables belong to.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The physical table behind the logical name `logical` (`orders` → `orders__g2`), to write
    /// to; an error for a name the projection did not declare.
    pub fn get(&self, logical: &str) -> Result<&str> {
        self.names
            .iter()
            .find(|(l, _)| l == logical)
            .map(|(_, p)| p.as_str())
            .ok_or_else(|| {
                Error::invalid(
                    "table",
                    format!("`{logical}` is not among the projection's declared TABLES"),
                )
            })
    }

    /// Every (logical, physical) pair, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names.iter().map(|(l, p)| (l.as_str(), p.as_str()))
    }
}

/// The physical table of `logical` in `generation`.
pub fn physical(logical: &str, generation: u64) -> String {
    format!("{logical}__g{generation}")
}

/// The generation a physical table of `logical` belongs to (`None`: not one of its tables).
pub fn generation_of(logical: &str, table: &str) -> Option<u64> {
    let rest = table.strip_prefix(logical)?.strip_prefix("__g")?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || rest.starts_with('0') {
        return None;
    }
    rest.parse().ok()
}

fn check_table(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TABLE_NAME_BYTES
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "tables",
            format!(
                "`{}` is not a table name: 1 to {MAX_TABLE_NAME_BYTES} bytes of a-z 0-9 _, starting with a letter or _",
                name.escape_debug()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_names() {
        for ok in [
            "orders",
            "orders-per-customer",
            "a",
            "v2.orders_by_day",
            "9lives",
        ] {
            assert!(ProjectionName::new(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "Orders",
            "-x",
            ".x",
            "a/b",
            "a b",
            "ä",
            long.as_str(),
            "a\0",
        ] {
            let e = ProjectionName::new(bad).unwrap_err();
            assert_eq!(e.field(), Some("projection"), "{bad}");
        }
    }

    #[test]
    fn tables_name_each_generation() {
        let t = Tables::new(&["orders", "customers"], 3).unwrap();
        assert_eq!(t.get("orders").unwrap(), "orders__g3");
        assert_eq!(t.get("customers").unwrap(), "customers__g3");
        assert!(t.get("nope").unwrap_err().is_invalid_input());
        assert!(Tables::new(&["orders", "orders"], 1).is_err());
        assert!(Tables::new(&["Orders"], 1).is_err());
        assert!(Tables::new(&["1x"], 1).is_err());
        assert!(Tables::new(&["x; drop table y"], 1).is_err());
        assert!(Tables::new(&[&"a".repeat(49)], 1).is_err());
    }

    #[test]
    fn generations_are_read_back_from_table_names() {
        assert_eq!(generation_of("orders", "orders__g12"), Some(12));
        assert_eq!(generation_of("orders", &physical("orders", 7)), Some(7));
        for other in [
            "orders",
            "orders__g",
            "orders__gx",
            "orders__g01",
            "orders_x__g1",
            "order__g1",
        ] {
            assert_eq!(generation_of("orders", other), None, "{other}");
        }
    }
}
