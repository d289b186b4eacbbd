//! Who is calling: bearer tokens with roles, checked on every entry point.
//!
//! A token is shown once, when it is made (`oncall token add`, or the first start of
//! `oncall serve`); the store keeps only its sha256. The variable `[server] token_env` names may
//! hold one more token, for the operator: it acts as `admin` with the approver role and is never
//! stored. A missing or wrong token gets 401, a role too weak for the route 403, and a caller
//! over `[server] requests_per_s` 429 with Retry-After.
//!
//! Two kinds of holder: people, with a role on the ladder viewer < responder < approver, and
//! OpenTelemetry exporters with an `ingest` token, which is not on that ladder: it may send
//! traces (`POST /v1/traces`) and every other route refuses it with 403.
//!
//! Token guessing is slow: a source address that presented `[server] max_auth_failures` wrong
//! tokens within `auth_failure_window_s` gets 429 with Retry-After on every request until the
//! window ends, right token or not (so a lucky guess is not confirmed either). The address is
//! the TCP peer's (`ConnectInfo`, as [`super::serve`] provides it; IPv6 by its /64); a router
//! served without it has no per-address limit.

use super::AppState;
use crate::incidents::Grant;
use crate::policy::{Human, Role};
use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
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

/// Who a valid token belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// A person, with a role.
    Person(Caller),
    /// An OpenTelemetry exporter (an `ingest` token), by its name.
    Ingest(String),
}

impl Principal {
    pub fn name(&self) -> &str {
        match self {
            Principal::Person(c) => &c.name,
            Principal::Ingest(n) => n,
        }
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

/// A role word that names no role; its message lists the ones there are.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnknownRole {
    #[error("unknown role {0:?}: use viewer, responder or approver")]
    Person(String),
    #[error(
        "unknown role {0:?}: use viewer, responder or approver, or ingest for an OpenTelemetry exporter"
    )]
    Grant(String),
}

/// The role word (`viewer`, `responder`, `approver`).
pub fn parse_role(s: &str) -> Result<Role, UnknownRole> {
    crate::incidents::parse_role(s.trim()).ok_or_else(|| UnknownRole::Person(s.to_string()))
}

/// What `oncall token add --role` takes: a person's role, or `ingest` for an OpenTelemetry
/// exporter (it may only send traces).
pub fn parse_grant(s: &str) -> Result<Grant, UnknownRole> {
    crate::incidents::parse_grant(s.trim()).ok_or_else(|| UnknownRole::Grant(s.to_string()))
}

pub(crate) fn role_name(r: Role) -> &'static str {
    crate::incidents::role_str(r)
}

/// The TCP peer of a request, when the server was started with `ConnectInfo`.
fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
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
    error_retry(status, message, 1)
}

fn error_retry(status: StatusCode, message: String, retry_after_s: u64) -> Response {
    let mut r = (status, Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s.max(1)));
    }
    r
}

/// Resolves the holder of a request's token, or the response that refuses it. `peer` is the
/// request's source address, for the wrong-token limit.
pub async fn authenticate(
    st: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Principal, Response> {
    if let Some(addr) = peer
        && let Some(wait) = st.auth_failures.blocked(addr)
    {
        st.metrics.count(
            &st.metrics.refusals,
            &[("reason", "auth_failures"), ("field", "token")],
        );
        let s = &st.config.server;
        return Err(error_retry(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{addr} presented {} wrong tokens within {} s ([server] max_auth_failures); every request from it is refused for {wait} s more",
                s.max_auth_failures, s.auth_failure_window_s
            ),
            wait,
        ));
    }
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
        return Ok(Principal::Person(Caller {
            name: "admin".into(),
            role: Role::Approver,
        }));
    }
    if let Some(c) = st.token_cache.get(&sha) {
        return Ok(c);
    }
    match st.store.token(&sha).await {
        Ok(Some(h)) => {
            let p = match h.grant {
                Grant::Person(role) => Principal::Person(Caller { name: h.name, role }),
                Grant::Ingest => Principal::Ingest(h.name),
            };
            st.token_cache.put(sha, p.clone());
            Ok(p)
        }
        Ok(None) => {
            if let Some(addr) = peer {
                st.auth_failures.failed(addr);
            }
            Err(error(
                StatusCode::UNAUTHORIZED,
                "wrong or revoked bearer token".into(),
            ))
        }
        Err(e) => {
            tracing::error!("token lookup: {e}");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the incident store is unavailable; try again".into(),
            ))
        }
    }
}

/// The per-caller rate limit, checked before the handler reads the body.
fn over_rate(st: &AppState, name: &str) -> Option<Response> {
    if st.limiter.allow(name) {
        return None;
    }
    Some(error(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "{name} sent more than {} requests per second; slow down",
            st.config.server.requests_per_s
        ),
    ))
}

