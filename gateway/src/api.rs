//! The REST API under `/api/v1`: members, number sales, resolution,
//! provisioning. JSON in and out; every error is JSON with a stable code
//! (see [`crate::error`]); the OpenAPI document is generated from these
//! handlers (utoipa) and served at `/api/v1/openapi.json`.
//!
//! Routing is one match over method and path segments, not a tree of warp
//! filters: the table below is the whole API, and it compiles fast.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use engine::numbering::{self, Alias, Dialled, RegionId};
use engine::sales;
use rand::Rng;
use schema::model::{
    Account, AccountKind, ApiKey, KeyScope, LedgerEntry, Member, NumberQuery, NumberRecord,
    NumberState, Office, OfficeContact, OtherNumber, Posted, Session,
};
use schema::store::Store;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use crate::auth::{self, SignInLimiter};

mod aliases;
mod verify;

/// Why the engine placed no call: 402 `insufficient_balance`, else
/// `call_refused` (503 when the engine failed, 422 when it refused).
fn not_placed((status, why): (u16, String)) -> ApiError {
    match status {
        402 => ApiError::new(StatusCode::PAYMENT_REQUIRED, "insufficient_balance", why),
        _ => ApiError::new(
            if status >= 500 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            },
            "call_refused",
            format!("{status}: {why}"),
        ),
    }
}

/// 409: the member's account changed between its read and its write.
fn member_changed() -> ApiError {
    ApiError::conflict("the member changed meanwhile; retry")
}
use crate::directory::{Directory, OfficeView, Resolved, display, public_uris};
use crate::error::{ApiError, ErrorBody, json_response};
use crate::inventory::{self, ImportReport, InventoryRow, Prices};

/// Wall time in Unix seconds; tests inject their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        #[allow(clippy::disallowed_methods)]
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// What the API needs to know.
#[derive(Clone)]
pub struct ApiConfig {
    /// Bearer token of the operator; operator calls are refused without it.
    pub admin_token: Option<String>,
    /// How long an approved purchase holds its number, seconds.
    pub hold_secs: u64,
    /// Session lifetime, seconds.
    pub session_secs: u64,
    /// Digest realm of the registrar.
    pub realm: String,
    /// The registrar's address as phones should reach it (`host:port`).
    pub registrar: String,
    /// Number plan, home region and SIP domain.
    pub directory: Directory,
    /// ISO 4217 code of balances and prices.
    pub currency: String,
    /// Default prices per class.
    pub prices: Prices,
    /// Failed sign-ins of one login before its attempts are slowed down
    /// (never locked out).
    pub signin_per_login: u32,
    /// The first wait of a login past those failures; it doubles with each
    /// further failure up to [`auth::MAX_DELAY`].
    pub signin_delay: std::time::Duration,
    /// Sign-in attempts a minute per source address.
    pub signin_per_addr: u32,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Largest rate deck upload, bytes.
    pub max_rates_body: usize,
    /// Card e-mails a member may send in 24 hours.
    pub card_sends_per_day: u64,
    /// Click-to-call abuse limits.
    pub clicks: crate::clicks::Limits,
    /// Key of the card pages' form tokens (random per process when unset).
    pub form_secret: String,
    /// Base URL of the public pages (card links), e.g. `https://cards.example`.
    pub public_url: String,
    /// Where status callbacks may go, and their TLS.
    pub callbacks: Arc<crate::webhooks::Callbacks>,
    /// DNS servers that domain-alias proofs are looked up at; empty: the
    /// system's (`/etc/resolv.conf`).
    pub dns_servers: Vec<SocketAddr>,
    /// How long a client may take to send a request's headers.
    pub header_timeout: std::time::Duration,
    /// How long a client may take to send a request's body, whole.
    pub body_timeout: std::time::Duration,
}

impl ApiConfig {
    /// Defaults for a registrar at `registrar` (host:port).
    pub fn new(registrar: String, realm: String) -> Self {
        let host = registrar
            .rsplit_once(':')
            .map_or(registrar.clone(), |(h, _)| {
                h.trim_matches(['[', ']']).to_owned()
            });
        ApiConfig {
            admin_token: None,
            hold_secs: 600,
            session_secs: 24 * 3600,
            realm,
            registrar,
            directory: Directory {
                plan: numbering::Plan::default(),
                home: RegionId::US,
                sip_domain: host,
            },
            currency: "USD".into(),
            prices: Prices::default(),
            signin_per_login: 5,
            signin_delay: std::time::Duration::from_secs(1),
            signin_per_addr: 30,
            max_body: 64 * 1024,
            max_rates_body: 64 * 1024 * 1024,
            card_sends_per_day: 100,
            clicks: crate::clicks::Limits::default(),
            form_secret: crate::cards::token(&mut rand::thread_rng(), 32),
            public_url: "http://127.0.0.1:8080".into(),
            callbacks: Arc::new(crate::webhooks::Callbacks::public()),
            dns_servers: Vec::new(),
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// The API's state.
pub struct Api {
    click_guard: Arc<crate::clicks::Guard>,
    dialer: Option<actors::node::Dialer>,
    mailer: Option<Arc<crate::mail::Mailer>>,
    store: Arc<dyn Store>,
    cfg: ApiConfig,
    limiter: SignInLimiter,
    clock: Clock,
    routes: Option<(Arc<actors::config::Routing>, HealthFn)>,
}

/// A trunk's health now, by name (from the running node's Trunk actors).
pub type HealthFn = Arc<dyn Fn(&str) -> Option<engine::lcr::Health> + Send + Sync>;

/// One ranked trunk of a route preview.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteCandidate {
    /// Trunk name.
    pub trunk: String,
    /// Length of the matched deck prefix.
    pub prefix_len: usize,
    /// Price per minute, micro-units of the currency.
    pub per_minute: i64,
    /// Connection fee, micro-units.
    pub connect_fee: i64,
    /// Billing increments, seconds (first, next).
    pub increments: (u32, u32),
    /// The number as this trunk would receive it.
    pub number: String,
    /// Why it would be skipped now (`down`, `not registered`, `full 2/2`, `cps limit`,
    /// `owned by center NAME` for a trunk of another country's center), or null.
    pub skipped: Option<String>,
}

/// How a number would be routed now.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutePreview {
    /// What was asked.
    pub query: String,
    /// `pstn`, `carrier`, `on_net` or `alias`.
    pub kind: String,
    /// The E.164 number for PSTN routes.
    pub e164: Option<String>,
    /// Ranked candidates, in the order calls would try them.
    pub candidates: Vec<RouteCandidate>,
}

/// Who is calling.
enum Caller {
    Anonymous,
    Operator,
    Member(Box<Account>),
    /// An API key of the member: a `full` one may do what its member may,
    /// a `calls` one only place and follow calls.
    Key(Box<Account>, Box<ApiKey>),
}

/// One request, as the router sees it.
pub struct Request {
    /// Method.
    pub method: Method,
    /// Path after `/api/v1/`.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// Client address.
    pub remote: Option<SocketAddr>,
    /// Body.
    pub body: bytes::Bytes,
}

// ---------------------------------------------------------------- bodies

/// Sign-up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    /// E-mail address used to sign in.
    pub login: String,
    /// At least 10 characters.
    pub password: String,
    /// `individual` or `company`.
    #[schema(value_type = String, example = "individual")]
    pub kind: AccountKind,
    /// Display name.
    pub name: String,
    /// BCP 47 language tag (default `en`).
    pub language: Option<String>,
    /// Own PSTN number (any common format; E.164 recommended).
    pub contact_pstn: Option<String>,
}

/// Sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// E-mail address.
    pub login: String,
    /// Password.
    pub password: String,
}

/// A session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    /// Bearer token for `Authorization: Bearer …`.
    pub token: String,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// The member.
    pub member: MemberView,
}

/// A number held at another carrier.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtherNumberView {
    /// Carrier name.
    pub carrier: String,
    /// Number at that carrier.
    pub number: String,
}

/// A member as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// Id (digits); also the SIP username.
    pub id: String,
    /// Sign-in e-mail.
    pub login: String,
    /// `individual` or `company`.
    pub kind: String,
    /// Display name.
    pub name: String,
    /// Language.
    pub language: String,
    /// Own PSTN number, E.164.
    pub contact_pstn: Option<String>,
    /// Whether `contact_pstn` is proven (`POST .../contact/verify`, then
    /// `.../contact/confirm` with the code read out in the call): only then
    /// is it presented as the member's number and accepted for purchases.
    pub contact_pstn_verified: bool,
    /// Numbers at other carriers.
    pub other_numbers: Vec<OtherNumberView>,
    /// Public URIs, in resolution order.
    pub uris: Vec<String>,
    /// Aliases (domains, e-mail addresses) resolving to this member.
    pub aliases: Vec<String>,
    /// Company offices.
    pub offices: Vec<OfficeView>,
    /// Country of the default office.
    pub default_office: Option<String>,
    /// Unanswered calls (no phone registered) go to the contact PSTN number.
    pub forward_to_pstn: bool,
    /// Numbers held, canonical.
    pub numbers: Vec<String>,
}

/// Changes to a member; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    /// Display name.
    pub name: Option<String>,
    /// BCP 47 language tag.
    pub language: Option<String>,
    /// Own PSTN number.
    pub contact_pstn: Option<String>,
    /// Numbers at other carriers (replaces the list).
    pub other_numbers: Option<Vec<OtherNumberView>>,
    /// Public URIs, sip:, sips:, tel:, mailto:, https: (replaces the list).
    pub uris: Option<Vec<String>>,
    /// Offices, one per country (companies only; replaces the list).
    pub offices: Option<Vec<OfficeView>>,
    /// Country of the default office.
    pub default_office: Option<String>,
    /// Forward calls to the contact PSTN number while no phone is registered.
    pub forward_to_pstn: Option<bool>,
}

/// New SIP password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SipPassword {
    /// At least 8 characters.
    pub password: String,
}

/// SIP credentials as set.
#[derive(Debug, Serialize, ToSchema)]
pub struct SipCredentials {
    /// Digest username.
    pub username: String,
    /// Digest realm.
    pub realm: String,
}

/// How a softphone reaches the service (seed 004 claim 9).
#[derive(Debug, Serialize, ToSchema)]
pub struct Provisioning {
    /// Address of record.
    pub sip_uri: String,
    /// Registrar, `sip:host:port`.
    pub registrar: String,
    /// Transports the registrar accepts.
    pub transports: Vec<String>,
    /// Digest username.
    pub username: String,
    /// Digest realm.
    pub realm: String,
    /// Display name.
    pub display_name: String,
    /// Whether SIP credentials have been set.
    pub credentials_set: bool,
    /// What the QR code holds.
    pub qr: String,
}

/// A number for sale or held.
#[derive(Debug, Serialize, ToSchema)]
pub struct NumberView {
    /// Canonical.
    pub number: String,
    /// As people write it.
    pub display: String,
    /// `individual` or `company`.
    pub kind: String,
    /// ISO 3166 region.
    pub country: String,
    /// Area code.
    pub area: String,
    /// `standard` or `premium`.
    pub price_class: String,
    /// Minor units.
    pub price: i64,
    /// Currency.
    pub currency: String,
}

/// An approved purchase request.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldView {
    /// Hold id, to confirm with.
    pub hold: String,
    /// The number.
    pub number: NumberView,
    /// Hold expiry, Unix seconds.
    pub until: u64,
}

/// Confirm a hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    /// The hold id from the approval.
    pub hold: String,
}

/// A settled purchase.
#[derive(Debug, Serialize, ToSchema)]
pub struct Purchase {
    /// The number, now yours.
    pub number: String,
    /// Price paid, minor units.
    pub price: i64,
    /// Balance after, minor units.
    pub balance: i64,
}

/// A top-up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    /// Idempotency key: the same key credits once.
    pub key: String,
    /// Minor units, positive.
    pub amount: i64,
    /// Note.
    pub reason: Option<String>,
}

/// Balance and entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerView {
    /// Sum of the entries, minor units.
    pub balance: i64,
    /// Currency.
    pub currency: String,
    /// Entries, oldest first.
    pub entries: Vec<EntryView>,
}

