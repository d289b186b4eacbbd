//! Every file under examples/ is parsed here and used against the real `oncall serve`, so an
//! example can not point at a route the server does not answer or with auth it does not accept:
//! - `alertmanager.yml`: its webhook receiver's URL path and Bearer credentials open an incident;
//! - `otel-collector.yml`: its OTLP/HTTP exporter's endpoint, header, encoding and compression
//!   deliver a span;
//! - `slack-app-manifest.yml`: its three request URLs are oncall's Slack routes, over HTTPS, with
//!   the scopes and event oncall uses, and docs/slack.md shows it as it is;
//! - `prometheus.yml`: promtool accepts it, and a real Prometheus running it scrapes oncall's
//!   /metrics with the token it names.

mod common;

use common::serve::Serve;
use common::*;
use serde_yaml::Value as Yaml;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example_text(name: &str) -> String {
    std::fs::read_to_string(root().join("examples").join(name))
        .unwrap_or_else(|e| panic!("examples/{name}: {e}"))
}

fn example(name: &str) -> Yaml {
    serde_yaml::from_str(&example_text(name))
        .unwrap_or_else(|e| panic!("examples/{name} is not YAML: {e}"))
}

fn str_at<'a>(v: &'a Yaml, path: &[&str], file: &str) -> &'a str {
    let mut cur = v;
    for k in path {
        cur = &cur[*k];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{file}: no string at {}", path.join(".")))
}

/// The path of a URL written in an example.
fn url_path(url: &str) -> String {
    reqwest::Url::parse(url)
        .unwrap_or_else(|e| panic!("{url} is not a URL: {e}"))
        .path()
        .to_string()
}

