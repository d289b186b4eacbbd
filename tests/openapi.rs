//! Keeps the generated OpenAPI document (`oncall::server::openapi::document()`, served at
//! `GET /api/v1/openapi.json`) honest.
//!
//! 1. The document is OpenAPI 3.1, its `$ref`s resolve, every operation names its role
//!    (`x-required-role`) and its security says the same; the body limits it states are the
//!    server's.
//! 2. The live router serves exactly the documented operations: on every documented path the
//!    undocumented methods answer 405 and the documented ones are routed, and plausible paths
//!    that are not documented answer 404.
//! 3. The real server, in process: every operation that needs a role answers 401 without a token
//!    (and 403 to the role below it), public ones answer 200 without one, Slack's refuse an
//!    unsigned request and accept a signed one, and every answer's status and content type are
//!    documented (JSON bodies checked against the documented schema's shape).
//! 4. The served document is the generated one, and `GET /api/v1/docs` is the page that shows
//!    it, public and holding no data.

use oncall::config::Config;
use oncall::policy::Role;
use oncall::server::auth::token_sha;
use oncall::server::{AppState, app, limits, slack};
use regex::Regex;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
const ROLES: [&str; 3] = ["viewer", "responder", "approver"];
const OTHER_AUTH: [&str; 2] = ["none", "slack-signature"];

const TOKEN: &str = "oc_openapi_operator_token_0123456789abcdef";
const VIEWER_TOKEN: &str = "oc_openapi_viewer_token_0123456789abcdefgh";
const RESPONDER_TOKEN: &str = "oc_openapi_responder_token_0123456789abcde";
/// An OpenTelemetry exporter's token: `POST /v1/traces` only.
const INGEST_TOKEN: &str = "oc_openapi_ingest_token_0123456789abcdefghi";
/// A path parameter that names nothing: every `{id}` route answers 404 for it (after auth).
const DUMMY_ID: &str = "2026-01-01-01";
const SLACK_SECRET_ENV: &str = "ONCALL_OPENAPI_TEST_SLACK_SIGNING_SECRET";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// The body limit of the test server: small, so the oversized probes stay cheap.
const BODY_LIMIT: usize = 64 << 10;

fn doc() -> Value {
    serde_json::to_value(oncall::server::openapi::document())
        .expect("the generated document serializes")
}

/// One documented operation.
struct Op {
    method: String,
    path: String,
    op: Value,
}

impl Op {
    fn role(&self) -> &str {
        self.op["x-required-role"].as_str().unwrap_or("")
    }

    fn name(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }
}

fn operations(doc: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (method, op) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&method.as_str()) {
                ops.push(Op {
                    method: method.clone(),
                    path: path.clone(),
                    op: op.clone(),
                });
            }
        }
    }
    ops
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = doc
                .pointer(
                    r.strip_prefix('#')
                        .unwrap_or_else(|| panic!("non-local $ref {r}")),
                )
                .unwrap_or_else(|| panic!("$ref {r} points at nothing"));
            resolve(doc, target)
        }
        None => v,
    }
}

fn all_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| all_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| all_refs(x, out)),
        _ => {}
    }
}

/// The operation's parameters (path item's and its own), `$ref`s followed.
fn parameters<'a>(doc: &'a Value, o: &'a Op) -> Vec<&'a Value> {
    let mut ps: Vec<&Value> = Vec::new();
    let item = &doc["paths"][&o.path]["parameters"];
    for list in [item, &o.op["parameters"]] {
        if let Some(a) = list.as_array() {
            ps.extend(a.iter().map(|p| resolve(doc, p)));
        }
    }
    ps
}

