//! The web page as a browser runs it: the page the real `oncall serve` serves, in headless
//! Chromium, over a recorded incident (tests/fixtures/incident-cpu-hog.json, the event log a real
//! server wrote for CPU saturation). `fetch` is answered from that log and from the real server's
//! own 404 answer, so the page's script runs to the end before Chromium dumps the DOM:
//! - the final answer's next steps are commands with copy buttons, under the confirmed
//!   hypothesis, and the debug log shows no raw JSON object;
//! - a link to an incident that does not exist shows "No such incident" with the list of
//!   incidents, and no error banner;
//! - the API's page (`/api/v1/docs`), given the document the server serves, shows every
//!   operation under its tag, with its role and its schemas' references followed.
//!
//! The full flow against a live server (sign in, approve, post-mortem) is tests/web_e2e.rs.

mod common;

use common::serve::Serve;
use std::path::Path;
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Answers the page's requests from the recorded incident; records copies to the clipboard on
/// `<body data-copied>`.
const STUB: &str = r#"(function () {
  const F = window.__FIXTURE;
  sessionStorage.setItem('oncall.token', 'harness-token');
  const resp = (status, body) => ({
    ok: status >= 200 && status < 300, status,
    headers: { get: (k) => k.toLowerCase() === 'content-type' ? 'application/json' : null },
    text: () => Promise.resolve(typeof body === 'string' ? body : JSON.stringify(body)),
    json: () => Promise.resolve(typeof body === 'string' ? JSON.parse(body) : body),
  });
  window.__calls = [];
  window.fetch = (url) => {
    const u = String(url); window.__calls.push(u);
    const path = u.split('?')[0];
    if (path.endsWith('/events')) return new Promise(() => {});
    if (path === '/api/v1/me') return Promise.resolve(resp(200, { name: 'ana', role: 'approver' }));
    if (path === '/api/v1/incidents') return Promise.resolve(resp(200, [F.incident]));
    if (path === '/api/v1/approvals') return Promise.resolve(resp(200, []));
    if (path === '/api/v1/incidents/' + encodeURIComponent(F.incident.id)) return Promise.resolve(resp(200, F));
    if (path.startsWith('/api/v1/incidents/')) return Promise.resolve(resp(404, window.__NOT_FOUND));
    return Promise.resolve(resp(500, { error: 'the harness does not know ' + u }));
  };
  Object.defineProperty(navigator, 'clipboard', { value: { writeText: (t) => { document.body.setAttribute('data-copied', t); return Promise.resolve(); } } });
})();"#;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The served page with the stub before its script, and, after it, a click on the first copy
/// button.
fn harness(page: &str, not_found: &str) -> String {
    let fixture =
        std::fs::read_to_string(root().join("tests/fixtures/incident-cpu-hog.json")).unwrap();
    let at = page
        .find("<script>\n'use strict';")
        .expect("the page's script");
    let inject = format!(
        "<script>window.__FIXTURE = {fixture};\nwindow.__NOT_FOUND = {not_found};\n{STUB}</script>\n"
    );
    let click = "<script>const b = document.querySelector('[data-testid=\"copy-command\"]'); if (b) b.click();</script>\n</body>";
    format!("{}{inject}{}", &page[..at], &page[at..]).replacen("</body>", click, 1)
}

/// The DOM after the page's script ran, opened at `#fragment`.
fn dom(file: &Path, fragment: &str) -> String {
    let (dom, stderr) = chromium_dom(file, fragment);
    assert!(
        dom.contains("data-testid=\"board\""),
        "no page from chromium: {stderr}"
    );
    dom
}

/// What headless Chromium dumps of `file` once its scripts ran, and what it said on stderr.
fn chromium_dom(file: &Path, fragment: &str) -> (String, String) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "Chromium is not installed: run scripts/setup-test-deps.sh"
    );
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!(
                "--user-data-dir={}",
                file.parent().unwrap().join("profile").display()
            ),
            "--dump-dom",
            &format!("file://{}#{fragment}", file.display()),
        ])
        .output()
        .expect("run chromium");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The opening tag of the element with this id.
fn tag<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let start = dom[..at].rfind('<').unwrap();
    &dom[start..at + dom[at..].find('>').unwrap() + 1]
}