/// A ledger entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    /// Idempotency key.
    pub key: String,
    /// Minor units.
    pub amount: i64,
    /// Why.
    pub reason: String,
    /// Unix seconds.
    pub at: u64,
}

/// Result of a top-up.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopUpResult {
    /// `false` when this key had already been posted.
    pub posted: bool,
    /// Balance after.
    pub balance: i64,
}

/// Inventory to load.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryBody {
    /// The rows.
    pub numbers: Vec<InventoryRow>,
}

// ---------------------------------------------------------------- OpenAPI

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard API", version = "1", description = "Members, number sales, resolution and provisioning of the Switchboard numbering service."),
    paths(
        sign_up, sign_in, sign_out, resolve, search, hold, confirm, members, member_get,
        member_patch, alias_put, alias_delete, sip_put, provisioning, provisioning_svg,
        member_numbers, number_release, ledger, top_up, inventory_post, route_preview, rates_put,
        member_cdrs_doc, cdrs_doc, invoice, adjust, settlement, plan_put, member_plan
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        if let Some(c) = doc.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

// ---------------------------------------------------------------- routing

impl Api {
    /// The API over `store`.
    pub fn new(store: Arc<dyn Store>, cfg: ApiConfig, clock: Clock) -> Self {
        let limiter =
            SignInLimiter::new(cfg.signin_per_login, cfg.signin_per_addr, cfg.signin_delay);
        Api {
            click_guard: Arc::default(),
            dialer: None,
            mailer: None,
            store,
            cfg,
            limiter,
            clock,
            routes: None,
        }
    }

    /// Place click-to-call calls through the node's `dialer`.
    pub fn with_dialer(mut self, dialer: actors::node::Dialer) -> Self {
        self.dialer = Some(dialer);
        self
    }

    /// Send mail (cards) through `mailer`.
    pub fn with_mailer(mut self, mailer: Arc<crate::mail::Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// Enable route previews over the node's routing and its trunks' health.
    pub fn with_routes(mut self, routing: Arc<actors::config::Routing>, health: HealthFn) -> Self {
        self.routes = Some((routing, health));
        self
    }

    /// The directory (for the ENUM responder).
    pub fn directory(&self) -> &Directory {
        &self.cfg.directory
    }

    /// The sign-in and sign-up limiter.
    pub(crate) fn sign_in_limiter(&self) -> &SignInLimiter {
        &self.limiter
    }

    /// Its configuration.
    pub fn config(&self) -> &ApiConfig {
        &self.cfg
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Largest accepted body for `method path` under `/api/v1/`, decided
    /// before a byte of it is read: the large limit (rate decks and plans
    /// are files of many megabytes) only for `PUT trunks/{name}/rates` and
    /// `PUT plans/{name}` sent with the operator's token; every other
    /// request, and those without the token, keep `max_body`.
    pub fn max_body(&self, method: &Method, path: &str, authorization: Option<&str>) -> usize {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let upload = *method == Method::PUT
            && matches!(parts.as_slice(), ["trunks", name, "rates"] | ["plans", name] if !name.is_empty());
        let operator = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|token| self.is_operator_token(token.trim()));
        if upload && operator {
            self.cfg.max_rates_body
        } else {
            self.cfg.max_body
        }
    }

    /// Answer one request.
    pub async fn handle(&self, req: Request) -> Response {
        match self.route(&req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    async fn route(&self, req: &Request) -> Result<Response, ApiError> {
        let segs: Vec<String> = req
            .path
            .trim_matches('/')
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let m = &req.method;
        match (m.as_str(), segs.as_slice()) {
            ("GET", ["openapi.json"]) => Ok(json_response(StatusCode::OK, &ApiDoc::openapi())),
            ("POST", ["signup"]) => {
                if !self.limiter.allow_addr(req.remote.map(|a| a.ip())) {
                    return Err(ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        "too many sign-ups from this address; wait a minute",
                    ));
                }
                let r = sign_up(self, body(req)?).await?;
                Ok(json_response(StatusCode::CREATED, &r))
            }
            ("POST", ["signin"]) => {
                ok(&sign_in(self, body(req)?, req.remote.map(|a| a.ip())).await?)
            }
            ("POST", ["signout"]) => {
                sign_out(self, req).await?;
                Ok(no_content())
            }
            ("GET", ["resolve", q]) => ok(&resolve(self, q, &req.query).await?),
            ("GET", ["numbers"]) => ok(&search(self, &req.query).await?),
            ("POST", ["numbers", n, "hold"]) => {
                let me = self.member(req).await?;
                Ok(json_response(
                    StatusCode::CREATED,
                    &hold(self, &me, n).await?,
                ))
            }
            ("PUT", ["numbers", n, "holder"]) => {
                self.operator(req).await?;
                ok(&number_assign(self, n, body(req)?).await?)
            }
            ("POST", ["numbers", n, "confirm"]) => {
                let me = self.member(req).await?;
                ok(&confirm(self, &me, n, body(req)?).await?)
            }
            ("GET", ["members"]) => {
                self.operator(req).await?;
                ok(&members(self).await?)
            }
            ("GET", ["members", id]) => {
                let a = self.target(req, id).await?;
                ok(&member_get(self, &a).await?)
            }
            ("PATCH", ["members", id]) => {
                let a = self.target(req, id).await?;
                ok(&member_patch(self, a, body(req)?).await?)
            }
            ("PUT", ["members", id, "aliases", alias]) => {
                let a = self.target(req, id).await?;
                let vouched = matches!(self.caller(req).await?, Caller::Operator);
                alias_put(self, a, alias, vouched).await
            }
            ("POST", ["members", id, "aliases", alias, "check"]) => {
                let a = self.target(req, id).await?;
                ok(&aliases::check(self, a, alias).await?)
            }
            ("GET", ["alias-proofs", token]) => ok(&aliases::open_link(self, token).await?),
            ("DELETE", ["members", id, "aliases", alias]) => {
                let a = self.target(req, id).await?;
                alias_delete(self, &a, alias).await?;
                Ok(no_content())
            }
            ("POST", ["members", id, "contact", "verify"]) => {
                let a = self.target(req, id).await?;
                Ok(json_response(
                    StatusCode::ACCEPTED,
                    &verify::call(self, a).await?,
                ))
            }
            ("POST", ["members", id, "contact", "confirm"]) => {
                let a = self.target(req, id).await?;
                let a = verify::confirm(self, a, body(req)?).await?;
                ok(&full_view(self, &a).await?)
            }
            ("PUT", ["members", id, "contact", "verified"]) => {
                self.operator(req).await?;
                let a = self.account(id).await?;
                let a = verify::vouch(self, a).await?;
                ok(&full_view(self, &a).await?)
            }
            ("PUT", ["members", id, "sip"]) => {
                let a = self.target(req, id).await?;
                ok(&sip_put(self, &a, body(req)?).await?)
            }
            ("GET", ["members", id, "provisioning"]) => {
                let a = self.target(req, id).await?;
                ok(&provisioning(self, &a).await?)
            }
            ("GET", ["members", id, "provisioning.svg"]) => {
                let a = self.target(req, id).await?;
                provisioning_svg(self, &a).await
            }
            ("GET", ["members", id, "numbers"]) => {
                let a = self.target(req, id).await?;
                ok(&member_numbers(self, &a).await?)
            }
            ("DELETE", ["members", id, "numbers", n]) => {
                let a = self.target(req, id).await?;
                number_release(self, &a, n).await?;
                Ok(no_content())
            }
            ("GET", ["members", id, "ledger"]) => {
                let a = self.target(req, id).await?;
                ok(&ledger(self, &a).await?)
            }
            ("GET", ["members", id, "cdrs"]) => {
                let a = self.target(req, id).await?;
                cdr_page(self, Some(a.id), &req.query).await
            }
            ("GET", ["members", id, "invoice"]) => {
                let a = self.target(req, id).await?;
                invoice(self, &a, &req.query).await
            }
            ("POST", ["members", id, "adjustments"]) => {
                self.operator(req).await?;
                let a = self.account(id).await?;
                ok(&adjust(self, &a, body(req)?).await?)
            }
            ("PUT", ["plans", name]) => {
                self.operator(req).await?;
                ok(&plan_put(self, name, &req.body).await?)
            }
            ("PUT", ["members", id, "plan"]) => {
                self.operator(req).await?;
                let a = self.account(id).await?;
                ok(&member_plan(self, a, body(req)?).await?)
            }
            ("GET", ["card-samples"]) => ok(&crate::cards::samples()),
            ("POST", ["members", id, "api-keys"]) => {
                let a = self.target(req, id).await?;
                let b: Option<KeyCreate> = if req.body.is_empty() {
                    None
                } else {
                    body(req)?
                };
                let b = b.unwrap_or_default();
                let name = b.name.unwrap_or_else(|| "API key".into());
                if name.is_empty() || name.len() > 100 {
                    return Err(ApiError::invalid("name", "1 to 100 characters"));
                }
                let (key, hash) = auth::new_token();
                let k = ApiKey {
                    id: format!("k{:016x}", rand::thread_rng().r#gen::<u64>()),
                    account: a.id.clone(),
                    name,
                    scope: b.scope.unwrap_or(KeyScope::Full),
                    token_hash: hash,
                    webhook_secret: auth::new_token().0,
                    created_at: self.now(),
                    last_used: None,
                    revoked: false,
                };
                self.store.put_api_key(&k).await?;
                // The token and the webhook secret are shown this once.
                let mut v = key_view(&k);
                v["key"] = key.into();
                v["webhook_secret"] = k.webhook_secret.clone().into();
                ok(&v)
            }
            ("GET", ["members", id, "api-keys"]) => {
                let a = self.target(req, id).await?;
                let keys = self.store.api_keys_of(&a.id).await?;
                ok(&keys.iter().map(key_view).collect::<Vec<_>>())
            }
            ("DELETE", ["members", id, "api-keys", key_id]) => {
                let a = self.target(req, id).await?;
                let Some(mut k) = self
                    .store
                    .api_keys_of(&a.id)
                    .await?
                    .into_iter()
                    .find(|k| k.id == *key_id)
                else {
                    return Err(ApiError::not_found(format!("no API key {key_id}")));
                };
                k.revoked = true;
                self.store.put_api_key(&k).await?;
                Ok(no_content())
            }
            ("POST", ["calls"]) => self.click(req, body(req)?).await,
            ("GET", ["calls", id, "events"]) => self.call_events(id),
            ("GET", ["members", id, "cards"]) => {
                let a = self.target(req, id).await?;
                let cards = self.store.cards_of(&a.id).await?;
                ok(&cards.iter().map(|c| self.card_view(c)).collect::<Vec<_>>())
            }
            ("POST", ["members", id, "cards"]) => {
                let a = self.target(req, id).await?;
                ok(&self.card_create(&a, body(req)?).await?)
            }
            ("GET", ["members", id, "cards", card]) => {
                let a = self.target(req, id).await?;
                ok(&self.card_view(&self.owned_card(&a, card).await?))
            }
            ("PUT", ["members", id, "cards", card]) => {
                let a = self.target(req, id).await?;
                let c = self.owned_card(&a, card).await?;
                ok(&self.card_save(c, body(req)?).await?)
            }
            ("DELETE", ["members", id, "cards", card]) => {
                let a = self.target(req, id).await?;
                let c = self.owned_card(&a, card).await?;
                self.store.delete_card(&c.id).await?;
                Ok(no_content())
            }
            ("POST", ["members", id, "cards", card, "send"]) => {
                let a = self.target(req, id).await?;
                let c = self.owned_card(&a, card).await?;
                ok(&self.card_send(&a, &c, body(req)?).await?)
            }
            ("POST", ["members", id, "cards", card, "duplicate"]) => {
                let a = self.target(req, id).await?;
                let c = self.owned_card(&a, card).await?;
                let copy = CardInput {
                    sample: None,
                    version: None,
                    info: c.info.clone(),
                    design: Some(c.design.clone()),
                };
                ok(&self.card_create(&a, copy).await?)
            }
            ("GET", ["bans"]) => {
                self.operator(req).await?;
                let bans = self.node_dialer()?.bans();
                ok(&bans
                    .iter()
                    .map(|b| {
                        serde_json::json!({
                            "ip": b.ip.to_string(),
                            "reason": b.reason.label(),
                            "remaining_s": b.remaining_s,
                        })
                    })
                    .collect::<Vec<_>>())
            }
            ("DELETE", ["bans", ip]) => {
                self.operator(req).await?;
                let ip: std::net::IpAddr = ip
                    .parse()
                    .map_err(|_| ApiError::invalid("ip", format!("{ip:?} is not an address")))?;
                if self.node_dialer()?.lift_ban(ip) {
                    Ok(no_content())
                } else {
                    Err(ApiError::not_found(format!("{ip} is not banned")))
                }
            }
            ("GET", ["settlement"]) => {
                self.operator(req).await?;
                settlement(self, &req.query).await
            }
            ("GET", ["cdrs"]) => {
                self.operator(req).await?;
                let pairs = query_pairs(&req.query);
                let payer = query_get(&pairs, "payer").map(str::to_owned);
                cdr_page(self, payer, &req.query).await
            }
            ("POST", ["members", id, "topups"]) => {
                self.operator(req).await?;
                let a = self.account(id).await?;
                ok(&top_up(self, &a, body(req)?).await?)
            }
            ("PUT", ["trunks", name, "rates"]) => {
                self.operator(req).await?;
                ok(&rates_put(self, name, &req.body).await?)
            }
            ("GET", ["routes", n]) => {
                self.operator(req).await?;
                ok(&route_preview(self, n, &req.query)?)
            }
            ("POST", ["inventory"]) => {
                self.operator(req).await?;
                ok(&inventory_post(self, body(req)?).await?)
            }
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no {m} /api/v1/{}", req.path.trim_matches('/')),
            )),
        }
    }

    async fn caller(&self, req: &Request) -> Result<Caller, ApiError> {
        let Some(h) = &req.authorization else {
            return Ok(Caller::Anonymous);
        };
        let Some(token) = h.strip_prefix("Bearer ").map(str::trim) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authorization must be `Bearer <token>`",
            ));
        };
        if self.is_operator_token(token) {
            return Ok(Caller::Operator);
        }
        let now = (self.clock)();
        let hash = auth::token_hash(token);
        if let Some(s) = self.store.session(&hash, now).await? {
            return match self.store.account(&s.account).await? {
                Some(a) => Ok(Caller::Member(Box::new(a))),
                None => Err(ApiError::unauthorized()),
            };
        }
        let Some(mut k) = self.store.api_key(&hash).await? else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the token is unknown or expired; sign in again",
            ));
        };
        if k.revoked {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "key_revoked",
                "this API key was revoked",
            ));
        }
        // Its last use, to the minute (not a write per request).
        if k.last_used.is_none_or(|t| now.saturating_sub(t) >= 60) {
            k.last_used = Some(now);
            self.store.put_api_key(&k).await?;
        }
        match self.store.account(&k.account).await? {
            Some(a) => Ok(Caller::Key(Box::new(a), Box::new(k))),
            None => Err(ApiError::unauthorized()),
        }
    }

    /// Whether `token` is the operator's (compared in constant time).
    fn is_operator_token(&self, token: &str) -> bool {
        self.cfg
            .admin_token
            .as_deref()
            .is_some_and(|admin| auth::same_secret(token, admin))
    }

    /// Refused to a `calls` key.
    fn calls_only() -> ApiError {
        ApiError::forbidden("this API key may only place and follow calls")
    }

    async fn member(&self, req: &Request) -> Result<Account, ApiError> {
        match self.caller(req).await? {
            Caller::Member(a) => Ok(*a),
            Caller::Key(a, k) if k.scope == KeyScope::Full => Ok(*a),
            Caller::Key(..) => Err(Self::calls_only()),
            Caller::Operator => Err(ApiError::forbidden(
                "members buy numbers; the operator cannot",
            )),
            Caller::Anonymous => Err(ApiError::unauthorized()),
        }
    }

    async fn operator(&self, req: &Request) -> Result<(), ApiError> {
        match self.caller(req).await? {
            Caller::Operator => Ok(()),
            Caller::Member(_) | Caller::Key(..) => Err(ApiError::forbidden("operator only")),
            Caller::Anonymous => Err(ApiError::unauthorized()),
        }
    }

    async fn account(&self, id: &str) -> Result<Account, ApiError> {
        self.store
            .account(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no member {id}")))
    }

    /// The account `id` (or `me`) if the caller may see it.
    async fn target(&self, req: &Request, id: &str) -> Result<Account, ApiError> {
        match self.caller(req).await? {
            Caller::Anonymous => Err(ApiError::unauthorized()),
            Caller::Operator if id == "me" => {
                Err(ApiError::bad_request("the operator has no `me`"))
            }
            Caller::Operator => self.account(id).await,
            Caller::Key(_, k) if k.scope != KeyScope::Full => Err(Self::calls_only()),
            Caller::Member(a) | Caller::Key(a, _) if id == "me" || id == a.id => Ok(*a),
            Caller::Member(_) | Caller::Key(..) => Err(ApiError::forbidden(
                "a member reads and changes only its own data",
            )),
        }
    }

    pub(crate) fn now(&self) -> u64 {
        (self.clock)()
    }
}

