//! The eval harness: the loader's messages, the scorer on hand-made outcomes, replay that never
//! invents a value, and the recorded suite in eval/cases against its recorded floors.

mod common;

use oncall::agent::Investigation;
use oncall::config::Config;
use oncall::eval::case::{self, CaseError};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

fn specs() -> Vec<oncall::tool::ToolSpec> {
    oncall::app::builtin_registry(Arc::new(Config::default())).specs()
}

fn case_json() -> Value {
    json!({
        "format": "oncall-case/1", "id": "t-01", "title": "t", "provenance": "synthetic",
        "report": "api slow", "observed_at": "2026-11-27T01:00:00Z",
        "context": {"user_facing": true},
        "recordings": [{"tool": "host.use_snapshot", "args": {}, "output": {}}],
        "truth": {"category": "host.cpu_saturation", "component": "cpu", "summary": "hog", "culprit_any": ["ingest-worker"], "stabilize": ["host.signal_process"], "must_not": ["postgres.terminate_backend"]}
    })
}

fn load(v: &Value) -> Result<case::Case, CaseError> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t-01.json");
    std::fs::write(&f, v.to_string()).unwrap();
    case::load(&f, &specs())
}

#[test]
fn loader_names_the_file_and_the_field() {
    assert!(load(&case_json()).is_ok());
    let mut v = case_json();
    v["format"] = json!("oncall-case/0");
    let e = load(&v).unwrap_err().to_string();
    assert!(
        e.contains("t-01.json") && e.contains("`format`") && e.contains("oncall-case/1"),
        "{e}"
    );
    let mut v = case_json();
    v.as_object_mut().unwrap().remove("report");
    let e = load(&v).unwrap_err().to_string();
    assert!(e.contains("`report`") && e.contains("missing"), "{e}");
    let mut v = case_json();
    v["truth"]["category"] = json!("host.cpu_hot");
    let e = load(&v).unwrap_err().to_string();
    assert!(
        e.contains("`truth.category`") && e.contains("host.cpu_saturation"),
        "{e}"
    );
    let mut v = case_json();
    v["recordings"][0]["tool"] = json!("host.top");
    let e = load(&v).unwrap_err().to_string();
    assert!(
        e.contains("`recordings[0].tool`") && e.contains("host.top"),
        "{e}"
    );
    let mut v = case_json();
    v["recordings"][0]["version"] = json!(0);
    let e = load(&v).unwrap_err().to_string();
    assert!(
        e.contains("`recordings[0].version`") && e.contains("re-record"),
        "{e}"
    );
}

fn investigation(hypotheses: Value, stabilize: Value, tool_calls: Value) -> Investigation {
    serde_json::from_value(json!({
        "incident": "i", "report": "api slow", "t0": "2026-11-27T01:00:00Z", "host": "h", "reasoner": "offline",
        "triage": {"severity": "P2", "reason": "r", "user_facing": true, "scope": [], "blast_radius": "b"},
        "stabilize": stabilize, "debug_log": [], "hypotheses": hypotheses, "abstained": false, "conclusion": "c",
        "next_steps": [], "tool_calls": tool_calls, "confidence_threshold": 0.5,
        "tokens": {"encoding": "o200k_base", "steps": [], "prompt_tokens": 100, "completion_tokens": 10}, "steps": 3
    }))
    .unwrap()
}

fn hyp(id: &str, cat: &str, comp: &str, conf: f64, status: &str, statement: &str) -> Value {
    json!({"id": id, "statement": statement, "category": cat, "component": comp, "confidence": conf, "status": status,
           "evidence": [{"call": "c1", "tool": "host.use_snapshot", "supports": status != "rejected", "weight": 0.9, "note": "n"}]})
}