async fn served() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let srv = Serve::start(&dir.path().join("data"), &[])
        .await
        .expect("oncall serve");
    let page = reqwest::get(format!("{}/", srv.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (s, not_found) = srv.get("/api/v1/incidents/nope").await;
    assert_eq!(s, 404, "{not_found}");
    (dir, page, not_found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_steps_are_commands_with_copy_buttons_under_the_confirmed_hypothesis() {
    let (dir, page, not_found) = served().await;
    let file = dir.path().join("page.html");
    std::fs::write(&file, harness(&page, &not_found)).unwrap();
    let dom = dom(&file, "2026-11-27-01");

    // On the board: H1 (confirmed), then the next steps, then the other hypotheses.
    let board = &dom[dom.find("id=\"board\"").unwrap()..];
    let h1 = board
        .find("data-testid=\"hypothesis\" data-id=\"H1\"")
        .expect("H1 on the board");
    let steps = board
        .find("data-testid=\"next-steps\"")
        .expect("next steps");
    let next_card = board[h1 + 1..]
        .find("data-testid=\"hypothesis\"")
        .map(|i| i + h1 + 1)
        .expect("more hypotheses");
    assert!(h1 < steps && steps < next_card, "next steps not under H1");
    assert!(board[steps..].starts_with("data-testid=\"next-steps\" data-after=\"H1\""));
    let box_end = steps + board[steps..].find("</section>").unwrap();
    let section = &board[steps..box_end];
    assert!(
        section.contains("an on-CPU flame graph of rustc (pid 1654)"),
        "{section}"
    );
    // Each command exactly, each with its copy button.
    for cmd in [
        "perf record -F 99 -p 1654 -g -- sleep 30",
        "perf script | stackcollapse-perf.pl | flamegraph.pl &gt; flame.svg",
        "pidstat -t -p 1654 1 5  # which threads are hot",
    ] {
        assert!(
            section.contains(&format!("<code data-testid=\"step-command\">{cmd}</code>")),
            "{cmd} in {section}"
        );
    }
    assert_eq!(section.matches("data-testid=\"copy-command\"").count(), 3);
    // The first button copied its command.
    let body = &dom[dom.find("<body").unwrap()..];
    assert!(
        body[..body.find('>').unwrap()]
            .contains("data-copied=\"perf record -F 99 -p 1654 -g -- sleep 30\""),
        "{}",
        &body[..body.find('>').unwrap()]
    );
    assert!(section.contains(">Copied</button>"), "{section}");
    // The debug log names the steps in words, not as a JSON object.
    let log = &dom[dom.find("id=\"debug-log\"").unwrap()..dom.find("id=\"chat-form\"").unwrap()];
    assert!(
        log.contains("next steps (with their commands under H1)"),
        "{log}"
    );
    assert!(!log.contains("{\"commands\""), "raw JSON in the log");
    assert!(!log.contains("{\"args\""), "raw JSON in the log");
    assert!(tag(&dom, "error").contains("hidden"), "an error banner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_incident_link_shows_no_such_incident_with_the_list() {
    let (dir, page, not_found) = served().await;
    let file = dir.path().join("page.html");
    std::fs::write(&file, harness(&page, &not_found)).unwrap();
    for fragment in ["nope", "incidents/nope", "/incidents/nope"] {
        let dom = dom(&file, fragment);
        assert!(
            !tag(&dom, "no-such").contains("hidden"),
            "#{fragment}: no \"no such incident\""
        );
        let text = &dom[dom.find("id=\"no-such-text\"").unwrap()..];
        assert!(
            text.starts_with("id=\"no-such-text\">There is no incident \u{201c}nope\u{201d}."),
            "#{fragment}: {}",
            &text[..200.min(text.len())]
        );
        let list = &dom[dom.find("id=\"no-such-list\"").unwrap()..];
        let list = &list[..list.find("</ul>").unwrap()];
        assert!(
            list.contains("<li data-id=\"2026-11-27-01\">")
                && list.contains("the search api got slow a few minutes ago"),
            "#{fragment}: {list}"
        );
        assert!(tag(&dom, "incident").contains("hidden"), "#{fragment}");
        assert!(
            tag(&dom, "error").contains("hidden"),
            "#{fragment}: an error banner"
        );
    }
}

/// The API's page over the document the real server serves (its `fetch` answered with it): every
/// operation is shown under its tag with its method, path and role, and the schemas of its
/// answers are shown with their `$ref`s followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_page_shows_every_operation_of_the_served_document() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Serve::start(&dir.path().join("data"), &[])
        .await
        .expect("oncall serve");
    let page = reqwest::get(format!("{}/api/v1/docs", srv.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (s, doc) = srv.get("/api/v1/openapi.json").await;
    assert_eq!(s, 200, "{doc}");
    let stub = r#"(function () {
  sessionStorage.setItem('oncall.token', 'harness-token');
  window.fetch = (url, init) => {
    const auth = init && init.headers && init.headers.Authorization;
    const ok = String(url) === '/api/v1/openapi.json' && auth === 'Bearer harness-token';
    const body = ok ? JSON.stringify(window.__DOC) : '{"error": "the harness does not know ' + url + '"}';
    return Promise.resolve({ ok, status: ok ? 200 : 404, text: () => Promise.resolve(body) });
  };
  URL.createObjectURL = () => 'blob:harness';
})();"#;
    let at = page
        .find("<script>\n'use strict';")
        .expect("the page's script");
    let html = format!(
        "{}<script>window.__DOC = {doc};\n{stub}</script>\n{}",
        &page[..at],
        &page[at..]
    );
    let file = dir.path().join("docs.html");
    std::fs::write(&file, html).unwrap();
    let (dom, stderr) = chromium_dom(&file, "");
    assert!(dom.contains("id=\"operations\""), "no page: {stderr}");
    assert!(
        tag(&dom, "docs-error").contains("hidden"),
        "an error banner"
    );
    assert!(
        tag(&dom, "token-form").contains("hidden"),
        "asked for a token"
    );
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let mut n = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(id) = op["operationId"].as_str() else {
                continue;
            };
            n += 1;
            let role = op["x-required-role"].as_str().unwrap();
            let tag_name = op["tags"][0].as_str().unwrap();
            let opening = format!(
                "data-testid=\"operation\" data-operation-id=\"{id}\" data-method=\"{}\" data-path=\"{path}\" data-role=\"{role}\"",
                method.to_uppercase()
            );
            let at = dom.find(&opening).unwrap_or_else(|| {
                panic!("{} {path} ({id}) is not on the page", method.to_uppercase())
            });
            let section = dom[..at]
                .rfind("data-testid=\"tag\"")
                .expect("in a tag section");
            assert!(
                dom[section..at]
                    .starts_with(&format!("data-testid=\"tag\" data-tag=\"{tag_name}\"")),
                "{id} is not under its tag {tag_name}"
            );
        }
    }
    assert!(n >= 25, "{n} operations");
    // showIncident's answer: IncidentDetail, its events (Event, then EventKind's names) and the
    // approvals' state, each reference followed.
    let at = dom.find("data-operation-id=\"showIncident\"").unwrap();
    let op = &dom[at..];
    let op = &op[..op.find("data-testid=\"operation\"").unwrap_or(op.len())];
    for shown in [
        "IncidentDetail",
        "Incident",
        "Event",
        "ApprovalState",
        "investigation_finished",
        "401",
        "403",
        "429",
        "503",
    ] {
        assert!(op.contains(shown), "showIncident does not show {shown}");
    }
}

/// An address no route serves: a browser gets a page that points to the incidents and the API
/// docs (with a link to the incident when the path ends in an incident id, and nothing of the
/// path echoed otherwise); an API client gets the JSON error naming the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_address_gets_a_page_that_points_to_the_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Serve::start(&dir.path().join("data"), &[])
        .await
        .expect("oncall serve");
    let http = reqwest::Client::new();
    let get = |path: &str, accept: &str| {
        http.get(format!("{}{path}", srv.base))
            .header("accept", accept)
            .send()
    };
    let r = get(
        "/incidents/2026-11-27-01",
        "text/html,application/xhtml+xml",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.headers().contains_key("content-security-policy"));
    let page = r.text().await.unwrap();
    for link in [
        "href=\"/#2026-11-27-01\"",
        "href=\"/\"",
        "href=\"/api/v1/docs\"",
    ] {
        assert!(page.contains(link), "{link} missing from {page}");
    }
    // Whatever the path holds is never written into the page.
    let r = get(
        "/incidents/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "text/html",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let page = r.text().await.unwrap();
    assert!(
        !page.contains("alert(1)") && !page.contains("href=\"/#"),
        "{page}"
    );
    // An API client is told what was not found, as JSON.
    let r = get("/api/v1/incident", "application/json").await.unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("GET /api/v1/incident") && e.contains("/api/v1/docs"),
        "{e}"
    );
}