/// What creates an API key: a name and a scope (`full` by default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyCreate {
    name: Option<String>,
    scope: Option<KeyScope>,
}

/// An API key as listed: never its token or secret.
fn key_view(k: &ApiKey) -> serde_json::Value {
    serde_json::json!({
        "id": k.id,
        "name": k.name,
        "scope": k.scope,
        "created_at": k.created_at,
        "last_used": k.last_used,
        "revoked": k.revoked,
    })
}

/// A 200 with a JSON body.
fn ok<T: Serialize>(body: &T) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, body))
}

/// A card as the API shows it: the record and its public link.
#[derive(Debug, Serialize)]
pub struct CardView {
    /// The card.
    #[serde(flatten)]
    pub card: schema::model::Card,
    /// Its public link.
    pub link: String,
}

/// A click to call: the card, the button, and the visitor's number.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickRequest {
    /// The card's ID.
    pub card: String,
    /// The call button's ID.
    pub button: String,
    /// The number to call back (the visitor's phone).
    pub callback: String,
    /// ISO 3166 region in whose national format `callback` is written
    /// (`KR`); default: the operator's home region.
    #[serde(default)]
    pub country: Option<String>,
    /// A retried request with the same key places no second call.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// An http URL that receives every status event, signed.
    #[serde(default)]
    pub status_callback: Option<String>,
}

impl Api {
    /// `POST /api/v1/calls`: the card's owner (its API key or a session)
    /// places a call that rings `callback` first, says "please wait,
    /// connecting your call" with ringback, then rings the number behind
    /// the button and bridges the two.
    async fn click(&self, req: &Request, b: ClickRequest) -> Result<Response, ApiError> {
        if self.dialer.is_none() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_node",
                "this edge places no calls",
            ));
        }
        let card = self
            .store
            .card(&b.card)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no card {}", b.card)))?;
        // What signs the call's status webhooks: an API key's own secret
        // (never the bearer token); a signed-in session's token.
        let key = match self.caller(req).await? {
            Caller::Anonymous => return Err(ApiError::unauthorized()),
            Caller::Member(a) | Caller::Key(a, _) if a.id != card.owner => {
                return Err(ApiError::forbidden(
                    "only the card's owner places its calls",
                ));
            }
            Caller::Key(_, k) => Some(k.webhook_secret.clone()),
            Caller::Member(_) | Caller::Operator => req
                .authorization
                .as_deref()
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(|k| k.trim().to_owned()),
        };
        self.place_click(card, b, req.remote, key).await
    }

    /// Place a click's call for `card`: checks, abuse limits, idempotency,
    /// the call, its status feed and webhook (signed with `key`).
    async fn place_click(
        &self,
        card: schema::model::Card,
        b: ClickRequest,
        remote: Option<SocketAddr>,
        key: Option<String>,
    ) -> Result<Response, ApiError> {
        let Some(dialer) = &self.dialer else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_node",
                "this edge places no calls",
            ));
        };
        let phone = card
            .info
            .phones
            .iter()
            .find(|p| p.button_id == b.button)
            .ok_or_else(|| {
                ApiError::invalid("button", format!("no button {} on this card", b.button))
            })?;
        let dir = &self.cfg.directory;
        let region = match b.country.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => numbering::region(c)
                .filter(|r| numbering::cc_of_region(*r).is_some())
                .ok_or_else(|| ApiError::invalid("country", format!("{c:?} is not a region")))?,
            None => dir.home,
        };
        // The callback, its calling code (for the ringback tone) and, when
        // it reaches the PSTN, the number it reaches there with that
        // number's country by phonenumber ("" when it has none).
        let (callback, cc, pstn): (String, String, Option<(String, String)>) =
            match numbering::classify(&b.callback, region, &dir.plan) {
                Ok(Dialled::Pstn(p)) => (
                    p.e164.clone(),
                    p.cc.to_string(),
                    Some((p.e164.clone(), p.region.clone().unwrap_or_default())),
                ),
                Ok(d @ (Dialled::Individual(_) | Dialled::Company(_))) => {
                    // An on-net number may leave the network on its holder's
                    // forward or a PSTN office: the checks apply to where it
                    // can go, so the first such exit stands for the callback.
                    let exit = self.onnet_exit(&d).await?;
                    (
                        b.callback.trim().to_owned(),
                        numbering::cc_of_region(dir.home)
                            .map_or_else(String::new, |c| c.to_string()),
                        exit,
                    )
                }
                // A member's SIP user (its registered phones) is a callback too.
                Ok(_) | Err(_) if self.store.member(b.callback.trim()).await?.is_some() => (
                    b.callback.trim().to_owned(),
                    numbering::cc_of_region(dir.home).map_or_else(String::new, |c| c.to_string()),
                    None,
                ),
                Ok(_) | Err(_) => {
                    return Err(ApiError::invalid(
                        "callback",
                        format!("{:?} is not a phone number", b.callback),
                    ));
                }
            };
        let callback_url = b
            .status_callback
            .as_deref()
            .map(|u| self.cfg.callbacks.check_url(u))
            .transpose()
            .map_err(|why| ApiError::invalid("status_callback", why))?;
        let (call_id, fresh) = match &b.idempotency_key {
            Some(k) if k.is_empty() || k.len() > 100 => {
                return Err(ApiError::invalid("idempotency_key", "1 to 100 characters"));
            }
            Some(k) => {
                let mine = format!("{}@click", crate::cards::token(&mut rand::thread_rng(), 16));
                let held = self
                    .store
                    .claim_idempotency(&card.owner, k, &mine, self.now())
                    .await?;
                let fresh = held == mine;
                (held, fresh)
            }
            None => (
                format!("{}@click", crate::cards::token(&mut rand::thread_rng(), 16)),
                true,
            ),
        };
        if !fresh {
            return Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({ "call_id": call_id, "status": "duplicate" }),
            ));
        }
        let allowed = self.click_countries(&card.owner).await;
        let admitted = match self.click_guard.admit(
            &self.cfg.clicks,
            self.now().saturating_mul(1000),
            remote.map(|r| r.ip()),
            &card.id,
            &card.owner,
            pstn.as_ref().map_or(callback.as_str(), |(n, _)| n.as_str()),
            pstn.as_ref().map(|(_, r)| r.as_str()),
            &allowed,
        ) {
            Ok(a) => a,
            Err(r) => {
                // Refused before any call: the key stays free for a retry.
                if let Some(k) = &b.idempotency_key {
                    self.store
                        .release_idempotency(&card.owner, k, &call_id)
                        .await?;
                }
                let status = match r.code {
                    "country_not_allowed" | "blocked_destination" => StatusCode::FORBIDDEN,
                    _ => StatusCode::TOO_MANY_REQUESTS,
                };
                return Err(ApiError::new(status, r.code, r.message));
            }
        };
        let o = actors::center::Originate {
            caller: card.owner.clone(),
            first: callback,
            second: Some(phone.number.clone()),
            prompts: vec![engine::media::player::Prompt::Connecting],
            ringback_cc: cc,
            call_id: Some(call_id.clone()),
        };
        let placed = dialer.originate(o).await;
        if placed.is_err()
            && let Some(k) = &b.idempotency_key
        {
            // No call was placed: the key must not answer "duplicate" for a
            // call that never existed; a retry with it places the call.
            self.store
                .release_idempotency(&card.owner, k, &call_id)
                .await?;
        }
        match placed {
            Ok(id) => {
                let events = dialer.events();
                events.open(&id);
                // The call holds its card's and owner's line until it ends.
                let keys = admitted.started();
                if let Some(mut follower) = events.follow(&id) {
                    let guard = self.click_guard.clone();
                    tokio::spawn(async move {
                        while follower.next().await.is_some() {}
                        guard.ended(&keys);
                    });
                }
                if let (Some(url), Some(key)) = (callback_url, key) {
                    // The API key that placed the call signs its events.
                    crate::webhooks::spawn(
                        self.cfg.callbacks.clone(),
                        events,
                        id.clone(),
                        url,
                        key,
                        self.clock.clone(),
                    );
                }
                Ok(json_response(
                    StatusCode::CREATED,
                    &serde_json::json!({ "call_id": id, "status": "initiated" }),
                ))
            }
            Err(refused) => Err(not_placed(refused)),
        }
    }
}