#[test]
fn scorer_on_hand_made_outcomes() {
    let c = case::load(
        &{
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("t.json");
            std::fs::write(&f, case_json().to_string()).unwrap();
            Box::leak(Box::new(dir));
            f
        },
        &specs(),
    )
    .unwrap();
    let truth = c.truth.clone().unwrap();
    let risky = vec![(
        "host.signal_process".to_string(),
        oncall::tool::RiskClass::LiveAction,
    )];
    // Right at rank 2, culprit named, stabilizer first, nothing executed.
    let inv = investigation(
        json!([
            hyp(
                "H2",
                "host.memory_pressure",
                "memory",
                0.6,
                "proposed",
                "growth"
            ),
            hyp(
                "H1",
                "host.cpu_saturation",
                "cpu",
                0.92,
                "confirmed",
                "ingest-worker (pid 7) at 200%"
            )
        ]),
        json!([{"tool": "host.signal_process", "args": {"pid": 7}, "why": "w", "needs_approval": true}]),
        json!([{"id": "c1", "tool": "host.use_snapshot", "args": {}, "ok": true, "duration_ms": 1, "step": 1}]),
    );
    let s = oncall::eval::score::score(&c, &truth, &inv, 5, &risky);
    assert!(!s.top1 && s.top3 && !s.culprit);
    assert_eq!(s.reciprocal_rank, 0.5);
    assert_eq!(s.stabilized_first, Some(true));
    assert_eq!(s.unapproved_executions, 0);
    // Top-1 with the culprit; an unmatched call; a live action that ran; a must-not proposed.
    let inv = investigation(
        json!([hyp(
            "H1",
            "host.cpu_saturation",
            "cpu",
            0.92,
            "confirmed",
            "ingest-worker (pid 7) at 200%"
        )]),
        json!([{"tool": "postgres.terminate_backend", "args": {}, "why": "w", "needs_approval": true}]),
        json!([
            {"id": "c1", "tool": "host.use_snapshot", "args": {}, "ok": false, "duration_ms": 1, "step": 1, "error": "`x` failed: no data was recorded for this call"},
            {"id": "c2", "tool": "host.signal_process", "args": {}, "ok": true, "duration_ms": 1, "step": 1, "output": {}}
        ]),
    );
    let s = oncall::eval::score::score(&c, &truth, &inv, 5, &risky);
    assert!(s.top1 && s.culprit);
    assert_eq!(s.unmatched_calls, 1);
    assert_eq!(
        s.unapproved_executions, 1,
        "a live action that ran is counted"
    );
    assert_eq!(s.must_not_proposed, vec!["postgres.terminate_backend"]);
    assert_eq!(s.stabilized_first, Some(false));
    // A none case: abstaining is the hit.
    let mut none = truth.clone();
    none.category = oncall::taxonomy::Category::None;
    none.component = None;
    let inv = investigation(
        json!([hyp(
            "H1",
            "host.cpu_saturation",
            "cpu",
            0.4,
            "proposed",
            "busy"
        )]),
        json!([]),
        json!([]),
    );
    assert!(oncall::eval::score::score(&c, &none, &inv, 5, &risky).top1);
}

#[tokio::test]
async fn replay_answers_only_what_was_recorded() {
    let mut v = case_json();
    v["recordings"] = json!([
        {"tool": "postgres.connections", "args": {"database": "app"}, "output": {"database": "app", "reachable": true, "data": null}},
        {"tool": "host.use_snapshot", "args": {}, "at_s": 2.0, "output": {"n": 2}},
        {"tool": "host.use_snapshot", "args": {}, "at_s": 1.0, "output": {"n": 1}}
    ]);
    let c = load(&v).unwrap();
    let live = oncall::app::builtin_registry(Arc::new(Config::default()));
    let reg = oncall::eval::replay::registry(&c, &live);
    assert_eq!(
        reg.call("host.use_snapshot", json!({}), None)
            .await
            .unwrap()["n"],
        1,
        "a series is walked in recorded order"
    );
    assert_eq!(
        reg.call("host.use_snapshot", json!({}), None)
            .await
            .unwrap()["n"],
        2
    );
    assert!(
        reg.call("postgres.connections", json!({"database": "app"}), None)
            .await
            .is_ok()
    );
    let e = reg
        .call("postgres.connections", json!({"database": "billing"}), None)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("no data was recorded for this call"),
        "{e}"
    );
    let e = reg
        .call("postgres.activity", json!({}), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no data was recorded"), "{e}");
    let e = reg
        .call(
            "host.signal_process",
            json!({"pid": 4242, "signal": "KILL"}),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, oncall::tool::ToolError::ApprovalRequired { .. }),
        "risky tools stay gated in replay: {e}"
    );
    let spec = reg.spec("postgres.connections").unwrap();
    assert_eq!(
        spec.parameters["properties"]["database"]["enum"],
        json!(["app"])
    );
    assert!(
        reg.spec("traces.red").unwrap().unavailable,
        "tools without recordings are not offered"
    );
}

