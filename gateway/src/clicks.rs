//! Abuse protection of click to call, so that a card's button cannot be
//! turned into a free dialler (toll fraud): rate limits per visitor
//! address and per card, concurrent calls per card and per owner, callback
//! numbers only in the countries the owner allows and never premium-rate or
//! high-risk prefixes, and the same callback number only so often an hour.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use parking_lot::Mutex;

/// The limits (every one configurable; these defaults are safe).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Clicks a minute from one visitor address.
    pub per_address_per_minute: usize,
    /// Clicks a minute on one card.
    pub per_card_per_minute: usize,
    /// Calls an hour to one callback number.
    pub per_callback_per_hour: usize,
    /// Calls up at once per card.
    pub concurrent_per_card: usize,
    /// Calls up at once per owner.
    pub concurrent_per_owner: usize,
    /// E.164 prefixes never called back (premium rate, satellite,
    /// international shared-cost and other high-risk ranges).
    pub blocked_prefixes: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_address_per_minute: 5,
            per_card_per_minute: 20,
            per_callback_per_hour: 3,
            concurrent_per_card: 5,
            concurrent_per_owner: 10,
            blocked_prefixes: engine::routing::HIGH_RISK_PREFIXES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

/// Why a click is refused: a stable code and words for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Metric label and API error code.
    pub code: &'static str,
    /// What the visitor reads.
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    metrics::counter!("switchboard_clicks_refused_total", "reason" => code).increment(1);
    Refusal {
        code,
        message: message.into(),
    }
}

/// Window keys (addresses, cards, callback numbers) held at most; past it
/// the ones with nothing in the last hour go, and if all are recent a new
/// key is refused (a click from a new address waits) rather than grown.
const MAX_KEYS: usize = 100_000;

/// The longest window, ms.
const LONGEST_MS: u64 = 3_600_000;

/// Sliding windows and live calls.
#[derive(Default)]
pub struct Guard {
    windows: Mutex<HashMap<String, VecDeque<u64>>>,
    live: Mutex<HashMap<String, usize>>,
}

/// A click let through: counts as a live call until dropped.
pub struct Admitted<'a> {
    guard: &'a Guard,
    keys: [String; 2],
}

impl Admitted<'_> {
    /// The call really started: it counts until [`Guard::ended`].
    pub fn started(self) -> [String; 2] {
        let keys = self.keys.clone();
        std::mem::forget(self);
        keys
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.guard.ended(&self.keys);
    }
}

