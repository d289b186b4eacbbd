//! Deployable: the container image, the systemd unit and the health checks, checked on a machine
//! that has the docker CLI but no daemon and no registry (so the image itself cannot be built
//! here) and systemd's tools but no running systemd.
//!
//! - The Dockerfile is parsed (a line parser: continuations, comments, JSON and shell forms) and
//!   its stages, user, copied binary, port, command and environment are checked against
//!   Cargo.toml and the docs; the build context after `.dockerignore` must hold every file the
//!   build reads.
//! - The built binary runs the way the final stage runs it: the same environment, as the
//!   image's uid, in its data directory; `/healthz`, `/readyz` and the HEALTHCHECK's own command
//!   answer, and `/readyz` turns 503 naming the store when the SQLite file is removed.
//! - `deploy/oncall.service` passes `systemd-analyze verify` and `security --offline=yes`, keeps
//!   its hardening, grants exactly the capabilities whose reads are probed here, and oncall's
//!   system calls (traced) fit `@system-service`, with memory-deny-write-execute on.
//! - Every command block of docs/deploy.md is marked for the test that runs or parses it.

mod common;
#[path = "common/docs.rs"]
mod docs;

use common::ONCALL;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One Dockerfile instruction: its keyword (upper case) and the rest of its (joined) line.
#[derive(Debug, Clone)]
struct Instr {
    op: String,
    args: String,
}

impl Instr {
    /// The JSON (exec) form's words, if the arguments are a JSON array.
    fn json(&self) -> Option<Vec<String>> {
        serde_json::from_str::<Vec<String>>(&self.args).ok()
    }

    /// The arguments split on whitespace, `--flag=value` options first.
    fn words(&self) -> Vec<String> {
        self.args.split_whitespace().map(str::to_string).collect()
    }
}

/// One build stage.
#[derive(Debug, Clone)]
struct Stage {
    image: String,
    name: Option<String>,
    instrs: Vec<Instr>,
}

impl Stage {
    fn all(&self, op: &str) -> Vec<&Instr> {
        self.instrs.iter().filter(|i| i.op == op).collect()
    }

    fn last(&self, op: &str) -> Option<&Instr> {
        self.all(op).into_iter().last()
    }

    /// ENV pairs in both forms (`K=V K2=V2` and the legacy `K V`).
    fn env(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for i in self.all("ENV") {
            let words = i.words();
            if words.iter().all(|w| w.contains('=')) {
                for w in words {
                    let (k, v) = w.split_once('=').expect("K=V");
                    out.insert(k.to_string(), v.trim_matches('"').to_string());
                }
            } else if let Some((k, v)) = i.args.split_once(char::is_whitespace) {
                out.insert(k.to_string(), v.trim().to_string());
            }
        }
        out
    }
}

/// Parses a Dockerfile: comments and parser directives dropped, `\` continuations joined
/// (comment lines inside a continuation are skipped, as Docker does).
fn parse_dockerfile(text: &str) -> Vec<Stage> {
    let mut logical = vec![];
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head.trim_end());
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                logical.push(std::mem::take(&mut cur));
            }
        }
    }
    assert!(cur.trim().is_empty(), "a continuation runs off the end");
    let mut stages: Vec<Stage> = vec![];
    for l in logical {
        let (op, args) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        let op = op.to_ascii_uppercase();
        let args = args.trim().to_string();
        if op == "FROM" {
            let w: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match w.as_slice() {
                [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(n.to_string()),
                [_] => None,
                other => panic!("FROM {other:?} is not `image [AS name]`"),
            };
            stages.push(Stage {
                image: w[0].to_string(),
                name,
                instrs: vec![],
            });
        } else {
            stages
                .last_mut()
                .unwrap_or_else(|| panic!("{op} before the first FROM"))
                .instrs
                .push(Instr { op, args });
        }
    }
    stages
}

#[test]
fn the_dockerfile_parser_joins_continuations_and_skips_comments_inside_them() {
    let stages = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nFROM a:1 AS build\nRUN one \\\n # a comment\n two\nfrom b:2\nENV A=1 \\\n    B=2\nenv C 3\nCMD [\"x\", \"y\"]\n",
    );
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].name.as_deref(), Some("build"));
    assert_eq!(stages[0].instrs[0].args, "one two");
    assert_eq!(stages[1].image, "b:2");
    let env = stages[1].env();
    assert_eq!(
        (env["A"].as_str(), env["B"].as_str(), env["C"].as_str()),
        ("1", "2", "3")
    );
    assert_eq!(
        stages[1].last("CMD").and_then(Instr::json),
        Some(vec!["x".into(), "y".into()])
    );
}

fn dockerfile() -> (String, Vec<Stage>) {
    let text = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).expect("Dockerfile");
    let stages = parse_dockerfile(&text);
    (text, stages)
}

fn cargo_toml() -> toml::Value {
    toml::from_str(&std::fs::read_to_string(format!("{ROOT}/Cargo.toml")).unwrap()).unwrap()
}

/// The name of the binary built from src/main.rs.
fn main_bin() -> String {
    cargo_toml()["bin"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["path"].as_str() == Some("src/main.rs"))
        .and_then(|b| b["name"].as_str())
        .expect("a [[bin]] for src/main.rs")
        .to_string()
}

/// The documented default port of `oncall serve` (docs/configuration.md: "127.0.0.1:4318").
fn documented_port() -> u16 {
    let readme = std::fs::read_to_string(format!("{ROOT}/docs/configuration.md")).unwrap();
    assert!(readme.contains("listen = \"127.0.0.1:4318\""));
    assert_eq!(
        oncall::config::Config::default().server.listen,
        "127.0.0.1:4318"
    );
    4318
}

