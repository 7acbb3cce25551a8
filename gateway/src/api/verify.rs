//! Proving that a member's contact PSTN number is its own (issue 19.5):
//! the engine calls the number through the trunks and reads out a
//! six-digit code, which the member types back. Until then the number is
//! neither presented as the member's identity nor accepted for a purchase.
//!
//! The code is kept hashed in the account (so every edge sees it), lives
//! ten minutes and takes five wrong tries; a member gets at most five
//! verification calls a day, a minute apart, each paid like a call to
//! that number (the payer's plan, blocked ranges refused), so the calls
//! cannot be turned against somebody else's phone or the operator's money.

use rand::Rng;
use schema::model::{Account, ContactChallenge};
use serde::Deserialize;
use warp::http::StatusCode;

use super::Api;
use crate::auth;
use crate::error::ApiError;

/// How long a code is accepted.
pub const CODE_TTL_S: u64 = 600;
/// Wrong codes accepted before a new call is needed.
pub const MAX_ATTEMPTS: u32 = 5;
/// Verification calls a member may ask for in a day.
pub const CALLS_PER_DAY: usize = 5;
/// The least time between two verification calls.
pub const CALL_GAP_S: u64 = 60;

/// The code typed back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Confirm {
    code: String,
}

fn code_hash(account: &str, code: &str) -> String {
    auth::token_hash(&format!("{account}:{code}"))
}

/// `POST /api/v1/members/{id}/contact/verify`: call the member's contact
/// PSTN number and read out a new code.
pub(super) async fn call(api: &Api, mut a: Account) -> Result<serde_json::Value, ApiError> {
    let Some(number) = a.contact_pstn.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_contact_pstn",
            "the member has no contact PSTN number to verify",
        ));
    };
    if a.verified_pstn().is_some() {
        return Ok(serde_json::json!({ "status": "verified", "number": number }));
    }
    let Some(dialer) = &api.dialer else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_engine",
            "this edge places no calls",
        ));
    };
    let now = api.now();
    let mut calls: Vec<u64> = a
        .contact_challenge
        .as_ref()
        .map(|c| c.calls.clone())
        .unwrap_or_default();
    calls.retain(|t| now.saturating_sub(*t) < 86_400);
    if let Some(last) = calls.iter().max()
        && now.saturating_sub(*last) < CALL_GAP_S
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "retry_later",
            format!(
                "a verification call was placed {} s ago; ask again in a minute",
                now.saturating_sub(*last)
            ),
        ));
    }
    if calls.len() >= CALLS_PER_DAY {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_calls",
            format!("at most {CALLS_PER_DAY} verification calls a day"),
        ));
    }
    let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32));
    calls.push(now);
    a.contact_challenge = Some(ContactChallenge {
        number: number.clone(),
        code_hash: code_hash(&a.id, &code),
        expires_at: now + CODE_TTL_S,
        attempts: 0,
        calls,
    });
    if !api.store.update_account(&a, a.version).await? {
        return Err(super::member_changed());
    }
    let placed = dialer
        .originate(actors::center::Originate {
            caller: a.id.clone(),
            first: number.clone(),
            second: None,
            prompts: engine::media::player::Prompt::code(&code),
            ringback_cc: String::new(),
            call_id: None,
        })
        .await;
    match placed {
        Ok(call_id) => Ok(serde_json::json!({
            "status": "calling",
            "number": number,
            "call_id": call_id,
            "expires_in": CODE_TTL_S,
        })),
        Err(refused) => Err(super::not_placed(refused)),
    }
}

/// `POST /api/v1/members/{id}/contact/confirm`: the code heard in the call.
pub(super) async fn confirm(api: &Api, mut a: Account, b: Confirm) -> Result<Account, ApiError> {
    let now = api.now();
    let number = a.contact_pstn.clone();
    let Some(mut c) = a
        .contact_challenge
        .clone()
        .filter(|c| Some(&c.number) == number.as_ref())
    else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_verification",
            "no verification call is waiting for its code; ask for one",
        ));
    };
    if now > c.expires_at {
        return Err(ApiError::new(
            StatusCode::GONE,
            "code_expired",
            "the code has expired; ask for a new call",
        ));
    }
    if c.attempts >= MAX_ATTEMPTS {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many wrong codes; ask for a new call",
        ));
    }
    let typed: String = b.code.chars().filter(|ch| !ch.is_whitespace()).collect();
    if typed.len() > 32 || !auth::same_secret(&code_hash(&a.id, &typed), &c.code_hash) {
        c.attempts += 1;
        let left = MAX_ATTEMPTS.saturating_sub(c.attempts);
        a.contact_challenge = Some(c);
        if !api.store.update_account(&a, a.version).await? {
            return Err(super::member_changed());
        }
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_code",
            format!("that is not the code; {left} tries left"),
        ));
    }
    a.contact_verified = number;
    // The calls of the day stay counted; the code is spent.
    c.code_hash.clear();
    c.expires_at = 0;
    a.contact_challenge = Some(c);
    if !api.store.update_account(&a, a.version).await? {
        return Err(super::member_changed());
    }
    a.version += 1;
    Ok(a)
}

/// `PUT /api/v1/members/{id}/contact/verified` (operator): the operator
/// vouches for the member's contact PSTN number (checked by other means).
pub(super) async fn vouch(api: &Api, mut a: Account) -> Result<Account, ApiError> {
    if a.contact_pstn.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_contact_pstn",
            "the member has no contact PSTN number to verify",
        ));
    }
    a.contact_verified = a.contact_pstn.clone();
    if !api.store.update_account(&a, a.version).await? {
        return Err(super::member_changed());
    }
    a.version += 1;
    Ok(a)
}
