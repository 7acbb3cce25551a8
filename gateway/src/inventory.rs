//! Loading the operator's number inventory, from the API (JSON rows) or the
//! CLI (`switchboard numbers import FILE.csv`, the same rows as CSV with a
//! header line: `number,country,area,price_class,price`).

use engine::numbering::{Dialled, Plan, RegionId, classify, region, region_of_cc};
use schema::model::{AccountKind, NumberRecord, NumberState, PriceClass};
use schema::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Default prices per class, minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prices {
    /// An ordinary number.
    pub standard: i64,
    /// A vanity number.
    pub premium: i64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            standard: 1_000,
            premium: 10_000,
        }
    }
}

/// One number to load.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryRow {
    /// An individual number (`2-1234-5678 82`, `212345678*82`) or a company
    /// base (`7001234`).
    pub number: String,
    /// ISO 3166 region; required for company bases, derived for individual
    /// numbers.
    #[serde(default)]
    pub country: Option<String>,
    /// Area code, for searches.
    #[serde(default)]
    pub area: Option<String>,
    /// `standard` (default) or `premium`.
    #[serde(default)]
    pub price_class: Option<String>,
    /// Price in minor units; the class's default when absent.
    #[serde(default)]
    pub price: Option<i64>,
    /// `did` for a PSTN number the operator holds from a carrier (its
    /// calls come in from `trunk`); empty for the plan's own numbers.
    #[serde(default)]
    pub kind: Option<String>,
    /// A DID's carrier trunk.
    #[serde(default)]
    pub trunk: Option<String>,
    /// A DID's monthly price, minor units (recorded for invoices).
    #[serde(default)]
    pub monthly_price: Option<i64>,
}

/// What an import did.
#[derive(Debug, Default, Serialize, ToSchema, PartialEq, Eq)]
pub struct ImportReport {
    /// Numbers added.
    pub added: usize,
    /// Numbers already in the inventory (left as they were).
    pub existing: usize,
    /// Rows refused, with their line (1 = first row after any header) and why.
    pub errors: Vec<RowError>,
}

/// A refused row.
#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct RowError {
    /// Row number, from 1.
    pub row: usize,
    /// Why.
    pub message: String,
}

/// Check one row and make its record.
pub fn record(row: &InventoryRow, plan: &Plan, prices: &Prices) -> Result<NumberRecord, String> {
    let class = match row.price_class.as_deref().map(str::trim) {
        None | Some("") | Some("standard") => PriceClass::Standard,
        Some("premium") | Some("vanity") => PriceClass::Premium,
        Some(other) => return Err(format!("price class {other} is not standard or premium")),
    };
    let price = row.price.unwrap_or(match class {
        PriceClass::Standard => prices.standard,
        PriceClass::Premium => prices.premium,
    });
    if price < 0 {
        return Err("price cannot be negative".into());
    }
    let area: String = row.area.clone().unwrap_or_default().trim().to_owned();
    if area.len() > 8 || !area.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("area {area} is not up to 8 digits"));
    }
    match row.kind.as_deref().map(str::trim) {
        None | Some("") => {}
        Some("did") => return did_record(row, class, price, area),
        Some(other) => return Err(format!("kind {other} is not did (or empty)")),
    }
    let given = row
        .country
        .as_deref()
        .filter(|c| !c.trim().is_empty())
        .map(|c| region(c).ok_or_else(|| format!("{c} is not an ISO 3166 region")))
        .transpose()?;
    let (number, kind, country) = match classify(&row.number, given.unwrap_or(RegionId::US), plan) {
        Ok(Dialled::Individual(i)) => {
            let country = region_of_cc(i.cc).unwrap_or_default();
            (i.canonical(), AccountKind::Individual, country)
        }
        Ok(Dialled::Company(c)) if c.cc.is_none() => {
            let Some(g) = given else {
                return Err(format!("company base {} needs a country", c.base));
            };
            (c.base, AccountKind::Company, g.as_ref().to_owned())
        }
        Ok(Dialled::Company(c)) => {
            return Err(format!(
                "load the base {} without #{}",
                c.base,
                c.cc.unwrap_or(0)
            ));
        }
        Ok(other) => {
            return Err(format!(
                "{} is not a number of this plan ({other:?})",
                row.number
            ));
        }
        Err(e) => return Err(format!("{}: {e}", row.number)),
    };
    Ok(NumberRecord {
        number,
        kind,
        country,
        area,
        price_class: class,
        price,
        state: NumberState::Available,
        version: 0,
        did: None,
    })
}