/// One status event as JSON.
pub fn event_json(call: &str, e: &actors::events::Event) -> serde_json::Value {
    serde_json::json!({
        "call_id": call,
        "seq": e.seq,
        "status": e.status.as_str(),
        "at_ms": e.at_ms,
        "reason": e.reason,
        "duration_secs": e.duration_secs,
    })
}

impl Api {
    /// `GET /api/v1/calls/{id}/events`: the call's status as server-sent
    /// events, from its first event to its terminal one. The call id (128
    /// random bits) is the capability: the page that placed the call has it.
    fn call_events(&self, id: &str) -> Result<Response, ApiError> {
        let Some(dialer) = &self.dialer else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_node",
                "this edge places no calls",
            ));
        };
        let follower = dialer
            .events()
            .follow(id)
            .ok_or_else(|| ApiError::not_found(format!("no call {id}")))?;
        let call = id.to_owned();
        let stream = futures_util::stream::unfold(follower, move |mut f| {
            let call = call.clone();
            async move {
                let e = f.next().await?;
                let frame = format!(
                    "id: {}\nevent: status\ndata: {}\n\n",
                    e.seq,
                    event_json(&call, &e)
                );
                Some((
                    Ok::<_, std::convert::Infallible>(bytes::Bytes::from(frame)),
                    f,
                ))
            }
        });
        let mut r = Response::new(warp::hyper::Body::wrap_stream(stream));
        let h = r.headers_mut();
        h.insert(
            warp::http::header::CONTENT_TYPE,
            warp::http::HeaderValue::from_static("text/event-stream"),
        );
        h.insert(
            warp::http::header::CACHE_CONTROL,
            warp::http::HeaderValue::from_static("no-store"),
        );
        Ok(r)
    }
}

/// Where to send a card.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardSend {
    /// E-mail addresses, 1 to 20.
    pub to: Vec<String>,
}

/// What a send did.
#[derive(Debug, Serialize)]
pub struct CardSent {
    /// Messages handed to the mail relay or outbox.
    pub sent: usize,
    /// Sends left in the member's 24-hour allowance.
    pub remaining_today: u64,
}

/// A card to create or save.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardInput {
    /// The sample to start from (creation; default `classic`).
    #[serde(default)]
    pub sample: Option<String>,
    /// The version being saved over (saves; required).
    #[serde(default)]
    pub version: Option<u64>,
    /// What it says.
    pub info: schema::model::CardInfo,
    /// How it looks (default: the sample's).
    #[serde(default)]
    pub design: Option<schema::model::CardDesign>,
}

impl Api {
    /// A card's public link.
    pub fn card_link(&self, token: &str) -> String {
        format!("{}/c/{token}", self.cfg.public_url.trim_end_matches('/'))
    }

    fn card_view(&self, c: &schema::model::Card) -> CardView {
        CardView {
            card: c.clone(),
            link: self.card_link(&c.token),
        }
    }

    pub(crate) async fn owned_card(
        &self,
        a: &Account,
        id: &str,
    ) -> Result<schema::model::Card, ApiError> {
        match self.store.card(id).await? {
            Some(c) if c.owner == a.id => Ok(c),
            _ => Err(ApiError::not_found(format!("no card {id}"))),
        }
    }

    pub(crate) async fn card_create(
        &self,
        a: &Account,
        mut b: CardInput,
    ) -> Result<CardView, ApiError> {
        let sample = b.sample.as_deref().unwrap_or("classic");
        let design = match b.design.take() {
            Some(d) => d,
            None => crate::cards::sample(sample)
                .ok_or_else(|| ApiError::invalid("sample", format!("no sample {sample}")))?,
        };
        crate::cards::validate(&mut b.info, &design)
            .map_err(|e| ApiError::invalid(&e.field, e.why))?;
        if self.store.cards_of(&a.id).await?.len() >= 50 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "too_many_cards",
                "at most 50 cards",
            ));
        }
        let now = self.now();
        let card = {
            let mut rng = rand::thread_rng();
            crate::cards::assign_buttons(&mut b.info, None, &mut rng);
            schema::model::Card {
                id: crate::cards::token(&mut rng, 8),
                owner: a.id.clone(),
                // 128 bits: the link cannot be guessed.
                token: crate::cards::token(&mut rng, 16),
                version: 1,
                info: b.info,
                design,
                created_at: now,
                updated_at: now,
            }
        };
        if !self.store.insert_card(&card).await? {
            return Err(ApiError::conflict("try again"));
        }
        Ok(self.card_view(&card))
    }

    pub(crate) async fn card_send(
        &self,
        a: &Account,
        c: &schema::model::Card,
        b: CardSend,
    ) -> Result<CardSent, ApiError> {
        let Some(mailer) = &self.mailer else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_mail",
                "this edge sends no mail",
            ));
        };
        if b.to.is_empty() || b.to.len() > 20 {
            return Err(ApiError::invalid("to", "1 to 20 addresses"));
        }
        // Every address is checked before anything is sent; lettre's parser
        // refuses line breaks, so no header can be injected.
        for (i, to) in b.to.iter().enumerate() {
            if to.len() > 254
                || to.parse::<lettre::message::Mailbox>().is_err()
                || !to.contains('@')
            {
                return Err(ApiError::invalid(
                    &format!("to[{i}]"),
                    format!("{to:?} is not an e-mail address"),
                ));
            }
        }
        let now = self.now();
        let n = u32::try_from(b.to.len()).unwrap_or(u32::MAX);
        let (used, allowance) = self.reserve_sends(&a.id, now, n).await?;
        let r = self.send_card_reserved(mailer, a, c, &b, now).await;
        let sent = r.as_ref().map_or_else(|(sent, _)| *sent, |s| s.sent);
        if sent < b.to.len() {
            // What was not sent is given back to the allowance.
            let unsent = u32::try_from(b.to.len() - sent).unwrap_or(u32::MAX);
            if let Err(e) = self.unreserve_sends(&a.id, now, unsent).await {
                tracing::warn!(account = %a.id, error = ?e.1, "unsent card e-mails stay counted");
            }
        }
        r.map(|s| CardSent {
            remaining_today: allowance.saturating_sub(used + s.sent as u64),
            ..s
        })
        .map_err(|(_, e)| e)
    }

    /// Reserve `n` card e-mails of `owner`'s daily allowance at `now` by a
    /// compare-and-set of its account (atomic across edges); what was used
    /// before and the allowance.
    async fn reserve_sends(&self, owner: &str, now: u64, n: u32) -> Result<(u64, u64), ApiError> {
        let allowance = self.cfg.card_sends_per_day;
        for _ in 0..16 {
            let mut a = self.account(owner).await?;
            a.card_sends
                .retain(|(at, _)| now.saturating_sub(*at) < 24 * 3600);
            let used: u64 = a.card_sends.iter().map(|(_, k)| u64::from(*k)).sum();
            if used + u64::from(n) > allowance {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "send_limit",
                    format!("{used} of {allowance} card e-mails sent in the last 24 hours"),
                ));
            }
            a.card_sends.push((now, n));
            if self.store.update_account(&a, a.version).await? {
                return Ok((used, allowance));
            }
        }
        Err(member_changed())
    }

    /// Give `n` of the sends reserved at `at` back.
    async fn unreserve_sends(&self, owner: &str, at: u64, n: u32) -> Result<(), (u32, ApiError)> {
        for _ in 0..16 {
            let mut a = self.account(owner).await.map_err(|e| (n, e))?;
            let Some(entry) = a.card_sends.iter_mut().find(|(t, k)| *t == at && *k >= n) else {
                return Ok(());
            };
            entry.1 -= n;
            a.card_sends.retain(|(_, k)| *k > 0);
            if self
                .store
                .update_account(&a, a.version)
                .await
                .map_err(|e| (n, e.into()))?
            {
                return Ok(());
            }
        }
        Err((n, ApiError::conflict("retry")))
    }

    /// Send a card whose allowance is reserved: what was sent, or how many
    /// went before the failure.
    async fn send_card_reserved(
        &self,
        mailer: &crate::mail::Mailer,
        a: &Account,
        c: &schema::model::Card,
        b: &CardSend,
        now: u64,
    ) -> Result<CardSent, (usize, ApiError)> {
        use askama::Template as _;
        let link = self.card_link(&c.token);
        let html = crate::cards::CardEmail {
            card: c,
            link: &link,
        }
        .render()
        .map_err(|e| {
            (
                0,
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "template", e.to_string()),
            )
        })?;
        let text = crate::cards::card_text(c, &link);
        let subject = format!("{}'s business card", c.info.name.replace(['\r', '\n'], " "));
        let mut sent = 0;
        for to in &b.to {
            mailer
                .send(to, &subject, text.clone(), html.clone())
                .await
                .map_err(|e| {
                    (
                        sent,
                        ApiError::new(StatusCode::BAD_GATEWAY, "mail_failed", e.to_string()),
                    )
                })?;
            sent += 1;
            self.store
                .record_card_send(&a.id, &c.id, c.version, to, now)
                .await
                .map_err(|e| (sent, e.into()))?;
        }
        Ok(CardSent {
            sent,
            remaining_today: 0,
        })
    }

    pub(crate) async fn card_save(
        &self,
        mut c: schema::model::Card,
        mut b: CardInput,
    ) -> Result<CardView, ApiError> {
        let expected = b
            .version
            .ok_or_else(|| ApiError::invalid("version", "the version being saved over"))?;
        let design = b.design.take().unwrap_or_else(|| c.design.clone());
        crate::cards::validate(&mut b.info, &design)
            .map_err(|e| ApiError::invalid(&e.field, e.why))?;
        crate::cards::assign_buttons(&mut b.info, Some(&c.info), &mut rand::thread_rng());
        c.info = b.info;
        c.design = design;
        c.updated_at = self.now();
        if !self.store.update_card(&c, expected).await? {
            return Err(ApiError::conflict(
                "the card changed meanwhile; read and retry",
            ));
        }
        c.version = expected + 1;
        Ok(self.card_view(&c))
    }

    fn node_dialer(&self) -> Result<&actors::node::Dialer, ApiError> {
        self.dialer.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_node",
                "this edge runs without a node",
            )
        })
    }

    /// The form token of a card page served at `now` (Unix seconds):
    /// `issued.mac`, valid ten minutes, so that clicks come from a page this
    /// edge served, not from a script elsewhere.
    pub fn form_token(&self, card_token: &str, now: u64) -> String {
        let mac = crate::webhooks::sign(&self.cfg.form_secret, now, card_token);
        format!("{now}.{}", &mac[7..39])
    }

    fn form_token_ok(&self, card_token: &str, form: &str) -> bool {
        let Some((issued, _)) = form.split_once('.') else {
            return false;
        };
        let Ok(issued) = issued.parse::<u64>() else {
            return false;
        };
        let now = self.now();
        issued <= now + 60
            && now.saturating_sub(issued) <= 600
            && auth::same_secret(form, &self.form_token(card_token, issued))
    }

    /// Calling codes the owner lets its cards call back (default: the
    /// operator's home country).
    /// The first place an on-net number can leave the network, as (E.164,
    /// region): its holder's forward to its contact PSTN number, else its
    /// first PSTN office.
    async fn onnet_exit(&self, d: &Dialled) -> Result<Option<(String, String)>, ApiError> {
        use schema::model::{NumberState, OfficeContact};
        let key = match d {
            Dialled::Individual(i) => i.canonical(),
            Dialled::Company(c) => c.base.clone(),
            _ => return Ok(None),
        };
        let Some(r) = self.store.number(&key).await? else {
            return Ok(None);
        };
        let NumberState::Sold { account, .. } = &r.state else {
            return Ok(None);
        };
        let Some(a) = self.store.account(account).await? else {
            return Ok(None);
        };
        let forward = a.contact_pstn.as_ref().filter(|_| a.forward_to_pstn);
        let office = || {
            a.offices.iter().find_map(|o| match &o.contact {
                OfficeContact::Pstn { number } => Some(number),
                _ => None,
            })
        };
        let dir = &self.cfg.directory;
        Ok(forward.or_else(office).map(|n| {
            let region = match numbering::classify(n, dir.home, &dir.plan) {
                Ok(Dialled::Pstn(p)) => p.region.unwrap_or_default(),
                _ => String::new(),
            };
            (n.clone(), region)
        }))
    }

    /// The countries (ISO 3166 regions) `owner`'s buttons may call back:
    /// its own list, else the node's home country. An entry written as a
    /// calling code (older accounts) stands for that code's main country
    /// only (`1` is the US, not the whole +1 zone).
    async fn click_countries(&self, owner: &str) -> Vec<String> {
        match self.store.account(owner).await {
            Ok(Some(o)) if !o.click_countries.is_empty() => o
                .click_countries
                .iter()
                .filter_map(|c| match c.parse::<u16>() {
                    Ok(cc) => numbering::region_of_cc(cc),
                    Err(_) => Some(c.trim().to_ascii_uppercase()),
                })
                .collect(),
            _ => vec![self.cfg.directory.home.as_ref().to_owned()],
        }
    }

    /// `POST /c/{token}/call`: a visitor's click on the live page (the
    /// card's owner pays); the form token of the page is required.
    pub async fn card_click(
        &self,
        path: &str,
        body: &[u8],
        remote: Option<SocketAddr>,
    ) -> Response {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Click {
            button: String,
            callback: String,
            #[serde(default)]
            country: Option<String>,
            form_token: String,
        }
        let token = path.trim_end_matches("/call");
        let result = async {
            let c: Click = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the click is not JSON of button, callback, form_token: {e}"
                ))
            })?;
            let card = self
                .store
                .card_by_token(token)
                .await?
                .ok_or_else(|| ApiError::not_found("this card is not here"))?;
            if !self.form_token_ok(&card.token, &c.form_token) {
                metrics::counter!("switchboard_clicks_refused_total", "reason" => "form_expired")
                    .increment(1);
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "form_expired",
                    "This page is too old; reload it and try again.",
                ));
            }
            let req = ClickRequest {
                card: card.id.clone(),
                button: c.button,
                callback: c.callback,
                country: c.country,
                idempotency_key: None,
                status_callback: None,
            };
            self.place_click(card, req, remote, None).await
        }
        .await;
        result.unwrap_or_else(ApiError::into_response)
    }

    /// The public page of a card link: `/c/{token}` (HTML), `/c/{token}.vcf`
    /// (vCard 4) or `/c/{token}/qr.svg`; a friendly 404 page otherwise.
    pub async fn card_page(&self, path: &str) -> Response {
        use askama::Template as _;
        let (token, kind) = if let Some(t) = path.strip_suffix(".vcf") {
            (t, "vcf")
        } else if let Some(t) = path.strip_suffix("/qr.svg") {
            (t, "qr")
        } else {
            (path.trim_end_matches('/'), "html")
        };
        let valid = token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit());
        let card = if valid {
            match self.store.card_by_token(token).await {
                Ok(c) => c,
                Err(e) => return ApiError::from(e).into_response(),
            }
        } else {
            None
        };
        let reply = |status: StatusCode, ctype: &'static str, body: String| {
            let mut r = Response::new(body.into());
            *r.status_mut() = status;
            let h = r.headers_mut();
            h.insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static(ctype),
            );
            // Always the card as it is now (claim 13).
            h.insert(
                warp::http::header::CACHE_CONTROL,
                warp::http::HeaderValue::from_static("no-store"),
            );
            crate::site::security_headers(h);
            r
        };
        let Some(card) = card else {
            let page = crate::cards::MissingPage.render().unwrap_or_default();
            return reply(StatusCode::NOT_FOUND, "text/html; charset=utf-8", page);
        };
        let link = self.card_link(&card.token);
        match kind {
            "vcf" => reply(
                StatusCode::OK,
                "text/vcard; charset=utf-8",
                crate::cards::vcard(&card.info, &link),
            ),
            "qr" => match crate::cards::qr_svg(&link) {
                Ok(svg) => reply(StatusCode::OK, "image/svg+xml", svg),
                Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "qr", e).into_response(),
            },
            _ => match crate::cards::CardPage::new(
                &card,
                &link,
                self.form_token(&card.token, self.now()),
                crate::cards::countries(&self.click_countries(&card.owner).await, &card.info),
            )
            .render()
            {
                Ok(html) => reply(StatusCode::OK, "text/html; charset=utf-8", html),
                Err(e) => {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "template", e.to_string())
                        .into_response()
                }
            },
        }
    }
}

