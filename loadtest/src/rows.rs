//! Injection rows (`[field0]`, `[field1]`, ...): from a SIPp CSV file or
//! generated from number ranges.

use std::ops::RangeInclusive;

/// Why rows could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file's first line is not an order SIPp knows.
    #[error("{path}: the first line must be SEQUENTIAL or RANDOM, not {found:?}")]
    Order {
        /// The file.
        path: String,
        /// What it says.
        found: String,
    },
    /// No rows.
    #[error("{0}: no data rows")]
    Empty(String),
    /// A range that is not `FIRST-LAST` digits.
    #[error("bad number range {0:?}: expected FIRST-LAST, e.g. 1000-1999")]
    Range(String),
}

/// Rows of fields; call N uses row (N-1) mod len, or a random row.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    rows: Vec<Vec<String>>,
    random: bool,
}

impl Rows {
    /// Rows given directly.
    pub fn new(rows: Vec<Vec<String>>) -> Rows {
        Rows {
            rows,
            random: false,
        }
    }

    /// Read a SIPp injection file: a first line `SEQUENTIAL` or `RANDOM`,
    /// then one row per line, fields separated by `;`; `#` starts a comment.
    pub fn from_csv(path: &str) -> Result<Rows, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    fn parse(path: &str, text: &str) -> Result<Rows, Error> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let random = match lines.next() {
            Some("SEQUENTIAL") => false,
            Some("RANDOM") => true,
            other => {
                return Err(Error::Order {
                    path: path.to_owned(),
                    found: other.unwrap_or("").to_owned(),
                });
            }
        };
        let rows: Vec<Vec<String>> = lines
            .map(|l| {
                l.trim_end_matches(';')
                    .split(';')
                    .map(str::to_owned)
                    .collect()
            })
            .collect();
        if rows.is_empty() {
            return Err(Error::Empty(path.to_owned()));
        }
        Ok(Rows { rows, random })
    }

    /// Parse `FIRST-LAST` (or a single number).
    pub fn range(s: &str) -> Result<RangeInclusive<u64>, Error> {
        let bad = || Error::Range(s.to_owned());
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let (a, b): (u64, u64) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a > b || b - a > 10_000_000 {
            return Err(bad());
        }
        Ok(a..=b)
    }

    /// Rows `number;password[;other]` for every number of `users` (the
    /// password from `password`, where `{n}` is the number), with `others`
    /// cycled beside them.
    pub fn from_ranges(
        users: RangeInclusive<u64>,
        password: &str,
        others: Option<RangeInclusive<u64>>,
    ) -> Rows {
        let others: Vec<u64> = others.map(Iterator::collect).unwrap_or_default();
        let rows = users
            .enumerate()
            .map(|(i, n)| {
                let mut row = vec![n.to_string(), password.replace("{n}", &n.to_string())];
                if !others.is_empty() {
                    row.push(others[i % others.len()].to_string());
                }
                row
            })
            .collect();
        Rows {
            rows,
            random: false,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row for call `index` (0-based, already reduced modulo `len` for
    /// sequential files).
    pub fn row(&self, index: usize) -> &[String] {
        if self.rows.is_empty() {
            return &[];
        }
        let i = if self.random {
            // A fixed scramble: reproducible runs, rows spread evenly.
            (index.wrapping_mul(2_654_435_761)) % self.rows.len()
        } else {
            index % self.rows.len()
        };
        &self.rows[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sipp_csv_and_ranges() {
        let r = Rows::parse("f", "SEQUENTIAL\n# members\n100;pw-100;\n200;pw-200;3600\n").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.row(0), ["100", "pw-100"]);
        assert_eq!(r.row(3), ["200", "pw-200", "3600"]);
        assert!(matches!(
            Rows::parse("f", "USERS\n1;2\n"),
            Err(Error::Order { .. })
        ));
        assert!(matches!(Rows::parse("f", "RANDOM\n"), Err(Error::Empty(_))));
        let g = Rows::from_ranges(
            Rows::range("1000-1002").unwrap(),
            "pw-{n}",
            Some(Rows::range("2000-2001").unwrap()),
        );
        assert_eq!(g.row(2), ["1002", "pw-1002", "2000"]);
        assert!(Rows::range("9-1").is_err());
        assert!(Rows::range("abc").is_err());
        assert_eq!(Rows::range("7").unwrap(), 7..=7);
    }
}
