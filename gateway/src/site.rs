//! The member site under `/app` (seed 000, claims 8–12, 17–18, 25): sign-up
//! and sign-in with a cookie session, the list of a member's cards, the card
//! maker (information form, sample designs, layout, colours, fonts, extra
//! text, a live draft rendered by the server) and sending a card by e-mail.
//!
//! Pages are askama templates (escaped); every form carries a CSRF token
//! bound to a random `sb_csrf` cookie (signed double submit), and the
//! session cookie is `HttpOnly`, `SameSite=Lax` and `Secure` when the public
//! URL is https. The site calls the same functions as the REST API, so a card
//! saved here and one saved through `/api/v1` obey the same rules.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use bytes::Bytes;
use schema::model::{Account, AccountKind, Card, CardBlock, CardDesign, CardInfo, CardPhone};
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use crate::api::{Api, CardInput, CardSend, SignIn, SignUp};
use crate::auth;
use crate::cards::{BLOCKS, FONTS};
use crate::error::ApiError;

const SESSION: &str = "sb_session";
const CSRF: &str = "sb_csrf";
/// Phone rows the maker offers (a card holds at most six numbers).
const PHONE_ROWS: usize = 6;

/// One request for a page under `/app`.
pub struct PageRequest {
    /// Method.
    pub method: Method,
    /// Path after `/app/`.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// The `Cookie` header.
    pub cookie: Option<String>,
    /// Peer address.
    pub remote: Option<SocketAddr>,
    /// Body (an url-encoded form on POST).
    pub body: Bytes,
}

/// The member site.
pub struct Site {
    api: Arc<Api>,
}

/// A response under construction: the page or redirect and its cookies.
struct Page {
    status: StatusCode,
    body: String,
    content_type: &'static str,
    location: Option<String>,
    cookies: Vec<String>,
}

impl Page {
    fn html(status: StatusCode, body: String) -> Page {
        Page {
            status,
            body,
            content_type: "text/html; charset=utf-8",
            location: None,
            cookies: Vec::new(),
        }
    }

    fn redirect(to: impl Into<String>) -> Page {
        Page {
            status: StatusCode::SEE_OTHER,
            body: String::new(),
            content_type: "text/plain; charset=utf-8",
            location: Some(to.into()),
            cookies: Vec::new(),
        }
    }

    fn text(status: StatusCode, body: String) -> Page {
        Page {
            content_type: "text/plain; charset=utf-8",
            ..Page::html(status, body)
        }
    }

    fn into_response(self) -> Response {
        let mut r = Response::new(self.body.into());
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        security_headers(h);
        if let Some(to) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LOCATION, to);
        }
        for c in self.cookies {
            if let Ok(v) = HeaderValue::from_str(&c) {
                h.append(header::SET_COOKIE, v);
            }
        }
        r
    }
}

/// What every page needs: the member (if signed in) and the CSRF token of
/// its forms.
struct Visit {
    member: Option<Account>,
    session: Option<String>,
    csrf: String,
    new_seed: Option<String>,
}

/// The headers every page of ours carries, the member site's and the
/// public card page alike: a content security policy (our own scripts and
/// forms only, images from anywhere), never framed (clickjacking of a call
/// button), no type sniffing, and no referrer beyond our origin.
pub fn security_headers(h: &mut warp::http::HeaderMap) {
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' https: http: data:; style-src 'self' 'unsafe-inline'; \
             script-src 'self' 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
}

fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name && !v.is_empty()).then_some(v)
    })
}

type Form = Vec<(String, String)>;

