//! Slack end to end against the real server, with a local capture server standing in for
//! Slack's Web API (a test double: Slack's cloud cannot run here). Requests are signed exactly
//! as Slack signs them; forged, stale and replayed ones are refused; the acknowledgement comes
//! back well inside 3 s; the thread gets the result and Approve / Deny buttons that only mapped
//! approvers can use.

mod common;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use common::server::{OPERATOR, Srv, start, wait_for};
use oncall::config::Config;
use oncall::server::slack;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// What the Slack test double received: (method, JSON body).
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

async fn capture() -> (String, Calls) {
    let calls: Calls = Default::default();
    async fn record(
        State((calls, method)): State<(Calls, &'static str)>,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        let mut c = calls.lock().unwrap();
        c.push((method.to_string(), body.clone()));
        let ts = format!("1700000000.{:06}", c.len());
        Json(json!({"ok": true, "channel": body["channel"], "ts": ts}))
    }
    let app = axum::Router::new()
        .route(
            "/chat.postMessage",
            post(record).with_state((calls.clone(), "chat.postMessage")),
        )
        .route(
            "/chat.update",
            post(record).with_state((calls.clone(), "chat.update")),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}"), calls)
}

async fn server(tag: &str) -> (Srv, Calls) {
    let (api, calls) = capture().await;
    let secret_env = format!("ONCALL_TEST_SLACK_SECRET_{tag}");
    let bot_env = format!("ONCALL_TEST_SLACK_BOT_{tag}");
    // SAFETY: nextest runs each test in its own process, and this runs before any thread reads
    // the environment.
    unsafe {
        std::env::set_var(&secret_env, SECRET);
        std::env::set_var(&bot_env, "xoxb-test-double");
    }
    let mut cfg = Config::default();
    cfg.slack.signing_secret_env = secret_env;
    cfg.slack.bot_token_env = bot_env;
    cfg.slack.api_base = api;
    cfg.slack.approvers = [("UANA".to_string(), "ana".to_string())].into();
    (start(cfg).await, calls)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn send(
    srv: &Srv,
    path: &str,
    ctype: &str,
    body: &str,
    ts: i64,
    sig: Option<String>,
) -> (u16, String, Duration) {
    let ts = ts.to_string();
    let sig = sig.unwrap_or_else(|| slack::sign(SECRET, &ts, body.as_bytes()).unwrap());
    let t0 = Instant::now();
    let r = srv
        .http
        .post(srv.url(path))
        .header("content-type", ctype)
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", sig)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let took = t0.elapsed();
    (r.status().as_u16(), r.text().await.unwrap(), took)
}

const FORM: &str = "application/x-www-form-urlencoded";

fn command(text: &str) -> String {
    serde_urlencoded::to_string([
        ("token", "unused"),
        ("team_id", "T1"),
        ("channel_id", "C1"),
        ("user_id", "UBO"),
        ("user_name", "bo"),
        ("command", "/oncall"),
        ("text", text),
        ("response_url", "https://hooks.invalid/x"),
        ("trigger_id", "1.2.3"),
    ])
    .unwrap()
}

async fn wait_calls(calls: &Calls, what: &str, pred: impl Fn(&[(String, Value)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if pred(&calls.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Slack never got {what}: {:#?}", calls.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_replayed_requests_are_refused() {
    let (srv, calls) = server("refuse").await;
    let body = command("checkout is slow");
    // Forged: signed with another secret.
    let ts = now().to_string();
    let forged = slack::sign("not-the-secret", &ts, body.as_bytes()).unwrap();
    let (s, text, _) = send(&srv, "/slack/commands", FORM, &body, now(), Some(forged)).await;
    assert_eq!(s, 401, "{text}");
    // Stale: signed ten minutes ago.
    let (s, text, _) = send(&srv, "/slack/commands", FORM, &body, now() - 600, None).await;
    assert_eq!(s, 401, "{text}");
    // No signature at all.
    let r = srv
        .http
        .post(srv.url("/slack/commands"))
        .header("content-type", FORM)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A valid request, then the very same request again: the replay is refused.
    let ts = now();
    let sig = slack::sign(SECRET, &ts.to_string(), body.as_bytes()).unwrap();
    let (s, _, _) = send(&srv, "/slack/commands", FORM, &body, ts, Some(sig.clone())).await;
    assert_eq!(s, 200);
    let (s, text, _) = send(&srv, "/slack/commands", FORM, &body, ts, Some(sig)).await;
    assert_eq!(s, 401, "{text}");
    let (_, list) = srv.get(OPERATOR, "/api/v1/incidents").await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "only the valid request opened one"
    );
    drop(calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slash_command_is_acknowledged_at_once_and_the_thread_gets_the_result_and_buttons() {
    let (srv, calls) = server("command").await;
    // Empty text: usage, nothing opened.
    let (s, text, _) = send(&srv, "/slack/commands", FORM, &command(" "), now(), None).await;
    assert_eq!(s, 200);
    assert!(text.contains("Usage"), "{text}");
    let (s, text, took) = send(
        &srv,
        "/slack/commands",
        FORM,
        &command("checkout p99 latency above 2s for users"),
        now(),
        None,
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert!(took < Duration::from_secs(3), "acknowledged in {took:?}");
    let ack: Value = serde_json::from_str(&text).unwrap();
    let id = ack["text"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    // The opener starts the thread; the result is posted into it.
    wait_calls(&calls, "the opener and the result", |c| {
        c.len() >= 2 && c[1].1["thread_ts"] == "1700000000.000001"
    })
    .await;
    let c = calls.lock().unwrap().clone();
    assert_eq!(c[0].0, "chat.postMessage");
    assert_eq!(c[0].1["channel"], "C1");
    assert!(c[0].1["text"].as_str().unwrap().contains(&id));
    assert_eq!(c[1].1["thread_ts"], "1700000000.000001");
    // The result says what the round cost: tokens and time.
    let result = c[1].1["text"].as_str().unwrap_or_default();
    assert!(
        result.contains("completion tokens") && result.contains("s in all"),
        "{result}"
    );
    let (_, inc) = srv.get(OPERATOR, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(inc["incident"]["source"], "slack");
    assert_eq!(inc["events"][0]["actor"], "slack:UBO");

    // A request in the incident shows Approve / Deny buttons in its thread.
    let mut victim = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let (s, v) = srv
        .post(
            OPERATOR,
            &format!("/api/v1/incidents/{id}/actions"),
            json!({"tool": "host.signal_process", "args": {"pid": victim.id(), "signal": "TERM"}}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let req = v["request"].as_str().unwrap().to_string();
    wait_calls(&calls, "the approval message", |c| {
        c.iter()
            .any(|(_, b)| b["blocks"].to_string().contains(&req))
    })
    .await;
    let (n, msg) = calls
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .find(|(_, (_, b))| b["blocks"].to_string().contains(&req))
        .map(|(i, m)| (i, m.clone()))
        .unwrap();
    // The test double answers the n-th message with ts 1700000000.<n>.
    let msg_ts = format!("1700000000.{:06}", n + 1);
    let blocks = msg.1["blocks"].to_string();
    assert!(
        blocks.contains("\"action_id\":\"approve\"") && blocks.contains("\"action_id\":\"deny\"")
    );

    let press = |user: &str, action: &str| {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user},
            "channel": {"id": "C1"},
            "message": {"ts": msg_ts, "thread_ts": "1700000000.000001"},
            "container": {"message_ts": msg_ts, "thread_ts": "1700000000.000001"},
            "actions": [{"action_id": action, "value": req}],
            "response_url": "https://hooks.invalid/y"
        });
        serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
    };
    // Someone not mapped to an approver presses Approve: nothing is decided.
    let (s, _, took) = send(
        &srv,
        "/slack/interactions",
        FORM,
        &press("UEVE", "approve"),
        now(),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(took < Duration::from_secs(3));
    wait_calls(&calls, "the refusal note", |c| {
        c.iter()
            .any(|(_, b)| b["text"].as_str().unwrap_or("").contains("not mapped"))
    })
    .await;
    let (_, a) = srv
        .get(OPERATOR, &format!("/api/v1/approvals?incident={id}"))
        .await;
    assert_eq!(a[0]["state"]["state"], "pending");
    assert!(victim.try_wait().unwrap().is_none());
    // The mapped approver presses Approve: it runs once, and the message is replaced.
    let (s, _, _) = send(
        &srv,
        "/slack/interactions",
        FORM,
        &press("UANA", "approve"),
        now(),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let events = wait_for(
        &srv,
        OPERATOR,
        &id,
        Duration::from_secs(30),
        "the effect",
        |e| e.iter().any(|x| x["kind"] == "action_verified"),
    )
    .await;
    assert!(!victim.wait().unwrap().success());
    let approved = events
        .iter()
        .find(|e| e["kind"] == "action_approved")
        .unwrap();
    assert_eq!(approved["data"]["by"], "ana");
    wait_calls(&calls, "the decided message", |c| {
        c.iter()
            .any(|(m, b)| m == "chat.update" && b["ts"] == msg_ts.as_str())
    })
    .await;
    // What the action did reaches the thread too (Slack follows the incident's events).
    wait_calls(&calls, "the measured effect", |c| {
        c.iter().any(|(m, b)| {
            m == "chat.postMessage"
                && b["thread_ts"] == "1700000000.000001"
                && b["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("host.signal_process ran: "))
        })
    })
    .await;
    // The post-mortem draft goes into the thread: summary, cause and resolution, cited.
    let (s, v) = srv
        .post(
            OPERATOR,
            &format!("/api/v1/incidents/{id}/postmortem"),
            json!({}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    wait_calls(&calls, "the draft in the thread", |c| {
        c.iter().any(|(m, b)| {
            m == "chat.postMessage"
                && b["thread_ts"] == "1700000000.000001"
                && b["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Post-mortem draft for"))
        })
    })
    .await;
    let c = calls.lock().unwrap().clone();
    let draft = c
        .iter()
        .rev()
        .find_map(|(_, b)| {
            b["text"]
                .as_str()
                .filter(|t| t.contains("Post-mortem draft for"))
        })
        .unwrap()
        .to_string();
    for needle in [
        "*Summary*",
        "*Root cause and trigger*",
        "*Resolution*",
        "host.signal_process",
        "(#",
    ] {
        assert!(draft.contains(needle), "{needle} in {draft}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_api_verification_mentions_and_retries() {
    let (srv, calls) = server("events").await;
    let challenge = json!({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "token": "x"}).to_string();
    let (s, text, _) = send(
        &srv,
        "/slack/events",
        "application/json",
        &challenge,
        now(),
        None,
    )
    .await;
    assert_eq!(
        (s, text.as_str()),
        (200, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    );
    let mention = |event_id: &str, ts: &str, thread: Option<&str>, text: &str| {
        let mut ev = json!({"type": "app_mention", "user": "UBO", "text": format!("<@UBOT> {text}"),
                            "channel": "C2", "ts": ts});
        if let Some(t) = thread {
            ev["thread_ts"] = json!(t);
        }
        json!({"type": "event_callback", "event_id": event_id, "team_id": "T1", "event": ev})
            .to_string()
    };
    let first = mention(
        "Ev1",
        "1700000100.000100",
        None,
        "api errors spiking for users",
    );
    let (s, _, took) = send(
        &srv,
        "/slack/events",
        "application/json",
        &first,
        now(),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(took < Duration::from_secs(3));
    // Slack resends the same event (new signature, same event_id): acknowledged, not acted on.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _, _) = send(
        &srv,
        "/slack/events",
        "application/json",
        &first,
        now(),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let (_, list) = srv.get(OPERATOR, "/api/v1/incidents").await;
        if let Some(i) = list.as_array().and_then(|l| l.first()) {
            break i["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the mention opened no incident");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A mention in that thread continues the same incident.
    let reply = mention(
        "Ev2",
        "1700000100.000200",
        Some("1700000100.000100"),
        "it began at 10:02",
    );
    let (s, _, _) = send(
        &srv,
        "/slack/events",
        "application/json",
        &reply,
        now(),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let events = wait_for(
        &srv,
        OPERATOR,
        &id,
        Duration::from_secs(30),
        "the message",
        |e| e.iter().any(|x| x["kind"] == "message"),
    )
    .await;
    let m = events.iter().find(|e| e["kind"] == "message").unwrap();
    assert_eq!(m["data"]["text"], "it began at 10:02");
    let (_, list) = srv.get(OPERATOR, "/api/v1/incidents").await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "one incident despite the retry and reply"
    );
    wait_calls(&calls, "a post into the mention's thread", |c| {
        c.iter().any(|(_, b)| b["thread_ts"] == "1700000100.000100")
    })
    .await;
}