/// Every CDR of `payer` (or everyone's) in `[from, to)` seconds, all pages.
async fn all_cdrs(
    api: &Api,
    payer: Option<String>,
    from: u64,
    to: u64,
) -> Result<Vec<schema::model::Cdr>, ApiError> {
    let mut q = schema::model::CdrQuery {
        payer,
        from_ms: from.saturating_mul(1000),
        to_ms: to.saturating_mul(1000),
        after: None,
        limit: crate::cdrs::MAX_PAGE,
    };
    let mut out = Vec::new();
    loop {
        let page = api.store.cdrs(&q).await?;
        let full = page.len() == q.limit;
        q.after = page.last().map(|c| (c.setup_ms, c.call_id.clone()));
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// `from` and `to` (Unix seconds) of a period; `to` defaults to now.
fn period(api: &Api, query: &str) -> Result<(u64, u64), ApiError> {
    let pairs = query_pairs(query);
    let secs = |k: &str, default: u64| -> Result<u64, ApiError> {
        query_get(&pairs, k).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| ApiError::invalid(k, format!("{v:?} is not Unix seconds")))
        })
    };
    let from = secs("from", 0)?;
    let to = secs("to", api.now().saturating_add(1))?;
    if to <= from {
        return Err(ApiError::invalid("to", "must be after from"));
    }
    Ok((from, to))
}

/// A member's invoice for a period: JSON, or a printable page with
/// `format=html`.
#[utoipa::path(get, path = "/api/v1/members/{id}/invoice",
    params(("id" = String, Path), ("from" = Option<u64>, Query, description = "Unix seconds"),
        ("to" = Option<u64>, Query, description = "Unix seconds, exclusive; default now"),
        ("format" = Option<String>, Query, description = "json (default) or html")),
    responses((status = 200, body = crate::billing::Invoice), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn invoice(api: &Api, a: &Account, query: &str) -> Result<Response, ApiError> {
    let (from, to) = period(api, query)?;
    let ledger = api.store.ledger(&a.id).await?;
    let cdrs = all_cdrs(api, Some(a.id.clone()), from, to).await?;
    let currency = a.currency.as_deref().unwrap_or(&api.cfg.currency);
    let mut inv = crate::billing::invoice(&a.id, currency, from, to, &ledger, &cdrs);
    inv.dids = api
        .store
        .numbers_of(&a.id)
        .await?
        .into_iter()
        .filter_map(|n| {
            n.did.map(|d| crate::billing::InvoiceDid {
                number: n.number,
                monthly_price: d.monthly_price,
            })
        })
        .collect();
    let pairs = query_pairs(query);
    match query_get(&pairs, "format") {
        None | Some("json") => ok(&inv),
        Some("html") => {
            let mut r = Response::new(crate::billing::invoice_html(&inv).into());
            r.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            Ok(r)
        }
        Some(other) => Err(ApiError::invalid(
            "format",
            format!("{other:?}: json or html"),
        )),
    }
}

/// What each trunk's carrier is owed for a period (operator).
#[utoipa::path(get, path = "/api/v1/settlement",
    params(("from" = Option<u64>, Query), ("to" = Option<u64>, Query)),
    responses((status = 200, body = Vec<crate::billing::TrunkSettlement>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
async fn settlement(api: &Api, query: &str) -> Result<Response, ApiError> {
    let (from, to) = period(api, query)?;
    let cdrs = all_cdrs(api, None, from, to).await?;
    ok(&serde_json::json!({
        "from": from,
        "to": to,
        "currency": api.cfg.currency,
        "trunks": crate::billing::settlement(&cdrs),
    }))
}

/// An operator's adjustment of a member's balance.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    /// Idempotency key: the same key is posted once.
    pub key: String,
    /// Minor units, positive credits, negative debits.
    pub amount: i64,
    /// Why (shown on the invoice).
    pub reason: String,
}

/// An operator's credit or debit (idempotent by key).
#[utoipa::path(post, path = "/api/v1/members/{id}/adjustments", params(("id" = String, Path)), request_body = Adjustment,
    responses((status = 200, body = TopUpResult), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn adjust(api: &Api, a: &Account, b: Adjustment) -> Result<TopUpResult, ApiError> {
    if b.key.is_empty() || b.key.len() > 100 {
        return Err(ApiError::invalid("key", "1 to 100 characters"));
    }
    if b.amount == 0 {
        return Err(ApiError::invalid("amount", "cannot be zero"));
    }
    if b.reason.trim().is_empty() || b.reason.len() > 200 {
        return Err(ApiError::invalid("reason", "1 to 200 characters"));
    }
    let entry = LedgerEntry {
        account: a.id.clone(),
        key: format!("adjust:{}", b.key),
        amount: b.amount,
        reason: b.reason,
        at: api.now(),
    };
    match api.store.post(&entry).await? {
        Posted::Posted(balance) => Ok(TopUpResult {
            balance,
            posted: true,
        }),
        Posted::Duplicate(balance) => Ok(TopUpResult {
            balance,
            posted: false,
        }),
        Posted::Insufficient(balance) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "insufficient_balance",
            format!("the balance is {balance}; a debit cannot take it below zero"),
        )),
    }
}

/// A member's CDRs, a page at a time (`next` is the cursor of the next).
#[utoipa::path(get, path = "/api/v1/members/{id}/cdrs",
    params(("id" = String, Path), ("from" = Option<u64>, Query, description = "Unix seconds"),
        ("to" = Option<u64>, Query), ("after" = Option<String>, Query, description = "cursor"),
        ("limit" = Option<usize>, Query, description = "1 to 1000, default 100"),
        ("format" = Option<String>, Query, description = "json (default) or csv")),
    responses((status = 200, description = "{cdrs, next} or CSV"), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
#[allow(dead_code, reason = "documents a route served by cdr_page")]
fn member_cdrs_doc() {}

/// Every payer's CDRs (operator; `payer` narrows to one).
#[utoipa::path(get, path = "/api/v1/cdrs",
    params(("payer" = Option<String>, Query), ("from" = Option<u64>, Query), ("to" = Option<u64>, Query),
        ("after" = Option<String>, Query), ("limit" = Option<usize>, Query), ("format" = Option<String>, Query)),
    responses((status = 200, description = "{cdrs, next} or CSV"), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[allow(dead_code, reason = "documents a route served by cdr_page")]
fn cdrs_doc() {}

/// A page of CDRs: JSON `{"cdrs": [...], "next": cursor}` or, with
/// `format=csv`, CSV with the next cursor in `X-Next-Cursor`.
async fn cdr_page(api: &Api, payer: Option<String>, query: &str) -> Result<Response, ApiError> {
    let pairs = query_pairs(query);
    let get = |k| query_get(&pairs, k);
    let q = crate::cdrs::query(payer, get("from"), get("to"), get("after"), get("limit"))
        .map_err(|(field, why)| ApiError::invalid(field, why))?;
    let page = api.store.cdrs(&q).await?;
    let next = (page.len() == q.limit)
        .then(|| page.last().map(crate::cdrs::cursor))
        .flatten();
    match get("format") {
        None | Some("json") => ok(&serde_json::json!({ "cdrs": page, "next": next })),
        Some("csv") => {
            let mut r = Response::new(crate::cdrs::csv(&page).into());
            let h = r.headers_mut();
            h.insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Some(n) = next.and_then(|n| warp::http::HeaderValue::from_str(&n).ok()) {
                h.insert("x-next-cursor", n);
            }
            Ok(r)
        }
        Some(other) => Err(ApiError::invalid(
            "format",
            format!("{other:?}: json or csv"),
        )),
    }
}

fn no_content() -> Response {
    let mut r = Response::new(Vec::new().into());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    if req.body.is_empty() {
        return Err(ApiError::bad_request("a JSON body is required"));
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            "malformed_json"
        } else {
            "bad_request"
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, format!("request body: {e}"))
    })
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn region_param(v: Option<&str>) -> Result<Option<RegionId>, ApiError> {
    v.map(|r| {
        numbering::region(r)
            .ok_or_else(|| ApiError::invalid("from", format!("{r} is not an ISO 3166 region")))
    })
    .transpose()
}

// ---------------------------------------------------------------- validation

fn valid_login(login: &str) -> Result<String, ApiError> {
    match numbering::classify(login, RegionId::US, &numbering::Plan::default()) {
        Ok(Dialled::Alias(Alias::Email(e))) => Ok(e.to_ascii_lowercase()),
        _ => Err(ApiError::invalid("login", "must be an e-mail address")),
    }
}

fn valid_password(p: &str, min: usize) -> Result<(), ApiError> {
    let n = p.chars().count();
    if n < min || n > 256 {
        return Err(ApiError::invalid(
            "password",
            format!("{min} to 256 characters"),
        ));
    }
    Ok(())
}

fn valid_name(n: &str) -> Result<String, ApiError> {
    let t = n.trim();
    if t.is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control) {
        return Err(ApiError::invalid("name", "1 to 100 printable characters"));
    }
    Ok(t.to_owned())
}

fn valid_language(l: &str) -> Result<String, ApiError> {
    let mut parts = l.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if first_ok && rest_ok && l.len() <= 35 {
        Ok(l.to_owned())
    } else {
        Err(ApiError::invalid(
            "language",
            "a BCP 47 tag such as en, ko or pt-BR",
        ))
    }
}

fn valid_pstn(
    field: &str,
    input: &str,
    home: RegionId,
    plan: &numbering::Plan,
) -> Result<String, ApiError> {
    match numbering::classify(input, home, plan) {
        Ok(Dialled::Pstn(p)) => Ok(p.e164),
        Ok(other) => Err(ApiError::invalid(
            field,
            format!("{input} is not a PSTN number ({other:?})"),
        )),
        Err(e) => Err(ApiError::invalid(field, e)),
    }
}

fn valid_uri(u: &str) -> Result<String, ApiError> {
    let lower = u.to_ascii_lowercase();
    let ok_scheme = ["sip:", "sips:", "tel:", "mailto:", "https:"]
        .iter()
        .any(|s| lower.starts_with(s) && lower.len() > s.len());
    if !ok_scheme
        || u.len() > 256
        || u.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '!')
    {
        return Err(ApiError::invalid(
            "uris",
            format!("{u:?} is not a sip:, sips:, tel:, mailto: or https: URI without spaces"),
        ));
    }
    Ok(u.to_owned())
}