fn form(body: &[u8]) -> Form {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(f: &'a Form, name: &str) -> &'a str {
    f.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// A card's information and design as the maker's form sends them.
fn card_form(f: &Form) -> (CardInfo, CardDesign) {
    let s = |n: &str| field(f, n).trim().to_owned();
    let phones = (0..PHONE_ROWS)
        .filter_map(|i| {
            let number = s(&format!("phone_number_{i}"));
            (!number.is_empty()).then(|| CardPhone {
                label: match s(&format!("phone_label_{i}")) {
                    l if l.is_empty() => "Phone".to_owned(),
                    l => l,
                },
                number,
                button_id: String::new(),
            })
        })
        .collect();
    let info = CardInfo {
        name: s("name"),
        title: s("title"),
        company: s("company"),
        phones,
        email: s("email"),
        website: s("website"),
        address: field(f, "address").trim().replace("\r\n", "\n"),
        photo_url: s("photo_url"),
        text: field(f, "text").trim().replace("\r\n", "\n"),
    };
    let layout = field(f, "layout")
        .split(',')
        .filter_map(|b| {
            let (kind, column) = b.split_once(':').unwrap_or((b, "0"));
            let kind = kind.trim();
            (!kind.is_empty()).then(|| CardBlock {
                kind: kind.to_owned(),
                column: column.trim().parse().unwrap_or(u8::MAX),
            })
        })
        .collect();
    let design = CardDesign {
        sample: s("sample"),
        layout,
        background: s("background"),
        color: s("color"),
        accent: s("accent"),
        font_family: s("font_family"),
        font_size: s("font_size").parse().unwrap_or(0),
        extra_text: field(f, "extra_text").trim().replace("\r\n", "\n"),
    };
    (info, design)
}

/// The card page's main element alone: the maker's live draft and the
/// samples' previews.
#[derive(Template)]
#[template(path = "card_preview.html")]
pub struct CardPreview<'a> {
    /// The card.
    pub card: &'a Card,
    /// No click form is signed in a preview.
    pub form_token: String,
    /// No countries either.
    pub countries: Vec<crate::cards::Country>,
    /// Nor a preselected one.
    pub preselect: String,
}

impl CardPreview<'_> {
    /// Whether the layout uses the second column.
    pub fn two_columns(&self) -> bool {
        self.card.design.layout.iter().any(|b| b.column == 1)
    }

    /// Phones of the card.
    pub fn phones(&self) -> &[CardPhone] {
        &self.card.info.phones
    }
}

fn preview(card: &Card) -> String {
    CardPreview {
        card,
        form_token: String::new(),
        countries: Vec::new(),
        preselect: String::new(),
    }
    .render()
    .unwrap_or_default()
}

/// A draft card (not stored) for previews.
fn draft(info: CardInfo, design: CardDesign) -> Card {
    Card {
        id: "draft".into(),
        owner: String::new(),
        token: String::new(),
        version: 0,
        info,
        design,
        created_at: 0,
        updated_at: 0,
    }
}

#[derive(Template)]
#[template(path = "site_sign.html")]
struct SignPage<'a> {
    csrf: &'a str,
    signed_in: bool,
    signup: bool,
    error: Option<String>,
    login: &'a str,
    name: &'a str,
}

struct CardRow {
    id: String,
    name: String,
    version: u64,
    phones: usize,
    link: String,
}

struct SampleRow {
    name: String,
    preview: String,
}

#[derive(Template)]
#[template(path = "site_cards.html")]
struct CardsPage<'a> {
    csrf: &'a str,
    signed_in: bool,
    member: &'a str,
    notice: Option<&'static str>,
    cards: Vec<CardRow>,
    samples: Vec<SampleRow>,
}

struct PhoneRow {
    i: usize,
    label: String,
    number: String,
    hidden: bool,
}

struct BlockRow {
    kind: &'static str,
    on: bool,
    column: u8,
}

#[derive(Template)]
#[template(path = "site_editor.html")]
struct EditorPage<'a> {
    csrf: &'a str,
    signed_in: bool,
    /// `None` while the card is new.
    card_id: Option<String>,
    version: u64,
    link: Option<String>,
    notice: Option<&'static str>,
    error: Option<String>,
    info: &'a CardInfo,
    design: &'a CardDesign,
    phones: Vec<PhoneRow>,
    blocks: Vec<BlockRow>,
    fonts: &'static [&'static str],
    preview: String,
}

#[derive(Template)]
#[template(path = "site_send.html")]
struct SendPage<'a> {
    csrf: &'a str,
    signed_in: bool,
    card: &'a Card,
    link: String,
    to: &'a str,
    error: Option<String>,
    sent: Option<String>,
    preview: String,
}

fn notice(query: &str) -> Option<&'static str> {
    let q: Form = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    Some(match field(&q, "done") {
        "saved" => "Saved. The live card shows this version now.",
        "created" => "Card created. Its live link is ready to send.",
        "deleted" => "Card deleted; its link now leads nowhere.",
        "duplicated" => "This is a copy; edit it and save.",
        "signed_up" => "Welcome! Start a card from one of the samples below.",
        _ => return None,
    })
}