/// The final stage's user as (uid, gid), numeric.
fn image_user(stage: &Stage) -> (u32, u32) {
    let user = stage
        .last("USER")
        .expect("the final stage sets USER")
        .args
        .clone();
    let (u, g) = user.split_once(':').unwrap_or((&user, &user));
    (
        u.parse()
            .unwrap_or_else(|_| panic!("USER {user}: give a numeric uid")),
        g.parse()
            .unwrap_or_else(|_| panic!("USER {user}: give a numeric gid")),
    )
}

#[test]
fn the_dockerfile_builds_in_its_own_stage_and_runs_oncall_serve_as_a_fixed_non_root_user() {
    let (text, stages) = dockerfile();
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    let build = &stages[0];
    let last = stages.last().unwrap();
    let build_name = build.name.clone().expect("the build stage is named");

    // The build image's toolchain is the crate's rust-version; the runtime has no compiler.
    let rust_version = cargo_toml()["package"]["rust-version"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        build.image.starts_with(&format!("rust:{rust_version}")),
        "build from rust:{rust_version}-*, got {}",
        build.image
    );
    assert!(
        !last.image.starts_with("rust:"),
        "the runtime image is small: {}",
        last.image
    );
    assert!(
        last.image.contains("slim") || last.image.contains("distroless"),
        "{}",
        last.image
    );
    // Image names without a registry host (the engine's configured registry is used).
    for s in &stages {
        let first = s.image.split('/').next().unwrap();
        assert!(
            !(s.image.contains('/') && (first.contains('.') || first.contains(':'))),
            "{} names a registry host",
            s.image
        );
    }

    // A non-root, fixed user that the runtime stage creates with that uid.
    let (uid, gid) = image_user(last);
    assert!(uid >= 1000 && gid >= 1000, "USER {uid}:{gid} is not root");
    let runs: String = last
        .all("RUN")
        .iter()
        .map(|i| i.args.clone())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        runs.contains(&format!("--uid {uid}")) && runs.contains(&format!("--gid {gid}")),
        "the user is created with uid {uid} and gid {gid}: {runs}"
    );

    // The binary copied from the build stage is the one Cargo builds for src/main.rs.
    let bin = main_bin();
    let workdir = build.last("WORKDIR").expect("build WORKDIR").args.clone();
    let copy = last
        .all("COPY")
        .into_iter()
        .find(|i| i.args.starts_with(&format!("--from={build_name}")))
        .expect("COPY --from=<build stage>");
    let w = copy.words();
    assert_eq!(w.len(), 3, "COPY --from=build SRC DST: {w:?}");
    assert_eq!(w[1], format!("{workdir}/target/release/{bin}"));
    let installed = w[2].clone();
    assert_eq!(Path::new(&installed).file_name().unwrap(), bin.as_str());
    let built = build.all("RUN").iter().any(|i| {
        i.args.contains("cargo build --release") && i.args.contains(&format!("--bin {bin}"))
    });
    assert!(
        built,
        "the build stage runs cargo build --release --bin {bin}"
    );

    // ENTRYPOINT + CMD run `oncall serve`, in exec form.
    let entry = last
        .last("ENTRYPOINT")
        .and_then(Instr::json)
        .expect("ENTRYPOINT [..]");
    let cmd = last.last("CMD").and_then(Instr::json).expect("CMD [..]");
    let argv: Vec<String> = entry.into_iter().chain(cmd).collect();
    assert_eq!(argv, vec![installed.clone(), "serve".to_string()]);

    // It listens on every interface of the container at the documented port, which it exposes,
    // and keeps its data in the volume.
    let env = last.env();
    let port = documented_port();
    assert_eq!(
        env.get("ONCALL_SERVER__LISTEN").map(String::as_str),
        Some(format!("0.0.0.0:{port}").as_str())
    );
    let exposed: Vec<String> = last.all("EXPOSE").iter().flat_map(|i| i.words()).collect();
    assert_eq!(exposed, vec![port.to_string()]);
    let data = env.get("ONCALL_SERVER__DATA_DIR").expect("data dir env");
    let volumes: Vec<String> = last
        .all("VOLUME")
        .iter()
        .flat_map(|i| i.json().unwrap_or_else(|| i.words()))
        .collect();
    assert!(volumes.contains(data), "{volumes:?} holds {data}");
    assert_eq!(
        last.last("WORKDIR").map(|i| i.args.clone()),
        Some(data.clone())
    );

    // No secret is baked in: no secret-named variable or build argument, nothing the redactor
    // would take for a credential.
    let secretish = regex::Regex::new(r"(?i)token|secret|passw|api_?key|credential").unwrap();
    for s in &stages {
        for (k, _) in s.env() {
            assert!(
                !secretish.is_match(&k),
                "ENV {k} bakes a secret into the image"
            );
        }
        for a in s.all("ARG") {
            assert!(!secretish.is_match(&a.args), "ARG {} is a secret", a.args);
        }
    }
    for pat in [
        "oc_",
        "xoxb-",
        "xoxp-",
        "sk-",
        "AKIA",
        "BEGIN PRIVATE",
        "://",
    ] {
        let hits: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.contains(pat))
            .collect();
        assert!(hits.is_empty(), "{pat} in {hits:?}");
    }
    assert_eq!(
        oncall::redact::redact(&text),
        text,
        "the redactor finds a credential in the Dockerfile"
    );

    // A health check on /healthz, which needs no token.
    let hc = last.last("HEALTHCHECK").expect("HEALTHCHECK");
    assert!(hc.args.contains("/healthz"), "{}", hc.args);
}

