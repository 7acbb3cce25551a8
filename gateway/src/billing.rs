//! Invoices and settlement, computed from the ledger and the CDRs (pure):
//! what a member was charged and paid in a period, and what each trunk's
//! carrier is owed for the calls it carried (seed 004 claim 17).

use schema::model::{Cdr, LedgerEntry};
use serde::Serialize;
use utoipa::ToSchema;

/// One ledger movement on an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct InvoiceLine {
    /// Unix seconds.
    pub at: u64,
    /// top_up, call, number, refund, adjustment, other.
    pub kind: &'static str,
    /// Minor units; positive credits the member.
    pub amount: i64,
    /// As posted.
    pub reason: String,
}

/// A member's invoice for `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Invoice {
    /// The member.
    pub member: String,
    /// ISO 4217.
    pub currency: String,
    /// Period start, Unix seconds.
    pub from: u64,
    /// Period end (exclusive).
    pub to: u64,
    /// Balance before the period.
    pub opening_balance: i64,
    /// Call attempts (CDRs) in the period.
    pub calls: u64,
    /// Of which answered.
    pub answered: u64,
    /// Seconds talked.
    pub talk_seconds: u64,
    /// Seconds billed.
    pub billed_seconds: u64,
    /// Charged for calls (positive).
    pub call_charges: i64,
    /// Paid in.
    pub top_ups: i64,
    /// Spent on numbers (positive).
    pub number_purchases: i64,
    /// Refunded.
    pub refunds: i64,
    /// Operator adjustments (signed).
    pub adjustments: i64,
    /// Balance after the period: opening + every movement in it.
    pub closing_balance: i64,
    /// Every movement, oldest first.
    pub lines: Vec<InvoiceLine>,
    /// The DIDs the member holds, with their monthly price (not charged
    /// from the balance: the operator bills them).
    pub dids: Vec<InvoiceDid>,
}

/// A DID on an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct InvoiceDid {
    /// E.164.
    pub number: String,
    /// Its monthly price, minor units.
    pub monthly_price: i64,
}

fn kind_of(key: &str) -> &'static str {
    match key.split(':').next().unwrap_or("") {
        "topup" => "top_up",
        "call" => "call",
        "buy" => "number",
        "refund" => "refund",
        "adjust" => "adjustment",
        _ => "other",
    }
}

/// The invoice of `member` for `[from, to)` (Unix seconds) from its whole
/// ledger and its CDRs of the period.
pub fn invoice(
    member: &str,
    currency: &str,
    from: u64,
    to: u64,
    ledger: &[LedgerEntry],
    cdrs: &[Cdr],
) -> Invoice {
    let opening_balance = ledger
        .iter()
        .filter(|e| e.at < from)
        .map(|e| e.amount)
        .sum();
    let mut inv = Invoice {
        member: member.to_owned(),
        currency: currency.to_owned(),
        from,
        to,
        opening_balance,
        calls: 0,
        answered: 0,
        talk_seconds: 0,
        billed_seconds: 0,
        call_charges: 0,
        top_ups: 0,
        number_purchases: 0,
        refunds: 0,
        adjustments: 0,
        closing_balance: opening_balance,
        lines: Vec::new(),
        dids: Vec::new(),
    };
    for e in ledger.iter().filter(|e| e.at >= from && e.at < to) {
        let kind = kind_of(&e.key);
        match kind {
            "top_up" => inv.top_ups += e.amount,
            "call" => inv.call_charges -= e.amount,
            "number" => inv.number_purchases -= e.amount,
            "refund" => inv.refunds += e.amount,
            _ => inv.adjustments += e.amount,
        }
        inv.closing_balance += e.amount;
        inv.lines.push(InvoiceLine {
            at: e.at,
            kind,
            amount: e.amount,
            reason: e.reason.clone(),
        });
    }
    for c in cdrs {
        inv.calls += 1;
        if c.answer_ms.is_some() {
            inv.answered += 1;
        }
        inv.talk_seconds += c.talk_secs();
        inv.billed_seconds += u64::from(c.billed_secs);
    }
    inv
}