impl Guard {
    fn hit(&self, key: String, now_ms: u64, window_ms: u64, max: usize) -> bool {
        let mut w = self.windows.lock();
        let recent = |q: &VecDeque<u64>| {
            q.back()
                .is_some_and(|t| now_ms.saturating_sub(*t) < LONGEST_MS)
        };
        if !crate::bounded::make_room(&mut w, &key, MAX_KEYS, recent) {
            return false;
        }
        let q = w.entry(key).or_default();
        while q
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= window_ms)
        {
            q.pop_front();
        }
        if q.len() >= max {
            return false;
        }
        q.push_back(now_ms);
        true
    }

    /// A placed call ended: it no longer counts for its card and owner.
    pub fn ended(&self, keys: &[String; 2]) {
        let mut live = self.live.lock();
        for k in keys {
            if let Some(n) = live.get_mut(k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    live.remove(k);
                }
            }
        }
    }

    /// Check one click; `callback` is E.164 digits (with `+`) or an
    /// on-net number; `callback_region` the ISO 3166 region of a PSTN
    /// callback (`Some("")` when phonenumber knows none; `None`: not a
    /// PSTN number), `allowed` the regions the owner lets its buttons call.
    /// Regions, not calling codes: allowing the US does not allow the
    /// Caribbean numbers that share +1.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site, every input named"
    )]
    pub fn admit(
        &self,
        limits: &Limits,
        now_ms: u64,
        address: Option<IpAddr>,
        card: &str,
        owner: &str,
        callback: &str,
        callback_region: Option<&str>,
        allowed: &[String],
    ) -> Result<Admitted<'_>, Refusal> {
        let digits = callback.trim_start_matches('+');
        if let Some(region) = callback_region {
            if region.is_empty() || !allowed.iter().any(|a| a.eq_ignore_ascii_case(region)) {
                let r = if region.is_empty() {
                    "an unknown country"
                } else {
                    region
                };
                return Err(refuse(
                    "country_not_allowed",
                    format!("This card does not call numbers in {r}."),
                ));
            }
            if engine::routing::blocked(callback, &limits.blocked_prefixes) {
                return Err(refuse(
                    "blocked_destination",
                    "This number cannot be called back.",
                ));
            }
        }
        if let Some(ip) = address
            && !self.hit(
                format!("ip:{ip}"),
                now_ms,
                60_000,
                limits.per_address_per_minute,
            )
        {
            return Err(refuse(
                "too_many_clicks",
                "Too many calls from your network; try again in a minute.",
            ));
        }
        if !self.hit(
            format!("card:{card}"),
            now_ms,
            60_000,
            limits.per_card_per_minute,
        ) {
            return Err(refuse(
                "card_busy",
                "This card is taking many calls; try again in a minute.",
            ));
        }
        if !self.hit(
            format!("cb:{digits}"),
            now_ms,
            3_600_000,
            limits.per_callback_per_hour,
        ) {
            return Err(refuse(
                "number_called_too_often",
                "This number was called back too often; try again later.",
            ));
        }
        let keys = [format!("card:{card}"), format!("owner:{owner}")];
        let mut live = self.live.lock();
        if live.get(&keys[0]).copied().unwrap_or(0) >= limits.concurrent_per_card {
            return Err(refuse(
                "card_in_use",
                "All lines of this card are in use; try again shortly.",
            ));
        }
        if live.get(&keys[1]).copied().unwrap_or(0) >= limits.concurrent_per_owner {
            return Err(refuse(
                "owner_busy",
                "The owner is on too many calls; try again shortly.",
            ));
        }
        for k in &keys {
            *live.entry(k.clone()).or_default() += 1;
        }
        Ok(Admitted { guard: self, keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded_and_forget_quiet_keys() {
        let g = Guard::default();
        for i in 0..MAX_KEYS {
            assert!(g.hit(format!("ip:{i}"), 0, 60_000, 5));
        }
        // Full of recent keys: a new one is refused, a known one counted.
        assert!(!g.hit("ip:new".into(), 1_000, 60_000, 5));
        assert!(g.hit("ip:7".into(), 1_000, 60_000, 5));
        assert_eq!(g.windows.lock().len(), MAX_KEYS);
        // An hour later the quiet ones are forgotten to make room.
        assert!(g.hit("ip:new".into(), LONGEST_MS + 1_000, 60_000, 5));
        assert_eq!(g.windows.lock().len(), 1);
    }

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, n]))
    }

    #[test]
    fn each_limit_refuses_with_its_code() {
        let l = Limits {
            per_address_per_minute: 2,
            per_card_per_minute: 4,
            per_callback_per_hour: 1,
            concurrent_per_card: 2,
            concurrent_per_owner: 10,
            ..Limits::default()
        };
        let g = Guard::default();
        let us = ["US".to_owned()];
        let kr = ["KR".to_owned()];
        let code = |r: Result<Admitted<'_>, Refusal>| r.err().map(|e| e.code);
        assert_eq!(
            code(g.admit(&l, 0, ip(1), "c", "o", "+821012345678", Some("KR"), &us)),
            Some("country_not_allowed")
        );
        // +1 876 is Jamaica: the US is allowed, the +1 zone is not.
        assert_eq!(
            code(g.admit(&l, 0, ip(1), "c", "o", "+18765550100", Some("JM"), &us)),
            Some("country_not_allowed")
        );
        assert_eq!(
            code(g.admit(&l, 0, ip(1), "c", "o", "+18005550100", Some(""), &us)),
            Some("country_not_allowed"),
            "a number of no known country"
        );
        assert_eq!(
            code(g.admit(&l, 0, ip(1), "c", "o", "+19005550100", Some("US"), &us)),
            Some("blocked_destination")
        );
        let a = g
            .admit(&l, 0, ip(1), "c", "o", "+821012345678", Some("KR"), &kr)
            .unwrap()
            .started();
        assert_eq!(
            code(g.admit(&l, 1, ip(1), "c", "o", "+821012345678", Some("KR"), &kr)),
            Some("number_called_too_often")
        );
        assert_eq!(
            code(g.admit(&l, 2, ip(1), "c", "o", "+821011111111", Some("KR"), &kr)),
            Some("too_many_clicks")
        );
        let b = g
            .admit(&l, 3, ip(2), "c", "o", "+821022222222", Some("KR"), &kr)
            .unwrap()
            .started();
        assert_eq!(
            code(g.admit(&l, 4, ip(3), "c", "o", "+821033333333", Some("KR"), &kr)),
            Some("card_in_use")
        );
        g.ended(&a);
        // The card's minute is spent (4 clicks counted, refused ones too).
        assert_eq!(
            code(g.admit(&l, 5, ip(4), "c", "o", "+821044444444", Some("KR"), &kr)),
            Some("card_busy")
        );
        assert!(
            g.admit(
                &l,
                60_006,
                ip(4),
                "c",
                "o",
                "+821044444444",
                Some("KR"),
                &kr
            )
            .is_ok(),
            "a minute later"
        );
        g.ended(&b);
        // A refused or unstarted click does not hold a line.
        let held = g
            .admit(
                &l,
                60_007,
                ip(5),
                "d",
                "o",
                "+821055555555",
                Some("KR"),
                &kr,
            )
            .unwrap();
        drop(held);
        assert!(g.live.lock().get("card:d").is_none());
    }
}