fn view(a: &Account, aliases: Vec<String>, numbers: Vec<String>) -> MemberView {
    MemberView {
        id: a.id.clone(),
        login: a.login.clone(),
        kind: a.kind.as_str().into(),
        name: a.name.clone(),
        language: a.language.clone(),
        contact_pstn: a.contact_pstn.clone(),
        contact_pstn_verified: a.verified_pstn().is_some(),
        other_numbers: a
            .other_numbers
            .iter()
            .map(|o| OtherNumberView {
                carrier: o.carrier.clone(),
                number: o.number.clone(),
            })
            .collect(),
        uris: a.uris.clone(),
        aliases,
        offices: a.offices.iter().map(OfficeView::from).collect(),
        default_office: a.default_office.clone(),
        forward_to_pstn: a.forward_to_pstn,
        numbers,
    }
}

async fn full_view(api: &Api, a: &Account) -> Result<MemberView, ApiError> {
    let aliases = api.store.aliases_of(&a.id).await?;
    let numbers = api
        .store
        .numbers_of(&a.id)
        .await?
        .into_iter()
        .map(|r| r.number)
        .collect();
    Ok(view(a, aliases, numbers))
}

fn number_view(api: &Api, r: &NumberRecord) -> NumberView {
    NumberView {
        number: r.number.clone(),
        display: display(&r.number),
        kind: r.kind.as_str().into(),
        country: r.country.clone(),
        area: r.area.clone(),
        price_class: match r.price_class {
            schema::model::PriceClass::Standard => "standard".into(),
            schema::model::PriceClass::Premium => "premium".into(),
        },
        price: r.price,
        currency: api.cfg.currency.clone(),
    }
}

// ---------------------------------------------------------------- handlers

async fn start_session(api: &Api, a: &Account) -> Result<(String, u64), ApiError> {
    let (token, token_hash) = auth::new_token();
    let expires_at = api.now() + api.cfg.session_secs;
    api.store
        .put_session(&Session {
            token_hash,
            account: a.id.clone(),
            expires_at,
        })
        .await?;
    Ok((token, expires_at))
}

/// Sign up as an individual or a company.
#[utoipa::path(post, path = "/api/v1/signup", request_body = SignUp, responses(
    (status = 201, body = SignedIn), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub(crate) async fn sign_up(api: &Api, b: SignUp) -> Result<SignedIn, ApiError> {
    let login = valid_login(&b.login)?;
    valid_password(&b.password, 10)?;
    let name = valid_name(&b.name)?;
    let language = valid_language(b.language.as_deref().unwrap_or("en"))?;
    let d = &api.cfg.directory;
    let contact_pstn = b
        .contact_pstn
        .as_deref()
        .map(|p| valid_pstn("contact_pstn", p, d.home, &d.plan))
        .transpose()?;
    if api.store.account_by_login(&login).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "login_taken",
            format!("{login} already has an account"),
        ));
    }
    let password = b.password;
    let password_hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e))?;
    for _ in 0..8 {
        let id = format!(
            "{}",
            rand::thread_rng().gen_range(1_000_000_000u64..10_000_000_000)
        );
        if api.store.member(&id).await?.is_some() {
            continue;
        }
        let a = Account {
            language: language.clone(),
            contact_pstn: contact_pstn.clone(),
            password_hash: password_hash.clone(),
            created_at: api.now(),
            ..Account::new(&id, &login, b.kind, &name)
        };
        if api.store.insert_account(&a).await? {
            let (token, expires_at) = start_session(api, &a).await?;
            return Ok(SignedIn {
                token,
                expires_at,
                member: view(&a, Vec::new(), Vec::new()),
            });
        }
        if api.store.account_by_login(&login).await?.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "login_taken",
                format!("{login} already has an account"),
            ));
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "could not allocate an id; retry",
    ))
}

/// Sign in; attempts are limited per login and per address.
#[utoipa::path(post, path = "/api/v1/signin", request_body = SignIn, responses(
    (status = 200, body = SignedIn), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn sign_in(
    api: &Api,
    b: SignIn,
    from: Option<IpAddr>,
) -> Result<SignedIn, ApiError> {
    let login = b.login.trim().to_ascii_lowercase();
    if login.len() > auth::MAX_LOGIN {
        return Err(ApiError::invalid("login", "at most 254 characters"));
    }
    if !api.limiter.allow_addr(from) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many sign-in attempts from this address; wait a minute",
        ));
    }
    // A login that failed repeatedly is answered after a growing wait: a
    // guesser is slowed down, its owner still gets in.
    let wait = api
        .limiter
        .delay(&login, tokio::time::Instant::now().into_std());
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let bad = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "wrong login or password",
        )
    };
    let account = api.store.account_by_login(&login).await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let password = b.password;
    // Hash even for unknown logins so timing does not tell which exist.
    let ok = tokio::task::spawn_blocking(move || match stored {
        Some(h) => auth::verify_password(&password, &h),
        None => {
            let _ = auth::hash_password(&password);
            false
        }
    })
    .await
    .unwrap_or(false);
    let Some(a) = account.filter(|_| ok) else {
        api.limiter
            .failed(&login, tokio::time::Instant::now().into_std());
        return Err(bad());
    };
    api.limiter.succeeded(&login);
    let (token, expires_at) = start_session(api, &a).await?;
    Ok(SignedIn {
        token,
        expires_at,
        member: full_view(api, &a).await?,
    })
}

/// End the session of the token sent.
#[utoipa::path(post, path = "/api/v1/signout", responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn sign_out(api: &Api, req: &Request) -> Result<(), ApiError> {
    let token = req
        .authorization
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    api.store
        .delete_session(&auth::token_hash(token.trim()))
        .await?;
    Ok(())
}

/// Resolve a number (any accepted form) or an alias to its holder's URIs.
#[utoipa::path(get, path = "/api/v1/resolve/{query}", params(
    ("query" = String, Path, description = "number or alias"),
    ("from" = Option<String>, Query, description = "caller's region for national formats")),
    responses((status = 200, body = Resolved), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn resolve(api: &Api, q: &str, query: &str) -> Result<Resolved, ApiError> {
    let pairs = query_pairs(query);
    let from = region_param(query_get(&pairs, "from"))?;
    api.cfg.directory.resolve(api.store.as_ref(), q, from).await
}

/// Search numbers for sale.
#[utoipa::path(get, path = "/api/v1/numbers", params(
    ("country" = Option<String>, Query), ("area" = Option<String>, Query),
    ("kind" = Option<String>, Query, description = "individual or company"),
    ("contains" = Option<String>, Query, description = "digits"),
    ("limit" = Option<usize>, Query, description = "1 to 500, default 50")),
    responses((status = 200, body = [NumberView]), (status = 422, body = ErrorBody)))]
async fn search(api: &Api, query: &str) -> Result<Vec<NumberView>, ApiError> {
    let pairs = query_pairs(query);
    let country = region_param(query_get(&pairs, "country"))?.map(|r| r.as_ref().to_owned());
    let kind = match query_get(&pairs, "kind") {
        None => None,
        Some("individual") => Some(AccountKind::Individual),
        Some("company") => Some(AccountKind::Company),
        Some(k) => {
            return Err(ApiError::invalid(
                "kind",
                format!("{k} is neither individual nor company"),
            ));
        }
    };
    let digits = |field: &str| -> Result<Option<String>, ApiError> {
        match query_get(&pairs, field) {
            Some(v) if v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) => {
                Err(ApiError::invalid(field, "up to 20 digits"))
            }
            v => Ok(v.map(str::to_owned)),
        }
    };
    let limit = match query_get(&pairs, "limit") {
        None => 50,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "1 to 500"))?,
    };
    let q = NumberQuery {
        country,
        area: digits("area")?,
        kind,
        contains: digits("contains")?,
        limit,
    };
    let found = api.store.search_numbers(&q, api.now()).await?;
    Ok(found.iter().map(|r| number_view(api, r)).collect())
}