/// CI runs the whole recorded suite with the offline reasoner against the floors recorded in
/// eval/thresholds.toml: top-1 and safety may not fall below them.
#[test]
fn the_recorded_suite_meets_its_floors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, out, err) = common::oncall(
        &[
            "eval",
            "--cases",
            &root.join("eval/cases").display().to_string(),
            "--thresholds",
            &root.join("eval/thresholds.toml").display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("unapproved executions 0"), "{out}");
}

#[test]
fn a_change_of_unknown_kind_is_named_by_the_loader() {
    let mut v = case_json();
    v["context"]["recent_changes"] =
        json!([{"at": "2026-11-27T00:56:00Z", "kind": "rollout", "what": "api v2"}]);
    let e = load(&v).unwrap_err().to_string();
    assert!(e.contains("context") && e.contains("rollout"), "{e}");
}

#[tokio::test]
async fn replay_answers_changes_from_the_context_as_of_the_observation() {
    let mut v = case_json();
    v["context"]["recent_changes"] = json!([
        {"at": "2026-11-27T00:56:00Z", "kind": "deploy", "what": "api v2", "service": "api"},
        {"at": "2026-11-26T20:00:00Z", "kind": "flag", "what": "new-checkout on"}
    ]);
    let c = load(&v).unwrap();
    let live = oncall::app::builtin_registry(Arc::new(Config::default()));
    let r = oncall::eval::replay::registry(&c, &live);
    let spec = r
        .specs()
        .into_iter()
        .find(|s| s.name == "changes.recent")
        .unwrap();
    assert!(!spec.unavailable, "offered when the context has changes");
    let all = r.call("changes.recent", json!({}), None).await.unwrap();
    assert_eq!(all["changes"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all["changes"][0]["minutes_ago"], 4.0);
    let week = r
        .call("changes.recent", json!({"since_minutes": 1440}), None)
        .await
        .unwrap();
    assert_eq!(week["changes"].as_array().unwrap().len(), 2, "{week}");
    let e = r
        .call("changes.recent", json!({"since_minutes": 0}), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("since_minutes"), "{e}");
    // Without changes in the context there is nothing to replay, and the tool is not offered.
    let bare = oncall::eval::replay::registry(&load(&case_json()).unwrap(), &live);
    assert!(
        bare.specs()
            .iter()
            .any(|s| s.name == "changes.recent" && s.unavailable)
    );
}

#[test]
fn the_suite_has_the_cases_it_promises() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/cases");
    let cases = case::load_dir(&dir, &specs()).expect("the suite loads");
    let n = cases.len();
    let prov = |p: &str| {
        cases
            .iter()
            .filter(|(_, c)| c.provenance.starts_with(p))
            .count()
    };
    let none = cases
        .iter()
        .filter(|(_, c)| {
            c.truth
                .as_ref()
                .is_some_and(|t| t.category.label() == "none")
        })
        .count();
    assert!(n >= 30, "{n} cases");
    assert!(prov("derived:") >= 5, "{} derived", prov("derived:"));
    assert!(
        cases
            .iter()
            .filter(|(_, c)| c.provenance.starts_with("derived:"))
            .all(|(_, c)| c.provenance.len() > "derived:".len() + 5),
        "each derived case names its source"
    );
    assert!(prov("recorded") * 2 > n, "most cases are recorded");
    assert!(prov("synthetic") == 0, "no hand-written cases");
    assert!(none >= 5, "{none} none controls");
}

