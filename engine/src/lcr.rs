//! Least-cost routing: per-trunk rate decks (destination prefix → rate) and
//! the ranked candidates for a destination, each with its rated cost and,
//! when it cannot be used now, the reason (seed 000 claims 22–23).
//!
//! A [`Table`] is immutable: a new deck is built beside the old one and
//! swapped in whole by the owner (no lookup ever sees half a deck).
//!
//! Money: rates are integer micro-units of the currency (1 USD =
//! 1,000,000), fine enough for per-minute rates of a fraction of a cent; a
//! call's charge is rounded to minor units when it is rated.

use std::collections::HashMap;

/// Longest prefix accepted (E.164 numbers have at most 15 digits).
pub const MAX_PREFIX: usize = 15;

/// What a destination costs on one trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Per minute, micro-units.
    pub per_minute: i64,
    /// Once per answered call, micro-units.
    pub connect_fee: i64,
    /// First billing increment, seconds.
    pub first_increment: u32,
    /// Following increments, seconds.
    pub next_increment: u32,
}

impl Rate {
    /// The cost of a call of `secs` seconds, micro-units (0 if unanswered).
    pub fn cost(&self, secs: u32) -> i64 {
        if secs == 0 {
            return 0;
        }
        let first = self.first_increment.max(1);
        let next = self.next_increment.max(1);
        let billed = if secs <= first {
            first
        } else {
            first + (secs - first).div_ceil(next) * next
        };
        self.micros(billed).unwrap_or(i64::MAX)
    }

    /// The connection fee plus `billed` seconds at the per-minute price,
    /// micro-units; `None` when it does not fit in 64 bits (a deck with
    /// such a rate is refused when loaded, see [`Deck::from_rows`]).
    pub fn micros(&self, billed: u32) -> Option<i64> {
        self.per_minute
            .checked_mul(i64::from(billed))
            .map(|m| m / 60)
            .and_then(|m| m.checked_add(self.connect_fee))
    }
}

/// Why a deck row was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeckError {
    /// Not 1 to 15 digits.
    #[error("row {row}: prefix {prefix:?} is not 1 to 15 digits")]
    BadPrefix {
        /// Row, from 1.
        row: usize,
        /// As given.
        prefix: String,
    },
    /// Negative money or a zero increment.
    #[error("row {row}: {what}")]
    BadRate {
        /// Row, from 1.
        row: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// The same prefix twice.
    #[error("row {row}: prefix {prefix} appears twice")]
    Duplicate {
        /// Row, from 1.
        row: usize,
        /// The prefix.
        prefix: String,
    },
}

/// One trunk's rate deck. Lookup is one hash probe per prefix length, from
/// the longest the deck holds down to 1.
#[derive(Debug, Clone, Default)]
pub struct Deck {
    rates: HashMap<u64, Rate>,
    lengths: Vec<u8>,
}

/// Prefix digits and length packed in one key (15 digits × 32 < 2⁶⁴).
fn key(digits: &[u8]) -> u64 {
    let n = digits
        .iter()
        .fold(0u64, |k, d| k * 10 + u64::from(d - b'0'));
    n * 32 + digits.len() as u64
}

impl Deck {
    /// Build from `(prefix, rate)` rows.
    pub fn from_rows<'a>(
        rows: impl IntoIterator<Item = (&'a str, Rate)>,
    ) -> Result<Deck, DeckError> {
        let mut rates = HashMap::new();
        let mut seen_len = [false; MAX_PREFIX + 1];
        for (i, (prefix, rate)) in rows.into_iter().enumerate() {
            let row = i + 1;
            let p = prefix.trim().trim_start_matches('+');
            if p.is_empty() || p.len() > MAX_PREFIX || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DeckError::BadPrefix {
                    row,
                    prefix: prefix.to_owned(),
                });
            }
            if rate.per_minute < 0 || rate.connect_fee < 0 {
                return Err(DeckError::BadRate {
                    row,
                    what: "money cannot be negative",
                });
            }
            if rate.micros(u32::MAX).is_none() {
                // The longest call the engine can rate must fit in 64 bits.
                return Err(DeckError::BadRate {
                    row,
                    what: "price too large: a call's cost would not fit in 64 bits",
                });
            }
            if rate.first_increment == 0 || rate.next_increment == 0 {
                return Err(DeckError::BadRate {
                    row,
                    what: "billing increments are at least 1 second",
                });
            }
            if rates.insert(key(p.as_bytes()), rate).is_some() {
                return Err(DeckError::Duplicate {
                    row,
                    prefix: p.to_owned(),
                });
            }
            seen_len[p.len()] = true;
        }
        let lengths = (1..=MAX_PREFIX as u8)
            .rev()
            .filter(|l| seen_len[*l as usize])
            .collect();
        Ok(Deck { rates, lengths })
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.rates.len()
    }

    /// No prefixes.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// Bytes the deck occupies (table and entries, estimated).
    pub fn memory(&self) -> usize {
        // hashbrown: one control byte and one (key, value) slot per bucket.
        self.rates.capacity() * (1 + std::mem::size_of::<(u64, Rate)>())
    }

    /// The longest prefix of `digits` in the deck, and its rate.
    pub fn longest(&self, digits: &str) -> Option<(usize, Rate)> {
        let d = digits.as_bytes();
        if !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.lengths.iter().find_map(|&l| {
            let l = l as usize;
            let p = d.get(..l)?;
            self.rates.get(&key(p)).map(|r| (l, *r))
        })
    }
}