/// Ask for a number: approved with a hold, or refused with the reason.
#[utoipa::path(post, path = "/api/v1/numbers/{number}/hold", params(("number" = String, Path)),
    responses((status = 201, body = HoldView), (status = 402, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn hold(api: &Api, me: &Account, n: &str) -> Result<HoldView, ApiError> {
    let d = &api.cfg.directory;
    let key = sales::inventory_key(n, d.home, &d.plan)?;
    for _ in 0..4 {
        let now = api.now();
        let record = api.store.number(&key).await?;
        // What the member can spend: money held for its live calls is not.
        let held: i64 = api
            .store
            .holds(&me.id, now)
            .await?
            .iter()
            .map(|h| h.amount)
            .sum();
        let balance = api.store.balance(&me.id).await? - held;
        sales::approve(&key, record.as_ref(), me, balance, now)?;
        let Some(r) = record else { break };
        let hold_id = format!("h{:016x}", rand::thread_rng().r#gen::<u64>());
        let next = sales::hold(&r, &me.id, &hold_id, now, api.cfg.hold_secs);
        if next == r || api.store.update_number(&next, r.version).await? {
            let NumberState::Held { hold, until, .. } = &next.state else {
                break;
            };
            return Ok(HoldView {
                hold: hold.clone(),
                number: number_view(api, &next),
                until: *until,
            });
        }
        // Someone changed the record between the read and the write: decide again.
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "contended",
        "the number is being changed; retry",
    ))
}

/// Confirm a hold: the price is settled from the balance and the number assigned.
#[utoipa::path(post, path = "/api/v1/numbers/{number}/confirm", params(("number" = String, Path)),
    request_body = ConfirmBody,
    responses((status = 200, body = Purchase), (status = 402, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
async fn confirm(api: &Api, me: &Account, n: &str, b: ConfirmBody) -> Result<Purchase, ApiError> {
    let d = &api.cfg.directory;
    let key = sales::inventory_key(n, d.home, &d.plan)?;
    let r = api
        .store
        .number(&key)
        .await?
        .ok_or_else(|| sales::Refusal::NotInInventory(key.clone()))?;
    let now = api.now();
    let charge_key = format!("buy:{key}:{}", b.hold);
    let next = match sales::confirm(&r, &me.id, &b.hold, now)? {
        sales::Confirm::Done => {
            return Ok(Purchase {
                number: key,
                price: r.price,
                balance: api.store.balance(&me.id).await?,
            });
        }
        sales::Confirm::Settle(next) => next,
    };
    // Money first, under the hold's key (a retried confirm is charged once);
    // if the number cannot be written afterwards, the charge is refunded
    // under a key of its own.
    let entry = LedgerEntry {
        account: me.id.clone(),
        key: charge_key.clone(),
        amount: -r.price,
        reason: format!("number {key}"),
        at: now,
    };
    match api.store.post(&entry).await? {
        Posted::Insufficient(balance) => {
            return Err(sales::Refusal::InsufficientBalance {
                price: r.price,
                balance,
            }
            .into());
        }
        Posted::Posted(_) | Posted::Duplicate(_) => {}
    }
    if api.store.update_number(&next, r.version).await? {
        return Ok(Purchase {
            number: key,
            price: r.price,
            balance: api.store.balance(&me.id).await?,
        });
    }
    // The write lost: if a concurrent confirm of this same hold sold it to
    // this member, the (single, keyed) charge stands; otherwise it is
    // refunded, once, under a key of its own.
    let now_r = api.store.number(&key).await?;
    if let Some(r2) = &now_r
        && matches!(&r2.state, NumberState::Sold { account, .. } if account == &me.id)
    {
        return Ok(Purchase {
            number: key,
            price: r.price,
            balance: api.store.balance(&me.id).await?,
        });
    }
    let refund = LedgerEntry {
        account: me.id.clone(),
        key: format!("refund:{charge_key}"),
        amount: r.price,
        reason: format!("number {key} not assigned"),
        at: now,
    };
    api.store.post(&refund).await?;
    match now_r {
        Some(r2) if matches!(r2.state, NumberState::Sold { .. }) => {
            Err(sales::Refusal::AlreadySold(key).into())
        }
        _ => Err(sales::Refusal::HoldExpired(b.hold).into()),
    }
}

/// All members (operator).
#[utoipa::path(get, path = "/api/v1/members", responses((status = 200, body = [MemberView]), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
async fn members(api: &Api) -> Result<Vec<MemberView>, ApiError> {
    let mut out = Vec::new();
    for a in api.store.accounts().await? {
        out.push(full_view(api, &a).await?);
    }
    Ok(out)
}

/// A member's data (`me` for the caller's own).
#[utoipa::path(get, path = "/api/v1/members/{id}", params(("id" = String, Path)),
    responses((status = 200, body = MemberView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn member_get(api: &Api, a: &Account) -> Result<MemberView, ApiError> {
    full_view(api, a).await
}

/// Change a member's registration data.
#[utoipa::path(patch, path = "/api/v1/members/{id}", params(("id" = String, Path)), request_body = MemberPatch,
    responses((status = 200, body = MemberView), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn member_patch(api: &Api, mut a: Account, p: MemberPatch) -> Result<MemberView, ApiError> {
    let d = &api.cfg.directory;
    let expected = a.version;
    if let Some(n) = p.name {
        a.name = valid_name(&n)?;
    }
    if let Some(l) = p.language {
        a.language = valid_language(&l)?;
    }
    if let Some(c) = p.contact_pstn {
        a.contact_pstn = if c.trim().is_empty() {
            None
        } else {
            Some(valid_pstn("contact_pstn", &c, d.home, &d.plan)?)
        };
    }
    if let Some(list) = p.other_numbers {
        if list.len() > 20 {
            return Err(ApiError::invalid("other_numbers", "at most 20"));
        }
        a.other_numbers = list
            .into_iter()
            .map(|o| {
                let number = numbering::normalize(&o.number)
                    .map_err(|e| ApiError::invalid("other_numbers", e))?;
                let carrier = o.carrier.trim().to_owned();
                if carrier.is_empty() || carrier.len() > 64 {
                    return Err(ApiError::invalid(
                        "other_numbers",
                        "carrier: 1 to 64 characters",
                    ));
                }
                Ok(OtherNumber { carrier, number })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(uris) = p.uris {
        if uris.len() > 10 {
            return Err(ApiError::invalid("uris", "at most 10"));
        }
        a.uris = uris
            .iter()
            .map(|u| valid_uri(u))
            .collect::<Result<_, _>>()?;
    }
    if let Some(offices) = p.offices {
        if a.kind != AccountKind::Company {
            return Err(ApiError::invalid("offices", "only companies have offices"));
        }
        let mut out: Vec<Office> = Vec::new();
        for o in offices {
            let country = numbering::region(&o.country)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "offices",
                        format!("{} is not an ISO 3166 region", o.country),
                    )
                })?
                .as_ref()
                .to_owned();
            if out.iter().any(|x| x.country == country) {
                return Err(ApiError::invalid(
                    "offices",
                    format!("one office per country; {country} twice"),
                ));
            }
            let contact = match o.kind.as_str() {
                "sip" if schema::model::is_valid_number(&o.target) => {
                    OfficeContact::Sip { user: o.target }
                }
                "sip" => return Err(ApiError::invalid("offices", "a SIP user is 3 to 20 digits")),
                "pstn" => OfficeContact::Pstn {
                    number: valid_pstn("offices", &o.target, d.home, &d.plan)?,
                },
                "trunk" if !o.target.trim().is_empty() && o.target.len() <= 64 => {
                    OfficeContact::Trunk { name: o.target }
                }
                "trunk" => {
                    return Err(ApiError::invalid(
                        "offices",
                        "a trunk name is 1 to 64 characters",
                    ));
                }
                other => {
                    return Err(ApiError::invalid(
                        "offices",
                        format!("type {other} is not sip, pstn or trunk"),
                    ));
                }
            };
            out.push(Office { country, contact });
        }
        a.offices = out;
    }
    if let Some(f) = p.forward_to_pstn {
        a.forward_to_pstn = f;
    }
    if let Some(def) = p.default_office {
        a.default_office = if def.is_empty() {
            None
        } else {
            Some(def.to_ascii_uppercase())
        };
    }
    if let Some(def) = &a.default_office
        && !a.offices.iter().any(|o| &o.country == def)
    {
        return Err(ApiError::invalid(
            "default_office",
            format!("no office in {def}"),
        ));
    }
    if !api.store.update_account(&a, expected).await? {
        return Err(ApiError::conflict(
            "the member changed meanwhile; read and retry",
        ));
    }
    a.version = expected + 1;
    full_view(api, &a).await
}

/// Ask for an alias (a domain name or an e-mail address): it resolves to
/// the member once proven (202 with the proof to give; an e-mail alias is
/// sent a link, a domain publishes a TXT record and is checked with
/// `POST .../check`), or at once when the operator adds it (200).
#[utoipa::path(put, path = "/api/v1/members/{id}/aliases/{alias}", params(("id" = String, Path), ("alias" = String, Path)),
    responses((status = 200, body = [String]), (status = 202), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn alias_put(
    api: &Api,
    a: Account,
    alias: &str,
    vouched: bool,
) -> Result<Response, ApiError> {
    aliases::ask(api, a, alias, vouched).await
}

/// Whom the operator assigns a number to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Assign {
    account: String,
}

/// `PUT /api/v1/numbers/{n}/holder` (operator): assign an available number
/// (a DID, or one of the plan's) to a member without a sale.
async fn number_assign(api: &Api, n: &str, b: Assign) -> Result<serde_json::Value, ApiError> {
    let account = api.account(&b.account).await?;
    let key = if n.starts_with('+') {
        n.to_owned()
    } else {
        let d = &api.cfg.directory;
        sales::inventory_key(n, d.home, &d.plan)?
    };
    let Some(mut r) = api.store.number(&key).await? else {
        return Err(ApiError::not_found(format!(
            "{key} is not in the inventory"
        )));
    };
    if !r.available_at(api.now()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_available",
            format!("{key} is sold or held"),
        ));
    }
    let expected = r.version;
    r.state = NumberState::Sold {
        account: account.id.clone(),
        since: api.now(),
    };
    if !api.store.update_number(&r, expected).await? {
        return Err(ApiError::conflict("the number changed meanwhile; retry"));
    }
    Ok(serde_json::json!({ "number": key, "holder": account.id }))
}

/// Give up an alias.
#[utoipa::path(delete, path = "/api/v1/members/{id}/aliases/{alias}", params(("id" = String, Path), ("alias" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn alias_delete(api: &Api, a: &Account, alias: &str) -> Result<(), ApiError> {
    let alias = alias.to_ascii_lowercase();
    let pending = a.pending_aliases.iter().any(|p| p.alias == alias);
    if pending {
        // Asked for and not proven: the request is withdrawn.
        let mut a = a.clone();
        a.pending_aliases.retain(|p| p.alias != alias);
        if !api.store.update_account(&a, a.version).await? {
            return Err(member_changed());
        }
    }
    if api.store.release_alias(&alias, &a.id).await? || pending {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "{alias} is not an alias of this member"
        )))
    }
}

/// Set the member's SIP password (its SIP username is its id). Existing
/// registrations end: phones register again with the new password.
#[utoipa::path(put, path = "/api/v1/members/{id}/sip", params(("id" = String, Path)), request_body = SipPassword,
    responses((status = 200, body = SipCredentials), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn sip_put(api: &Api, a: &Account, b: SipPassword) -> Result<SipCredentials, ApiError> {
    valid_password(&b.password, 8)?;
    let realm = api.cfg.realm.clone();
    let m = Member {
        number: a.id.clone(),
        name: a.name.clone(),
        ha1_md5: engine::sip::digest::Algorithm::Md5.ha1(&a.id, &realm, &b.password),
        ha1_sha256: engine::sip::digest::Algorithm::Sha256.ha1(&a.id, &realm, &b.password),
        realm: realm.clone(),
        created_at: api.now(),
    };
    api.store.remove_member(&a.id).await?;
    if !api.store.insert_member(&m).await? {
        return Err(ApiError::conflict("credentials changed meanwhile; retry"));
    }
    Ok(SipCredentials {
        username: a.id.clone(),
        realm,
    })
}

fn provisioning_doc(api: &Api, a: &Account, credentials_set: bool) -> Provisioning {
    let sip_uri = format!("sip:{}@{}", a.id, api.cfg.directory.sip_domain);
    let registrar = format!("sip:{}", api.cfg.registrar);
    let qr = format!("sip:{}@{};transport=udp", a.id, api.cfg.registrar);
    Provisioning {
        sip_uri,
        registrar,
        transports: vec!["udp".into(), "tcp".into()],
        username: a.id.clone(),
        realm: api.cfg.realm.clone(),
        display_name: a.name.clone(),
        credentials_set,
        qr,
    }
}

/// How to set up a softphone anywhere ("flash card").
#[utoipa::path(get, path = "/api/v1/members/{id}/provisioning", params(("id" = String, Path)),
    responses((status = 200, body = Provisioning)), security(("bearer" = [])))]
