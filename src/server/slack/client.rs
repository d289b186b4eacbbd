//! A minimal Slack Web API client: `chat.postMessage` and `chat.update` with the bot token, each
//! message redacted once more as it is sent.

use super::{SlackError, malformed, opt};
use serde_json::{Value, json};
use std::time::Duration;

/// The timeout of every Web API call.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A minimal Slack Web API client (bot token, JSON bodies, [`TIMEOUT`] per call).
#[derive(Clone)]
pub struct SlackClient {
    /// `https://slack.com/api` unless pointed at a test double.
    pub base_url: String,
    pub bot_token: String,
    pub http: reqwest::Client,
}

impl std::fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackClient")
            .field("base_url", &self.base_url)
            .field("bot_token", &"<redacted>")
            .finish()
    }
}

impl SlackClient {
    /// The Web API of Slack's cloud.
    pub const DEFAULT_BASE_URL: &str = "https://slack.com/api";

    /// A client for Slack's cloud with its own HTTP connection pool.
    pub fn new(bot_token: impl Into<String>) -> Result<Self, SlackError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| SlackError::Http {
                method: "client setup",
                reason: e.to_string(),
            })?;
        Ok(Self {
            base_url: Self::DEFAULT_BASE_URL.to_owned(),
            bot_token: bot_token.into(),
            http,
        })
    }

    /// Posts a message, in a thread when `thread_ts` is given; returns the new message's `ts`.
    pub async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: Option<Value>,
    ) -> Result<String, SlackError> {
        let mut body = json!({
            "channel": channel,
            "text": crate::redact::redact(text),
            "link_names": false,
            "unfurl_links": false,
            "unfurl_media": false,
        });
        if let Some(t) = thread_ts {
            body["thread_ts"] = json!(t);
        }
        if let Some(mut b) = blocks {
            crate::redact::redact_value(&mut b);
            body["blocks"] = b;
        }
        let answer = self.call("chat.postMessage", &body).await?;
        opt(&answer, "/ts").ok_or_else(|| malformed("chat.postMessage answer", "`ts` is missing"))
    }

    /// Replaces the message `ts` in `channel` (e.g. with a
    /// [`decided_message`](super::decided_message)).
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: Option<Value>,
    ) -> Result<(), SlackError> {
        let text = crate::redact::redact(text);
        let mut body = json!({"channel": channel, "ts": ts, "text": text, "link_names": false});
        if let Some(mut b) = blocks {
            crate::redact::redact_value(&mut b);
            body["blocks"] = b;
        }
        self.call("chat.update", &body).await.map(drop)
    }

    async fn call(&self, method: &'static str, body: &Value) -> Result<Value, SlackError> {
        let http_err = |reason: String| SlackError::Http { method, reason };
        let url = format!("{}/{method}", self.base_url.trim_end_matches('/'));
        let resp = self
            .http
            .post(url)
            .bearer_auth(&self.bot_token)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body.to_string())
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                http_err(if e.is_timeout() {
                    format!("no answer within {} s", TIMEOUT.as_secs())
                } else {
                    e.to_string()
                })
            })?;
        let status = resp.status();
        if !status.is_success() {
            let retry = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(|s| format!(" (retry after {s} s)"))
                .unwrap_or_default();
            return Err(http_err(format!("HTTP {status}{retry}")));
        }
        let bytes = resp.bytes().await.map_err(|e| http_err(e.to_string()))?;
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| http_err(format!("the answer is not JSON: {e}")))?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(answer)
        } else {
            let error = opt(&answer, "/error").unwrap_or_else(|| "unknown_error".to_owned());
            tracing::warn!(method, %error, "Slack Web API call failed");
            Err(SlackError::Api { method, error })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::slack::text_message;
    use std::sync::{Arc, Mutex};

    /// One request received by the test double.
    #[derive(Debug, Clone)]
    struct Captured {
        path: String,
        auth: String,
        content_type: String,
        body: Value,
    }

    type Log = Arc<Mutex<Vec<Captured>>>;

    /// A test double for Slack's cloud: a local axum server on 127.0.0.1:0 that records every
    /// request and answers each with `status` and `reply`; returns a client pointed at it.
    async fn fake_slack(status: u16, reply: Value) -> (SlackClient, Log) {
        use axum::http::{HeaderMap, StatusCode, Uri};
        let log = Log::default();
        let seen = log.clone();
        let handler = move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| async move {
            let h = |n| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            seen.lock().unwrap().push(Captured {
                path: uri.path().to_owned(),
                auth: h("authorization"),
                content_type: h("content-type"),
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
            let status = StatusCode::from_u16(status).unwrap();
            (status, [("retry-after", "30")], axum::Json(reply))
        };
        let app = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut client = SlackClient::new("xoxb-test-token").unwrap();
        client.base_url = format!("http://{addr}/api");
        (client, log)
    }

    #[tokio::test]
    async fn post_message_sends_a_bearer_json_request_and_returns_ts() {
        let (client, log) = fake_slack(200, json!({"ok": true, "ts": "1700000000.000200"})).await;
        let m = text_message("investigating <checkout>");
        let blocks = Some(m.blocks.clone());
        let ts = client
            .post_message("C1", Some("1700.1"), &m.text, blocks)
            .await
            .unwrap();
        assert_eq!(ts, "1700000000.000200");
        let got = log.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "/api/chat.postMessage");
        assert_eq!(got[0].auth, "Bearer xoxb-test-token");
        assert_eq!(got[0].content_type, "application/json; charset=utf-8");
        assert_eq!(
            (&got[0].body["channel"], &got[0].body["thread_ts"]),
            (&json!("C1"), &json!("1700.1"))
        );
        assert_eq!(got[0].body["text"], "investigating &lt;checkout&gt;");
        assert_eq!(got[0].body["blocks"], m.blocks);
        assert!(
            !format!("{client:?}").contains("xoxb"),
            "the token is never printed"
        );
    }

    #[tokio::test]
    async fn slack_failures_name_slacks_error_code_or_the_http_status() {
        let (client, log) =
            fake_slack(200, json!({"ok": false, "error": "message_not_found"})).await;
        let e = client
            .update_message("C1", "1700.2", "done", Some(json!([])))
            .await
            .unwrap_err();
        let want = SlackError::Api {
            method: "chat.update",
            error: "message_not_found".into(),
        };
        assert_eq!(e, want);
        assert!(e.to_string().contains("message_not_found"), "{e}");
        let got = log.lock().unwrap().clone();
        assert_eq!(
            (got[0].path.as_str(), &got[0].body["ts"]),
            ("/api/chat.update", &json!("1700.2"))
        );
        let (client, _) = fake_slack(429, json!({"ok": false, "error": "ratelimited"})).await;
        let e = client
            .post_message("C1", None, "x", None)
            .await
            .unwrap_err();
        let SlackError::Http { reason, .. } = &e else {
            panic!("{e}")
        };
        assert!(
            reason.contains("429") && reason.contains("retry after 30"),
            "{e}"
        );
    }
}
