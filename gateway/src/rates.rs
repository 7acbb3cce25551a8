//! Rate decks as CSV files: `prefix,per_minute,connect_fee,first_increment,next_increment`
//! (money in micro-units of the currency; increments in seconds; the last
//! three columns default to 0, 60 and 60).

use engine::lcr::{Deck, Rate};

/// Parse and validate a deck; errors name the row.
pub fn parse_deck(text: &str) -> Result<Deck, String> {
    let mut rows: Vec<(String, Rate)> = Vec::new();
    let header = "prefix,per_minute,connect_fee,first_increment,next_increment";
    for rec in crate::csvfile::rows(text, header)? {
        let rec = rec?;
        let row = rec.number;
        let col = |name: &str| rec.get(name);
        let int = |name: &str, default: i64| -> Result<i64, String> {
            col(name).map_or(Ok(default), |v| {
                v.parse::<i64>()
                    .map_err(|_| format!("row {row}: {name} {v:?} is not an integer"))
            })
        };
        let secs = |name: &str| -> Result<u32, String> {
            u32::try_from(int(name, 60)?).map_err(|_| format!("row {row}: {name} is out of range"))
        };
        let prefix = col("prefix").unwrap_or_default().to_owned();
        let rate = Rate {
            per_minute: int("per_minute", -1)?,
            connect_fee: int("connect_fee", 0)?,
            first_increment: secs("first_increment")?,
            next_increment: secs("next_increment")?,
        };
        if rate.per_minute < 0 {
            return Err(format!(
                "row {row}: per_minute is required and not negative"
            ));
        }
        rows.push((prefix, rate));
    }
    Deck::from_rows(rows.iter().map(|(p, r)| (p.as_str(), *r))).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decks_parse_or_say_which_row() {
        let d = parse_deck(
            "prefix,per_minute,connect_fee,first_increment,next_increment\n82,50000,,,\n822,20000,1000,30,6\n",
        );
        let d = d.unwrap_or_default();
        assert_eq!(d.len(), 2);
        assert_eq!(
            d.longest("82212345678"),
            Some((
                3,
                Rate {
                    per_minute: 20_000,
                    connect_fee: 1000,
                    first_increment: 30,
                    next_increment: 6
                }
            ))
        );
        assert_eq!(
            parse_deck("prefix,per_minute\n82,x\n").err().as_deref(),
            Some("row 1: per_minute \"x\" is not an integer")
        );
        assert_eq!(
            parse_deck("prefix,per_minute\n82,1\n8a,1\n")
                .err()
                .as_deref(),
            Some("row 2: prefix \"8a\" is not 1 to 15 digits")
        );
        assert_eq!(
            parse_deck("prefix\n82\n").err().as_deref(),
            Some("row 1: per_minute is required and not negative")
        );
        assert!(parse_deck("number,rate\n").is_err());
    }
}