/// A DID row: a PSTN number (E.164, `+` optional) from a carrier's trunk.
fn did_record(
    row: &InventoryRow,
    class: PriceClass,
    price: i64,
    area: String,
) -> Result<NumberRecord, String> {
    let trunk = row
        .trunk
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 64)
        .ok_or_else(|| "a DID needs its trunk".to_owned())?;
    let monthly_price = row.monthly_price.unwrap_or(0);
    if monthly_price < 0 {
        return Err("monthly price cannot be negative".into());
    }
    let pstn = match engine::numbering::normalize(&row.number).map(|n| {
        let n = if n.starts_with('+') {
            n
        } else {
            format!("+{n}")
        };
        classify(&n, RegionId::US, &Plan::default())
    }) {
        Ok(Ok(Dialled::Pstn(p))) => p,
        _ => return Err(format!("{} is not an E.164 PSTN number", row.number)),
    };
    Ok(NumberRecord {
        number: pstn.e164,
        kind: AccountKind::Individual,
        country: pstn.region.unwrap_or_default(),
        area,
        price_class: class,
        price,
        state: NumberState::Available,
        version: 0,
        did: Some(schema::model::Did {
            trunk: trunk.to_owned(),
            monthly_price,
        }),
    })
}

/// Load rows; a bad row is reported and skipped, the others are loaded.
pub async fn import(
    store: &dyn Store,
    plan: &Plan,
    prices: &Prices,
    rows: Vec<InventoryRow>,
) -> Result<ImportReport, StoreError> {
    let mut report = ImportReport::default();
    for (i, row) in rows.iter().enumerate() {
        match record(row, plan, prices) {
            Ok(r) => {
                if store.insert_number(&r).await? {
                    report.added += 1;
                } else {
                    report.existing += 1;
                }
            }
            Err(message) => report.errors.push(RowError {
                row: i + 1,
                message,
            }),
        }
    }
    Ok(report)
}

/// Parse the CSV form (header `number,country,area,price_class,price`;
/// columns after `number` may be left empty).
pub fn parse_csv(text: &str) -> Result<Vec<InventoryRow>, String> {
    let mut rows = Vec::new();
    for row in crate::csvfile::rows(text, "number,country,area,price_class,price")? {
        let row = row?;
        let col = |name: &str| row.get(name).map(str::to_owned);
        let price = col("price")
            .map(|p| {
                p.parse::<i64>()
                    .map_err(|_| format!("row {}: price {p} is not an integer", row.number))
            })
            .transpose()?;
        rows.push(InventoryRow {
            number: col("number").unwrap_or_default(),
            country: col("country"),
            area: col("area"),
            price_class: col("price_class"),
            price,
            kind: col("kind"),
            trunk: col("trunk"),
            monthly_price: col("monthly_price")
                .map(|p| {
                    p.parse::<i64>().map_err(|_| {
                        format!("row {}: monthly_price {p} is not an integer", row.number)
                    })
                })
                .transpose()?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_records_or_reasons() {
        let rows = parse_csv(
            "number,country,area,price_class,price\n\
             2-1234-5678 82,,2,,\n\
             7007777,KR,2,premium,\n\
             7001234,,,,\n\
             12,,,,\n\
             7005555,US,202,gold,\n",
        )
        .unwrap_or_default();
        assert_eq!(rows.len(), 5);
        let p = Plan::default();
        let prices = Prices::default();
        let r = record(&rows[0], &p, &prices);
        assert_eq!(
            r.as_ref()
                .map(|r| (r.number.as_str(), r.kind, r.country.as_str(), r.price)),
            Ok(("212345678*82", AccountKind::Individual, "KR", 1_000))
        );
        let r = record(&rows[1], &p, &prices);
        assert_eq!(
            r.map(|r| (r.price_class, r.price)),
            Ok((PriceClass::Premium, 10_000))
        );
        assert_eq!(
            record(&rows[2], &p, &prices).err().as_deref(),
            Some("company base 7001234 needs a country")
        );
        assert_eq!(
            record(&rows[3], &p, &prices).err().as_deref(),
            Some("12: too short: 2 digits, at least 3 needed")
        );
        assert_eq!(
            record(&rows[4], &p, &prices).err().as_deref(),
            Some("price class gold is not standard or premium")
        );
        assert!(parse_csv("num,country\n1,2\n").is_err());
    }

    #[test]
    fn did_rows_are_carriers_pstn_numbers_with_a_trunk_and_a_monthly_price() {
        let rows = parse_csv(
            "number,country,area,price_class,price,kind,trunk,monthly_price\n\
             +1 212-555-0100,,212,,500,did,carrier,300\n\
             12125550101,,,,,did,,\n\
             +1 555,,,,,did,carrier,\n\
             +12125550102,,,,,sim,carrier,\n",
        )
        .unwrap_or_default();
        let (p, prices) = (Plan::default(), Prices::default());
        let r = record(&rows[0], &p, &prices);
        assert_eq!(
            r.as_ref().map(|r| (
                r.number.as_str(),
                r.country.as_str(),
                r.price,
                r.did.clone()
            )),
            Ok((
                "+12125550100",
                "US",
                500,
                Some(schema::model::Did {
                    trunk: "carrier".into(),
                    monthly_price: 300
                })
            ))
        );
        assert_eq!(
            record(&rows[1], &p, &prices).err().as_deref(),
            Some("a DID needs its trunk")
        );
        assert!(record(&rows[2], &p, &prices).is_err());
        assert_eq!(
            record(&rows[3], &p, &prices).err().as_deref(),
            Some("kind sim is not did (or empty)")
        );
    }
}
