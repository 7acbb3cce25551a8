//! Rating, pure: what a call costs the member who pays for it, and how
//! long a balance lets it last.
//!
//! A sell plan is a rate deck ([`crate::lcr::Deck`]: destination prefix →
//! per-minute price, connection fee, billing increments) plus a minimum
//! billed duration and a price for on-net calls. Rates are micro-units of
//! the currency (as in the trunks' decks); a charge is rounded up to minor
//! units (cents) when the call is rated, never in between.

use crate::lcr::{Deck, Rate};

/// Micro-units in one minor unit (currencies with two decimals).
pub const MICROS_PER_MINOR: i64 = 10_000;

/// What on-net calls (member to member, on-net numbers) cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNet {
    /// Nothing.
    Free,
    /// This rate.
    Priced(Rate),
}

/// A sell-rate plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Its name.
    pub name: String,
    /// Prices of PSTN destinations.
    pub deck: Deck,
    /// Shortest duration billed for an answered call, seconds.
    pub minimum_secs: u32,
    /// Price of on-net calls.
    pub onnet: OnNet,
}

/// What a destination costs under a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tariff {
    /// The rate.
    pub rate: Rate,
    /// The plan's minimum duration.
    pub minimum_secs: u32,
}

impl Plan {
    /// The tariff of a PSTN destination (E.164 digits, with or without
    /// `+`) by the longest matching prefix; `None`: the plan does not sell it.
    pub fn pstn(&self, e164: &str) -> Option<Tariff> {
        let digits = e164.trim_start_matches('+');
        self.deck.longest(digits).map(|(_, rate)| Tariff {
            rate,
            minimum_secs: self.minimum_secs,
        })
    }

    /// The tariff of an on-net call; `None`: free.
    pub fn onnet(&self) -> Option<Tariff> {
        match self.onnet {
            OnNet::Free => None,
            OnNet::Priced(rate) => Some(Tariff {
                rate,
                minimum_secs: self.minimum_secs,
            }),
        }
    }
}

impl Tariff {
    /// Seconds billed for a call that lasted `secs` (0 if unanswered): at
    /// least the minimum, rounded up to the first and following increments.
    pub fn billed_secs(&self, secs: u32) -> u32 {
        if secs == 0 {
            return 0;
        }
        let first = self.rate.first_increment.max(1);
        let next = self.rate.next_increment.max(1);
        let secs = secs.max(self.minimum_secs);
        if secs <= first {
            first
        } else {
            first + (secs - first).div_ceil(next) * next
        }
    }

    /// The charge for a call of `secs` seconds, minor units, rounded up.
    pub fn charge(&self, secs: u32) -> i64 {
        let billed = self.billed_secs(secs);
        if billed == 0 {
            return 0;
        }
        // Decks are refused when a rate could overflow; saturate regardless.
        micros_to_minor(self.rate.micros(billed).unwrap_or(i64::MAX))
    }

    /// The longest call whose charge fits in `available` minor units:
    /// whole increments only, 0 when not even the first one fits.
    pub fn affordable_secs(&self, available: i64) -> u32 {
        let first = self.rate.first_increment.max(1);
        let next = self.rate.next_increment.max(1);
        let start = first.max(self.minimum_secs);
        if self.charge(start) > available {
            return 0;
        }
        if self.rate.per_minute == 0 {
            return u32::MAX;
        }
        // Estimate from the per-minute price, then step to the exact edge.
        let budget = available
            .saturating_mul(MICROS_PER_MINOR)
            .saturating_sub(self.rate.connect_fee);
        let guess = (budget.saturating_mul(60) / self.rate.per_minute)
            .clamp(0, i64::from(u32::MAX / 2)) as u32;
        let mut secs = if guess <= start {
            start
        } else {
            start + (guess - start) / next * next
        };
        while secs > start && self.charge(secs) > available {
            secs -= next;
        }
        while self.charge(secs.saturating_add(next)) <= available && secs < u32::MAX / 2 {
            secs += next;
        }
        secs
    }

    /// The least a call must be able to afford to be placed: its first
    /// increment (or the minimum) and the connection fee.
    pub fn minimum_charge(&self) -> i64 {
        self.charge(self.rate.first_increment.max(self.minimum_secs).max(1))
    }
}

