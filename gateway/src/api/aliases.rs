//! Aliases with proof of ownership (issue 19.5): an e-mail address or a
//! domain name resolves to a member only once the member has shown it is
//! theirs. An e-mail alias is sent a link; a domain publishes
//! `_switchboard.<domain> TXT "switchboard-verification=<token>"`, which the
//! edge looks up (hickory's resolver, at `[api] dns_servers` or the
//! system's). Asking claims nothing, so nobody can squat an alias by asking
//! for it: the first to prove it gets it. The operator's word (its token)
//! claims at once.

use engine::numbering::{self, Alias, Dialled};
use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use schema::model::{Account, AliasProof, PendingAlias};
use warp::http::StatusCode;
use warp::reply::Response;

use super::Api;
use crate::auth;
use crate::error::{ApiError, json_response};

/// How long a proof may take.
pub const PROOF_TTL_S: u64 = 7 * 24 * 3600;
/// Aliases (held and pending) a member may have.
const MAX_ALIASES: usize = 20;
/// The TXT record's prefix.
const TXT_PREFIX: &str = "switchboard-verification=";

/// The alias `input` names, normalised, and how it is proven.
fn parse(api: &Api, input: &str) -> Result<(String, AliasProof), ApiError> {
    let d = &api.cfg.directory;
    match numbering::classify(input, d.home, &d.plan) {
        Ok(Dialled::Alias(Alias::Email(e))) => Ok((e.to_ascii_lowercase(), AliasProof::Email)),
        Ok(Dialled::Alias(Alias::Domain(dn))) => Ok((dn.to_ascii_lowercase(), AliasProof::Dns)),
        Ok(_) => Err(ApiError::invalid(
            "alias",
            "an alias is a domain name or an e-mail address",
        )),
        Err(e) => Err(ApiError::invalid("alias", e)),
    }
}

/// Where a domain's proof is published.
pub fn txt_name(domain: &str) -> String {
    format!("_switchboard.{domain}")
}

fn taken(alias: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "alias_taken",
        format!("{alias} belongs to another member"),
    )
}

/// `PUT /api/v1/members/{id}/aliases/{alias}`.
pub(super) async fn ask(
    api: &Api,
    mut a: Account,
    input: &str,
    vouched: bool,
) -> Result<Response, ApiError> {
    let (alias, proof) = parse(api, input)?;
    let held = api.store.aliases_of(&a.id).await?;
    if held.contains(&alias) {
        return Ok(json_response(StatusCode::OK, &held));
    }
    if api.store.alias_owner(&alias).await?.is_some() {
        return Err(taken(&alias));
    }
    let now = api.now();
    a.pending_aliases
        .retain(|p| p.alias != alias && p.expires_at > now);
    if held.len() + a.pending_aliases.len() >= MAX_ALIASES {
        return Err(ApiError::invalid("alias", "at most 20 aliases"));
    }
    if vouched {
        return claim(api, a, &alias)
            .await
            .map(|held| json_response(StatusCode::OK, &held));
    }
    let (token, token_hash) = auth::new_token();
    a.pending_aliases.push(PendingAlias {
        alias: alias.clone(),
        proof,
        token_hash,
        expires_at: now + PROOF_TTL_S,
    });
    let body = match proof {
        AliasProof::Email => {
            let Some(mailer) = &api.mailer else {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_mailer",
                    "this edge sends no e-mail",
                ));
            };
            if !api.store.update_account(&a, a.version).await? {
                return Err(super::member_changed());
            }
            let link = format!(
                "{}/api/v1/alias-proofs/{}.{token}",
                api.cfg.public_url.trim_end_matches('/'),
                a.id
            );
            let text = format!(
                "{} asked for {alias} to reach them on Switchboard.\r\n\r\nOpen this link to confirm that the address is theirs:\r\n{link}\r\n\r\nIf you did not ask for this, ignore this message.\r\n",
                a.name
            );
            let html = format!(
                "<p>{} asked for <b>{}</b> to reach them on Switchboard.</p><p><a href=\"{}\">Confirm that the address is theirs</a>.</p><p>If you did not ask for this, ignore this message.</p>",
                crate::billing::escape(&a.name),
                crate::billing::escape(&alias),
                crate::billing::escape(&link)
            );
            mailer
                .send(&alias, "Confirm your Switchboard alias", text, html)
                .await
                .map_err(|e| {
                    ApiError::new(StatusCode::BAD_GATEWAY, "mail_failed", e.to_string())
                })?;
            serde_json::json!({
                "alias": alias, "status": "pending", "proof": "email",
                "expires_in": PROOF_TTL_S,
            })
        }
        AliasProof::Dns => {
            if !api.store.update_account(&a, a.version).await? {
                return Err(super::member_changed());
            }
            serde_json::json!({
                "alias": alias, "status": "pending", "proof": "dns",
                "record": {"name": txt_name(&alias), "type": "TXT", "value": format!("{TXT_PREFIX}{token}")},
                "expires_in": PROOF_TTL_S,
            })
        }
    };
    Ok(json_response(StatusCode::ACCEPTED, &body))
}