/// `.dockerignore` patterns, matched the simple way Docker does for these forms: a path and
/// everything under it, `*` within a name, `**/` for any depth.
fn ignored(patterns: &[String], path: &str) -> bool {
    let glob = |p: &str| {
        let re = regex::escape(p)
            .replace(r"\*\*/", "(?:.*/)?")
            .replace(r"\*", "[^/]*");
        regex::Regex::new(&format!("^{re}(?:/.*)?$")).unwrap()
    };
    let mut out = false;
    for p in patterns {
        let (neg, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        if glob(p.trim_start_matches("./")).is_match(path) {
            out = !neg;
        }
    }
    out
}

#[test]
fn the_build_context_holds_every_file_the_build_reads_and_nothing_it_must_not() {
    let (_, stages) = dockerfile();
    let patterns: Vec<String> = std::fs::read_to_string(format!("{ROOT}/.dockerignore"))
        .expect(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    for kept_out in [
        "target",
        "target/release/oncall",
        ".git",
        "oncall-data/oncall.db",
        "oncall.toml",
        ".env",
    ] {
        assert!(
            ignored(&patterns, kept_out),
            "{kept_out} is sent to the daemon"
        );
    }
    // What the build stage copies exists and is not ignored.
    let mut copied: Vec<String> = vec![];
    for i in stages[0].all("COPY") {
        let w: Vec<String> = i
            .words()
            .into_iter()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for src in &w[..w.len() - 1] {
            assert!(
                Path::new(ROOT).join(src).exists(),
                "COPY {src}: no such file"
            );
            assert!(
                !ignored(&patterns, src),
                "COPY {src} is excluded by .dockerignore"
            );
            copied.push(src.trim_end_matches('/').to_string());
        }
    }
    let inside = |p: &str| {
        copied
            .iter()
            .any(|c| p == c || p.starts_with(&format!("{c}/")))
    };
    // Every target Cargo.toml declares (cargo reads them all), and every file compiled in.
    let manifest = cargo_toml();
    for kind in ["bin", "bench"] {
        for t in manifest[kind].as_array().unwrap() {
            let p = t
                .get("path")
                .and_then(|p| p.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| format!("benches/{}.rs", t["name"].as_str().unwrap()));
            assert!(inside(&p), "{kind} {p} is not in the build context");
        }
    }
    for f in ["Cargo.toml", "Cargo.lock", "src/lib.rs"] {
        assert!(inside(f), "{f}");
    }
    let include = regex::Regex::new(r#"include_(?:str|bytes)!\("([^"]+)"\)"#).unwrap();
    let mut n = 0;
    let mut stack = vec![PathBuf::from(ROOT).join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            for c in include.captures_iter(&text) {
                let target = p.parent().unwrap().join(&c[1]);
                let target = target
                    .canonicalize()
                    .unwrap_or_else(|_| panic!("{}: {} missing", p.display(), &c[1]));
                let rel = target
                    .strip_prefix(Path::new(ROOT).canonicalize().unwrap())
                    .unwrap();
                let rel = rel.to_string_lossy();
                assert!(
                    inside(&rel),
                    "{} compiles in {rel}, which the Dockerfile does not copy",
                    p.display()
                );
                assert!(
                    !ignored(&patterns, &rel),
                    "{rel} is excluded by .dockerignore"
                );
                n += 1;
            }
        }
    }
    assert!(n >= 10, "found {n} compiled-in files");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process this test started, stopped with SIGTERM (then SIGKILL) when dropped.
struct Started(Child);

impl Started {
    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop();
    }
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r = reqwest::Client::new().get(url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        match r.send().await {
            Ok(resp) => (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            ),
            Err(e) => (0, e.to_string()),
        }
    })
}

fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if get(&format!("http://127.0.0.1:{port}/healthz"), None).0 == 200 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("oncall serve did not answer /healthz on {port}");
}

/// `setpriv` arguments that run a command as `uid:gid` with no other groups.
fn as_user(uid: u32, gid: u32) -> Vec<String> {
    vec![
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".into(),
        "--".into(),
    ]
}

