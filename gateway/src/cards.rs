//! Business cards (seed 000): the built-in sample designs, validation of
//! what a member types, stable call-button IDs, and the card as the public
//! sees it — the live page (askama, escaped), its vCard 4 (RFC 6350) and
//! the QR code of its link.

use askama::Template;
use rand::Rng;
use schema::model::{Card, CardBlock, CardDesign, CardInfo, CardPhone};

/// Why a card cannot be saved: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct CardError {
    /// The field.
    pub field: String,
    /// What is wrong with it.
    pub why: String,
}

fn bad(field: impl Into<String>, why: impl Into<String>) -> CardError {
    CardError {
        field: field.into(),
        why: why.into(),
    }
}

/// Fonts the maker offers (CSS families every browser has).
pub const FONTS: [&str; 5] = [
    "system-ui",
    "Georgia",
    "Verdana",
    "Trebuchet MS",
    "Courier New",
];

/// Block kinds a layout may hold.
pub const BLOCKS: [&str; 10] = [
    "photo", "name", "title", "company", "phones", "email", "website", "address", "text", "extra",
];

fn layout(kinds: &[(&str, u8)]) -> Vec<CardBlock> {
    kinds
        .iter()
        .map(|(k, c)| CardBlock {
            kind: (*k).to_owned(),
            column: *c,
        })
        .collect()
}

/// The built-in sample designs a member starts from.
pub fn samples() -> Vec<CardDesign> {
    let d =
        |sample: &str, bg: &str, fg: &str, accent: &str, font: &str, size: u8, l: &[(&str, u8)]| {
            CardDesign {
                sample: sample.to_owned(),
                layout: layout(l),
                background: bg.to_owned(),
                color: fg.to_owned(),
                accent: accent.to_owned(),
                font_family: font.to_owned(),
                font_size: size,
                extra_text: String::new(),
            }
        };
    let classic = [
        ("name", 0),
        ("title", 0),
        ("company", 0),
        ("phones", 0),
        ("email", 0),
        ("website", 0),
        ("address", 0),
        ("text", 0),
        ("extra", 0),
    ];
    let split = [
        ("photo", 0),
        ("name", 1),
        ("title", 1),
        ("company", 1),
        ("phones", 1),
        ("email", 1),
        ("website", 1),
        ("address", 0),
        ("text", 0),
        ("extra", 0),
    ];
    let bold = [
        ("company", 0),
        ("name", 0),
        ("title", 0),
        ("phones", 0),
        ("text", 0),
        ("email", 0),
        ("website", 0),
        ("address", 0),
        ("extra", 0),
    ];
    let portrait = [
        ("photo", 0),
        ("name", 0),
        ("title", 0),
        ("phones", 0),
        ("company", 0),
        ("address", 0),
        ("email", 0),
        ("website", 0),
        ("text", 0),
        ("extra", 0),
    ];
    vec![
        d(
            "classic", "#ffffff", "#1f2933", "#0b6e4f", "Georgia", 16, &classic,
        ),
        d(
            "split",
            "#f5f7fa",
            "#102a43",
            "#2f80ed",
            "system-ui",
            16,
            &split,
        ),
        d(
            "bold", "#111827", "#f9fafb", "#f59e0b", "Verdana", 18, &bold,
        ),
        d(
            "portrait",
            "#fff7ed",
            "#431407",
            "#c2410c",
            "Trebuchet MS",
            17,
            &portrait,
        ),
    ]
}

/// The sample called `name`.
pub fn sample(name: &str) -> Option<CardDesign> {
    samples().into_iter().find(|s| s.sample == name)
}

fn colour(field: &str, v: &str) -> Result<(), CardError> {
    let ok = v.len() == 7 && v.starts_with('#') && v[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(bad(field, "a colour like #1a2b3c"))
    }
}

fn text(field: &str, v: &str, max: usize) -> Result<(), CardError> {
    if v.chars().count() > max {
        return Err(bad(field, format!("at most {max} characters")));
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(bad(field, "no control characters"));
    }
    Ok(())
}

fn url(field: &str, v: &str) -> Result<(), CardError> {
    if v.is_empty() {
        return Ok(());
    }
    text(field, v, 300)?;
    if !(v.starts_with("https://") || v.starts_with("http://")) || v.contains(char::is_whitespace) {
        return Err(bad(field, "an http(s) address"));
    }
    Ok(())
}