/// What one trunk's carrier is owed for a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TrunkSettlement {
    /// The trunk.
    pub trunk: String,
    /// INVITEs sent to it.
    pub attempts: u64,
    /// Of which answered.
    pub answered: u64,
    /// Seconds it carried.
    pub seconds: u64,
    /// Its rated cost, micro-units.
    pub cost_micros: i64,
    /// The same in minor units, rounded up.
    pub cost: i64,
    /// Calls it sent us (interconnect).
    pub inbound_calls: u64,
    /// Of which answered.
    pub inbound_answered: u64,
    /// Seconds of those.
    pub inbound_seconds: u64,
    /// What it owes us for them (its inbound deck), micro-units.
    pub inbound_micros: i64,
    /// The same in minor units, rounded up.
    pub inbound: i64,
}

/// Per trunk, from the CDRs of a period, sorted by trunk name.
pub fn settlement(cdrs: &[Cdr]) -> Vec<TrunkSettlement> {
    let mut by: std::collections::BTreeMap<&str, TrunkSettlement> = Default::default();
    let fresh = |trunk: &str| TrunkSettlement {
        trunk: trunk.to_owned(),
        attempts: 0,
        answered: 0,
        seconds: 0,
        cost_micros: 0,
        cost: 0,
        inbound_calls: 0,
        inbound_answered: 0,
        inbound_seconds: 0,
        inbound_micros: 0,
        inbound: 0,
    };
    for c in cdrs {
        if let Some(peer) = &c.peer {
            let t = by.entry(peer).or_insert_with(|| fresh(peer));
            t.inbound_calls += 1;
            if c.answer_ms.is_some() {
                t.inbound_answered += 1;
                t.inbound_seconds += c.talk_secs();
                t.inbound_micros += c.peer_micros;
            }
        }
        for a in &c.attempts {
            let t = by.entry(&a.trunk).or_insert_with(|| fresh(&a.trunk));
            t.attempts += 1;
            if a.status == 200 {
                t.answered += 1;
                t.seconds += c.talk_secs();
                t.cost_micros += c.cost_micros;
            }
        }
    }
    by.into_values()
        .map(|mut t| {
            t.cost = engine::rating::micros_to_minor(t.cost_micros);
            t.inbound = engine::rating::micros_to_minor(t.inbound_micros);
            t
        })
        .collect()
}

/// `s` safe as HTML text or a quoted attribute value.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Minor units as an amount with two decimals (`-0.30`).
pub(crate) fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02}",
        minor.unsigned_abs() / 100,
        minor.unsigned_abs() % 100
    )
}