/// A trunk as LCR sees it: its deck and tie-breakers.
#[derive(Debug, Clone)]
pub struct TrunkDeck {
    /// Trunk name.
    pub trunk: String,
    /// Lower goes first among equal costs.
    pub priority: u32,
    /// Higher goes first among equal costs and priorities.
    pub weight: u32,
    /// The deck.
    pub deck: Deck,
}

/// A trunk's state now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Answering OPTIONS.
    pub up: bool,
    /// Registered with, when it wants registration.
    pub registered: bool,
    /// Calls it carries.
    pub channels: u32,
    /// Most it may carry.
    pub max_channels: u32,
    /// Whether a call may start this second under its calls-per-second limit.
    pub cps_ok: bool,
}

impl Health {
    /// A trunk nothing is known to limit: up, no channel or rate limit (a
    /// configured trunk without keep-alives or limits).
    pub const UNLIMITED: Health = Health {
        up: true,
        registered: true,
        channels: 0,
        max_channels: u32::MAX,
        cps_ok: true,
    };
}

/// Why a candidate is not tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Missed its keep-alives.
    Down,
    /// It wants a registration that it has not accepted (yet).
    Unregistered,
    /// Every channel busy.
    Full {
        /// In use.
        channels: u32,
        /// Limit.
        max: u32,
    },
    /// Its calls-per-second limit is reached.
    CpsLimit,
    /// No state known for it.
    Unknown,
}

/// One ranked candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Trunk name.
    pub trunk: String,
    /// Matched prefix length.
    pub prefix_len: usize,
    /// Its rate.
    pub rate: Rate,
    /// `None`: usable now.
    pub skip: Option<Skip>,
}

/// All trunks' decks.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The trunks.
    pub trunks: Vec<TrunkDeck>,
}

impl Table {
    /// Every trunk with a matching prefix for `digits` (E.164 without `+`),
    /// ranked: longest matching prefix first, then cost per minute, then
    /// priority, then weight; each marked with why it would be skipped.
    pub fn candidates(
        &self,
        digits: &str,
        health: impl Fn(&str) -> Option<Health>,
    ) -> Vec<Candidate> {
        let digits = digits.trim_start_matches('+');
        let mut out: Vec<(Candidate, u32, u32)> = self
            .trunks
            .iter()
            .filter_map(|t| {
                let (prefix_len, rate) = t.deck.longest(digits)?;
                let skip = match health(&t.trunk) {
                    None => Some(Skip::Unknown),
                    Some(h) if !h.up => Some(Skip::Down),
                    Some(h) if !h.registered => Some(Skip::Unregistered),
                    Some(h) if h.channels >= h.max_channels => Some(Skip::Full {
                        channels: h.channels,
                        max: h.max_channels,
                    }),
                    Some(h) if !h.cps_ok => Some(Skip::CpsLimit),
                    Some(_) => None,
                };
                Some((
                    Candidate {
                        trunk: t.trunk.clone(),
                        prefix_len,
                        rate,
                        skip,
                    },
                    t.priority,
                    t.weight,
                ))
            })
            .collect();
        out.sort_by(|(a, ap, aw), (b, bp, bw)| {
            b.prefix_len
                .cmp(&a.prefix_len)
                .then(a.rate.per_minute.cmp(&b.rate.per_minute))
                .then(ap.cmp(bp))
                .then(bw.cmp(aw))
                .then(a.trunk.cmp(&b.trunk))
        });
        out.into_iter().map(|(c, _, _)| c).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_minute: i64) -> Rate {
        Rate {
            per_minute,
            connect_fee: 0,
            first_increment: 60,
            next_increment: 60,
        }
    }

    fn deck(rows: &[(&str, i64)]) -> Deck {
        Deck::from_rows(rows.iter().map(|(p, c)| (*p, rate(*c)))).unwrap_or_default()
    }

