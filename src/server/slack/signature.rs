//! Request verification: Slack's `v0` signature (HMAC-SHA256 of the timestamp and the exact
//! body) with a fresh timestamp, and [`Dedup`], which refuses replayed signatures and recognizes
//! the Events API's retries.

use super::SlackError;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use subtle::ConstantTimeEq;

/// The header carrying the Unix time (seconds) at which Slack signed the request.
pub const HEADER_TIMESTAMP: &str = "x-slack-request-timestamp";
/// The header carrying `v0=<hex HMAC-SHA256>`.
pub const HEADER_SIGNATURE: &str = "x-slack-signature";
/// The header Slack adds when it resends an Events API request (1, 2, 3).
pub const HEADER_RETRY_NUM: &str = "x-slack-retry-num";
/// How far a request timestamp may be from this server's clock, either way.
pub const MAX_SKEW_SECS: i64 = 300;
/// How long a signature stays acceptable (a timestamp is fresh for `MAX_SKEW_SECS` either way),
/// and so how long [`Dedup`] must remember signatures and event ids.
pub const REPLAY_WINDOW_SECS: i64 = 2 * MAX_SKEW_SECS;

/// Slack's signature of `body` at `timestamp`: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`.
pub fn sign(signing_secret: &str, timestamp: &str, body: &[u8]) -> Result<String, SlackError> {
    if signing_secret.is_empty() {
        return Err(SlackError::NoSecret);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes())
        .map_err(|_| SlackError::NoSecret)?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    Ok(format!("v0={}", hex::encode(mac.finalize().into_bytes())))
}

/// Checks a request exactly as Slack signs it: both headers present, a numeric timestamp within
/// [`MAX_SKEW_SECS`] of `now_unix`, the `v0=` version, and the HMAC (compared in constant time).
/// Pass `""` for an absent header.
pub fn verify(
    signing_secret: &str,
    headers_timestamp: &str,
    headers_signature: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SlackError> {
    let ts = headers_timestamp.trim();
    let sig = headers_signature.trim();
    if ts.is_empty() {
        return Err(SlackError::MissingHeader("X-Slack-Request-Timestamp"));
    }
    if sig.is_empty() {
        return Err(SlackError::MissingHeader("X-Slack-Signature"));
    }
    let bad_ts = || SlackError::BadTimestamp(ts.chars().take(40).collect());
    if !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_ts());
    }
    let at: i64 = ts.parse().map_err(|_| bad_ts())?;
    let skew = now_unix.saturating_sub(at);
    if skew.unsigned_abs() > MAX_SKEW_SECS.unsigned_abs() {
        return Err(SlackError::StaleTimestamp { skew });
    }
    if !sig.starts_with("v0=") {
        return Err(SlackError::BadVersion);
    }
    let expected = sign(signing_secret, ts, body)?;
    if bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) {
        Ok(())
    } else {
        Err(SlackError::BadSignature)
    }
}

// ---------------------------------------------------------------------------------------------
// Dedup

/// A bounded, time-windowed set of keys: Events API `event_id`s (Slack retries) and signatures
/// (replays). Keys are forgotten after the window or, when full, oldest first. Thread-safe.
#[derive(Debug)]
pub struct Dedup {
    window_secs: i64,
    capacity: usize,
    inner: Mutex<DedupInner>,
}

#[derive(Debug, Default)]
struct DedupInner {
    seen: HashMap<String, i64>,
    /// Insertion order; an entry whose time differs from `seen` is stale and skipped.
    order: VecDeque<(i64, String)>,
}

impl DedupInner {
    fn pop_oldest(&mut self) {
        if let Some((at, key)) = self.order.pop_front()
            && self.seen.get(&key) == Some(&at)
        {
            self.seen.remove(&key);
        }
    }
}

impl Default for Dedup {
    /// [`REPLAY_WINDOW_SECS`] and 10 000 keys.
    fn default() -> Self {
        Self::new(REPLAY_WINDOW_SECS, 10_000)
    }
}

impl Dedup {
    /// Remembers at most `capacity` keys (at least 1) for `window_secs` each.
    pub fn new(window_secs: i64, capacity: usize) -> Self {
        Self {
            window_secs,
            capacity: capacity.max(1),
            inner: Mutex::new(DedupInner::default()),
        }
    }