/// Check what a member typed and designed; phone numbers must be numbers
/// (`+` and digits, with spaces, dots or dashes that are dropped).
pub fn validate(info: &mut CardInfo, design: &CardDesign) -> Result<(), CardError> {
    text("name", &info.name, 100)?;
    if info.name.trim().is_empty() {
        return Err(bad("name", "required"));
    }
    for (f, v, max) in [
        ("title", &info.title, 100),
        ("company", &info.company, 100),
        ("address", &info.address, 300),
        ("text", &info.text, 1000),
    ] {
        text(f, v, max)?;
    }
    if !info.email.is_empty() {
        text("email", &info.email, 200)?;
        let (user, host) = info.email.split_once('@').unwrap_or(("", ""));
        if user.is_empty() || !host.contains('.') || info.email.contains(char::is_whitespace) {
            return Err(bad("email", "an e-mail address"));
        }
    }
    url("website", &info.website)?;
    url("photo_url", &info.photo_url)?;
    if info.phones.len() > 6 {
        return Err(bad("phones", "at most 6"));
    }
    for (i, p) in info.phones.iter_mut().enumerate() {
        let field = format!("phones[{i}]");
        text(&field, &p.label, 40)?;
        let n: String = p
            .number
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = n.strip_prefix('+').unwrap_or(&n);
        if digits.len() < 3 || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(field, "a phone number: + and 3 to 15 digits"));
        }
        p.number = n;
    }
    colour("background", &design.background)?;
    colour("color", &design.color)?;
    colour("accent", &design.accent)?;
    if !FONTS.contains(&design.font_family.as_str()) {
        return Err(bad("font_family", format!("one of {}", FONTS.join(", "))));
    }
    if !(10..=32).contains(&design.font_size) {
        return Err(bad("font_size", "10 to 32 px"));
    }
    text("extra_text", &design.extra_text, 500)?;
    if design.layout.len() > BLOCKS.len()
        || design
            .layout
            .iter()
            .any(|b| !BLOCKS.contains(&b.kind.as_str()) || b.column > 1)
    {
        return Err(bad(
            "layout",
            format!("blocks among {} in column 0 or 1", BLOCKS.join(", ")),
        ));
    }
    Ok(())
}

/// Give every phone a button ID: the one it had in `previous` when that
/// version had the same number, else a new one (claim 25).
pub fn assign_buttons(info: &mut CardInfo, previous: Option<&CardInfo>, rng: &mut impl Rng) {
    let mut used: Vec<String> = Vec::new();
    for p in &mut info.phones {
        let kept = previous.and_then(|prev| {
            prev.phones
                .iter()
                .find(|q| q.number == p.number && !used.contains(&q.button_id))
                .map(|q| q.button_id.clone())
        });
        p.button_id = kept.unwrap_or_else(|| token(rng, 8));
        used.push(p.button_id.clone());
    }
}

/// A URL-safe random token of `bytes` random bytes (hex).
pub fn token(rng: &mut impl Rng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.r#gen::<u8>()))
        .collect()
}

fn vcard_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(';', "\\;")
        .replace('\n', "\\n")
}

/// The card as a vCard 4.0 (RFC 6350), CRLF lines.
pub fn vcard(c: &CardInfo, link: &str) -> String {
    let mut v = vec![
        "BEGIN:VCARD".to_owned(),
        "VERSION:4.0".to_owned(),
        format!("FN:{}", vcard_escape(&c.name)),
    ];
    if !c.company.is_empty() {
        v.push(format!("ORG:{}", vcard_escape(&c.company)));
    }
    if !c.title.is_empty() {
        v.push(format!("TITLE:{}", vcard_escape(&c.title)));
    }
    for p in &c.phones {
        v.push(format!(
            "TEL;VALUE=uri;TYPE=\"voice\";LABEL=\"{}\":tel:{}",
            p.label.replace('"', "'"),
            p.number
        ));
    }
    if !c.email.is_empty() {
        v.push(format!("EMAIL:{}", vcard_escape(&c.email)));
    }
    if !c.website.is_empty() {
        v.push(format!("URL:{}", c.website));
    }
    if !c.address.is_empty() {
        v.push(format!("ADR:;;{};;;;", vcard_escape(&c.address)));
    }
    if !c.text.is_empty() {
        v.push(format!("NOTE:{}", vcard_escape(&c.text)));
    }
    v.push(format!("SOURCE:{link}"));
    v.push("END:VCARD".to_owned());
    let mut out = v.join("\r\n");
    out.push_str("\r\n");
    out
}