#[test]
fn the_document_is_openapi_3_1_and_names_every_operations_role() {
    let d = doc();
    assert!(
        d["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")),
        "openapi must be 3.1.x, is {}",
        d["openapi"]
    );
    assert_eq!(d["info"]["title"], "oncall");
    assert_eq!(
        d["info"]["version"],
        env!("CARGO_PKG_VERSION"),
        "info.version must be Cargo.toml's version"
    );
    assert!(
        d["paths"].as_object().is_some_and(|p| !p.is_empty()),
        "no paths"
    );
    let bearer = &d["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(
        d["security"],
        json!([{"bearerAuth": []}]),
        "bearerAuth applies globally"
    );

    let mut refs = Vec::new();
    all_refs(&d, &mut refs);
    for r in &refs {
        resolve(&d, &json!({ "$ref": r }));
    }

    let ops = operations(&d);
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    let param = Regex::new(r"\{([^}]+)\}").unwrap();
    for o in &ops {
        let name = o.name();
        let role = o.role();
        let id = o.op["operationId"].as_str().unwrap_or("");
        if id.is_empty() || !ids.insert(id.to_string()) {
            problems.push(format!("{name}: missing or duplicate operationId {id:?}"));
        }
        let responses = o.op["responses"].as_object();
        if responses.is_none_or(|r| r.is_empty()) {
            problems.push(format!("{name}: no responses"));
        }
        let has = |code: &str| responses.is_some_and(|r| r.contains_key(code));
        let description = o.op["description"].as_str().unwrap_or("");
        // Path parameters: the template's names, each declared `in: path`, and nothing more.
        let in_template: BTreeSet<String> = param
            .captures_iter(&o.path)
            .map(|c| c[1].to_string())
            .collect();
        let declared: BTreeSet<String> = parameters(&d, o)
            .into_iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                if p["required"] != true {
                    problems.push(format!(
                        "{name}: path parameter {} must be required",
                        p["name"]
                    ));
                }
                p["name"].as_str().unwrap_or("").to_string()
            })
            .collect();
        if in_template != declared {
            problems.push(format!(
                "{name}: path parameters {declared:?} do not match the template's {in_template:?}"
            ));
        }
        let security = o.op.get("security");
        if ROLES.contains(&role) {
            // The global bearerAuth applies: no override, or an override that keeps it.
            let bearer_kept = security.is_none_or(|s| {
                s.as_array()
                    .is_some_and(|a| a.iter().any(|x| x.get("bearerAuth").is_some()))
            });
            if !bearer_kept {
                problems.push(format!(
                    "{name}: needs {role} but its security drops bearerAuth"
                ));
            }
            if !description.contains(role) {
                problems.push(format!(
                    "{name}: the description does not name the role {role}"
                ));
            }
            for code in ["401", "429", "503"] {
                if !has(code) {
                    problems.push(format!("{name}: needs a token but documents no {code}"));
                }
            }
            // Every role can be refused with 403: a weaker role, or an ingest token (which is on
            // no role's ladder: it may only send traces).
            if !has("403") {
                problems.push(format!("{name}: needs {role} but documents no 403"));
            }
        } else if OTHER_AUTH.contains(&role) {
            if security != Some(&json!([])) {
                problems.push(format!(
                    "{name}: x-required-role {role} needs `security: []`"
                ));
            }
            if role == "slack-signature" {
                let headers: BTreeSet<String> = parameters(&d, o)
                    .into_iter()
                    .filter(|p| p["in"] == "header")
                    .filter_map(|p| p["name"].as_str().map(str::to_lowercase))
                    .collect();
                for h in ["x-slack-signature", "x-slack-request-timestamp"] {
                    if !headers.contains(h) {
                        problems.push(format!(
                            "{name}: Slack route without the {h} header parameter"
                        ));
                    }
                }
                if !description.contains("X-Slack-Signature") || !has("401") {
                    problems.push(format!(
                        "{name}: must describe the Slack signature and document its 401"
                    ));
                }
            }
        } else {
            problems.push(format!(
                "{name}: x-required-role {role:?} is not one of viewer, responder, approver, none, slack-signature"
            ));
        }
    }
    // Who needs no token is decided here, not by the router's groups: a data route moved into
    // the public group (or Slack's) fails this list even though the document would agree.
    let without_token = |role: &str| -> BTreeSet<String> {
        ops.iter()
            .filter(|o| o.role() == role)
            .map(|o| o.name())
            .collect()
    };
    assert_eq!(
        without_token("none"),
        ["GET /", "GET /api/v1/docs", "GET /healthz"]
            .map(String::from)
            .into(),
        "the public operations (no data in any of them)"
    );
    assert_eq!(
        without_token("slack-signature"),
        [
            "POST /slack/commands",
            "POST /slack/events",
            "POST /slack/interactions"
        ]
        .map(String::from)
        .into(),
        "the operations Slack's signature guards"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The real server

/// Whether `v` has the shape `schema` describes: types, required properties, consts and enums,
/// recursively through properties, items and oneOf/anyOf. Enough to catch a wrong document.
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let s = resolve(doc, schema);
    if let Some(alts) = s.get("oneOf").or(s.get("anyOf")).and_then(Value::as_array) {
        let errs: Vec<String> = alts
            .iter()
            .filter_map(|a| conforms(doc, a, v, at).err())
            .collect();
        if errs.len() == alts.len() {
            return Err(format!(
                "{at}: matches no alternative ({})",
                errs.join("; ")
            ));
        }
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        return Err(format!("{at}: {v} is not {c}"));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {e:?}"));
    }
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let actual = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !ok {
            return Err(format!("{at}: a {actual}, documented as {types:?}"));
        }
    }
    if let Value::Object(m) = v {
        for r in s["required"].as_array().into_iter().flatten() {
            let k = r.as_str().unwrap_or_default();
            if !m.contains_key(k) {
                return Err(format!("{at}: the required property {k:?} is missing"));
            }
        }
        if let Some(props) = s["properties"].as_object() {
            for (k, sub) in props {
                if let Some(x) = m.get(k) {
                    conforms(doc, sub, x, &format!("{at}.{k}"))?;
                }
            }
            if s["additionalProperties"] == false
                && let Some(k) = m.keys().find(|k| !props.contains_key(*k))
            {
                return Err(format!("{at}: the property {k:?} is not documented"));
            }
        }
    }
    if let (Value::Array(a), Some(items)) = (v, s.get("items")) {
        for (i, x) in a.iter().enumerate() {
            conforms(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// What one request got back.
struct Answer {
    status: u16,
    content_type: Option<String>,
    www_authenticate: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect()
    }
}

struct Server {
    base: String,
    client: reqwest::Client,
    doc: Value,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        // nextest runs every test in its own process; under `cargo test` no other test in this
        // file reads the environment. The variable's name is this test's own.
        unsafe { std::env::set_var(SLACK_SECRET_ENV, SLACK_SECRET) };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_path_buf();
        config.server.max_body_bytes = BODY_LIMIT;
        config.slack.signing_secret_env = SLACK_SECRET_ENV.into();
        config.slack.bot_token_env = "ONCALL_OPENAPI_TEST_UNSET_SLACK_BOT_TOKEN".into();
        let state = AppState::start(Arc::new(config), Some(TOKEN))
            .await
            .expect("the server starts");
        for (name, role, token) in [
            ("vera", Role::Viewer, VIEWER_TOKEN),
            ("rui", Role::Responder, RESPONDER_TOKEN),
        ] {
            state
                .store
                .put_token(name, role, &token_sha(token))
                .await
                .expect("token stored");
        }
        state
            .store
            .put_grant(
                "otel",
                oncall::incidents::Grant::Ingest,
                &token_sha(INGEST_TOKEN),
            )
            .await
            .expect("ingest token stored");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app(state)).await });
        Server {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            doc: doc(),
            _dir: dir,
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        let url = format!("{}{}", self.base, path.replace("{id}", DUMMY_ID));
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut rb = self.client.request(m, &url);
        for (k, v) in headers {
            rb = rb.header(*k, v);
        }
        if let Some((ct, b)) = body {
            rb = rb.header("content-type", ct).body(b);
        }
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (content_type, www_authenticate) = (h("content-type"), h("www-authenticate"));
        Answer {
            status: r.status().as_u16(),
            content_type,
            www_authenticate,
            body: r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
        }
    }

    /// The operation called with a harmless body (`{}` for JSON, which every JSON route refuses
    /// with 400 before it does anything), and the bearer token when given.
    async fn call(&self, o: &Op, token: Option<&str>) -> Answer {
        let headers: Vec<(&str, String)> = token
            .map(|t| ("authorization", format!("Bearer {t}")))
            .into_iter()
            .collect();
        let content = &resolve(&self.doc, &o.op["requestBody"])["content"];
        let body = if content.get("application/json").is_some() {
            Some(("application/json", b"{}".to_vec()))
        } else if content.get("application/x-www-form-urlencoded").is_some() {
            Some(("application/x-www-form-urlencoded", Vec::new()))
        } else {
            None
        };
        self.send(&o.method, &o.path, &headers, body).await
    }

    /// The status is documented for the operation, and so is the content type; a JSON body has
    /// the documented schema's shape.
    fn documented(&self, o: &Op, a: &Answer, why: &str) -> Result<(), String> {
        let name = o.name();
        let Some(resp) = o.op["responses"].get(a.status.to_string()) else {
            let known: Vec<&String> = o.op["responses"]
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            return Err(format!(
                "{name} ({why}) answered {} {:?}, documented: {known:?}; body: {}",
                a.status,
                a.content_type,
                a.text()
            ));
        };
        let resp = resolve(&self.doc, resp);
        let (Some(content), Some(ct)) = (resp["content"].as_object(), &a.content_type) else {
            return Ok(());
        };
        let media = ct.split(';').next().unwrap_or("").trim().to_lowercase();
        let Some(documented) = content.get(&media) else {
            return Err(format!(
                "{name} ({why}) answered {} as {media}, documented: {:?}",
                a.status,
                content.keys().collect::<Vec<_>>()
            ));
        };
        if media == "application/json" && !a.body.is_empty() {
            let v: Value = serde_json::from_slice(&a.body).map_err(|e| {
                format!(
                    "{name} ({why}): {} with a body that is not JSON: {e}",
                    a.status
                )
            })?;
            conforms(&self.doc, &documented["schema"], &v, "body").map_err(|e| {
                format!(
                    "{name} ({why}) answered {}: {e}; body: {}",
                    a.status,
                    a.text()
                )
            })?;
        }
        Ok(())
    }
}