/// The invoice as a printable HTML page.
pub fn invoice_html(inv: &Invoice) -> String {
    let cur = escape(&inv.currency);
    let row = |label: &str, v: i64| {
        format!(
            "<tr><th>{label}</th><td class=n>{} {cur}</td></tr>\n",
            money(v)
        )
    };
    let mut lines = String::new();
    for l in &inv.lines {
        lines.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td></tr>\n",
            l.at,
            l.kind,
            escape(&l.reason),
            money(l.amount)
        ));
    }
    format!(
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width, initial-scale=1\">\
<title>Invoice {member}</title><style>\
body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}}\
table{{border-collapse:collapse;width:100%;margin:1rem 0}}th,td{{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd}}\
.n{{text-align:right;font-variant-numeric:tabular-nums}}@media print{{body{{margin:0}}}}</style></head>\n\
<body><h1>Invoice</h1><p>Member <strong>{member}</strong>, period {from} to {to} (Unix seconds).</p>\n\
<table>{opening}{calls_row}{numbers}{topups}{refunds}{adjust}{closing}</table>\n\
<p>{n} calls, {answered} answered, {talk} s talked, {billed} s billed.</p>\n\
<table><tr><th>when</th><th>what</th><th>reason</th><th class=n>amount</th></tr>\n{lines}</table>{dids}</body></html>\n",
        member = escape(&inv.member),
        from = inv.from,
        to = inv.to,
        opening = row("Opening balance", inv.opening_balance),
        calls_row = row("Calls", -inv.call_charges),
        numbers = row("Numbers", -inv.number_purchases),
        topups = row("Top-ups", inv.top_ups),
        refunds = row("Refunds", inv.refunds),
        adjust = row("Adjustments", inv.adjustments),
        closing = row("Closing balance", inv.closing_balance),
        n = inv.calls,
        answered = inv.answered,
        talk = inv.talk_seconds,
        billed = inv.billed_seconds,
        dids = if inv.dids.is_empty() {
            String::new()
        } else {
            let rows: String = inv
                .dids
                .iter()
                .map(|d| row(&escape(&d.number), d.monthly_price))
                .collect();
            format!("<h2>DIDs held (monthly)</h2><table>{rows}</table>")
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::model::RouteAttempt;

    fn entry(key: &str, amount: i64, at: u64, reason: &str) -> LedgerEntry {
        LedgerEntry {
            account: "100".into(),
            key: key.into(),
            amount,
            reason: reason.into(),
            at,
        }
    }

    fn cdr(attempts: &[(&str, u16)], talk_ms: u64, cost: i64) -> Cdr {
        Cdr {
            call_id: "x".into(),
            payer: "100".into(),
            caller: "100".into(),
            callee: "+1".into(),
            center: "us".into(),
            result: "answered".into(),
            status: 200,
            cause: None,
            disconnect: None,
            attempts: attempts
                .iter()
                .map(|(t, s)| RouteAttempt {
                    trunk: (*t).into(),
                    uri: String::new(),
                    status: *s,
                })
                .collect(),
            setup_ms: 0,
            ring_ms: None,
            answer_ms: (talk_ms > 0).then_some(1_000),
            end_ms: 1_000 + talk_ms,
            billed_secs: (talk_ms / 1000) as u32,
            price: 0,
            cost_micros: cost,
            currency: "USD".into(),
            media: None,
            digits: String::new(),
            callback: None,
            direction: String::new(),
            peer: None,
            peer_micros: 0,
            correlation: None,
        }
    }

    #[test]
    fn an_invoice_adds_up_from_the_opening_to_the_closing_balance() {
        let ledger = [
            entry("topup:a", 1000, 50, "top-up"),
            entry("call:1", -30, 150, "call 1"),
            entry("buy:7001234:1", -500, 160, "number 7001234"),
            entry("refund:buy:7001234:1", 500, 170, "<b>not</b> assigned"),
            entry("adjust:goodwill", 25, 180, "goodwill"),
            entry("call:2", -12, 250, "after the period"),
        ];
        let inv = invoice(
            "100",
            "USD",
            100,
            200,
            &ledger,
            &[cdr(&[], 61_000, 0), cdr(&[], 0, 0)],
        );
        assert_eq!(inv.opening_balance, 1000);
        assert_eq!(
            (
                inv.call_charges,
                inv.number_purchases,
                inv.refunds,
                inv.adjustments,
                inv.top_ups
            ),
            (30, 500, 500, 25, 0)
        );
        assert_eq!(inv.closing_balance, 1000 - 30 - 500 + 500 + 25);
        assert_eq!(inv.lines.len(), 4);
        assert_eq!((inv.calls, inv.answered, inv.talk_seconds), (2, 1, 61));
        let html = invoice_html(&inv);
        assert!(html.contains("&lt;b&gt;not&lt;/b&gt; assigned"), "escaped");
        assert!(
            html.contains("<th>Closing balance</th><td class=n>9.95 USD</td>"),
            "{html}"
        );
        assert!(html.contains("<th>Calls</th><td class=n>-0.30 USD</td>"));
    }

    #[test]
    fn settlement_counts_each_trunk_tried_and_pays_the_one_that_carried() {
        let cdrs = [
            cdr(&[("a", 503), ("b", 200)], 120_000, 40_000),
            cdr(&[("b", 200)], 30_000, 10_001),
            cdr(&[("a", 486)], 0, 0),
        ];
        let s = settlement(&cdrs);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (
                s[0].trunk.as_str(),
                s[0].attempts,
                s[0].answered,
                s[0].seconds,
                s[0].cost
            ),
            ("a", 2, 0, 0, 0)
        );
        assert_eq!(
            (
                s[1].trunk.as_str(),
                s[1].attempts,
                s[1].answered,
                s[1].seconds
            ),
            ("b", 2, 2, 150)
        );
        assert_eq!(
            (s[1].cost_micros, s[1].cost),
            (50_001, 6),
            "rounded up to a cent"
        );
    }
}