/// The picture of the web page in README.md is this page, as the real server serves it, over
/// the recorded incident, drawn by Chromium at 1280×900. Redraw it after a change to the page:
/// `UPDATE_SCREENSHOT=1 cargo nextest run --test web_page readme`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_screenshot_is_the_served_page_over_a_recorded_incident() {
    let (dir, page, not_found) = served().await;
    let file = dir.path().join("page.html");
    std::fs::write(&file, harness(&page, &not_found)).unwrap();
    let shot = dir.path().join("shot.png");
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1280,900",
            "--virtual-time-budget=3000",
            &format!("--user-data-dir={}", dir.path().join("profile").display()),
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}#2026-11-27-01", file.display()),
        ])
        .output()
        .expect("run chromium");
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let size = |b: &[u8]| -> (u32, u32) {
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        let n = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        (n(16), n(20))
    };
    assert_eq!(size(&png), (1280, 900));
    // A drawn page, not a blank one: many distinct colours.
    assert!(
        png.len() > 40_000,
        "a near-empty picture: {} bytes",
        png.len()
    );
    let kept = root().join("docs/img/web-page.png");
    if std::env::var("UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
        std::fs::write(&kept, &png).unwrap();
    }
    let kept_png = std::fs::read(&kept)
        .expect("docs/img/web-page.png: draw it with UPDATE_SCREENSHOT=1 (see this test)");
    assert_eq!(size(&kept_png), (1280, 900));
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains("](docs/img/web-page.png)"),
        "README.md does not show docs/img/web-page.png"
    );
}