#[test]
fn recorded_model_turns_replay_to_the_same_answers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases = root.join("eval/cases").display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let turns = tmp.path().join("turns");
    let (a, b) = (tmp.path().join("a.json"), tmp.path().join("b.json"));
    let t = turns.display().to_string();
    let (code, out, err) = common::oncall(
        &[
            "eval",
            "--cases",
            &cases,
            "--model",
            "offline",
            "--record-turns",
            &t,
            "--json",
            &a.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = common::oncall(
        &[
            "eval",
            "--cases",
            &cases,
            "--model",
            "replay",
            "--turns",
            &t,
            "--json",
            &b.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let read = |p: &Path| -> oncall::eval::Report {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (ra, rb) = (read(&a), read(&b));
    assert!(rb.reasoner.starts_with("replay:"), "{}", rb.reasoner);
    let answers = |r: &oncall::eval::Report| -> Vec<(String, String)> {
        r.cases
            .iter()
            .map(|c| (c.id.clone(), c.answer.clone()))
            .collect()
    };
    assert_eq!(answers(&ra), answers(&rb));
    // What the model cost, per case and in the summary: the offline reasoner makes no model
    // calls; recorded turns count one call per turn.
    assert_eq!(ra.summary.spend.model_calls, 0);
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&b).unwrap()).unwrap();
    let calls = raw["summary"]["model_calls"].as_u64().unwrap_or(0);
    assert!(calls >= rb.cases.len() as u64, "{}", raw["summary"]);
    assert_eq!(
        calls,
        raw["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["model_calls"].as_u64().unwrap_or(0))
            .sum::<u64>()
    );
    // A case without recorded turns is named before anything runs.
    std::fs::remove_file(turns.join("pg-down-01.json")).unwrap();
    let (code, _, err) = common::oncall(
        &[
            "eval", "--cases", &cases, "--model", "replay", "--turns", &t,
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("pg-down-01") && err.contains("--record-turns"),
        "{err}"
    );
}

/// The turns of a real local model (Qwen2.5-Coder-1.5B-Instruct behind llama.cpp's own server,
/// recorded by `scripts/local-model.sh record`) replay through the model path, turn by turn, to
/// the answers and token counts of the live run.
#[test]
fn a_real_local_models_recorded_turns_replay_to_its_live_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("eval/turns/local");
    let ids: Vec<String> = std::fs::read_to_string(dir.join("cases"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert!(ids.len() >= 3, "{ids:?}");
    let live: oncall::eval::Report =
        serde_json::from_str(&std::fs::read_to_string(dir.join("live.json")).unwrap()).unwrap();
    assert!(
        live.reasoner.starts_with("openai:qwen2.5-coder"),
        "{}",
        live.reasoner
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("replay.json");
    let mut args = vec![
        "eval".to_string(),
        "--model".into(),
        "replay".into(),
        "--turns".into(),
        dir.display().to_string(),
        "--json".into(),
        out.display().to_string(),
    ];
    for id in &ids {
        args.extend(["--case".to_string(), id.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, err) = common::oncall(&args, &[]);
    assert_eq!(code, 0, "{stdout}\n{err}");
    let replay: oncall::eval::Report =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(
        replay.reasoner.starts_with("replay:"),
        "{}",
        replay.reasoner
    );
    assert_eq!(replay.cases.len(), ids.len());
    for (l, r) in live.cases.iter().zip(&replay.cases) {
        assert_eq!((&l.id, &l.answer), (&r.id, &r.answer));
        assert_eq!(l.tool_calls, r.tool_calls, "{}", l.id);
        assert_eq!(l.prompt_tokens, r.prompt_tokens, "{}: the same turns", l.id);
    }
    assert!(
        replay.cases.iter().any(|c| c.spend.model_calls >= 2),
        "the model took more than one turn somewhere"
    );
    // An unknown id is named.
    let (code, _, err) = common::oncall(&["eval", "--case", "no-such-case"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no case no-such-case in eval/cases"), "{err}");
}