/// The live card page.
#[derive(Template)]
#[template(path = "card.html")]
pub struct CardPage<'a> {
    /// The card.
    pub card: &'a Card,
    /// Its public link.
    pub link: &'a str,
    /// The click form's token.
    pub form_token: String,
    /// Countries a visitor may be called back in.
    pub countries: Vec<Country>,
    /// The region preselected (the card's own).
    pub preselect: String,
}

/// A country a visitor may choose for its callback number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Country {
    /// ISO 3166 region (`KR`).
    pub region: String,
    /// Country calling code (`82`).
    pub cc: String,
}

/// The countries of the ISO regions `regions` (those with a calling code), and
/// the one to preselect: the country of the card's first number when it is
/// among them, else the first.
pub fn countries(regions: &[String], card: &CardInfo) -> (Vec<Country>, String) {
    let list: Vec<Country> = regions
        .iter()
        .filter_map(|r| {
            let cc = engine::numbering::cc_of_region(engine::numbering::region(r)?)?;
            Some(Country {
                region: r.to_ascii_uppercase(),
                cc: cc.to_string(),
            })
        })
        .collect();
    let own = card.phones.iter().find_map(|p| {
        let digits = p.number.strip_prefix('+')?;
        list.iter()
            .filter(|c| digits.starts_with(&c.cc))
            .max_by_key(|c| c.cc.len())
    });
    let preselect = own
        .or(list.first())
        .map(|c| c.region.clone())
        .unwrap_or_default();
    (list, preselect)
}

impl<'a> CardPage<'a> {
    /// The page of `card` at `link`, its forms signed with `form_token`,
    /// offering callbacks in `countries` (see [`countries`]).
    pub fn new(
        card: &'a Card,
        link: &'a str,
        form_token: String,
        (countries, preselect): (Vec<Country>, String),
    ) -> Self {
        CardPage {
            card,
            link,
            form_token,
            countries,
            preselect,
        }
    }

    /// Whether the layout uses the second column.
    pub fn two_columns(&self) -> bool {
        self.card.design.layout.iter().any(|b| b.column == 1)
    }

    /// Phones of the card.
    pub fn phones(&self) -> &[CardPhone] {
        &self.card.info.phones
    }
}

/// A card as an e-mail's HTML part (inline styles: mail readers drop
/// style sheets); its buttons and "View card" open the live card.
#[derive(Template)]
#[template(path = "card_email.html")]
pub struct CardEmail<'a> {
    /// The card.
    pub card: &'a Card,
    /// Its public link.
    pub link: &'a str,
}

/// The same card as the e-mail's plain-text part.
pub fn card_text(card: &Card, link: &str) -> String {
    let i = &card.info;
    let mut out = vec![i.name.clone()];
    for v in [&i.title, &i.company] {
        if !v.is_empty() {
            out.push(v.clone());
        }
    }
    out.push(String::new());
    for p in &i.phones {
        out.push(format!(
            "{}: {} (call from the card: {link}#call-{})",
            p.label, p.number, p.button_id
        ));
    }
    for v in [
        &i.email,
        &i.website,
        &i.address,
        &i.text,
        &card.design.extra_text,
    ] {
        if !v.is_empty() {
            out.push(v.clone());
        }
    }
    out.push(String::new());
    out.push(format!("View card: {link}"));
    out.join("\n")
}

/// The page for a link that leads nowhere.
#[derive(Template)]
#[template(path = "card_missing.html")]
pub struct MissingPage;