/// `oncall token add NAME --role ROLE` against `data`, as the examples' comments make tokens:
/// its stdout, written to a file as `> FILE` would, then read back the way Alertmanager and
/// Prometheus read a `credentials_file` (surrounding white space trimmed).
fn token_file(data: &Path, name: &str, role: &str) -> (PathBuf, String) {
    let mut c = Command::new(ONCALL);
    for (k, _) in std::env::vars() {
        if k.starts_with("ONCALL_") {
            c.env_remove(k);
        }
    }
    let out = c
        .args(["token", "add", name, "--role", role])
        .env("ONCALL_SERVER__DATA_DIR", data)
        .output()
        .expect("run oncall token add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = data.join(format!("{name}-token"));
    std::fs::write(&file, &out.stdout).unwrap();
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(!token.is_empty());
    (file, token)
}

async fn serve(dir: &tempfile::TempDir, env: &[(&str, String)]) -> Serve {
    Serve::start(&dir.path().join("data"), env)
        .await
        .expect("oncall serve")
}

fn data_dir(dir: &tempfile::TempDir) -> PathBuf {
    let d = dir.path().join("data");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A notification as Alertmanager sends it (webhook payload version 4).
fn alertmanager_notification() -> serde_json::Value {
    serde_json::json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"CheckoutLatencyHigh\", service=\"checkout\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "oncall",
        "groupLabels": {"alertname": "CheckoutLatencyHigh", "service": "checkout"},
        "commonLabels": {"alertname": "CheckoutLatencyHigh", "service": "checkout", "severity": "page"},
        "commonAnnotations": {"summary": "checkout p99 latency above 2s"},
        "externalURL": "http://alertmanager.internal:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "CheckoutLatencyHigh", "service": "checkout", "severity": "page"},
            "annotations": {"summary": "checkout p99 latency above 2s"},
            "startsAt": "2026-12-03T09:58:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.internal:9090/graph?g0.expr=x",
            "fingerprint": "c0ffee0123456789"
        }]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alertmanager_receiver_opens_an_incident_on_the_real_server() {
    let file = "alertmanager.yml";
    let cfg = example(file);
    let receiver = str_at(&cfg, &["route", "receiver"], file);
    let receivers = cfg["receivers"].as_sequence().expect("receivers");
    let r = receivers
        .iter()
        .find(|r| r["name"].as_str() == Some(receiver))
        .unwrap_or_else(|| panic!("{file}: the route's receiver {receiver} is not defined"));
    let hook = &r["webhook_configs"][0];
    let url = str_at(hook, &["url"], file);
    let path = url_path(url);
    assert_eq!(path, "/api/v1/alerts", "{file}: {url}");
    let kind = str_at(hook, &["http_config", "authorization", "type"], file);
    assert_eq!(kind, "Bearer", "{file}");
    assert!(
        str_at(
            hook,
            &["http_config", "authorization", "credentials_file"],
            file
        )
        .starts_with('/')
    );

    let dir = tempfile::tempdir().unwrap();
    let (_, token) = token_file(&data_dir(&dir), "alertmanager", "responder");
    let srv = serve(&dir, &[]).await;
    let post = |auth: Option<String>| {
        let mut r = srv
            .http
            .post(format!("{}{path}", srv.base))
            .json(&alertmanager_notification());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        async move {
            let resp = r.send().await.expect("send");
            let s = resp.status().as_u16();
            (s, resp.text().await.unwrap_or_default())
        }
    };
    let (s, body) = post(None).await;
    assert_eq!(s, 401, "the route needs the configured credentials: {body}");
    let (s, body) = post(Some(format!("{kind} {token}"))).await;
    assert_eq!(s, 202, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["incidents"][0]
        .as_str()
        .expect("an incident id")
        .to_string();
    let (s, inc) = srv.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(s, 200, "{inc}");
    assert!(
        inc.contains("CheckoutLatencyHigh [page] on checkout"),
        "{inc}"
    );
    // Alertmanager resends the same group every repeat_interval: that opens nothing new.
    let (s, body) = post(Some(format!("{kind} {token}"))).await;
    assert!(s == 200 || s == 202, "{s} {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_ne!(v["incidents"][0].as_str(), Some(id.as_str()), "{body}");
}

/// One span in an OTLP ExportTraceServiceRequest.
fn one_span() -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("checkout".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![0x5b; 16],
                    span_id: vec![0xee; 8],
                    name: "GET /checkout".into(),
                    kind: 2,
                    start_time_unix_nano: now - 5_000_000,
                    end_time_unix_nano: now,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_exporter_delivers_spans_to_the_real_server() {
    use prost::Message;
    use std::io::Write;
    let file = "otel-collector.yml";
    let cfg = example(file);
    let name = "otlphttp/oncall";
    let exp = &cfg["exporters"][name];
    let endpoint = str_at(exp, &["traces_endpoint"], file);
    let path = url_path(endpoint);
    assert_eq!(path, "/v1/traces", "{file}: {endpoint}");
    assert_eq!(str_at(exp, &["encoding"], file), "proto");
    assert_eq!(str_at(exp, &["compression"], file), "gzip");
    let header = str_at(exp, &["headers", "Authorization"], file);
    let pipeline = &cfg["service"]["pipelines"]["traces"];
    assert!(
        pipeline["exporters"]
            .as_sequence()
            .is_some_and(|e| e.iter().any(|x| x.as_str() == Some(name))),
        "{file}: the traces pipeline does not use {name}"
    );
    for r in pipeline["receivers"].as_sequence().expect("receivers") {
        assert!(cfg["receivers"][r.as_str().unwrap()].is_mapping(), "{r:?}");
    }
    // On one host the collector's own OTLP/HTTP receiver must not take oncall's port.
    let oncall_port = reqwest::Url::parse(endpoint).unwrap().port().unwrap();
    let http_rx = str_at(
        &cfg,
        &["receivers", "otlp", "protocols", "http", "endpoint"],
        file,
    );
    assert!(
        !http_rx.ends_with(&format!(":{oncall_port}")),
        "{file}: {http_rx}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (_, token) = token_file(&data_dir(&dir), "otel", "ingest");
    let value = header.replace("${env:ONCALL_INGEST_TOKEN}", &token);
    assert_ne!(
        value, header,
        "{file}: the header does not use ONCALL_INGEST_TOKEN"
    );
    let srv = serve(&dir, &[]).await;
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
    gz.write_all(&one_span().encode_to_vec()).unwrap();
    let body = gz.finish().unwrap();
    let send = |auth: &str| {
        srv.http
            .post(format!("{}{path}", srv.base))
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .header("authorization", auth.to_string())
            .body(body.clone())
            .send()
    };
    let r = send("Bearer wrong").await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = send(&value).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            r.bytes().await.unwrap(),
        )
        .expect("an OTLP response");
    assert!(
        answer
            .partial_success
            .as_ref()
            .is_none_or(|p| p.rejected_spans == 0),
        "{answer:?}"
    );
}

/// Signs a Slack request as Slack does.
fn slack_signed(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    ctype: &str,
    body: &str,
) -> reqwest::RequestBuilder {
    let ts = chrono::Utc::now().timestamp().to_string();
    let sig = oncall::server::slack::sign(secret, &ts, body.as_bytes()).unwrap();
    http.post(url)
        .header("content-type", ctype)
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", sig)
        .body(body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slack_manifest_names_oncalls_routes_over_https() {
    let file = "slack-app-manifest.yml";
    let m = example(file);
    let command = &m["features"]["slash_commands"][0];
    assert_eq!(str_at(command, &["command"], file), "/oncall");
    let urls = [
        ("commands", str_at(command, &["url"], file)),
        (
            "events",
            str_at(
                &m,
                &["settings", "event_subscriptions", "request_url"],
                file,
            ),
        ),
        (
            "interactions",
            str_at(&m, &["settings", "interactivity", "request_url"], file),
        ),
    ];
    for (what, url) in urls {
        assert!(
            url.starts_with("https://"),
            "{file}: Slack only calls HTTPS URLs: {url}"
        );
        assert_eq!(url_path(url), format!("/slack/{what}"), "{file}");
    }
    assert_eq!(
        m["settings"]["interactivity"]["is_enabled"],
        Yaml::Bool(true)
    );
    let scopes: Vec<&str> = m["oauth_config"]["scopes"]["bot"]
        .as_sequence()
        .expect("bot scopes")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    for s in ["commands", "chat:write", "app_mentions:read"] {
        assert!(scopes.contains(&s), "{file}: scope {s} missing: {scopes:?}");
    }
    let events: Vec<&str> = m["settings"]["event_subscriptions"]["bot_events"]
        .as_sequence()
        .expect("bot events")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(events, ["app_mention"], "{file}");
    // docs/slack.md shows the manifest as it is.
    let text = example_text(file);
    let body = &text[text.find("display_information:").unwrap()..];
    let doc = std::fs::read_to_string(root().join("docs/slack.md")).unwrap();
    assert!(
        doc.contains(body),
        "docs/slack.md must show {file} as it is"
    );
    assert!(
        doc.contains("HTTPS"),
        "docs/slack.md must say Slack needs HTTPS"
    );

    // The real server answers each URL's path as Slack's endpoint.
    let secret = "examples-signing-secret";
    let dir = tempfile::tempdir().unwrap();
    let srv = serve(
        &dir,
        &[
            ("SLACK_SIGNING_SECRET", secret.to_string()),
            ("SLACK_BOT_TOKEN", "xoxb-examples".to_string()),
            ("ONCALL_SLACK__API_BASE", "http://127.0.0.1:9".to_string()),
        ],
    )
    .await;
    let at = |url: &str| format!("{}{}", srv.base, url_path(url));
    // Events: Slack's URL verification is answered with the challenge.
    let r = slack_signed(
        &srv.http,
        &at(urls[1].1),
        secret,
        "application/json",
        r#"{"token":"t","challenge":"examples-challenge","type":"url_verification"}"#,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("examples-challenge"));
    // Commands and interactions: an unsigned request is refused as unsigned (not unknown), and
    // a signed one is taken.
    for url in [urls[0].1, urls[2].1] {
        let r = srv.http.post(at(url)).body("x=1").send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{url}");
    }
    let r = srv
        .http
        .post(format!("{}/slack/nope", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let form = serde_urlencoded::to_string([
        ("command", "/oncall"),
        ("text", ""),
        ("user_id", "UEX"),
        ("channel_id", "CEX"),
        ("response_url", "http://127.0.0.1:9/x"),
    ])
    .unwrap();
    let r = slack_signed(
        &srv.http,
        &at(urls[0].1),
        secret,
        "application/x-www-form-urlencoded",
        &form,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
}

/// Whether `text` is the Prometheus text exposition format (or OpenMetrics text): every line a
/// `# HELP`/`# TYPE`/`# UNIT`/`# EOF` comment or a `name{labels} value [timestamp]` sample.
fn exposition_errors(text: &str) -> Vec<String> {
    let sample = regex::Regex::new(
        r#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)( -?[0-9.]+)?$"#,
    )
    .unwrap();
    let comment =
        regex::Regex::new(r"^# (HELP|TYPE|UNIT) [a-zA-Z_:][a-zA-Z0-9_:]*( .*)?$|^# EOF$").unwrap();
    text.lines()
        .filter(|l| !l.is_empty() && !sample.is_match(l) && !comment.is_match(l))
        .map(str::to_string)
        .collect()
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_real_servers_metrics_with_the_example_config() {
    let file = "prometheus.yml";
    let cfg = example(file);
    let job = cfg["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .find(|j| j["job_name"].as_str() == Some("oncall"))
        .expect("a scrape job named oncall");
    let path = str_at(job, &["metrics_path"], file);
    assert_eq!(path, "/metrics");
    let kind = str_at(job, &["authorization", "type"], file);
    let cred_file = str_at(job, &["authorization", "credentials_file"], file);
    let target = job["static_configs"][0]["targets"][0]
        .as_str()
        .expect("a static target");
    assert_eq!(
        target, "oncall.internal:4318",
        "{file}: oncall's default port"
    );

    let dir = tempfile::tempdir().unwrap();
    let (tokens, token) = token_file(&data_dir(&dir), "prometheus", "viewer");
    let srv = serve(&dir, &[]).await;

    // The scrape as the config describes it: the token from the file, in the given scheme.
    let r = srv
        .http
        .get(format!("{}{path}", srv.base))
        .header("authorization", format!("{kind} {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        ctype.starts_with("application/openmetrics-text") || ctype.starts_with("text/plain"),
        "{ctype}"
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("# TYPE oncall_"), "{text}");
    let bad = exposition_errors(&text);
    assert!(bad.is_empty(), "not exposition format: {bad:?}");
    let r = srv
        .http
        .get(format!("{}{path}", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "/metrics needs the token");

    // The real Prometheus, with this file pointed at this server: promtool accepts it and the
    // scrape succeeds (`up` is 1 and oncall's series are stored).
    assert!(
        Path::new("/usr/bin/prometheus").exists() && Path::new("/usr/bin/promtool").exists(),
        "Prometheus is not installed: run scripts/setup-test-deps.sh"
    );
    let addr = srv.base.trim_start_matches("http://");
    let text = example_text(file)
        .replace(target, addr)
        .replace(cred_file, tokens.to_str().unwrap())
        .replace("scrape_interval: 15s", "scrape_interval: 1s");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, text).unwrap();
    let check = Command::new("/usr/bin/promtool")
        .args(["check", "config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let port = free_port();
    let _prom = Prometheus(
        Command::new("/usr/bin/prometheus")
            .args([
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let query = |q: &str| {
        let q = q.to_string();
        let http = srv.http.clone();
        async move {
            http.get(format!("http://127.0.0.1:{port}/api/v1/query"))
                .query(&[("query", q.as_str())])
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = query(r#"up{job="oncall"}"#).await;
        let series = query(r#"count({job="oncall",__name__=~"oncall_.+"})"#).await;
        let value = |v: &Option<serde_json::Value>| {
            v.as_ref().and_then(|v| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(String::from)
            })
        };
        if value(&up).as_deref() == Some("1")
            && value(&series).is_some_and(|n| n.parse::<u32>().unwrap_or(0) > 0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped oncall: up = {up:?}, series = {series:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