/// Give `alias` to `a` (its pending entry dropped): its aliases after.
async fn claim(api: &Api, a: Account, alias: &str) -> Result<Vec<String>, ApiError> {
    if !api.store.claim_alias(alias, &a.id).await? {
        return Err(taken(alias));
    }
    // The request is answered: dropped from the stored account.
    if let Some(mut stored) = api.store.account(&a.id).await?
        && stored.pending_aliases.iter().any(|p| p.alias == alias)
    {
        stored.pending_aliases.retain(|p| p.alias != alias);
        if !api.store.update_account(&stored, stored.version).await? {
            // The alias is the member's either way; the stale entry lapses.
            tracing::debug!(account = %a.id, alias, "pending alias not cleared");
        }
    }
    Ok(api.store.aliases_of(&a.id).await?)
}

/// `GET /api/v1/alias-proofs/{account}.{token}`: the link mailed to an
/// e-mail alias.
pub(super) async fn open_link(api: &Api, link: &str) -> Result<serde_json::Value, ApiError> {
    let invalid = || ApiError::not_found("this link is not valid (or has expired)");
    let (id, token) = link.split_once('.').ok_or_else(invalid)?;
    if id.len() > 20 || token.len() > 128 {
        return Err(invalid());
    }
    let a = api.store.account(id).await?.ok_or_else(invalid)?;
    let hash = auth::token_hash(token);
    let now = api.now();
    let alias = a
        .pending_aliases
        .iter()
        .find(|p| {
            p.proof == AliasProof::Email
                && p.expires_at > now
                && auth::same_secret(&p.token_hash, &hash)
        })
        .map(|p| p.alias.clone())
        .ok_or_else(invalid)?;
    claim(api, a, &alias).await?;
    Ok(serde_json::json!({ "alias": alias, "status": "verified" }))
}

/// `POST /api/v1/members/{id}/aliases/{alias}/check`: look up a domain's
/// TXT record now.
pub(super) async fn check(api: &Api, a: Account, input: &str) -> Result<Vec<String>, ApiError> {
    let (alias, _) = parse(api, input)?;
    let now = api.now();
    let Some(p) = a
        .pending_aliases
        .iter()
        .find(|p| p.alias == alias && p.proof == AliasProof::Dns && p.expires_at > now)
    else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_pending_alias",
            format!("{alias} is not waiting for a DNS proof; ask for it first"),
        ));
    };
    let found = txt_records(api, &txt_name(&alias)).await?;
    let proven = found.iter().any(|t| {
        t.strip_prefix(TXT_PREFIX)
            .is_some_and(|v| auth::same_secret(&auth::token_hash(v.trim()), &p.token_hash))
    });
    if !proven {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "proof_not_found",
            format!(
                "{} has no TXT record with the token ({} TXT records found)",
                txt_name(&alias),
                found.len()
            ),
        ));
    }
    claim(api, a, &alias).await
}

/// The TXT strings at `name` (each record's strings joined), none when
/// the name does not exist.
async fn txt_records(api: &Api, name: &str) -> Result<Vec<String>, ApiError> {
    let builder = if api.cfg.dns_servers.is_empty() {
        hickory_resolver::Resolver::builder_tokio().map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "dns_unavailable",
                e.to_string(),
            )
        })?
    } else {
        let servers: Vec<NameServerConfig> = api
            .cfg
            .dns_servers
            .iter()
            .flat_map(|s| {
                [
                    NameServerConfig::new(*s, Protocol::Udp),
                    NameServerConfig::new(*s, Protocol::Tcp),
                ]
            })
            .collect();
        hickory_resolver::Resolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), NameServerConfigGroup::from(servers)),
            TokioConnectionProvider::default(),
        )
    };
    let mut builder = builder;
    let opts = builder.options_mut();
    // A proof is looked up when asked: never from a cache.
    opts.cache_size = 0;
    opts.timeout = std::time::Duration::from_secs(3);
    opts.attempts = 2;
    let resolver = builder.build();
    match resolver.txt_lookup(format!("{name}.")).await {
        Ok(l) => Ok(l
            .iter()
            .map(|t| {
                t.txt_data()
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>()
            })
            .collect()),
        Err(e) if e.is_no_records_found() => Ok(Vec::new()),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dns_unavailable",
            format!("looking up {name}: {e}"),
        )),
    }
}