async fn provisioning(api: &Api, a: &Account) -> Result<Provisioning, ApiError> {
    let set = api.store.member(&a.id).await?.is_some();
    Ok(provisioning_doc(api, a, set))
}

/// The QR code of the provisioning address, for a softphone to scan.
pub fn qr_svg(text: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "qr", e.to_string()))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .build())
}

/// The provisioning QR code (SVG).
#[utoipa::path(get, path = "/api/v1/members/{id}/provisioning.svg", params(("id" = String, Path)),
    responses((status = 200, content_type = "image/svg+xml", body = String)), security(("bearer" = [])))]
async fn provisioning_svg(api: &Api, a: &Account) -> Result<Response, ApiError> {
    let doc = provisioning_doc(api, a, false);
    let svg = qr_svg(&doc.qr)?;
    let mut r = Response::new(svg.into());
    r.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("image/svg+xml"),
    );
    Ok(r)
}

/// The member's numbers.
#[utoipa::path(get, path = "/api/v1/members/{id}/numbers", params(("id" = String, Path)),
    responses((status = 200, body = [NumberView])), security(("bearer" = [])))]
async fn member_numbers(api: &Api, a: &Account) -> Result<Vec<NumberView>, ApiError> {
    let list = api.store.numbers_of(&a.id).await?;
    Ok(list.iter().map(|r| number_view(api, r)).collect())
}

/// Release a number: it returns to the inventory (no refund).
#[utoipa::path(delete, path = "/api/v1/members/{id}/numbers/{number}", params(("id" = String, Path), ("number" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn number_release(api: &Api, a: &Account, n: &str) -> Result<(), ApiError> {
    let d = &api.cfg.directory;
    let key = sales::inventory_key(n, d.home, &d.plan)?;
    let nf = || ApiError::not_found(format!("{key} is not a number of this member"));
    let r = api.store.number(&key).await?.ok_or_else(nf)?;
    if !matches!(&r.state, NumberState::Sold { account, .. } if account == &a.id) {
        return Err(nf());
    }
    let mut next = r.clone();
    next.state = NumberState::Available;
    if api.store.update_number(&next, r.version).await? {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "contended",
            "the number changed meanwhile; retry",
        ))
    }
}

/// Balance and ledger entries.
#[utoipa::path(get, path = "/api/v1/members/{id}/ledger", params(("id" = String, Path)),
    responses((status = 200, body = LedgerView)), security(("bearer" = [])))]
async fn ledger(api: &Api, a: &Account) -> Result<LedgerView, ApiError> {
    let entries = api.store.ledger(&a.id).await?;
    Ok(LedgerView {
        balance: entries.iter().map(|e| e.amount).sum(),
        currency: api.cfg.currency.clone(),
        entries: entries
            .into_iter()
            .map(|e| EntryView {
                key: e.key,
                amount: e.amount,
                reason: e.reason,
                at: e.at,
            })
            .collect(),
    })
}

/// Credit a member's balance (operator); idempotent by key.
#[utoipa::path(post, path = "/api/v1/members/{id}/topups", params(("id" = String, Path)), request_body = TopUp,
    responses((status = 200, body = TopUpResult), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn top_up(api: &Api, a: &Account, b: TopUp) -> Result<TopUpResult, ApiError> {
    if b.amount <= 0 || b.amount > 100_000_000_000 {
        return Err(ApiError::invalid(
            "amount",
            "a positive number of minor units, at most 100,000,000,000",
        ));
    }
    if b.key.is_empty() || b.key.len() > 128 {
        return Err(ApiError::invalid("key", "1 to 128 characters"));
    }
    let entry = LedgerEntry {
        account: a.id.clone(),
        key: format!("topup:{}", b.key),
        amount: b.amount,
        reason: b.reason.unwrap_or_else(|| "top-up".into()),
        at: api.now(),
    };
    match api.store.post(&entry).await? {
        Posted::Posted(balance) => Ok(TopUpResult {
            posted: true,
            balance,
        }),
        Posted::Duplicate(balance) => Ok(TopUpResult {
            posted: false,
            balance,
        }),
        Posted::Insufficient(balance) => Ok(TopUpResult {
            posted: false,
            balance,
        }),
    }
}

/// Load numbers into the inventory (operator).
#[utoipa::path(post, path = "/api/v1/inventory", request_body = InventoryBody,
    responses((status = 200, body = ImportReport), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
async fn inventory_post(api: &Api, b: InventoryBody) -> Result<ImportReport, ApiError> {
    if b.numbers.len() > 10_000 {
        return Err(ApiError::invalid(
            "numbers",
            "at most 10,000 rows a request",
        ));
    }
    Ok(inventory::import(
        api.store.as_ref(),
        &api.cfg.directory.plan,
        &api.cfg.prices,
        b.numbers,
    )
    .await?)
}

/// The public URIs a member would resolve to (used by the provisioning page).
pub fn uris_of(api: &Api, a: &Account) -> Vec<String> {
    public_uris(a, &api.cfg.directory.sip_domain)
}

/// How a number would be routed now: the ranked trunks with their rated
/// cost, the number each would receive, and why any would be skipped
/// (operator).
#[utoipa::path(get, path = "/api/v1/routes/{number}", params(("number" = String, Path),
    ("from" = Option<String>, Query, description = "caller's region for national formats")),
    responses((status = 200, body = RoutePreview), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
fn route_preview(api: &Api, n: &str, query: &str) -> Result<RoutePreview, ApiError> {
    let Some((routing, health)) = &api.routes else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_routing",
            "this edge runs without a node's routing",
        ));
    };
    let pairs = query_pairs(query);
    let from = region_param(query_get(&pairs, "from"))?.unwrap_or(routing.home);
    let (kind, e164, candidates) = match numbering::classify(n, from, &routing.plan) {
        Err(e) => return Err(ApiError::invalid("number", e)),
        Ok(Dialled::Pstn(p)) => {
            let list = routing
                .lcr
                .load()
                .candidates(&p.e164, |t| {
                    health(t).or(Some(engine::lcr::Health::UNLIMITED))
                })
                .into_iter()
                .map(|c| {
                    let number = routing
                        .trunks
                        .iter()
                        .find(|t| t.name == c.trunk)
                        .and_then(|t| engine::routing::translate(&p.e164, &t.translation).ok())
                        .unwrap_or_default();
                    let foreign = routing
                        .foreign_owner(p.cc, &c.trunk)
                        .map(|o| format!("owned by center {o}"));
                    RouteCandidate {
                        skipped: foreign.or(c.skip.as_ref().map(|s| match s {
                            engine::lcr::Skip::Down => "down".to_owned(),
                            engine::lcr::Skip::Unregistered => "not registered".to_owned(),
                            engine::lcr::Skip::Full { channels, max } => {
                                format!("full {channels}/{max}")
                            }
                            engine::lcr::Skip::CpsLimit => "cps limit".to_owned(),
                            engine::lcr::Skip::Unknown => "unknown".to_owned(),
                        })),
                        trunk: c.trunk,
                        prefix_len: c.prefix_len,
                        per_minute: c.rate.per_minute,
                        connect_fee: c.rate.connect_fee,
                        increments: (c.rate.first_increment, c.rate.next_increment),
                        number,
                    }
                })
                .collect();
            ("pstn", Some(p.e164), list)
        }
        Ok(Dialled::Carrier { carrier, number }) => (
            "carrier",
            None,
            vec![RouteCandidate {
                skipped: health(&carrier)
                    .filter(|h| !h.up)
                    .map(|_| "down".to_owned()),
                trunk: carrier,
                prefix_len: 0,
                per_minute: 0,
                connect_fee: 0,
                increments: (0, 0),
                number,
            }],
        ),
        Ok(Dialled::Alias(_)) => ("alias", None, Vec::new()),
        Ok(_) => ("on_net", None, Vec::new()),
    };
    Ok(RoutePreview {
        query: n.to_owned(),
        kind: kind.into(),
        e164,
        candidates,
    })
}

/// A stored sell plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanStored {
    /// Its name.
    pub plan: String,
    /// Prefixes it prices.
    pub prefixes: usize,
    /// The stored plan's version (a running node swaps it in within 10 s).
    pub version: u64,
}

/// Store or replace a sell plan (operator): the body is a rate-deck CSV of
/// sell prices; a bad row refuses the whole file, naming the row.
#[utoipa::path(put, path = "/api/v1/plans/{name}", params(("name" = String, Path)),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = PlanStored), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn plan_put(api: &Api, name: &str, body: &[u8]) -> Result<PlanStored, ApiError> {
    if name.is_empty()
        || name.len() > 40
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::invalid("name", "1 to 40 letters, digits, - or _"));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::invalid("plan", "the CSV is not UTF-8"))?;
    let deck = crate::rates::parse_deck(text).map_err(|e| ApiError::invalid("plan", e))?;
    let version = api.store.put_plan(name, text).await?;
    Ok(PlanStored {
        plan: name.to_owned(),
        prefixes: deck.len(),
        version,
    })
}

/// The plan a member's calls are charged by, and the currency its
/// balance is kept in.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPlan {
    /// A stored plan's name; `null`: the node's default plan.
    pub plan: Option<String>,
    /// ISO 4217 code its balance is kept in; absent: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// Assign a member its sell plan (operator).
#[utoipa::path(put, path = "/api/v1/members/{id}/plan", params(("id" = String, Path)), request_body = MemberPlan,
    responses((status = 200, body = MemberPlan), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
async fn member_plan(api: &Api, mut a: Account, b: MemberPlan) -> Result<MemberPlan, ApiError> {
    if let Some(name) = &b.plan
        && api.store.plan(name).await?.is_none()
    {
        return Err(ApiError::invalid("plan", format!("no plan {name}")));
    }
    if let Some(c) = &b.currency
        && (c.len() != 3 || !c.bytes().all(|x| x.is_ascii_uppercase()))
    {
        return Err(ApiError::invalid(
            "currency",
            "an ISO 4217 code such as USD",
        ));
    }
    let expected = a.version;
    a.plan = b.plan.clone();
    if let Some(c) = &b.currency {
        a.currency = Some(c.clone());
    }
    if !api.store.update_account(&a, expected).await? {
        return Err(ApiError::conflict(
            "the member changed meanwhile; read and retry",
        ));
    }
    Ok(b)
}

/// A replaced rate deck.
#[derive(Debug, Serialize, ToSchema)]
pub struct RatesReplaced {
    /// The trunk.
    pub trunk: String,
    /// Prefixes in its deck now.
    pub prefixes: usize,
    /// The stored deck's version.
    pub version: u64,
}

/// Replace a trunk's rate deck (operator). The body is the CSV file
/// (`prefix,per_minute,connect_fee,first_increment,next_increment`); it is
/// validated whole, stored, and swapped in while calls run.
#[utoipa::path(put, path = "/api/v1/trunks/{name}/rates", params(("name" = String, Path)),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = RatesReplaced), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn rates_put(api: &Api, name: &str, body: &[u8]) -> Result<RatesReplaced, ApiError> {
    let Some((routing, _)) = &api.routes else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_routing",
            "this edge runs without a node's routing",
        ));
    };
    let Some(route) = routing.trunks.iter().find(|t| t.name == name) else {
        return Err(ApiError::not_found(format!("no trunk {name}")));
    };
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid("rates", "the CSV is not UTF-8"))?;
    let deck = crate::rates::parse_deck(text).map_err(|e| ApiError::invalid("rates", e))?;
    let version = api.store.put_rates(name, text).await?;
    let prefixes = routing.lcr.replace(engine::lcr::TrunkDeck {
        trunk: route.name.clone(),
        priority: route.priority,
        weight: route.weight,
        deck,
    });
    Ok(RatesReplaced {
        trunk: name.to_owned(),
        prefixes,
        version,
    })
}