    /// `true` the first time `key` is seen within the window (and remembers it), `false` after.
    pub fn first_time(&self, key: &str, now_unix: i64) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *guard;
        while let Some((at, _)) = inner.order.front() {
            if now_unix.saturating_sub(*at) < self.window_secs {
                break;
            }
            inner.pop_oldest();
        }
        if let Some(&at) = inner.seen.get(key)
            && now_unix.saturating_sub(at) < self.window_secs
        {
            return false;
        }
        inner.seen.insert(key.to_owned(), now_unix);
        inner.order.push_back((now_unix, key.to_owned()));
        while inner.order.len() > self.capacity {
            inner.pop_oldest();
        }
        true
    }

    /// [`SlackError::Replay`] when this (already verified) signature was seen within the window.
    pub fn refuse_replay(&self, signature: &str, now_unix: i64) -> Result<(), SlackError> {
        if self.first_time(&format!("sig:{signature}"), now_unix) {
            Ok(())
        } else {
            Err(SlackError::Replay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's own worked example from "Verifying requests from Slack"
    // (https://api.slack.com/authentication/verifying-requests-from-slack).
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const NOW: i64 = 1_531_420_618;
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn check(secret: &str, ts: &str, sig: &str, body: &str, now: i64) -> Result<(), SlackError> {
        verify(secret, ts, sig, body.as_bytes(), now)
    }

    #[test]
    fn slacks_documented_example_verifies() {
        assert_eq!(sign(SECRET, TS, BODY.as_bytes()).unwrap(), SIG);
        assert_eq!(check(SECRET, TS, SIG, BODY, NOW), Ok(()));
    }

    #[test]
    fn forged_signature_and_wrong_secret_are_refused() {
        let forged = format!("v0={}", "0".repeat(64));
        assert_eq!(
            check(SECRET, TS, &forged, BODY, NOW),
            Err(SlackError::BadSignature)
        );
        assert_eq!(
            check("other", TS, SIG, BODY, NOW),
            Err(SlackError::BadSignature)
        );
        assert_eq!(
            check(SECRET, TS, &SIG[..20], BODY, NOW),
            Err(SlackError::BadSignature)
        );
        assert_eq!(check("", TS, SIG, BODY, NOW), Err(SlackError::NoSecret));
    }

    #[test]
    fn tampered_body_is_refused() {
        let tampered = BODY.replace("roadrunner", "coyote");
        let err = check(SECRET, TS, SIG, &tampered, NOW).unwrap_err();
        assert_eq!(err, SlackError::BadSignature);
        assert!(err.to_string().contains("body was altered"), "{err}");
    }

    #[test]
    fn stale_timestamps_are_refused_both_ways() {
        let past = check(SECRET, TS, SIG, BODY, NOW + 301).unwrap_err();
        assert_eq!(past, SlackError::StaleTimestamp { skew: 301 });
        assert!(past.to_string().contains("301 s away"), "{past}");
        let future = check(SECRET, TS, SIG, BODY, NOW - 301).unwrap_err();
        assert_eq!(future, SlackError::StaleTimestamp { skew: -301 });
        assert_eq!(
            check(SECRET, TS, SIG, BODY, NOW + 300),
            Ok(()),
            "5 min is still fresh"
        );
        assert_eq!(check(SECRET, TS, SIG, BODY, NOW - 300), Ok(()));
    }

    #[test]
    fn missing_headers_bad_timestamps_and_versions_are_refused() {
        let e = check(SECRET, "", SIG, BODY, NOW).unwrap_err();
        assert_eq!(e, SlackError::MissingHeader("X-Slack-Request-Timestamp"));
        assert!(
            e.to_string()
                .starts_with("missing X-Slack-Request-Timestamp header")
        );
        let e = check(SECRET, TS, " ", BODY, NOW).unwrap_err();
        assert_eq!(e, SlackError::MissingHeader("X-Slack-Signature"));
        for ts in [
            "abc",
            "-1531420618",
            "+1531420618",
            "1531420618.5",
            "99999999999999999999",
        ] {
            let e = check(SECRET, ts, SIG, BODY, NOW).unwrap_err();
            assert!(matches!(e, SlackError::BadTimestamp(_)), "{ts}: {e}");
        }
        let v1 = SIG.replacen("v0=", "v1=", 1);
        assert_eq!(
            check(SECRET, TS, &v1, BODY, NOW),
            Err(SlackError::BadVersion)
        );
    }

    #[test]
    fn dedup_remembers_keys_within_the_window_only() {
        let d = Dedup::new(600, 100);
        assert!(d.first_time("Ev1", 1000));
        assert!(
            !d.first_time("Ev1", 1001),
            "a retry within the window is a duplicate"
        );
        assert!(d.first_time("Ev2", 1001));
        assert!(!d.first_time("Ev1", 1599));
        assert!(d.first_time("Ev1", 1600), "forgotten after the window");
        assert_eq!(d.refuse_replay(SIG, 1600), Ok(()));
        assert_eq!(d.refuse_replay(SIG, 1700), Err(SlackError::Replay));
    }

    #[test]
    fn dedup_is_bounded() {
        let d = Dedup::new(600, 3);
        for k in ["a", "b", "c", "d"] {
            assert!(d.first_time(k, 10));
        }
        assert!(d.first_time("a", 11), "the oldest key was evicted");
        assert!(!d.first_time("d", 11));
        let inner = d.inner.lock().unwrap();
        assert!(inner.order.len() <= 3 && inner.seen.len() <= 3);
    }
}