fn editor_rows(info: &CardInfo, design: &CardDesign) -> (Vec<PhoneRow>, Vec<BlockRow>) {
    let shown = (info.phones.len() + 1).clamp(2, PHONE_ROWS);
    let phones = (0..PHONE_ROWS)
        .map(|i| {
            let p = info.phones.get(i);
            PhoneRow {
                i,
                label: p.map(|p| p.label.clone()).unwrap_or_default(),
                number: p.map(|p| p.number.clone()).unwrap_or_default(),
                hidden: i >= shown,
            }
        })
        .collect();
    // The layout's blocks in their order, then the ones it leaves out.
    let mut blocks: Vec<BlockRow> = design
        .layout
        .iter()
        .filter_map(|b| {
            BLOCKS.iter().find(|k| **k == b.kind).map(|k| BlockRow {
                kind: k,
                on: true,
                column: b.column.min(1),
            })
        })
        .collect();
    for k in BLOCKS {
        if !blocks.iter().any(|b| b.kind == k) {
            blocks.push(BlockRow {
                kind: k,
                on: false,
                column: 0,
            });
        }
    }
    (phones, blocks)
}

/// Sample information shown in the samples' previews.
fn sample_info() -> CardInfo {
    CardInfo {
        name: "Your Name".into(),
        title: "Your title".into(),
        company: "Your company".into(),
        phones: vec![CardPhone {
            label: "Mobile".into(),
            number: "+1 212 555 0100".into(),
            button_id: "sample".into(),
        }],
        email: "you@example.com".into(),
        ..CardInfo::default()
    }
}

impl Site {
    /// The site over the API's state.
    pub fn new(api: Arc<Api>) -> Site {
        Site { api }
    }

    /// How long a form may take to arrive (the API's setting).
    pub fn body_timeout(&self) -> std::time::Duration {
        self.api.config().body_timeout
    }

    fn secure(&self) -> bool {
        self.api.config().public_url.starts_with("https://")
    }

    fn csrf_of(&self, seed: &str) -> String {
        let mac = crate::webhooks::sign(&self.api.config().form_secret, 0, &format!("csrf|{seed}"));
        mac[7..39].to_owned()
    }

    fn cookie_line(&self, name: &str, value: &str, max_age: u64, same_site: &str) -> String {
        format!(
            "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={same_site}{}",
            if self.secure() { "; Secure" } else { "" }
        )
    }