/// The middleware in front of every route that needs `min` or a stronger role. An ingest token
/// is refused (403) here whatever the route: it is not a person's role.
pub async fn require(
    State((st, min)): State<(Arc<AppState>, Role)>,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = match authenticate(&st, req.headers(), peer(&req)).await {
        Ok(Principal::Person(c)) => c,
        Ok(Principal::Ingest(name)) => {
            return error(
                StatusCode::FORBIDDEN,
                format!(
                    "{name} holds an ingest token: it may only send traces (POST /v1/traces); this needs a person's token with the {} role",
                    role_name(min)
                ),
            );
        }
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
    if let Some(r) = over_rate(&st, &caller.name) {
        return r;
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The middleware in front of `POST /v1/traces`: an ingest token, or a person with the
/// responder role or stronger. The rate limit per token applies here, before the body is read.
pub async fn require_ingest(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let who = match authenticate(&st, req.headers(), peer(&req)).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Principal::Person(c) = &who
        && c.role < Role::Responder
    {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "{} holds the {} role; sending traces needs an ingest token or responder",
                c.name,
                role_name(c.role)
            ),
        );
    }
    if let Some(r) = over_rate(&st, who.name()) {
        return r;
    }
    next.run(req).await
}

/// Wrong tokens per source address in a fixed window (see the module's documentation).
pub struct AuthFailures {
    max: u32,
    window: Duration,
    /// address (IPv6 by /64) -> (wrong tokens in this window, when the window started).
    by_addr: std::sync::Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthFailures {
    /// Addresses remembered at most; beyond it the oldest windows are forgotten first.
    const CAPACITY: usize = 100_000;

    pub fn new(max: u32, window_s: u64) -> AuthFailures {
        AuthFailures {
            max: max.max(1),
            window: Duration::from_secs(window_s.max(1)),
            by_addr: Default::default(),
        }
    }

    /// The key of an address: IPv4 as is, IPv6 by its /64 (one host holds a whole /64).
    fn key(addr: IpAddr) -> IpAddr {
        match addr.to_canonical() {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        }
    }

    /// Seconds until `addr` may try again, when it is over its wrong tokens in this window.
    pub fn blocked(&self, addr: IpAddr) -> Option<u64> {
        let m = self.by_addr.lock().ok()?;
        let (n, since) = m.get(&Self::key(addr))?;
        let left = self.window.checked_sub(since.elapsed())?;
        (*n >= self.max).then(|| left.as_secs() + u64::from(left.subsec_nanos() > 0))
    }

    /// Counts one wrong token from `addr`.
    pub fn failed(&self, addr: IpAddr) {
        let Ok(mut m) = self.by_addr.lock() else {
            return;
        };
        let now = Instant::now();
        if m.len() >= Self::CAPACITY {
            let window = self.window;
            m.retain(|_, (_, since)| now.duration_since(*since) < window);
            if m.len() >= Self::CAPACITY {
                let max = self.max;
                m.retain(|_, (n, _)| *n >= max);
            }
        }
        let e = m.entry(Self::key(addr)).or_insert((0, now));
        if now.duration_since(e.1) >= self.window {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
    }
}

/// A short-lived cache of token lookups, so a busy caller does not cost a store read per
/// request. Entries live 30 s: a revoked token stops working within that.
#[derive(Default)]
pub struct TokenCache(std::sync::Mutex<HashMap<String, (Principal, Instant)>>);

impl TokenCache {
    const TTL: std::time::Duration = std::time::Duration::from_secs(30);

    fn get(&self, sha: &str) -> Option<Principal> {
        let m = self.0.lock().ok()?;
        m.get(sha)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(c, _)| c.clone())
    }

    fn put(&self, sha: String, c: Principal) {
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
    fn wrong_tokens_block_an_address_for_the_rest_of_its_window() {
        let f = AuthFailures::new(3, 60);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..2 {
            f.failed(a);
        }
        assert_eq!(f.blocked(a), None, "under the limit");
        f.failed(a);
        assert!(f.blocked(a).is_some_and(|s| (59..=60).contains(&s)));
        assert_eq!(f.blocked("127.0.0.3".parse().unwrap()), None);
        let (v6a, v6b): (IpAddr, IpAddr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::ffff".parse().unwrap(),
        );
        for _ in 0..3 {
            f.failed(v6a);
        }
        assert!(f.blocked(v6b).is_some(), "one /64 is one address");
    }

    #[test]
    fn roles_are_ordered_and_unknown_ones_are_named() {
        assert!(Role::Viewer < Role::Responder && Role::Responder < Role::Approver);
        assert_eq!(parse_role("approver"), Ok(Role::Approver));
        assert!(
            parse_role("admin")
                .unwrap_err()
                .to_string()
                .contains("viewer, responder or approver")
        );
        assert_eq!(parse_grant("ingest"), Ok(Grant::Ingest));
        assert_eq!(parse_grant("viewer"), Ok(Grant::Person(Role::Viewer)));
        assert!(
            parse_grant("root")
                .unwrap_err()
                .to_string()
                .contains("ingest")
        );
    }
}