fn token_of(role: &str) -> &'static str {
    match role {
        "viewer" => VIEWER_TOKEN,
        "responder" => RESPONDER_TOKEN,
        _ => TOKEN,
    }
}

/// A request Slack could send to `path`, which the handler acknowledges without acting.
fn slack_probe(path: &str) -> (&'static str, Vec<u8>) {
    match path {
        "/slack/commands" => (
            "application/x-www-form-urlencoded",
            b"command=%2Foncall&text=&user_id=U1&channel_id=C1&response_url=https%3A%2F%2Fexample.invalid%2Fr"
                .to_vec(),
        ),
        "/slack/events" => (
            "application/json",
            br#"{"type":"url_verification","challenge":"openapi-probe"}"#.to_vec(),
        ),
        "/slack/interactions" => (
            "application/x-www-form-urlencoded",
            b"payload=%7B%22type%22%3A%22view_submission%22%7D".to_vec(),
        ),
        other => panic!("no signed probe for the Slack route {other}: add one to slack_probe"),
    }
}

fn slack_headers(body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = chrono::Utc::now().timestamp().to_string();
    let sig = slack::sign(SLACK_SECRET, &ts, body).unwrap();
    vec![
        (slack::HEADER_TIMESTAMP, ts),
        (slack::HEADER_SIGNATURE, sig),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_answers_as_documented() {
    let s = Server::start().await;
    let ops = operations(&s.doc);
    let mut problems: Vec<String> = Vec::new();
    let mut check = |r: Result<(), String>| {
        if let Err(e) = r {
            problems.push(e);
        }
    };

    for o in &ops {
        let name = o.name();
        let role = o.role();
        if let Some(rank) = ROLES.iter().position(|r| *r == role) {
            // No token, and a wrong one: 401 with WWW-Authenticate, as documented.
            for (why, token) in [
                ("no token", None),
                ("a wrong token", Some("oc_not_a_token")),
            ] {
                let a = s.call(o, token).await;
                if a.status != 401 {
                    check(Err(format!(
                        "{name} answered {} with {why} (needs {role}): not authenticated; body: {}",
                        a.status,
                        a.text()
                    )));
                    continue;
                }
                if a.www_authenticate.as_deref() != Some("Bearer") {
                    check(Err(format!(
                        "{name}: a 401 without WWW-Authenticate: Bearer"
                    )));
                }
                check(s.documented(o, &a, why));
            }
            // Each weaker role: 403.
            for weaker in &ROLES[..rank] {
                let a = s.call(o, Some(token_of(weaker))).await;
                if a.status != 403 {
                    check(Err(format!(
                        "{name} (needs {role}) answered {} to a {weaker}'s token, not 403; body: {}",
                        a.status,
                        a.text()
                    )));
                }
                check(s.documented(o, &a, &format!("{weaker}'s token")));
            }
            // An ingest token: 403 everywhere but the trace receiver, as documented.
            let a = s.call(o, Some(INGEST_TOKEN)).await;
            if o.path != "/v1/traces" && a.status != 403 {
                check(Err(format!(
                    "{name} answered {} to an ingest token, not 403; body: {}",
                    a.status,
                    a.text()
                )));
            }
            check(s.documented(o, &a, "an ingest token"));
            // The role itself gets past authentication, to a documented answer.
            let a = s.call(o, Some(token_of(role))).await;
            if a.status == 401 || a.status == 403 {
                check(Err(format!(
                    "{name} refused a {role}'s token with {}: x-required-role is wrong; body: {}",
                    a.status,
                    a.text()
                )));
            }
            check(s.documented(o, &a, &format!("{role}'s token")));
        } else if role == "none" {
            let a = s.call(o, None).await;
            if a.status != 200 {
                check(Err(format!(
                    "{name} needs no token but answered {} without one; body: {}",
                    a.status,
                    a.text()
                )));
            }
            check(s.documented(o, &a, "no token"));
        } else if role == "slack-signature" {
            let (ct, body) = slack_probe(&o.path);
            let a = s
                .send(&o.method, &o.path, &[], Some((ct, body.clone())))
                .await;
            if a.status != 401 {
                check(Err(format!(
                    "{name} answered {} to an unsigned request, not 401; body: {}",
                    a.status,
                    a.text()
                )));
            }
            check(s.documented(o, &a, "unsigned"));
            let a = s
                .send(&o.method, &o.path, &slack_headers(&body), Some((ct, body)))
                .await;
            if a.status != 200 {
                check(Err(format!(
                    "{name} answered {} to a signed request, not 200; body: {}",
                    a.status,
                    a.text()
                )));
            }
            check(s.documented(o, &a, "signed"));
        } else {
            check(Err(format!("{name}: x-required-role {role:?}")));
        }
    }

    // Bodies over the limit, to every operation that takes a body: refused, as documented.
    let mut big = br#"{"report": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', BODY_LIMIT + 1024));
    big.extend_from_slice(br#""}"#);
    let mut oversized: BTreeMap<String, u16> = BTreeMap::new();
    for o in &ops {
        let content = &resolve(&s.doc, &o.op["requestBody"])["content"];
        let Some(ct) = ["application/json", "application/x-www-form-urlencoded"]
            .into_iter()
            .find(|ct| content.get(*ct).is_some())
        else {
            continue;
        };
        let headers = match o.role() {
            "slack-signature" => slack_headers(&big),
            role if ROLES.contains(&role) => {
                vec![("authorization", format!("Bearer {}", token_of(role)))]
            }
            _ => vec![],
        };
        let a = s
            .send(&o.method, &o.path, &headers, Some((ct, big.clone())))
            .await;
        if (200..300).contains(&a.status) {
            check(Err(format!("{} accepted a body over the limit", o.name())));
        }
        check(s.documented(o, &a, "a body over the limit"));
        oversized.insert(o.name(), a.status);
    }
    eprintln!("bodies over the limit answered: {oversized:?}");

    // GET /healthz: 200 "ok" without a token.
    let a = s.send("get", "/healthz", &[], None).await;
    assert_eq!((a.status, a.text().as_str()), (200, "ok"));

    assert!(
        problems.is_empty(),
        "{} disagreement(s) between the server and its OpenAPI document:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A path parameter's stand-in in a probe.
fn concrete(path: &str) -> String {
    path.replace("{id}", DUMMY_ID)
}

/// Undocumented methods on documented paths answer 405, documented ones are routed (whatever
/// the handler then says), and plausible paths that are not documented answer 404: the router
/// serves what the document says and nothing else. The operator's token (approver) gets past
/// every authentication layer, so what answers is the routing.
#[tokio::test(flavor = "multi_thread")]
async fn the_router_serves_the_documented_operations_and_nothing_else() {
    let s = Server::start().await;
    let ops = operations(&s.doc);
    let auth = [("authorization", format!("Bearer {TOKEN}"))];
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for o in &ops {
        documented
            .entry(o.path.clone())
            .or_default()
            .insert(o.method.clone());
    }
    assert!(documented.len() >= 20, "only {} paths", documented.len());
    let mut problems = vec![];
    for (path, methods) in &documented {
        for method in ["get", "post", "put", "delete", "patch"] {
            let a = s.send(method, path, &auth, None).await;
            let routed = methods.contains(method);
            if !routed && a.status != 405 {
                problems.push(format!(
                    "{} {path} is not documented but answered {}: {}",
                    method.to_uppercase(),
                    a.status,
                    a.text()
                ));
            }
            if routed && a.status == 405 {
                problems.push(format!(
                    "{} {path} is documented but answered 405",
                    method.to_uppercase()
                ));
            }
        }
    }
    let probes = [
        "/api/v1",
        "/api/v1/",
        "/api/v1/incident",
        "/api/v1/incidents/",
        "/api/v1/incidents/{id}/approvals",
        "/api/v1/incidents/{id}/events/1",
        "/api/v1/incidents/{id}/title",
        "/api/v1/approvals/{id}",
        "/api/v1/approvals/{id}/approve",
        "/api/v1/tokens",
        "/api/v1/token",
        "/api/v1/admin",
        "/api/v1/audit",
        "/api/v1/config",
        "/api/v1/replicas",
        "/api/v1/memory",
        "/api/v1/openapi.yaml",
        "/api/v1/docs/",
        "/api/v2/incidents",
        "/openapi.json",
        "/docs",
        "/swagger-ui",
        "/v1/metrics",
        "/v1/logs",
        "/v1/traces/",
        "/slack",
        "/slack/oauth",
        "/slack/actions",
        "/metrics/",
        "/admin",
        "/debug/pprof",
        "/.env",
    ];
    for probe in probes {
        assert!(
            !documented.contains_key(probe),
            "{probe} is documented: take it off the probe list"
        );
        for method in ["get", "post"] {
            let a = s.send(method, probe, &auth, None).await;
            if a.status != 404 {
                problems.push(format!(
                    "{} {} is not documented but answered {}: {}",
                    method.to_uppercase(),
                    concrete(probe),
                    a.status,
                    a.text()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What `GET /api/v1/openapi.json` answers is the document this build generates, byte for byte
/// the same JSON value, and only to a viewer or stronger.
#[tokio::test(flavor = "multi_thread")]
async fn the_served_document_is_the_generated_one() {
    let s = Server::start().await;
    let a = s.send("get", "/api/v1/openapi.json", &[], None).await;
    assert_eq!(a.status, 401, "without a token: {}", a.text());
    for token in [VIEWER_TOKEN, TOKEN] {
        let a = s
            .send(
                "get",
                "/api/v1/openapi.json",
                &[("authorization", format!("Bearer {token}"))],
                None,
            )
            .await;
        assert_eq!(a.status, 200, "GET /api/v1/openapi.json: {}", a.text());
        assert_eq!(a.content_type.as_deref(), Some("application/json"));
        let served: Value = serde_json::from_slice(&a.body).expect("the served document is JSON");
        assert_eq!(
            served, s.doc,
            "the served document differs from the generated one"
        );
    }
}

/// `GET /api/v1/docs`: the page that shows the document, public (it holds no data) and
/// self-contained: it fetches the document with the web page's token and loads nothing from
/// elsewhere.
#[tokio::test(flavor = "multi_thread")]
async fn the_docs_page_is_public_and_fetches_the_document_with_the_web_pages_token() {
    let s = Server::start().await;
    let a = s.send("get", "/api/v1/docs", &[], None).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.content_type.as_deref(), Some("text/html; charset=utf-8"));
    let page = String::from_utf8(a.body.clone()).expect("UTF-8");
    for needed in [
        "fetch('/api/v1/openapi.json'",
        "sessionStorage.getItem(TOKEN_KEY)",
        "const TOKEN_KEY = 'oncall.token';",
        "data-testid=\"operation\"",
    ] {
        assert!(page.contains(needed), "the page lacks {needed:?}");
    }
    // The web page keeps its token under the same key, and links here.
    let web = s.send("get", "/", &[], None).await;
    let web = String::from_utf8(web.body).expect("UTF-8");
    assert!(web.contains("const TOKEN_KEY = 'oncall.token';"));
    assert!(web.contains("href=\"/api/v1/docs\""));
    // Nothing from elsewhere: no URL with a scheme, no external script or style.
    let external = Regex::new(r#"(?i)(src|href)\s*=\s*["']?(https?:)?//"#).unwrap();
    assert!(
        !external.is_match(&page),
        "the page loads something from elsewhere"
    );
    assert!(!page.contains("http://") && !page.contains("https://"));
    // Holds no data: the document is not in it.
    assert!(!page.contains("\"operationId\""));
}

/// The maximum lengths the document states are the ones the server enforces.
#[test]
fn the_documented_limits_are_the_servers() {
    let d = doc();
    let max = |schema: &str, field: &str| {
        d["components"]["schemas"][schema]["properties"][field]["maxLength"]
            .as_u64()
            .unwrap_or_else(|| panic!("{schema}.{field} states no maxLength")) as usize
    };
    assert_eq!(max("OpenRequest", "report"), limits::REPORT_CHARS);
    assert_eq!(max("OpenRequest", "title"), limits::TITLE_CHARS);
    assert_eq!(max("MessageRequest", "text"), limits::MESSAGE_CHARS);
    assert_eq!(max("TriageRequest", "report"), limits::REPORT_CHARS);
    assert_eq!(max("RecordRequest", "id"), limits::RECORD_ID_CHARS);
    assert_eq!(max("RecordRequest", "report"), limits::REPORT_CHARS);
    assert_eq!(max("ActionRequestBody", "tool"), limits::TOOL_NAME_CHARS);
    assert_eq!(max("ActionRequestBody", "why"), limits::WHY_CHARS);
    assert_eq!(max("DecisionRequest", "reason"), limits::REASON_CHARS);
    assert_eq!(max("WithdrawRequest", "reason"), limits::REASON_CHARS);
}

/// The event kinds the document lists are the store's, and each kind's data fields are named.
#[test]
fn the_event_schema_names_every_kind_and_its_data() {
    let d = doc();
    let kinds: Vec<&str> = oncall::incidents::EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let kind = resolve(
        &d,
        &d["components"]["schemas"]["Event"]["properties"]["kind"],
    );
    let listed: Vec<&str> = kind["enum"]
        .as_array()
        .expect("kind is a string enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(listed, kinds);
    let data = d["components"]["schemas"]["Event"]["properties"]["data"]["description"]
        .as_str()
        .expect("data is described");
    for k in oncall::incidents::EventKind::ALL {
        assert!(data.contains(&format!("`{k}`")), "{k} in {data}");
    }
    for (kind, fields) in [
        ("action_verified", "{`request`, `tool`, `ok`, `effect`}"),
        ("action_withdrawn", "{`request`, `tool`, `by`, `reason`}"),
        (
            "postmortem_drafted",
            "{`markdown`, `brief`, `blameless_findings`, `written_by`, `notes`, `dropped`}",
        ),
    ] {
        assert!(
            data.contains(&format!("`{kind}`: {fields}")),
            "{kind}: {fields} in {data}"
        );
    }
}