    async fn visit(&self, req: &PageRequest) -> Result<Visit, ApiError> {
        let header = req.cookie.as_deref();
        let (seed, new_seed) = match cookie(header, CSRF) {
            Some(s) if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (s.to_owned(), None)
            }
            _ => {
                let s = crate::cards::token(&mut rand::thread_rng(), 16);
                (s.clone(), Some(s))
            }
        };
        let mut member = None;
        let session = cookie(header, SESSION).map(str::to_owned);
        if let Some(token) = &session {
            let store = self.api.store();
            if let Some(s) = store
                .session(&auth::token_hash(token), self.api.now())
                .await?
            {
                member = store.account(&s.account).await?;
            }
        }
        Ok(Visit {
            member,
            session,
            csrf: self.csrf_of(&seed),
            new_seed,
        })
    }

    /// Answer one request under `/app`.
    pub async fn handle(&self, req: PageRequest) -> Response {
        let visit = match self.visit(&req).await {
            Ok(v) => v,
            Err(e) => return self.failure(&e).into_response(),
        };
        let mut page = if req.method == Method::POST
            && (visit.new_seed.is_some()
                || !auth::same_secret(field(&form(&req.body), "csrf"), &visit.csrf))
        {
            // A form from another site, or one older than its cookie.
            Page::html(
                StatusCode::FORBIDDEN,
                self.message_page("This form has expired", "Reload the page and try again."),
            )
        } else {
            match self.route(&req, &visit).await {
                Ok(p) => p,
                Err(e) => self.failure(&e),
            }
        };
        if let Some(seed) = &visit.new_seed {
            page.cookies
                .push(self.cookie_line(CSRF, seed, 365 * 24 * 3600, "Strict"));
        }
        page.into_response()
    }

    fn failure(&self, e: &ApiError) -> Page {
        Page::html(
            e.status,
            format!(
                "<!doctype html><meta charset=utf-8><title>Error</title><p>{}</p><p><a href=\"/app/cards\">Back to your cards</a></p>",
                crate::billing::escape(&e.message)
            ),
        )
    }

    fn message_page(&self, title: &str, text: &str) -> String {
        let esc = crate::billing::escape;
        format!(
            "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\"><title>{t}</title><h1>{t}</h1><p>{}</p><p><a href=\"/app/cards\">Your cards</a></p>",
            esc(text),
            t = esc(title)
        )
    }

    async fn route(&self, req: &PageRequest, v: &Visit) -> Result<Page, ApiError> {
        let segs: Vec<&str> = req
            .path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let post = req.method == Method::POST;
        let f = if post { form(&req.body) } else { Vec::new() };
        // Pages for everyone.
        match (post, segs.as_slice()) {
            (false, [] | ["signin"] | ["signup"]) if v.member.is_some() => {
                return Ok(Page::redirect("/app/cards"));
            }
            (false, [] | ["signin"]) => return self.sign_page(v, false, None, "", ""),
            (false, ["signup"]) => return self.sign_page(v, true, None, "", ""),
            (true, ["signin"]) => return self.sign_in(req, v, &f).await,
            (true, ["signup"]) => return self.sign_up(req, v, &f).await,
            (true, ["signout"]) => {
                if let Some(t) = &v.session {
                    self.api
                        .store()
                        .delete_session(&auth::token_hash(t))
                        .await?;
                }
                let mut p = Page::redirect("/app/signin");
                p.cookies.push(self.cookie_line(SESSION, "", 0, "Lax"));
                return Ok(p);
            }
            _ => {}
        }
        let Some(me) = &v.member else {
            return Ok(Page::redirect("/app/signin"));
        };
        match (post, segs.as_slice()) {
            (false, ["cards"]) => self.cards(v, me, notice(&req.query)).await,
            (false, ["cards", "new"]) => {
                let q: Form = form_urlencoded::parse(req.query.as_bytes())
                    .into_owned()
                    .collect();
                let name = match field(&q, "sample") {
                    "" => "classic",
                    s => s,
                };
                let design = crate::cards::sample(name)
                    .ok_or_else(|| ApiError::not_found(format!("no sample {name}")))?;
                let info = CardInfo {
                    name: me.name.clone(),
                    email: me.login.clone(),
                    ..CardInfo::default()
                };
                self.editor(v, None, 0, &info, &design, None, None)
            }
            (true, ["cards", "new"]) => {
                let (info, design) = card_form(&f);
                let input = CardInput {
                    sample: Some(design.sample.clone()),
                    version: None,
                    info: info.clone(),
                    design: Some(design.clone()),
                };
                match self.api.card_create(me, input).await {
                    Ok(c) => Ok(Page::redirect(format!(
                        "/app/cards/{}?done=created",
                        c.card.id
                    ))),
                    Err(e) if e.status.is_client_error() => {
                        self.editor(v, None, 0, &info, &design, None, Some(e.message))
                    }
                    Err(e) => Err(e),
                }
            }
            (true, ["draft"]) => {
                let (mut info, design) = card_form(&f);
                Ok(match crate::cards::validate(&mut info, &design) {
                    Ok(()) => {
                        let html = preview(&draft(info, design));
                        Page::html(StatusCode::OK, html)
                    }
                    Err(e) => Page::text(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
                })
            }
            (false, ["cards", id]) => {
                let c = self.api.owned_card(me, id).await?;
                self.editor(
                    v,
                    Some(&c),
                    c.version,
                    &c.info,
                    &c.design,
                    notice(&req.query),
                    None,
                )
            }
            (true, ["cards", id]) => {
                let c = self.api.owned_card(me, id).await?;
                let (info, design) = card_form(&f);
                let version = field(&f, "version").parse().unwrap_or(0);
                let input = CardInput {
                    sample: None,
                    version: Some(version),
                    info: info.clone(),
                    design: Some(design.clone()),
                };
                match self.api.card_save(c.clone(), input).await {
                    Ok(_) => Ok(Page::redirect(format!("/app/cards/{id}?done=saved"))),
                    Err(e) if e.status.is_client_error() => {
                        let mut p = self.editor(
                            v,
                            Some(&c),
                            version,
                            &info,
                            &design,
                            None,
                            Some(e.message),
                        )?;
                        p.status = e.status;
                        Ok(p)
                    }
                    Err(e) => Err(e),
                }
            }
            (true, ["cards", id, "delete"]) => {
                let c = self.api.owned_card(me, id).await?;
                self.api.store().delete_card(&c.id).await?;
                Ok(Page::redirect("/app/cards?done=deleted"))
            }
            (true, ["cards", id, "duplicate"]) => {
                let c = self.api.owned_card(me, id).await?;
                let copy = CardInput {
                    sample: None,
                    version: None,
                    info: c.info.clone(),
                    design: Some(c.design.clone()),
                };
                let new = self.api.card_create(me, copy).await?;
                Ok(Page::redirect(format!(
                    "/app/cards/{}?done=duplicated",
                    new.card.id
                )))
            }
            (false, ["cards", id, "send"]) => {
                let c = self.api.owned_card(me, id).await?;
                self.send_page(v, &c, "", None, None)
            }
            (true, ["cards", id, "send"]) => {
                let c = self.api.owned_card(me, id).await?;
                let raw = field(&f, "to");
                let to: Vec<String> = raw
                    .split(|ch: char| ch == ',' || ch == ';' || ch.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                match self.api.card_send(me, &c, CardSend { to }).await {
                    Ok(s) => {
                        let said = format!(
                            "Sent to {} address{}. {} more sends today.",
                            s.sent,
                            if s.sent == 1 { "" } else { "es" },
                            s.remaining_today
                        );
                        self.send_page(v, &c, "", None, Some(said))
                    }
                    Err(e) if e.status.is_client_error() || e.status == StatusCode::BAD_GATEWAY => {
                        let mut p = self.send_page(v, &c, raw, Some(e.message), None)?;
                        p.status = e.status;
                        Ok(p)
                    }
                    Err(e) => Err(e),
                }
            }
            _ => Err(ApiError::not_found("no such page")),
        }
    }

    fn sign_page(
        &self,
        v: &Visit,
        signup: bool,
        error: Option<String>,
        login: &str,
        name: &str,
    ) -> Result<Page, ApiError> {
        let status = page_status(&error);
        render(
            status,
            &SignPage {
                csrf: &v.csrf,
                signed_in: v.member.is_some(),
                signup,
                error,
                login,
                name,
            },
        )
    }

    fn signed_in(&self, token: &str, to: &str) -> Page {
        let mut p = Page::redirect(to);
        p.cookies
            .push(self.cookie_line(SESSION, token, self.api.config().session_secs, "Lax"));
        p
    }

    async fn sign_in(&self, req: &PageRequest, v: &Visit, f: &Form) -> Result<Page, ApiError> {
        let b = SignIn {
            login: field(f, "login").to_owned(),
            password: field(f, "password").to_owned(),
        };
        match crate::api::sign_in(&self.api, b, req.remote.map(|a| a.ip())).await {
            Ok(s) => Ok(self.signed_in(&s.token, "/app/cards")),
            Err(e) if e.status.is_client_error() => {
                let mut p = self.sign_page(v, false, Some(e.message), field(f, "login"), "")?;
                p.status = e.status;
                Ok(p)
            }
            Err(e) => Err(e),
        }
    }

    async fn sign_up(&self, req: &PageRequest, v: &Visit, f: &Form) -> Result<Page, ApiError> {
        let (login, name) = (field(f, "login"), field(f, "name"));
        if !self
            .api
            .sign_in_limiter()
            .allow_addr(req.remote.map(|a| a.ip()))
        {
            return self.sign_page(
                v,
                true,
                Some("Too many sign-ups from this address; wait a minute.".into()),
                login,
                name,
            );
        }
        let kind = if field(f, "kind") == "company" {
            AccountKind::Company
        } else {
            AccountKind::Individual
        };
        let b = SignUp {
            login: login.to_owned(),
            password: field(f, "password").to_owned(),
            kind,
            name: name.to_owned(),
            language: None,
            contact_pstn: None,
        };
        match crate::api::sign_up(&self.api, b).await {
            Ok(s) => Ok(self.signed_in(&s.token, "/app/cards?done=signed_up")),
            Err(e) if e.status.is_client_error() => {
                let mut p = self.sign_page(v, true, Some(e.message), login, name)?;
                p.status = e.status;
                Ok(p)
            }
            Err(e) => Err(e),
        }
    }

    async fn cards(
        &self,
        v: &Visit,
        me: &Account,
        notice: Option<&'static str>,
    ) -> Result<Page, ApiError> {
        let mut cards = self.api.store().cards_of(&me.id).await?;
        cards.sort_by_key(|c| std::cmp::Reverse(c.updated_at));
        let cards = cards
            .into_iter()
            .map(|c| CardRow {
                link: self.api.card_link(&c.token),
                id: c.id,
                name: c.info.name,
                version: c.version,
                phones: c.info.phones.len(),
            })
            .collect();
        let samples = crate::cards::samples()
            .into_iter()
            .map(|d| SampleRow {
                name: d.sample.clone(),
                preview: preview(&draft(sample_info(), d)),
            })
            .collect();
        render(
            StatusCode::OK,
            &CardsPage {
                csrf: &v.csrf,
                signed_in: true,
                member: &me.name,
                notice,
                cards,
                samples,
            },
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn editor(
        &self,
        v: &Visit,
        card: Option<&Card>,
        version: u64,
        info: &CardInfo,
        design: &CardDesign,
        notice: Option<&'static str>,
        error: Option<String>,
    ) -> Result<Page, ApiError> {
        let (phones, blocks) = editor_rows(info, design);
        let status = page_status(&error);
        // The draft shows what was typed; button IDs come with the saved card.
        let mut shown = info.clone();
        if let Some(c) = card {
            crate::cards::assign_buttons(&mut shown, Some(&c.info), &mut rand::thread_rng());
        }
        render(
            status,
            &EditorPage {
                csrf: &v.csrf,
                signed_in: true,
                card_id: card.map(|c| c.id.clone()),
                version,
                link: card.map(|c| self.api.card_link(&c.token)),
                notice,
                error,
                info,
                design,
                phones,
                blocks,
                fonts: &FONTS,
                preview: preview(&draft(shown, design.clone())),
            },
        )
    }

    fn send_page(
        &self,
        v: &Visit,
        card: &Card,
        to: &str,
        error: Option<String>,
        sent: Option<String>,
    ) -> Result<Page, ApiError> {
        let status = page_status(&error);
        render(
            status,
            &SendPage {
                csrf: &v.csrf,
                signed_in: true,
                card,
                link: self.api.card_link(&card.token),
                to,
                error,
                sent,
                preview: preview(card),
            },
        )
    }
}

/// 422 for a page that shows an error, else 200.
fn page_status(error: &Option<String>) -> StatusCode {
    if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    }
}

fn render(status: StatusCode, t: &impl Template) -> Result<Page, ApiError> {
    let body = t
        .render()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "template", e.to_string()))?;
    Ok(Page::html(status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name() {
        let h = Some("a=1; sb_csrf=abc; sb_session=tok");
        assert_eq!(cookie(h, "sb_csrf"), Some("abc"));
        assert_eq!(cookie(h, "sb_session"), Some("tok"));
        assert_eq!(cookie(h, "sb"), None);
        assert_eq!(cookie(Some("sb_session="), "sb_session"), None);
        assert_eq!(cookie(None, "a"), None);
    }

    #[test]
    fn the_maker_form_becomes_a_card() {
        let f = form(
            b"name=Ada&phone_label_0=Desk&phone_number_0=%2B1+212+555+0100&phone_number_1=&phone_label_2=&phone_number_2=300\
              &layout=photo%3A0%2Cname%3A1%2Cphones%3A1&background=%23000000&color=%23ffffff&accent=%23ff0000\
              &font_family=Georgia&font_size=18&sample=split&extra_text=Hi%0D%0Athere",
        );
        let (info, design) = card_form(&f);
        assert_eq!(info.name, "Ada");
        let numbers: Vec<_> = info
            .phones
            .iter()
            .map(|p| (p.label.as_str(), p.number.as_str()))
            .collect();
        assert_eq!(numbers, [("Desk", "+1 212 555 0100"), ("Phone", "300")]);
        let layout: Vec<_> = design
            .layout
            .iter()
            .map(|b| (b.kind.as_str(), b.column))
            .collect();
        assert_eq!(layout, [("photo", 0), ("name", 1), ("phones", 1)]);
        assert_eq!(design.font_size, 18);
        assert_eq!(design.extra_text, "Hi\nthere");
        let (mut info, design) = (info, design);
        assert!(crate::cards::validate(&mut info, &design).is_ok());
        // A column the maker does not offer is refused, not clamped.
        let (mut info, design) = card_form(&form(b"name=A&layout=name%3A7&background=%23000000&color=%23ffffff&accent=%23ff0000&font_family=Georgia&font_size=18"));
        assert!(crate::cards::validate(&mut info, &design).is_err());
    }

    #[test]
    fn editor_rows_list_every_block_once() {
        let d = crate::cards::sample("classic").unwrap_or_default();
        let (phones, blocks) = editor_rows(&sample_info(), &d);
        assert_eq!(phones.len(), PHONE_ROWS);
        assert_eq!(phones.iter().filter(|p| !p.hidden).count(), 2);
        assert_eq!(blocks.len(), BLOCKS.len());
        assert!(
            !blocks
                .iter()
                .find(|b| b.kind == "photo")
                .is_some_and(|b| b.on)
        );
        assert_eq!(blocks[0].kind, "name");
    }
}
