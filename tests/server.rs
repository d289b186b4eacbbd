//! The server as its users meet it: tokens and roles on every route, incidents whose events
//! stream live and resume from Last-Event-ID, approvals decided over HTTP that run a real action
//! once and record its measured effect, alert webhooks, overload answers.

mod common;

use common::server::{OPERATOR, kinds, start, stream_until, wait_for};
use oncall::config::Config;
use oncall::policy::Role;
use serde_json::json;
use std::time::Duration;

const QUIET: &str = "users say the status page feels slow";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_point_checks_token_and_role() {
    let srv = start(Config::default()).await;
    let viewer = srv.token("vi", Role::Viewer).await;
    let responder = srv.token("re", Role::Responder).await;
    let c = &srv.http;

    // No token, a wrong token, a malformed header: 401 with WWW-Authenticate.
    for path in ["/api/v1/incidents", "/api/v1/me", "/metrics", "/readyz"] {
        let r = c.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} without a token");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let r = c
            .get(srv.url(path))
            .bearer_auth("oc_not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with a wrong token");
        let r = c
            .get(srv.url(path))
            .header("authorization", "Basic YWRtaW46YWRtaW4=")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with basic auth");
    }
    // Liveness and the sign-in page need no token and hold no data.
    assert_eq!(
        c.get(srv.url("/healthz")).send().await.unwrap().status(),
        200
    );
    let page = c.get(srv.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("data-testid=\"token-input\"")
    );

    // Roles: a viewer reads but cannot open; a responder opens but cannot decide.
    let (s, me) = srv.get(&viewer, "/api/v1/me").await;
    assert_eq!((s, me), (200, json!({"name": "vi", "role": "viewer"})));
    let (s, v) = srv
        .post(&viewer, "/api/v1/incidents", json!({"report": QUIET}))
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("viewer"), "{v}");
    let (s, _) = srv.get(&viewer, "/api/v1/incidents").await;
    assert_eq!(s, 200);
    let (s, v) = srv
        .post(
            &responder,
            "/api/v1/approvals/abc/decision",
            json!({"approve": true}),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    // The operator token from the environment is `admin`, an approver.
    let (s, me) = srv.get(OPERATOR, "/api/v1/me").await;
    assert_eq!((s, me), (200, json!({"name": "admin", "role": "approver"})));
    // A token replaced in the store stops working (after the short cache; a new name here).
    let (s, _) = srv.get(&responder, "/api/v1/me").await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let srv = start(Config::default()).await;
    let t = srv.token("re", Role::Responder).await;
    let c = &srv.http;
    let r = c
        .post(srv.url("/api/v1/incidents"))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{\"report\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("send {\\\"report\\\""));
    let (s, v) = srv
        .post(&t, "/api/v1/incidents", json!({"report": "   "}))
        .await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("empty"), "{v}");
    let (s, v) = srv
        .post(
            &t,
            "/api/v1/incidents",
            json!({"report": "x", "sevrity": "P1"}),
        )
        .await;
    assert_eq!(s, 400, "unknown fields are named: {v}");
    assert!(v["error"].as_str().unwrap().contains("sevrity"), "{v}");
    let (s, _) = srv.get(&t, "/api/v1/incidents/1999-01-01-01").await;
    assert_eq!(s, 404);
    let (s, v) = srv
        .post(
            &t,
            "/api/v1/incidents/1999-01-01-01/messages",
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = srv.get(&t, "/api/v1/approvals?state=maybe").await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("pending"), "{v}");
    let r = c
        .get(srv.url("/api/v1/incidents/1999-01-01-01/events"))
        .bearer_auth(&t)
        .header("Last-Event-ID", "seven")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Too large a body: 413, and the server goes on.
    let big = "x".repeat(9 << 20);
    let r = c
        .post(srv.url("/api/v1/incidents"))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body(format!("{{\"report\": \"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // The server closed that connection (the body was not read); a new one is served.
    let r = reqwest::Client::new()
        .get(srv.url("/api/v1/me"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_streams_live_resumes_from_last_event_id_and_continues_on_a_message() {
    let srv = start(Config::default()).await;
    let t = srv.token("re", Role::Responder).await;
    let id = srv.open_incident(&t, QUIET).await;
    // Live: the stream delivers the whole round, in order, without gaps.
    let seen = stream_until(
        &srv.base,
        &t,
        &id,
        None,
        "investigation_finished",
        Duration::from_secs(60),
    )
    .await;
    let ids: Vec<i64> = seen.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>(), "gapless");
    let k: Vec<String> = seen
        .iter()
        .map(|(_, e)| e["kind"].as_str().unwrap_or("").to_string())
        .collect();
    for want in [
        "report",
        "investigation_started",
        "tool_called",
        "tool_answered",
        "hypothesis_changed",
        "investigation_finished",
    ] {
        assert!(k.contains(&want.to_string()), "{want} in {k:?}");
    }
    let finished = &seen.last().unwrap().1["data"];
    assert!(finished["severity"].as_str().unwrap().starts_with('P'));
    // Reconnecting with Last-Event-ID resumes right after it.
    let n = ids[ids.len() / 2];
    let again = stream_until(
        &srv.base,
        &t,
        &id,
        Some(n),
        "investigation_finished",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(again.first().map(|(i, _)| *i), Some(n + 1));
    // The incident is waiting, with the severity set.
    let events = wait_for(
        &srv,
        &t,
        &id,
        Duration::from_secs(10),
        "status waiting",
        |e| e.last().is_some_and(|l| l["data"]["status"] == "waiting"),
    )
    .await;
    assert!(events.len() >= ids.len());
    let (_, list) = srv.get(&t, "/api/v1/incidents").await;
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "waiting");
    // A message continues the incident: a second round runs with it.
    let (s, v) = srv
        .post(
            &t,
            &format!("/api/v1/incidents/{id}/messages"),
            json!({"text": "it started right after the 10:02 deploy"}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let events = wait_for(&srv, &t, &id, Duration::from_secs(60), "round 2", |e| {
        e.iter()
            .any(|x| x["kind"] == "investigation_finished" && x["data"]["round"] == 2)
    })
    .await;
    let msg = events.iter().find(|e| e["kind"] == "message").unwrap();
    assert_eq!(msg["actor"], "re");
    // The post-mortem draft is built from this log.
    let r = srv
        .http
        .get(srv.url(&format!("/api/v1/incidents/{id}/postmortem")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let md = r.text().await.unwrap();
    assert!(md.contains(&format!("incident {id}")) && md.contains("## Timeline"));
    // Metrics count what happened.
    let m = srv.metrics(&t).await;
    assert!(m.contains("oncall_investigations_total"), "{m}");
    assert!(
        m.contains("oncall_tool_calls_total{tool=\"host.use_snapshot\""),
        "{m}"
    );
    assert!(m.contains("route=\"/api/v1/incidents\",method=\"POST\",status=\"202\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_over_http_runs_a_real_action_once_and_records_its_effect() {
    let srv = start(Config::default()).await;
    let ana = srv.token("ana", Role::Approver).await;
    let bo = srv.token("bo", Role::Approver).await;
    let cy = srv.token("cy", Role::Responder).await;
    let id = srv.open_incident(&cy, QUIET).await;
    // A real process to stop.
    let mut victim = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("sleep");
    let pid = victim.id();
    let args = json!({"pid": pid, "signal": "TERM"});

    // Bad arguments never become a request.
    let (s, v) = srv
        .post(
            &ana,
            &format!("/api/v1/incidents/{id}/actions"),
            json!({"tool": "host.signal_process", "args": {"pid": "1; reboot"}}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = srv
        .post(
            &ana,
            &format!("/api/v1/incidents/{id}/actions"),
            json!({"tool": "host.signal_process", "args": args, "why": "stop the hog"}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let req = v["request"].as_str().unwrap().to_string();
    assert_eq!(v["plan"]["would_run"], format!("kill -TERM {pid}"));
    let (_, pending) = srv
        .get(
            &cy,
            &format!("/api/v1/approvals?incident={id}&state=pending"),
        )
        .await;
    assert_eq!(pending.as_array().unwrap().len(), 1);
    // The request binds the process's identity (start time, executable) beside pid and signal.
    assert_eq!(pending[0]["args"]["pid"], args["pid"]);
    assert_eq!(pending[0]["args"]["signal"], args["signal"]);
    assert!(pending[0]["args"]["start_time"].is_u64() && pending[0]["args"]["exe"].is_string());

    let decide = |who: &str, yes: bool| {
        let who = who.to_string();
        let srv = &srv;
        let req = req.clone();
        async move {
            srv.post(
                &who,
                &format!("/api/v1/approvals/{req}/decision"),
                json!({"approve": yes, "reason": if yes { "" } else { "no" }}),
            )
            .await
        }
    };
    // The requester cannot approve their own request; a responder cannot approve at all.
    let (s, v) = decide(&ana, true).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("cannot approve"),
        "{v}"
    );
    let (s, _) = decide(&cy, true).await;
    assert_eq!(s, 403);
    assert!(victim.try_wait().unwrap().is_none(), "nothing ran yet");
    // Another approver approves: it runs, once.
    let (s, v) = decide(&bo, true).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"]["state"], "approved");
    let events = wait_for(&srv, &cy, &id, Duration::from_secs(30), "the effect", |e| {
        kinds(e).contains(&"action_verified".to_string())
    })
    .await;
    let status = victim.wait().expect("wait");
    assert!(!status.success(), "the process was stopped by the signal");
    let executed = events
        .iter()
        .find(|e| e["kind"] == "action_executed")
        .unwrap();
    assert_eq!(executed["actor"], "bo");
    assert_eq!(executed["data"]["ok"], true, "{executed}");
    let verified = events
        .iter()
        .find(|e| e["kind"] == "action_verified")
        .unwrap();
    assert!(!verified["data"]["effect"].as_str().unwrap().is_empty());
    let approved = events
        .iter()
        .find(|e| e["kind"] == "action_approved")
        .unwrap();
    assert_eq!(approved["data"]["by"], "bo");
    // Deciding again is refused: it ran once.
    let (s, v) = decide(&bo, true).await;
    assert_eq!(s, 409, "{v}");
    let (_, all) = srv
        .get(&cy, &format!("/api/v1/approvals?incident={id}"))
        .await;
    assert_eq!(all[0]["state"]["state"], "executed");
    // The audit log holds request, decision, execution and effect, and verifies.
    let audit = srv.dir.path().join("audit.jsonl");
    let out = std::process::Command::new(common::ONCALL)
        .args(["audit", "verify", "--file"])
        .arg(&audit)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&audit).unwrap();
    for kind in ["request", "decision", "execution", "effect"] {
        assert!(text.contains(&format!("\"kind\":\"{kind}\"")), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_webhook_opens_one_incident_for_its_firing_alerts() {
    let srv = start(Config::default()).await;
    let t = srv.token("am", Role::Responder).await;
    let body = json!({
        "version": "4", "status": "firing", "receiver": "oncall",
        "alerts": [
            {"status": "firing", "labels": {"alertname": "HighLatency", "severity": "page", "service": "checkout"},
             "annotations": {"summary": "p99 latency above 2s for users"}, "startsAt": "2026-11-27T04:00:00Z"},
            {"status": "resolved", "labels": {"alertname": "DiskFull"}, "annotations": {}}
        ]
    });
    let (s, v) = srv.post(&t, "/api/v1/alerts", body).await;
    assert_eq!(s, 202, "{v}");
    let id = v["incidents"][0].as_str().unwrap().to_string();
    let (_, inc) = srv.get(&t, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(inc["incident"]["source"], "alert");
    assert_eq!(inc["incident"]["title"], "alert: HighLatency");
    let report = inc["events"][0]["data"]["text"].as_str().unwrap();
    assert!(
        report.contains("HighLatency [page] on checkout"),
        "{report}"
    );
    assert!(
        !report.contains("DiskFull"),
        "resolved alerts are not reported"
    );
    let (s, v) = srv
        .post(
            &t,
            "/api/v1/alerts",
            json!({"alerts": [{"status": "resolved"}]}),
        )
        .await;
    assert_eq!((s, v["incidents"].clone()), (200, json!([])));
    let (s, v) = srv
        .post(&t, "/api/v1/alerts", json!({"receiver": "x"}))
        .await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_beyond_their_rate_get_429_and_others_are_served() {
    let mut cfg = Config::default();
    cfg.server.requests_per_s = 5;
    let srv = start(cfg).await;
    let a = srv.token("a", Role::Viewer).await;
    let b = srv.token("b", Role::Viewer).await;
    let mut codes = vec![];
    for _ in 0..12 {
        let r = srv
            .http
            .get(srv.url("/api/v1/me"))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
        }
        codes.push(r.status().as_u16());
    }
    assert!(codes.contains(&429), "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 5, "{codes:?}");
    let (s, _) = srv.get(&b, "/api/v1/me").await;
    assert_eq!(s, 200, "one caller's excess does not block another");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_closes_only_after_its_blameless_post_mortem_draft() {
    let srv = start(Config::default()).await;
    let t = srv.token("re", Role::Responder).await;
    let id = srv.open_incident(&t, QUIET).await;
    wait_for(&srv, &t, &id, Duration::from_secs(60), "the round", |e| {
        e.last().is_some_and(|l| l["data"]["status"] == "waiting")
    })
    .await;
    let status = |s: &'static str| json!({ "status": s });
    let path = format!("/api/v1/incidents/{id}/status");
    let (s, v) = srv.post(&t, &path, status("closed")).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("post-mortem"), "{v}");
    let (s, v) = srv.post(&t, &path, status("investigating")).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = srv.post(&t, &path, status("resolved")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = srv
        .post(&t, &format!("/api/v1/incidents/{id}/postmortem"), json!({}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v["blameless_findings"],
        json!([]),
        "oncall's own draft is blameless"
    );
    let md = v["markdown"].as_str().unwrap();
    let at = common::postmortem_sections(md);
    // The timeline cites its events in order.
    let cites: Vec<i64> = md[at[5]..at[6]]
        .lines()
        .filter_map(|l| l.rsplit("(#").next()?.strip_suffix(')')?.parse().ok())
        .collect();
    assert!(
        cites.len() >= 3 && cites.windows(2).all(|w| w[0] < w[1]),
        "{cites:?}"
    );
    let (s, v) = srv.post(&t, &path, status("closed")).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = srv
        .post(
            &t,
            &format!("/api/v1/incidents/{id}/messages"),
            json!({"text": "late"}),
        )
        .await;
    assert_eq!(s, 409, "a closed incident takes no more messages");
}
