//! CDRs over the API: a page of a payer's (or, for the operator, every
//! payer's) call detail records between two times, as JSON or CSV.

use schema::model::{Cdr, CdrQuery};

/// Most CDRs a page holds.
pub const MAX_PAGE: usize = 1000;

/// Columns of the CSV export, in order.
pub const CSV_HEADER: &str = "call_id,payer,caller,callee,center,result,status,cause,disconnect,\
attempts,setup_ms,ring_ms,answer_ms,end_ms,total_secs,talk_secs,billed_secs,price,cost_micros,\
currency,caller_packets,callee_packets,caller_lost,callee_lost,digits,callback_destination,\
callback_answer_ms,callback_billed_secs,callback_price,direction,peer";

/// A page cursor: the last CDR's `setup_ms:call_id`.
pub fn cursor(c: &Cdr) -> String {
    format!("{}:{}", c.setup_ms, c.call_id)
}

/// Read a cursor back.
pub fn parse_cursor(s: &str) -> Option<(u64, String)> {
    let (ms, id) = s.split_once(':')?;
    Some((ms.parse().ok()?, id.to_owned()))
}

/// The query of `payer` (or everyone's) from the API's parameters
/// (`from`, `to`: Unix seconds; `after`: a cursor; `limit`).
pub fn query(
    payer: Option<String>,
    from: Option<&str>,
    to: Option<&str>,
    after: Option<&str>,
    limit: Option<&str>,
) -> Result<CdrQuery, (&'static str, String)> {
    let secs = |name: &'static str,
                v: Option<&str>,
                default: u64|
     -> Result<u64, (&'static str, String)> {
        v.map_or(Ok(default), |v| {
            v.parse::<u64>()
                .map_err(|_| (name, format!("{v:?} is not Unix seconds")))
        })
    };
    let from_ms = secs("from", from, 0)?.saturating_mul(1000);
    let to_ms = secs("to", to, u64::MAX / 1000)?.saturating_mul(1000);
    if to_ms < from_ms {
        return Err(("to", "is before from".into()));
    }
    let after = after
        .map(|a| parse_cursor(a).ok_or(("after", format!("{a:?} is not a cursor"))))
        .transpose()?;
    let limit = match limit {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => return Err(("limit", format!("must be 1 to {MAX_PAGE}"))),
        },
    };
    Ok(CdrQuery {
        payer,
        from_ms,
        to_ms,
        after,
        limit,
    })
}

fn field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// One CSV line (RFC 4180 quoting), without the line ending.
pub fn csv_row(c: &Cdr) -> String {
    let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    let media = |f: fn(&schema::model::CdrMedia) -> [u64; 2], i: usize| {
        c.media
            .as_ref()
            .map_or(String::new(), |m| f(m)[i].to_string())
    };
    let attempts: Vec<String> = c
        .attempts
        .iter()
        .map(|a| format!("{}:{}", a.trunk, a.status))
        .collect();
    let cols = [
        c.call_id.clone(),
        c.payer.clone(),
        c.caller.clone(),
        c.callee.clone(),
        c.center.clone(),
        c.result.clone(),
        c.status.to_string(),
        c.cause.clone().unwrap_or_default(),
        c.disconnect.clone().unwrap_or_default(),
        attempts.join(";"),
        c.setup_ms.to_string(),
        opt(c.ring_ms),
        opt(c.answer_ms),
        c.end_ms.to_string(),
        c.total_secs().to_string(),
        c.talk_secs().to_string(),
        c.billed_secs.to_string(),
        c.price.to_string(),
        c.cost_micros.to_string(),
        c.currency.clone(),
        media(|m| m.packets_in, 0),
        media(|m| m.packets_in, 1),
        media(|m| m.lost, 0),
        media(|m| m.lost, 1),
        c.digits.clone(),
        c.callback
            .as_ref()
            .map_or(String::new(), |l| l.destination.clone()),
        opt(c.callback.as_ref().and_then(|l| l.answer_ms)),
        c.callback
            .as_ref()
            .map_or(String::new(), |l| l.billed_secs.to_string()),
        c.callback
            .as_ref()
            .map_or(String::new(), |l| l.price.to_string()),
        c.direction.clone(),
        c.peer.clone().unwrap_or_default(),
    ];
    let mut out = String::new();
    for (i, v) in cols.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(&mut out, v);
    }
    out
}

/// A whole CSV document: the header and one line per CDR, CRLF endings.
pub fn csv(cdrs: &[Cdr]) -> String {
    let mut out = String::with_capacity(64 + cdrs.len() * 200);
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    for c in cdrs {
        out.push_str(&csv_row(c));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdr() -> Cdr {
        Cdr {
            call_id: "abc@call".into(),
            payer: "100".into(),
            caller: "100".into(),
            callee: "+12125550100".into(),
            center: "us".into(),
            result: "failed".into(),
            status: 503,
            cause: Some("trunk \"a\" down, then b".into()),
            disconnect: None,
            attempts: vec![
                schema::model::RouteAttempt {
                    trunk: "a".into(),
                    uri: "u".into(),
                    status: 503,
                },
                schema::model::RouteAttempt {
                    trunk: "b".into(),
                    uri: "u".into(),
                    status: 0,
                },
            ],
            setup_ms: 1_000,
            ring_ms: None,
            answer_ms: None,
            end_ms: 3_500,
            billed_secs: 0,
            price: 0,
            cost_micros: 0,
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
    fn rows_quote_what_needs_it_and_keep_their_column_count() {
        let row = csv_row(&cdr());
        assert!(row.contains(",\"trunk \"\"a\"\" down, then b\","), "{row}");
        assert!(row.contains(",a:503;b:0,"), "{row}");
        let doc = csv(&[cdr()]);
        assert!(doc.starts_with("call_id,payer,") && doc.ends_with("\r\n"));
        let header_cols = CSV_HEADER.split(',').count();
        // Unquote the one quoted field to count the columns.
        let plain = row.replace("\"trunk \"\"a\"\" down, then b\"", "x");
        assert_eq!(plain.split(',').count(), header_cols);
    }

    #[test]
    fn queries_are_checked_and_cursors_read_back() {
        let q = query(Some("100".into()), Some("10"), Some("20"), None, Some("5")).unwrap();
        assert_eq!((q.from_ms, q.to_ms, q.limit), (10_000, 20_000, 5));
        assert_eq!(
            query(None, Some("x"), None, None, None).unwrap_err().0,
            "from"
        );
        assert_eq!(
            query(None, Some("20"), Some("10"), None, None)
                .unwrap_err()
                .0,
            "to"
        );
        assert_eq!(
            query(None, None, None, None, Some("0")).unwrap_err().0,
            "limit"
        );
        assert_eq!(
            query(None, None, None, Some("nope"), None).unwrap_err().0,
            "after"
        );
        let c = cursor(&cdr());
        assert_eq!(parse_cursor(&c), Some((1_000, "abc@call".into())));
        assert_eq!(
            query(None, None, None, Some(&c), None).unwrap().after,
            Some((1_000, "abc@call".into()))
        );
    }
}