/// Micro-units to minor units, rounded up (a customer is never charged a
/// fraction of a cent less than the rate says).
pub fn micros_to_minor(micros: i64) -> i64 {
    if micros <= 0 {
        return 0;
    }
    micros / MICROS_PER_MINOR + i64::from(micros % MICROS_PER_MINOR != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// per minute and fee in cents, increments.
    fn tariff(cents_per_min: i64, fee_cents: i64, first: u32, next: u32, min: u32) -> Tariff {
        Tariff {
            rate: Rate {
                per_minute: cents_per_min * MICROS_PER_MINOR,
                connect_fee: fee_cents * MICROS_PER_MINOR,
                first_increment: first,
                next_increment: next,
            },
            minimum_secs: min,
        }
    }

    #[test]
    fn billing_increments_minimums_and_fees() {
        // (tariff, seconds talked, billed seconds, charge in cents)
        let cases = [
            (tariff(6, 0, 60, 60, 0), 0, 0, 0),
            (tariff(6, 0, 60, 60, 0), 1, 60, 6),
            (tariff(6, 0, 60, 60, 0), 61, 120, 12),
            (tariff(6, 0, 30, 6, 0), 1, 30, 3),
            (tariff(6, 0, 30, 6, 0), 31, 36, 4), // 3.6 cents rounds up to 4
            (tariff(6, 0, 30, 6, 0), 65, 66, 7), // 6.6 → 7
            (tariff(6, 0, 1, 1, 0), 59, 59, 6),  // 5.9 → 6
            (tariff(6, 0, 1, 1, 0), 10, 10, 1),
            (tariff(6, 0, 1, 1, 30), 10, 30, 3), // minimum duration
            (tariff(6, 15, 60, 60, 0), 1, 60, 21), // connection fee
            (tariff(6, 15, 60, 60, 0), 0, 0, 0), // unanswered: no fee
        ];
        for (i, (t, secs, billed, cents)) in cases.iter().enumerate() {
            assert_eq!(t.billed_secs(*secs), *billed, "case {i}");
            assert_eq!(t.charge(*secs), *cents, "case {i}");
        }
    }

    #[test]
    fn a_fraction_of_a_cent_per_minute_is_charged_up_to_whole_cents() {
        // 0.7 cents a minute, per second.
        let t = Tariff {
            rate: Rate {
                per_minute: 7_000,
                connect_fee: 0,
                first_increment: 1,
                next_increment: 1,
            },
            minimum_secs: 0,
        };
        assert_eq!(t.charge(60), 1, "0.7 cent → 1");
        assert_eq!(t.charge(600), 7);
        assert_eq!(micros_to_minor(10_001), 2);
        assert_eq!(micros_to_minor(-5), 0);
    }

    #[test]
    fn the_affordable_duration_is_the_longest_that_fits() {
        // 6 cents/min, 30/6: 30 s = 3 cents, each 6 s = 0.6 cents.
        let t = tariff(6, 0, 30, 6, 0);
        assert_eq!(t.affordable_secs(2), 0, "not even the first increment");
        assert_eq!(t.affordable_secs(3), 30);
        for available in [3, 4, 10, 60, 600, 12345] {
            let s = t.affordable_secs(available);
            assert!(t.charge(s) <= available, "{available}: {s}");
            assert!(
                t.charge(s + 6) > available,
                "{available}: {s} is the longest"
            );
        }
        assert_eq!(
            tariff(60, 0, 60, 60, 0).affordable_secs(600),
            600,
            "10 minutes"
        );
        let fee = tariff(6, 15, 60, 60, 0);
        assert_eq!(fee.minimum_charge(), 21);
        assert_eq!(fee.affordable_secs(20), 0);
        assert_eq!(fee.affordable_secs(21), 60);
        assert_eq!(tariff(0, 0, 60, 60, 0).affordable_secs(0), u32::MAX, "free");
    }

    #[test]
    fn the_plan_picks_the_longest_prefix_and_prices_on_net_calls_as_told() {
        let rate = |c: i64| Rate {
            per_minute: c * MICROS_PER_MINOR,
            connect_fee: 0,
            first_increment: 60,
            next_increment: 60,
        };
        let plan = Plan {
            name: "standard".into(),
            deck: Deck::from_rows([("1", rate(2)), ("1212", rate(5)), ("82", rate(9))]).unwrap(),
            minimum_secs: 0,
            onnet: OnNet::Free,
        };
        assert_eq!(
            plan.pstn("+12125550100").unwrap().rate.per_minute,
            5 * MICROS_PER_MINOR
        );
        assert_eq!(
            plan.pstn("13105550100").unwrap().rate.per_minute,
            2 * MICROS_PER_MINOR
        );
        assert_eq!(plan.pstn("+4420"), None, "not sold");
        assert_eq!(plan.onnet(), None);
        let priced = Plan {
            onnet: OnNet::Priced(rate(1)),
            ..plan
        };
        assert_eq!(priced.onnet().unwrap().charge(61), 2);
    }
}