    #[test]
    fn longest_prefix_wins_in_a_deck() {
        let d = deck(&[("82", 50_000), ("822", 20_000), ("8210", 90_000)]);
        assert_eq!(
            d.longest("82212345678").map(|(l, r)| (l, r.per_minute)),
            Some((3, 20_000))
        );
        assert_eq!(d.longest("821012345678").map(|(l, _)| l), Some(4));
        assert_eq!(d.longest("8251").map(|(l, _)| l), Some(2));
        assert_eq!(d.longest("4420"), None);
        assert_eq!(d.longest("82x"), None);
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn bad_rows_are_refused_with_their_row() {
        let r = rate(1);
        let e = Deck::from_rows([("82", r), ("8a", r)]).unwrap_err();
        assert_eq!(e.to_string(), "row 2: prefix \"8a\" is not 1 to 15 digits");
        let e = Deck::from_rows([("82", r), ("+82", r)]).unwrap_err();
        assert_eq!(e.to_string(), "row 2: prefix 82 appears twice");
        let e = Deck::from_rows([("1234567890123456", r)]).unwrap_err();
        assert!(matches!(e, DeckError::BadPrefix { row: 1, .. }));
        let e = Deck::from_rows([(
            "1",
            Rate {
                per_minute: -1,
                ..r
            },
        )])
        .unwrap_err();
        assert_eq!(e.to_string(), "row 1: money cannot be negative");
        let e = Deck::from_rows([(
            "1",
            Rate {
                connect_fee: -500,
                ..r
            },
        )])
        .unwrap_err();
        assert_eq!(e.to_string(), "row 1: money cannot be negative");
        // A price whose longest call overflows 64 bits is refused, not
        // wrapped into a negative (free) charge.
        for big in [
            Rate {
                per_minute: i64::MAX / 1_000,
                ..r
            },
            Rate {
                connect_fee: i64::MAX,
                per_minute: 1,
                ..r
            },
        ] {
            let e = Deck::from_rows([("1", big)]).unwrap_err();
            assert!(e.to_string().contains("too large"), "{e}");
        }
        assert!(
            Deck::from_rows([(
                "1",
                Rate {
                    per_minute: 2_000_000_000,
                    ..r
                }
            )])
            .is_ok()
        );
        let e = Deck::from_rows([(
            "1",
            Rate {
                next_increment: 0,
                ..r
            },
        )])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "row 1: billing increments are at least 1 second"
        );
    }

    #[test]
    fn billing_increments() {
        let r = Rate {
            per_minute: 60_000,
            connect_fee: 5_000,
            first_increment: 30,
            next_increment: 6,
        };
        assert_eq!(r.cost(0), 0, "unanswered");
        assert_eq!(r.cost(1), 5_000 + 30_000);
        assert_eq!(r.cost(30), 5_000 + 30_000);
        assert_eq!(r.cost(31), 5_000 + 36_000);
        assert_eq!(r.cost(60), 5_000 + 60_000);
    }

    #[test]
    fn candidates_are_ranked_and_explained() {
        let t = Table {
            trunks: vec![
                TrunkDeck {
                    trunk: "cheap-generic".into(),
                    priority: 1,
                    weight: 1,
                    deck: deck(&[("82", 10_000)]),
                },
                TrunkDeck {
                    trunk: "seoul-a".into(),
                    priority: 1,
                    weight: 1,
                    deck: deck(&[("822", 30_000)]),
                },
                TrunkDeck {
                    trunk: "seoul-b".into(),
                    priority: 1,
                    weight: 1,
                    deck: deck(&[("822", 20_000)]),
                },
                TrunkDeck {
                    trunk: "seoul-c".into(),
                    priority: 0,
                    weight: 1,
                    deck: deck(&[("822", 30_000)]),
                },
                TrunkDeck {
                    trunk: "full".into(),
                    priority: 0,
                    weight: 1,
                    deck: deck(&[("822", 1_000)]),
                },
                TrunkDeck {
                    trunk: "down".into(),
                    priority: 0,
                    weight: 1,
                    deck: deck(&[("8221", 1_000)]),
                },
                TrunkDeck {
                    trunk: "uk".into(),
                    priority: 0,
                    weight: 1,
                    deck: deck(&[("44", 1_000)]),
                },
            ],
        };
        let health = |name: &str| {
            Some(Health {
                up: name != "down",
                registered: true,
                channels: if name == "full" { 2 } else { 0 },
                max_channels: 2,
                cps_ok: true,
            })
        };
        let c = t.candidates("+82212345678", health);
        let order: Vec<(&str, Option<Skip>)> = c
            .iter()
            .map(|c| (c.trunk.as_str(), c.skip.clone()))
            .collect();
        assert_eq!(
            order,
            [
                ("down", Some(Skip::Down)),
                (
                    "full",
                    Some(Skip::Full {
                        channels: 2,
                        max: 2
                    })
                ),
                ("seoul-b", None),
                ("seoul-c", None),
                ("seoul-a", None),
                ("cheap-generic", None),
            ]
        );
        assert!(
            t.candidates("4420", |_| None)
                .iter()
                .all(|c| c.skip == Some(Skip::Unknown))
        );
        assert!(t.candidates("1202", health).is_empty());
    }
}
