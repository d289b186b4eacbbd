//! Who is calling: bearer tokens with roles, checked on every entry point.
//!
//! A token is shown once, when it is made (`oncall token add`, or the first start of
//! `oncall serve`); the store keeps only its sha256. The variable `[server] token_env` names may
//! hold one more token, for the operator: it acts as `admin` with the approver role and is never
//! stored. A missing or wrong token gets 401, a role too weak for the route 403, and a caller
//! over `[server] requests_per_s` 429 with Retry-After.

use super::AppState;
use crate::policy::{Human, Role};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use subtle::ConstantTimeEq;

/// The authenticated caller of a request (in the request's extensions).
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    pub fn human(&self) -> Human {
        Human::with_role(&self.name, self.role)
    }
}

/// The hex sha256 of a token, as stored.
pub fn token_sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// A new random token: `oc_` and 40 letters and digits (about 238 bits).
pub fn new_token() -> String {
    use rand::Rng;
    let body: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("oc_{body}")
}

/// The role word (`viewer`, `responder`, `approver`) or a message listing them.
pub fn parse_role(s: &str) -> Result<Role, String> {
    crate::incidents::parse_role(s.trim())
        .ok_or_else(|| format!("unknown role {s:?}: use viewer, responder or approver"))
}

pub(crate) fn role_name(r: Role) -> &'static str {
    crate::incidents::role_str(r)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn error(status: StatusCode, message: String) -> Response {
    let mut r = (status, Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// Resolves the caller of a request, or the response that refuses it.
pub async fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<Caller, Response> {
    let Some(token) = bearer(headers) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send Authorization: Bearer <token>".into(),
        ));
    };
    let sha = token_sha(token);
    if let Some(op) = &st.operator_sha
        && bool::from(sha.as_bytes().ct_eq(op.as_bytes()))
    {
        return Ok(Caller {
            name: "admin".into(),
            role: Role::Approver,
        });
    }
    if let Some(c) = st.token_cache.get(&sha) {
        return Ok(c);
    }
    match st.store.token(&sha).await {
        Ok(Some(h)) => {
            let c = Caller {
                name: h.name,
                role: h.role,
            };
            st.token_cache.put(sha, c.clone());
            Ok(c)
        }
        Ok(None) => Err(error(
            StatusCode::UNAUTHORIZED,
            "wrong or revoked bearer token".into(),
        )),
        Err(e) => {
            tracing::error!("token lookup: {e}");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the incident store is unavailable; try again".into(),
            ))
        }
    }
}

/// The middleware in front of every route that needs `min` or a stronger role.
pub async fn require(
    State((st, min)): State<(Arc<AppState>, Role)>,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = match authenticate(&st, req.headers()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if caller.role < min {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "{} holds the {} role; this needs {}",
                caller.name,
                role_name(caller.role),
                role_name(min)
            ),
        );
    }
    if !st.limiter.allow(&caller.name) {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} sent more than {} requests per second; slow down",
                caller.name, st.config.server.requests_per_s
            ),
        );
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// A short-lived cache of token lookups, so a busy caller does not cost a store read per
/// request. Entries live 30 s: a revoked token stops working within that.
#[derive(Default)]
pub struct TokenCache(std::sync::Mutex<HashMap<String, (Caller, Instant)>>);

impl TokenCache {
    const TTL: std::time::Duration = std::time::Duration::from_secs(30);

    fn get(&self, sha: &str) -> Option<Caller> {
        let m = self.0.lock().ok()?;
        m.get(sha)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(c, _)| c.clone())
    }

    fn put(&self, sha: String, c: Caller) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() > 10_000 {
                m.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            }
            m.insert(sha, (c, Instant::now()));
        }
    }
}

/// Token buckets per caller: `rate` requests per second, bursts up to `rate`.
pub struct Limiter {
    rate: f64,
    buckets: std::sync::Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    pub fn new(rate: u64) -> Limiter {
        Limiter {
            rate: rate.max(1) as f64,
            buckets: Default::default(),
        }
    }

    pub fn allow(&self, who: &str) -> bool {
        let Ok(mut b) = self.buckets.lock() else {
            return true;
        };
        let now = Instant::now();
        if b.len() > 10_000 {
            b.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 60);
        }
        let (tokens, at) = b.entry(who.to_string()).or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_as_digests() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("oc_") && a.len() == 43);
        assert_eq!(token_sha(&a).len(), 64);
        assert_ne!(token_sha(&a), token_sha(&b));
        assert_eq!(token_sha(&format!(" {a}\n")), token_sha(&a));
    }

    #[test]
    fn the_limiter_refuses_beyond_the_rate_per_caller() {
        let l = Limiter::new(5);
        let allowed = (0..20).filter(|_| l.allow("ana")).count();
        assert_eq!(allowed, 5);
        assert!(l.allow("bo"), "one caller's burst does not limit another");
    }

    #[test]
    fn roles_are_ordered_and_unknown_ones_are_named() {
        assert!(Role::Viewer < Role::Responder && Role::Responder < Role::Approver);
        assert_eq!(parse_role("approver"), Ok(Role::Approver));
        assert!(
            parse_role("admin")
                .unwrap_err()
                .contains("viewer, responder or approver")
        );
    }
}