#[test]
fn the_image_command_serves_health_and_readiness_as_the_images_user() {
    if !common::is_root() {
        eprintln!("SKIPPED: switching to the image's uid needs root");
        return;
    }
    let (_, stages) = dockerfile();
    let last = stages.last().unwrap();
    let (uid, gid) = image_user(last);
    let env = last.env();
    let port = free_port();
    // The image's data directory is a volume: here a fresh directory owned by its uid.
    let data = tempfile::tempdir().unwrap();
    nix::unistd::chown(
        data.path(),
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap();
    let mut run_env: BTreeMap<String, String> = env.clone();
    run_env.insert("ONCALL_SERVER__LISTEN".into(), format!("0.0.0.0:{port}"));
    run_env.insert(
        "ONCALL_SERVER__DATA_DIR".into(),
        data.path().display().to_string(),
    );
    run_env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
    // What `--env-file` adds at run time (never the image): the shipped example as it is (its
    // values empty: those features off), with the operator token filled in.
    let example = std::fs::read_to_string(format!("{ROOT}/deploy/oncall.env.example")).unwrap();
    for l in example.lines().filter(|l| !l.starts_with('#')) {
        if let Some((k, v)) = l.split_once('=') {
            run_env.insert(k.to_string(), v.to_string());
        }
    }
    let token = "operator-token-for-the-image-test";
    run_env.insert("ONCALL_TOKEN".into(), token.into());
    let entry = last.last("ENTRYPOINT").and_then(Instr::json).unwrap();
    let cmd = last.last("CMD").and_then(Instr::json).unwrap();
    let mut argv: Vec<String> = entry.into_iter().chain(cmd).collect();
    argv[0] = ONCALL.to_string(); // the binary the image would hold
    let mut server = Started(
        Command::new("setpriv")
            .args(as_user(uid, gid))
            .args(&argv)
            .env_clear()
            .envs(&run_env)
            .current_dir(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("setpriv"),
    );
    wait_healthy(port);
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        get(&format!("{base}/healthz"), None),
        (200, "ok".to_string())
    );
    let (s, body) = get(&format!("{base}/readyz"), Some(token));
    assert_eq!(s, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["store"], "ok");
    assert_eq!(
        get(&format!("{base}/readyz"), None).0,
        401,
        "readiness needs a token"
    );

    // The data the server made belongs to the image's user.
    use std::os::unix::fs::MetadataExt;
    for f in ["oncall.db", "audit.jsonl"] {
        let md = std::fs::metadata(data.path().join(f)).unwrap();
        assert_eq!((md.uid(), md.gid()), (uid, gid), "{f}");
    }

    // The HEALTHCHECK's own command, with the container's environment, as its user.
    let hc = last.last("HEALTHCHECK").unwrap();
    let json_start = hc
        .args
        .find("CMD [")
        .expect("HEALTHCHECK ... CMD [exec form]")
        + 4;
    let check: Vec<String> = serde_json::from_str(&hc.args[json_start..]).unwrap();
    let run_check = |listen: &str| {
        let mut e = run_env.clone();
        e.insert("ONCALL_SERVER__LISTEN".into(), listen.into());
        Command::new("setpriv")
            .args(as_user(uid, gid))
            .args(&check)
            .env_clear()
            .envs(&e)
            .status()
            .unwrap()
            .success()
    };
    assert!(
        run_check(&format!("0.0.0.0:{port}")),
        "the health check passes"
    );
    assert!(
        !run_check(&format!("0.0.0.0:{}", free_port())),
        "and fails with nothing listening"
    );

    // docs/deploy.md's health commands, as written but for the address, as the image's user.
    let md = docs::deploy_md();
    let health = docs::marked(&md, "health");
    assert!(health.contains("http://127.0.0.1:4318/healthz"));
    let script = health.replace("127.0.0.1:4318", &format!("127.0.0.1:{port}"));
    let mut e = run_env.clone();
    e.insert(
        "PATH".into(),
        format!(
            "{}:/usr/bin:/bin",
            Path::new(ONCALL).parent().unwrap().display()
        ),
    );
    let out = Command::new("setpriv")
        .args(as_user(uid, gid))
        .args(["bash", "-euo", "pipefail", "-c", &script])
        .env_clear()
        .envs(&e)
        .current_dir(data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok"), "{stdout}");
    assert!(stdout.contains("\"store\":\"ok\""), "{stdout}");

    // The store's file removed under the running server: not ready, and the body says why;
    // still alive.
    std::fs::remove_file(data.path().join("oncall.db")).unwrap();
    let (s, body) = get(&format!("{base}/readyz"), Some(token));
    assert_eq!(s, 503, "{body}");
    let err = serde_json::from_str::<Value>(&body).unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("not ready:") && err.contains("oncall.db") && err.contains("removed"),
        "{err}"
    );
    assert_eq!(get(&format!("{base}/healthz"), None).0, 200);
    server.stop();
}

#[test]
fn the_host_mode_container_serves_as_root_with_only_its_four_capabilities() {
    if !common::is_root() {
        eprintln!("SKIPPED: dropping root's capabilities needs root");
        return;
    }
    // docs/deploy.md's host mode: root, every capability dropped but the --cap-add ones, data
    // in a root-owned 0700 directory. setpriv sets the same bounding set Docker would.
    let md = docs::deploy_md();
    let host = docs::commands(&docs::marked(&md, "docker-run-host"));
    let caps: Vec<String> = host[1]
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--cap-add="))
        .map(|c| format!("+{}", c.to_ascii_lowercase()))
        .collect();
    assert_eq!(caps.len(), 4);
    let bounding = format!("-all,{}", caps.join(","));
    let (_, stages) = dockerfile();
    let mut env = stages.last().unwrap().env();
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        data.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let port = free_port();
    env.insert("ONCALL_SERVER__LISTEN".into(), format!("0.0.0.0:{port}"));
    env.insert(
        "ONCALL_SERVER__DATA_DIR".into(),
        data.path().display().to_string(),
    );
    env.insert("ONCALL_TOKEN".into(), "host-mode-test".into());
    let mut server = Started(
        Command::new("setpriv")
            .args([
                &format!("--bounding-set={bounding}"),
                "--inh-caps=-all",
                "--",
                ONCALL,
                "serve",
            ])
            .env_clear()
            .envs(&env)
            .current_dir(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_healthy(port);
    // Root with only those four: CapEff of the server is exactly them.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.0.id())).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    // CAP_KILL 5, CAP_DAC_READ_SEARCH 2, CAP_SYS_PTRACE 19, CAP_SYSLOG 34.
    assert_eq!(
        eff,
        (1 << 2) | (1 << 5) | (1 << 19) | (1 << 34),
        "CapEff {eff:x}"
    );
    let (s, body) = get(
        &format!("http://127.0.0.1:{port}/readyz"),
        Some("host-mode-test"),
    );
    assert_eq!(s, 200, "{body}");
    assert!(data.path().join("oncall.db").is_file() && data.path().join("audit.jsonl").is_file());
    server.stop();
}

/// The unit with its ExecStart pointed at the binary these tests built.
fn unit_for_this_machine(dir: &Path) -> PathBuf {
    let text = docs::unit();
    let exec = docs::unit_value(&text, "ExecStart");
    let program = exec.split_whitespace().next().unwrap().to_string();
    let p = dir.join("oncall.service");
    std::fs::write(
        &p,
        text.replace(
            &format!("ExecStart={program}"),
            &format!("ExecStart={ONCALL}"),
        ),
    )
    .unwrap();
    p
}

fn systemd_analyze() -> Option<&'static str> {
    let p = "/usr/bin/systemd-analyze";
    if Path::new(p).exists() {
        Some(p)
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing"
        );
        eprintln!("SKIPPED: systemd-analyze is not installed");
        None
    }
}

/// The capabilities the unit keeps, as a set.
fn unit_caps(text: &str) -> BTreeSet<String> {
    let bounding: BTreeSet<String> = docs::unit_value(text, "CapabilityBoundingSet")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let ambient: BTreeSet<String> = docs::unit_value(text, "AmbientCapabilities")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(
        bounding, ambient,
        "every capability kept is one the service uses"
    );
    bounding
}

#[test]
fn the_unit_verifies_and_keeps_its_hardening() {
    let text = docs::unit();
    let v = |k: &str| docs::unit_value(&text, k);
    assert!(["simple", "notify"].contains(&v("Type").as_str()));
    assert!(
        v("ExecStart").ends_with(&format!("{} serve", main_bin())),
        "{}",
        v("ExecStart")
    );
    assert_eq!(v("User"), "oncall");
    assert_eq!(v("StateDirectory"), "oncall");
    assert_eq!(v("Restart"), "on-failure");
    assert_eq!(
        v("RestartPreventExitStatus"),
        "2",
        "a config error is not restarted"
    );
    let env = docs::unit_values(&text, "Environment");
    assert!(
        env.contains(&"ONCALL_SERVER__DATA_DIR=/var/lib/oncall".to_string()),
        "{env:?}"
    );
    assert!(
        v("EnvironmentFile")
            .trim_start_matches('-')
            .starts_with("/etc/oncall/")
    );
    for (k, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(v(k), want, "{k}");
    }
    assert!(["yes", "read-only"].contains(&v("ProtectHome").as_str()));
    let families: BTreeSet<String> = v("RestrictAddressFamilies")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let allowed: BTreeSet<String> = ["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"]
        .map(String::from)
        .into();
    assert!(families.is_subset(&allowed), "{families:?}");
    assert!(
        families.contains("AF_INET")
            && families.contains("AF_INET6")
            && families.contains("AF_UNIX")
    );
    // Each kept capability is explained in a comment of the unit.
    let caps = unit_caps(&text);
    assert_eq!(
        caps,
        [
            "CAP_DAC_READ_SEARCH",
            "CAP_SYS_PTRACE",
            "CAP_SYSLOG",
            "CAP_KILL"
        ]
        .map(String::from)
        .into()
    );
    for c in &caps {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with('#') && l.contains(c.as_str())),
            "{c} has no comment saying why"
        );
    }

    let Some(sa) = systemd_analyze() else { return };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_machine(dir.path());
    let out = Command::new(sa)
        .arg("verify")
        .arg(&unit)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The offline security review (no running systemd needed), and its overall exposure.
    let out = Command::new(sa)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for oncall.service: "))
        .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure in {report}"));
    assert!(exposure <= 3.0, "exposure {exposure}:\n{report}");
    let md = docs::deploy_md();
    assert!(
        md.contains(&format!(
            "`systemd-analyze security --offline=yes` rates the unit {exposure}"
        )),
        "docs/deploy.md states the measured exposure {exposure}"
    );
    eprintln!("systemd-analyze security --offline=yes: exposure {exposure}");
}