/// The QR code (SVG) of `link`.
pub fn qr_svg(link: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(link.as_bytes()).map_err(|e| e.to_string())?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn info() -> CardInfo {
        CardInfo {
            name: "Kim Min-jun".into(),
            title: "CEO".into(),
            company: "Hanbit; Co, Ltd".into(),
            phones: vec![
                CardPhone {
                    label: "Mobile".into(),
                    number: "+82 10-1234-5678".into(),
                    button_id: String::new(),
                },
                CardPhone {
                    label: "Office".into(),
                    number: "+8225550100".into(),
                    button_id: String::new(),
                },
            ],
            email: "minjun@example.com".into(),
            website: "https://example.com".into(),
            address: "1 Sejong-daero, Seoul".into(),
            photo_url: String::new(),
            text: "Calls welcome".into(),
        }
    }

    #[test]
    fn four_samples_that_validate() {
        let s = samples();
        assert!(s.len() >= 4);
        for d in &s {
            validate(&mut info(), d).unwrap();
        }
        assert!(sample("bold").is_some() && sample("nope").is_none());
    }

    #[test]
    fn bad_fields_are_named() {
        let d = sample("classic").unwrap();
        let mut i = info();
        i.phones[1].number = "call me".into();
        assert_eq!(validate(&mut i, &d).unwrap_err().field, "phones[1]");
        let mut i = info();
        i.website = "javascript:alert(1)".into();
        assert_eq!(validate(&mut i, &d).unwrap_err().field, "website");
        let mut i = info();
        i.name = " ".into();
        assert_eq!(validate(&mut i, &d).unwrap_err().field, "name");
        let mut bad_design = d.clone();
        bad_design.background = "red;}body{x".into();
        assert_eq!(
            validate(&mut info(), &bad_design).unwrap_err().field,
            "background"
        );
        let mut i = info();
        validate(&mut i, &d).unwrap();
        assert_eq!(i.phones[0].number, "+821012345678", "separators dropped");
    }

    #[test]
    fn buttons_keep_their_ids_while_their_numbers_stay() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut v1 = info();
        validate(&mut v1, &sample("classic").unwrap()).unwrap();
        assign_buttons(&mut v1, None, &mut rng);
        let (a, b) = (
            v1.phones[0].button_id.clone(),
            v1.phones[1].button_id.clone(),
        );
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        let mut v2 = v1.clone();
        v2.phones.swap(0, 1);
        v2.phones.push(CardPhone {
            label: "Home".into(),
            number: "+8231000000".into(),
            button_id: String::new(),
        });
        assign_buttons(&mut v2, Some(&v1), &mut rng);
        assert_eq!(
            (
                v2.phones[0].button_id.as_str(),
                v2.phones[1].button_id.as_str()
            ),
            (b.as_str(), a.as_str())
        );
        assert!(![&a, &b].contains(&&v2.phones[2].button_id));
    }

    #[test]
    fn the_vcard_is_version_4_with_escaped_text() {
        let v = vcard(&info(), "https://sb.example/c/tok");
        assert!(
            v.starts_with("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Kim Min-jun\r\n"),
            "{v}"
        );
        assert!(v.contains("ORG:Hanbit\\; Co\\, Ltd\r\n"), "{v}");
        assert!(
            v.contains("TEL;VALUE=uri;TYPE=\"voice\";LABEL=\"Mobile\":tel:+82 10-1234-5678\r\n")
        );
        assert!(v.ends_with("SOURCE:https://sb.example/c/tok\r\nEND:VCARD\r\n"));
    }

    #[test]
    fn the_page_escapes_what_the_member_typed() {
        let mut i = info();
        i.name = "<script>alert(1)</script>".into();
        i.text = "\"><img src=x onerror=alert(2)>".into();
        let card = Card {
            id: "c".into(),
            owner: "100".into(),
            token: "tok".into(),
            version: 3,
            info: i,
            design: sample("classic").unwrap(),
            created_at: 0,
            updated_at: 0,
        };
        let offer = countries(&["US".into(), "KR".into(), "ZZ".into()], &card.info);
        let html = CardPage::new(&card, "https://sb.example/c/tok", "1.ab".into(), offer)
            .render()
            .unwrap();
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(
            html.contains("&lt;script&gt;") || html.contains("&#60;script&#62;"),
            "{html}"
        );
        assert!(!html.contains("<img src=x"), "{html}");
        assert_eq!(
            html.matches("data-button=\"").count(),
            2,
            "a button per phone"
        );
        assert!(html.contains("#0b6e4f"), "the design's accent colour");
        // The card's numbers are Korean: Korea is preselected in each form;
        // a code that is no region is not offered.
        assert_eq!(
            html.matches("<option value=\"KR\" selected>").count(),
            2,
            "{html}"
        );
        assert_eq!(html.matches("<option value=\"US\">").count(), 2, "{html}");
        assert_eq!(html.matches("<option").count(), 4, "{html}");
        let qr = qr_svg("https://sb.example/c/tok").unwrap();
        assert!(qr.starts_with("<?xml") && qr.contains("<svg"));
    }
}
