//! The HTTP transport under async-openai: exactly one HTTP call per attempt (no retry layer of
//! its own; [`super::retry`] is the only retry policy), which keeps what the endpoint says about
//! waiting. async-openai turns an error status into an error that carries the body but not the
//! headers, so a `429` or `5xx` that names a wait (`retry-after-ms`, or `Retry-After` in seconds
//! or as an HTTP date) is answered here as a [`Throttled`] error instead, and
//! [`super::openai`] maps it to a [`super::LlmError`] that the retry policy honors.

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use reqwest::header::HeaderMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

/// The longest wait believed: a longer one is read as this (and then outlasts any deadline).
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// An error status with a wait the endpoint asked for.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status} (retry after {retry_after:?}): {message}")]
pub struct Throttled {
    pub status: u16,
    pub message: String,
    pub retry_after: Duration,
}

/// A tower service for `Client::with_http_service`.
#[derive(Clone, Debug)]
pub struct Transport {
    http: reqwest::Client,
}

impl Transport {
    pub fn new(http: reqwest::Client) -> Transport {
        Transport { http }
    }
}

type Reply = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

impl tower::Service<HttpRequestFactory> for Transport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Reply;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        Box::pin(async move {
            let request = request.build().await?;
            let response = http.execute(request).await.map_err(OpenAIError::Reqwest)?;
            let status = response.status().as_u16();
            if status != 429 && status < 500 {
                return Ok(response);
            }
            let Some(wait) = retry_after(response.headers(), SystemTime::now()) else {
                return Ok(response);
            };
            let body = response.text().await.unwrap_or_default();
            Err(OpenAIError::Boxed(Box::new(Throttled {
                status,
                message: api_message(&body),
                retry_after: wait,
            })))
        })
    }
}

/// The wait an endpoint asked for: `retry-after-ms` (milliseconds), else `Retry-After` (seconds,
/// or an HTTP date). Unreadable values are ignored; waits are capped at an hour.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let wait = if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        Duration::try_from_secs_f64(ms / 1000.0).ok()?
    } else {
        let v = text("retry-after")?;
        match v.parse::<f64>() {
            Ok(s) => Duration::try_from_secs_f64(s).ok()?,
            Err(_) => httpdate::parse_http_date(v)
                .ok()?
                .duration_since(now)
                .unwrap_or(Duration::ZERO),
        }
    };
    Some(wait.min(MAX_WAIT))
}

/// The `error.message` of an OpenAI-style error body, else the start of the body.
fn api_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn waits_in_seconds_milliseconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |p: &[(&'static str, &str)]| retry_after(&headers(p), now);
        assert_eq!(at(&[("retry-after", "7")]), Some(Duration::from_secs(7)));
        assert_eq!(at(&[("retry-after", "0")]), Some(Duration::ZERO));
        assert_eq!(
            at(&[("retry-after-ms", "250"), ("retry-after", "9")]),
            Some(Duration::from_millis(250)),
            "milliseconds are the finer answer"
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            at(&[("retry-after", &later)]),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(at(&[("retry-after", &past)]), Some(Duration::ZERO));
        assert_eq!(at(&[("retry-after", "86400000")]), Some(MAX_WAIT), "capped");
        assert_eq!(at(&[("retry-after", "soon")]), None);
        assert_eq!(at(&[("retry-after", "-3")]), None);
        assert_eq!(at(&[]), None);
    }

    #[test]
    fn the_message_is_read_from_an_openai_error_body() {
        assert_eq!(
            api_message(r#"{"error": {"message": "Rate limit reached", "type": "x"}}"#),
            "Rate limit reached"
        );
        assert_eq!(api_message("busy"), "busy");
    }
}