/// Runs `probe` (a shell snippet) as nobody with exactly `caps` (names without CAP_, lower case).
fn probe_with(caps: &[&str], probe: &str) -> bool {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if !caps.is_empty() {
        let list = caps
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(",");
        cmd.arg(format!("--inh-caps={list}"))
            .arg(format!("--ambient-caps={list}"));
    }
    cmd.args(["sh", "-c", probe])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn each_capability_the_unit_keeps_is_what_makes_its_read_work_for_a_non_root_user() {
    if !common::is_root() {
        eprintln!("SKIPPED: probing capabilities needs root");
        return;
    }
    let mut victim = common::Victim::start();
    let pid = victim.pid();
    let restricted = std::fs::read_to_string("/proc/sys/kernel/dmesg_restrict")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    // What each capability is kept for (the unit's comments), as a read the collectors or the
    // signal action make on a process of another user (root's `sleep`).
    let mut probes: Vec<(&str, String)> = vec![
        ("dac_read_search", format!("ls /proc/{pid}/fd")),
        ("sys_ptrace", format!("readlink /proc/{pid}/exe")),
        ("kill", format!("kill -0 {pid}")),
    ];
    if restricted {
        probes.push((
            "syslog",
            "dd if=/dev/kmsg of=/dev/null bs=8192 count=1 iflag=nonblock".into(),
        ));
    } else {
        eprintln!("note: kernel.dmesg_restrict is 0 here, so CAP_SYSLOG cannot be probed");
    }
    let all: Vec<String> = unit_caps(&docs::unit())
        .iter()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    for (cap, probe) in &probes {
        assert!(all.contains(cap), "the unit does not keep {cap}");
        assert!(
            probe_with(&all, probe),
            "with the unit's capabilities: {probe}"
        );
        let without: Vec<&str> = all.iter().copied().filter(|c| c != cap).collect();
        assert!(
            !probe_with(&without, probe),
            "{probe} works without {cap}: it is not needed"
        );
    }
    // The reads that need two of them at once: the fd links (sockets to processes) and io.
    for probe in [
        format!("readlink /proc/{pid}/fd/0"),
        format!("cat /proc/{pid}/io"),
    ] {
        assert!(probe_with(&all, &probe), "{probe}");
        assert!(!probe_with(&[], &probe), "{probe} needs no capability");
    }
    assert!(victim.alive(), "kill -0 sends nothing");
}

/// The system calls in `@system-service`, expanded from systemd's own tables.
fn system_service_calls(sa: &str) -> BTreeSet<String> {
    let out = Command::new(sa).arg("syscall-filter").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cur = None;
    for l in text.lines() {
        if l.starts_with('@') {
            let g = l.split_whitespace().next().unwrap().to_string();
            groups.insert(g.clone(), vec![]);
            cur = Some(g);
        } else if let Some(g) = &cur {
            let t = l.trim();
            if !t.is_empty() && !t.starts_with('#') {
                groups.get_mut(g).unwrap().push(t.to_string());
            }
        }
    }
    fn expand(g: &str, groups: &BTreeMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
        for m in groups.get(g).into_iter().flatten() {
            if m.starts_with('@') {
                expand(m, groups, out);
            } else {
                out.insert(m.clone());
            }
        }
    }
    let mut out = BTreeSet::new();
    expand("@system-service", &groups, &mut out);
    assert!(
        out.len() > 200,
        "@system-service expanded to {} calls",
        out.len()
    );
    out
}

/// The system calls named in an `strace -f -o` file.
fn traced_calls(path: &Path) -> BTreeSet<String> {
    let re = regex::Regex::new(r"^\d+\s+(?:<\.\.\. ([a-z0-9_]+) resumed>|([a-z0-9_]+)\()").unwrap();
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| re.captures(l))
        .filter_map(|c| c.get(1).or(c.get(2)).map(|m| m.as_str().to_string()))
        .collect()
}

/// A wrapper that turns on the kernel's memory-deny-write-execute (what MemoryDenyWriteExecute=
/// does) and then runs its arguments; None where the kernel or python3 cannot.
fn mdwe_wrapper(dir: &Path) -> Option<Vec<String>> {
    let script = dir.join("mdwe.py");
    std::fs::write(
        &script,
        "import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n# PR_SET_MDWE = 65, PR_MDWE_REFUSE_EXEC_GAIN = 1\nif libc.prctl(65, 1, 0, 0, 0) != 0:\n    sys.exit(77)\nos.execvp(sys.argv[1], sys.argv[1:])\n",
    )
    .unwrap();
    let ok = Command::new("python3")
        .arg(&script)
        .arg("true")
        .status()
        .ok()?;
    if ok.code() != Some(0) {
        return None;
    }
    Some(vec!["python3".into(), script.display().to_string()])
}

#[test]
fn oncall_runs_within_the_units_system_call_filter_and_without_writable_executable_memory() {
    let Some(sa) = systemd_analyze() else { return };
    let have_strace = Command::new("strace").arg("-V").output().is_ok();
    if !have_strace {
        eprintln!("SKIPPED: strace is not installed");
        return;
    }
    let allowed = system_service_calls(sa);
    let dir = tempfile::tempdir().unwrap();
    let wrapper = mdwe_wrapper(dir.path());
    if wrapper.is_none() {
        eprintln!(
            "note: this kernel cannot turn on memory-deny-write-execute (PR_SET_MDWE); tracing only"
        );
    }
    let data = dir.path().join("data");
    let traced = |name: &str, args: &[&str]| -> (Command, PathBuf) {
        let log = dir.path().join(format!("{name}.strace"));
        let mut argv: Vec<String> = wrapper.clone().unwrap_or_default();
        argv.extend(["strace", "-f", "-qq", "-o"].map(String::from));
        argv.push(log.display().to_string());
        argv.push(ONCALL.into());
        argv.extend(args.iter().map(|s| s.to_string()));
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .env_remove("ONCALL_CONFIG")
            .env("ONCALL_SERVER__DATA_DIR", &data);
        (c, log)
    };

    // One investigation of this host: every collector.
    let (mut c, triage_log) = traced("triage", &["triage", "-q", "--json", "checkout is slow"]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("a JSON answer");
    assert!(
        answer["hypotheses"]
            .as_array()
            .is_some_and(|h| !h.is_empty())
    );

    // The server: start, health, an incident investigated in the background, an approved
    // signal (pidfd_open, pidfd_send_signal: CAP_KILL's feature), stop.
    let out = Command::new(ONCALL)
        .args(["token", "add", "bo", "--role", "approver"])
        .env_remove("ONCALL_CONFIG")
        .env("ONCALL_SERVER__DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bo = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let port = free_port();
    let (mut c, serve_log) = traced(
        "serve",
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
    );
    let token = "syscall-test-operator";
    let mut server = Started(
        c.env("ONCALL_TOKEN", token)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_healthy(port);
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/readyz"), Some(token)).0,
        200
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/api/v1/incidents"))
            .bearer_auth(token)
            .json(&serde_json::json!({"report": "users see slow pages"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = get(
            &format!("http://127.0.0.1:{port}/api/v1/incidents/{id}"),
            Some(token),
        );
        if body.contains("investigation_finished") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the investigation never finished"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut victim = common::Victim::start();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}/api/v1");
        let r: Value = http
            .post(format!("{base}/incidents/{id}/actions"))
            .bearer_auth(token)
            .json(&serde_json::json!({"tool": "host.signal_process", "args": {"pid": victim.pid(), "signal": "TERM"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let req = r["request"].as_str().expect("a request id").to_string();
        let d = http
            .post(format!("{base}/approvals/{req}/decision"))
            .bearer_auth(&bo)
            .json(&serde_json::json!({"approve": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(d.status().as_u16(), 200, "{:?}", d.text().await);
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while victim.alive() {
        assert!(
            Instant::now() < deadline,
            "the approved signal never arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // strace's child is oncall: stop it, and strace ends with it.
    let children = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        server.0.id(),
        server.0.id()
    ))
    .unwrap_or_default();
    // (With the wrapper, python has exec'd strace in place: the same pid.)
    let oncall_pid = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse::<i32>().ok());
    match oncall_pid {
        Some(p) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while server.0.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        None => server.stop(),
    }

    for (what, log) in [("oncall triage", triage_log), ("oncall serve", serve_log)] {
        let calls = traced_calls(&log);
        if what == "oncall serve" {
            assert!(
                calls.contains("pidfd_send_signal"),
                "the signal went through a pidfd: {calls:?}"
            );
        }
        assert!(calls.len() > 20, "{what}: only {calls:?} traced");
        let outside: Vec<&String> = calls.iter().filter(|c| !allowed.contains(*c)).collect();
        // execve is strace starting oncall, and is in @system-service anyway.
        assert!(
            outside.is_empty(),
            "{what} makes system calls outside @system-service: {outside:?}"
        );
        eprintln!(
            "{what}: {} distinct system calls, all in @system-service",
            calls.len()
        );
    }
}

#[test]
// figment::Jail's closure returns figment's own (large) error type.
#[allow(clippy::result_large_err)]
fn every_command_block_of_the_deploy_doc_is_covered_and_its_files_and_names_agree() {
    let md = docs::deploy_md();
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    assert!(
        readme.contains("(docs/deploy.md)"),
        "README links docs/deploy.md"
    );
    // The commands the README names are the ones the doc's tested blocks run.
    for (said, block) in [
        ("`oncall backup --to DIR`", "backup-sqlite"),
        ("`oncall restore --from DIR`", "restore-sqlite"),
    ] {
        assert!(readme.contains(said), "README names {said}");
        let argv = said.trim_matches('`').trim_end_matches(" DIR");
        assert!(
            docs::marked(&md, block).contains(argv),
            "{block} runs {argv}"
        );
    }
    let covered = [
        "docker-build",
        "docker-run",
        "docker-run-host",
        "systemd-install",
        "health",
        "backup-sqlite",
        "restore-sqlite",
        "backup-postgres",
        "restore-postgres",
    ];
    let mut seen = BTreeSet::new();
    for b in docs::blocks(&md) {
        match b.lang.as_str() {
            "toml" => {
                // A complete oncall config, identical to the shipped example.
                let shipped =
                    std::fs::read_to_string(format!("{ROOT}/deploy/oncall.toml")).unwrap();
                assert_eq!(b.body, shipped, "the toml block is deploy/oncall.toml");
                let f = tempfile::NamedTempFile::new().unwrap();
                std::fs::write(f.path(), &b.body).unwrap();
                let c = oncall::config::Config::load_from(
                    Some(f.path()),
                    figment::providers::Env::prefixed("ONCALL_DEPLOY_TEST_UNSET_"),
                )
                .expect("deploy/oncall.toml loads");
                assert_eq!(c.server.listen, "0.0.0.0:4318");
                assert_eq!(c.server.data_dir, Path::new("/var/lib/oncall"));
            }
            _ => {
                let t = b.test.clone().unwrap_or_else(|| {
                    panic!(
                        "a {} block without a <!-- test: ... --> marker:\n{}",
                        b.lang, b.body
                    )
                });
                assert!(
                    covered.contains(&t.as_str()),
                    "no test covers the block {t}"
                );
                assert!(seen.insert(t.clone()), "two blocks marked {t}");
            }
        }
    }
    assert_eq!(seen.len(), covered.len(), "{seen:?}");

    let (_, stages) = dockerfile();
    let last = stages.last().unwrap();
    let unit = docs::unit();
    let port = documented_port().to_string();
    let volume = last.env()["ONCALL_SERVER__DATA_DIR"].clone();
    let env_file = docs::unit_value(&unit, "EnvironmentFile")
        .trim_start_matches('-')
        .to_string();

    // docker-build: the tag the run commands use, from this directory's Dockerfile.
    let build = docs::commands(&docs::marked(&md, "docker-build"));
    let w: Vec<&str> = build[0].split_whitespace().collect();
    assert_eq!(&w[..3], ["docker", "build", "-t"]);
    let tag = w[3].to_string();
    assert_eq!(
        w[4], ".",
        "the build context is the repository root (the Dockerfile's)"
    );
    // docker-run and docker-run-host: port, volume, env file, image; the host one's caps.
    let flags = |cmd: &str| -> (BTreeMap<String, Vec<String>>, String) {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let w: Vec<&str> = cmd.split_whitespace().collect();
        assert_eq!(&w[..2], ["docker", "run"]);
        let mut i = 2;
        let mut image = String::new();
        while i < w.len() {
            if let Some(f) = w[i].strip_prefix("--").or_else(|| w[i].strip_prefix('-')) {
                let (k, v) = match f.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None if f == "d" => (f.to_string(), String::new()),
                    None => {
                        i += 1;
                        (f.to_string(), w[i].to_string())
                    }
                };
                m.entry(k).or_default().push(v);
            } else {
                image = w[i].to_string();
                assert_eq!(i, w.len() - 1, "the image comes last (CMD stays `serve`)");
            }
            i += 1;
        }
        (m, image)
    };
    let run = docs::commands(&docs::marked(&md, "docker-run"));
    let (f, image) = flags(&run[0]);
    assert_eq!(image, tag);
    assert_eq!(f["p"], vec![format!("{port}:{port}")]);
    assert_eq!(f["v"], vec![format!("oncall-data:{volume}")]);
    assert_eq!(f["env-file"], vec![env_file.clone()]);
    let name = f["name"][0].clone();
    assert_eq!(run[1], format!("docker logs {name}"));
    assert!(md.contains(&format!("`docker exec {name} oncall backup ...`")));
    let host = docs::commands(&docs::marked(&md, "docker-run-host"));
    assert_eq!(host[0], format!("install -d -m 0700 {volume}"));
    let (f, image) = flags(&host[1]);
    assert_eq!(image, tag);
    assert_eq!(f["user"], vec!["0:0"]);
    assert_eq!(f["pid"], vec!["host"]);
    assert_eq!(f["network"], vec!["host"]);
    assert_eq!(f["cap-drop"], vec!["ALL"]);
    let added: BTreeSet<String> = f["cap-add"].iter().map(|c| format!("CAP_{c}")).collect();
    assert_eq!(
        added,
        unit_caps(&unit),
        "the container gets the unit's capabilities"
    );
    assert_eq!(
        f["v"],
        vec![format!("{volume}:{volume}")],
        "the root-owned directory made above"
    );

    // systemd-install: the user, the files installed where the unit reads them.
    let install = docs::commands(&docs::marked(&md, "systemd-install"));
    let user = docs::unit_value(&unit, "User");
    let state = format!("/var/lib/{}", docs::unit_value(&unit, "StateDirectory"));
    assert_eq!(
        install[0],
        format!("useradd --system --home-dir {state} --shell /usr/sbin/nologin {user}")
    );
    assert!(
        md.contains(&format!("`runuser -u {user} --`")),
        "backup runs as the unit's user"
    );
    let exec = docs::unit_value(&unit, "ExecStart");
    let config_file = docs::unit_values(&unit, "Environment")
        .iter()
        .find_map(|e| e.strip_prefix("ONCALL_CONFIG=").map(str::to_string))
        .expect("the unit names its config file");
    let mut installed: BTreeMap<String, String> = BTreeMap::new();
    for l in &install {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w[0] == "install" && !w.contains(&"-d") {
            let (src, dst) = (w[w.len() - 2], w[w.len() - 1]);
            if src == format!("target/release/{}", main_bin()) {
                // cargo build --release makes it
            } else {
                assert!(
                    Path::new(ROOT).join(src).is_file(),
                    "{src} is not in the repository"
                );
            }
            installed.insert(dst.to_string(), src.to_string());
        }
    }
    assert!(
        installed.contains_key(exec.split_whitespace().next().unwrap()),
        "{exec}"
    );
    assert_eq!(installed[&config_file], "deploy/oncall.toml");
    assert_eq!(installed[&env_file], "deploy/oncall.env.example");
    assert_eq!(
        installed["/etc/systemd/system/oncall.service"],
        "deploy/oncall.service"
    );
    let doc = docs::unit_value(&unit, "Documentation");
    let doc = doc
        .strip_prefix("file://")
        .expect("Documentation=file://...");
    assert_eq!(
        installed[doc], "docs/deploy.md",
        "the unit's Documentation is installed"
    );
    assert!(install.contains(&"systemctl enable --now oncall".to_string()));
    assert!(install.contains(&"journalctl -u oncall".to_string()));
    assert!(
        install
            .iter()
            .any(|l| l.contains("install -m 0600") && l.contains(&env_file))
    );

    // The environment: every ONCALL_* name in these files is a setting oncall loads (or one of
    // the two that are not settings), and the secret names are the configured defaults.
    let example = std::fs::read_to_string(format!("{ROOT}/deploy/oncall.env.example")).unwrap();
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    let names = regex::Regex::new(r"\bONCALL_[A-Z0-9_]*[A-Z0-9]\b").unwrap();
    let mut all: BTreeSet<String> = BTreeSet::new();
    for text in [&md, &unit, &example, &dockerfile] {
        all.extend(names.find_iter(text).map(|m| m.as_str().to_string()));
    }
    let samples: BTreeMap<&str, &str> = [
        ("ONCALL_SERVER__LISTEN", "0.0.0.0:4318"),
        ("ONCALL_SERVER__DATA_DIR", "/var/lib/oncall"),
        ("ONCALL_SERVER__DATABASE_URL", "postgres://oncall@db/oncall"),
        ("ONCALL_LLM__BASE_URL", "http://127.0.0.1:8080/v1"),
    ]
    .into();
    for n in &all {
        if ["ONCALL_CONFIG", "ONCALL_TOKEN"].contains(&n.as_str()) {
            continue;
        }
        let value = samples
            .get(n.as_str())
            .unwrap_or_else(|| panic!("{n}: add a sample value to check it loads"));
        let mut cfg = Value::Null;
        figment::Jail::try_with(|jail| {
            jail.set_env(n, value);
            let c = oncall::config::Config::load_from(
                None,
                figment::providers::Env::prefixed("ONCALL_"),
            )
            .map_err(|e| e.to_string())?;
            cfg = serde_json::to_value(&c).unwrap();
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{n}={value}: {e}"));
        let path: Vec<String> = n
            .trim_start_matches("ONCALL_")
            .split("__")
            .map(|p| p.to_ascii_lowercase())
            .collect();
        let got = path.iter().fold(&cfg, |v, k| &v[k.as_str()]);
        assert_eq!(got.as_str(), Some(*value), "{n} sets {}", path.join("."));
    }
    let d = oncall::config::Config::default();
    let secret_names: BTreeSet<String> = example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    let expected: BTreeSet<String> = [
        d.server.token_env.clone(),
        d.slack.signing_secret_env.clone(),
        d.slack.bot_token_env.clone(),
        d.llm.api_key_env.clone(),
    ]
    .into();
    assert_eq!(
        secret_names, expected,
        "the env file names the variables oncall reads"
    );
    for n in &expected {
        assert!(md.contains(&format!("`{n}`")), "docs/deploy.md names {n}");
    }
    assert!(
        example
            .lines()
            .all(|l| l.starts_with('#') || l.ends_with('=')),
        "no value is shipped"
    );
}
