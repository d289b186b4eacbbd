//! Post-mortem drafts from a recorded incident (`tests/fixtures/incident-cpu-hog.json`: the
//! event log `oncall serve` wrote for real CPU saturation on this machine, a busy-loop hog plus a
//! compile running beside it; the approved `host.signal_process` stopped the top process, which
//! was the compiler, and the hog kept the CPU busy, as the measured effect says), checked field
//! by field; the blameless check on planted blame; and the
//! model's prose checked claim by claim against the log.
//!
//! TEST DOUBLES: `Scripted` is a ChatModel that answers with a fixed text, and `chat_double` a
//! local OpenAI-compatible HTTP endpoint; no paid model can run here.

mod common;

use async_trait::async_trait;
use oncall::agent::prompts::Prompts;
use oncall::incidents::{Event, EventKind, Incident};
use oncall::llm::{ChatModel, ChatReply, ChatRequest, LlmError};
use oncall::postmortem::{self, Fact, blameless, prose};
use serde_json::{Value, json};

fn recorded() -> (Incident, Vec<Event>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/incident-cpu-hog.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture"))
        .expect("fixture is JSON");
    (
        serde_json::from_value(v["incident"].clone()).expect("incident"),
        serde_json::from_value(v["events"].clone()).expect("events"),
    )
}

fn seq_of(events: &[Event], kind: &str) -> i64 {
    events
        .iter()
        .find(|e| e.kind == EventKind::parse(kind))
        .unwrap_or_else(|| panic!("no {kind} in the fixture"))
        .seq
}

#[test]
fn the_draft_of_a_recorded_incident_is_its_log_section_by_section() {
    let (inc, events) = recorded();
    let f = postmortem::facts(&inc, &events);
    let finished = events
        .iter()
        .find(|e| e.kind == EventKind::InvestigationFinished)
        .unwrap();
    let (rseq, report) = (finished.seq, &events[0]);
    // Summary: the round's conclusion, citing the round.
    assert_eq!(f.summary.len(), 1);
    assert_eq!(
        f.summary[0].text,
        finished.data["conclusion"].as_str().unwrap()
    );
    assert_eq!(f.summary[0].cites, vec![rseq]);
    // Impact: duration from the first to the last event; severity and user impact from triage.
    assert_eq!(f.impact[0].cites, vec![1, events.last().unwrap().seq]);
    let sev = finished.data["triage"]["severity"].as_str().unwrap();
    assert!(
        f.impact[1].text.starts_with(&format!("Severity: {sev} (")),
        "{:?}",
        f.impact[1]
    );
    assert_eq!(f.impact[2].text, "User-facing: yes.");
    // Detection: the report, verbatim, citing event 1.
    assert_eq!(f.detection[0].cites, vec![report.seq]);
    assert!(
        f.detection[0]
            .text
            .contains(report.data["text"].as_str().unwrap())
    );
    // Root cause: the confirmed hypothesis with its category, component and cited evidence.
    let h = finished.data["hypotheses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["status"] == "confirmed")
        .unwrap();
    assert_eq!(f.root_cause.len(), 1);
    let rc = &f.root_cause[0];
    assert!(
        rc.text.starts_with(&format!(
            "{} `host.cpu_saturation` on cpu: ",
            h["id"].as_str().unwrap()
        )),
        "{rc:?}"
    );
    assert!(rc.text.contains("confidence 0.92"), "{rc:?}");
    for e in h["evidence"].as_array().unwrap() {
        assert!(
            rc.text.contains(e["note"].as_str().unwrap()),
            "evidence {e} in {rc:?}"
        );
        assert!(
            rc.text
                .contains(&format!("{} ", e["call"].as_str().unwrap()))
        );
    }
    assert_eq!(rc.cites, vec![rseq]);
    // Ruled out: every rejected hypothesis, none of the others.
    let rejected = finished.data["hypotheses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["status"] == "rejected")
        .count();
    assert_eq!(f.ruled_out.len(), rejected);
    // Resolution: the request, its approval, execution and measured effect, in that order.
    assert_eq!(f.resolution.len(), 1);
    assert_eq!(
        f.resolution[0].cites,
        vec![
            seq_of(&events, "action_requested"),
            seq_of(&events, "action_approved"),
            seq_of(&events, "action_executed"),
            seq_of(&events, "action_verified"),
        ]
    );
    assert!(
        f.resolution[0]
            .text
            .starts_with("host.signal_process {\"pid\":")
    );
    assert!(
        f.resolution[0]
            .text
            .contains(": approved; executed; effect: abnormal signals: ")
    );
    // Timeline: events in order, each citing one event, with its time.
    let cites: Vec<i64> = f.timeline.iter().map(|t| t.cites[0]).collect();
    assert!(cites.windows(2).all(|w| w[0] < w[1]), "{cites:?}");
    assert_eq!(cites.first(), Some(&1));
    for t in &f.timeline {
        let e = events.iter().find(|e| e.seq == t.cites[0]).unwrap();
        assert!(
            t.text
                .starts_with(&e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        );
    }
    for kind in [
        "report",
        "investigation_finished",
        "action_requested",
        "action_executed",
        "action_verified",
    ] {
        assert!(
            cites.contains(&seq_of(&events, kind)),
            "{kind} in the timeline"
        );
    }
    // Action items are owned by roles.
    assert!(
        f.action_items
            .iter()
            .all(|a| ["service owner", "incident commander"].contains(&a.owner.as_str()))
    );
    // The rendered draft: every section, in order, and blameless.
    let md = postmortem::render(&Prompts::builtin(), &f).unwrap();
    common::postmortem_sections(&md);
    assert!(md.contains(&format!("{} (#{rseq})", f.summary[0].text)));
    assert_eq!(
        blameless::check(&md),
        vec![],
        "oncall's own draft is blameless:\n{md}"
    );
    assert_eq!(md, postmortem::draft(&inc, &events), "deterministic");
}

#[test]
fn the_blameless_check_flags_planted_blame_with_line_and_rewrite() {
    let (inc, events) = recorded();
    let mut md = postmortem::draft(&inc, &events);
    let clean_lines = md.lines().count();
    md.push_str("\nThe outage was caused by human error.\nDave deployed the bad build.\nThe on-call engineer should have checked the CPU graph.\n");
    let found = blameless::check(&md);
    let lines: Vec<usize> = found.iter().map(|f| f.line).collect();
    assert_eq!(
        lines,
        vec![clean_lines + 2, clean_lines + 3, clean_lines + 4],
        "{found:?}"
    );
    assert!(found.iter().all(|f| !f.suggestion.is_empty()));
    assert!(found[1].phrase.contains("Dave"));
}

/// A ChatModel that answers every request with `text` (or fails).
struct Scripted(Result<String, String>);

#[async_trait]
impl ChatModel for Scripted {
    fn name(&self) -> String {
        "scripted-test-double".into()
    }
    async fn complete(&self, _req: &ChatRequest) -> Result<ChatReply, LlmError> {
        match &self.0 {
            Ok(t) => Ok(ChatReply {
                content: Some(t.clone()),
                ..Default::default()
            }),
            Err(_) => Err(LlmError::Timeout(30)),
        }
    }
}

#[tokio::test]
async fn the_model_writes_prose_but_only_claims_the_log_backs_survive() {
    let (inc, events) = recorded();
    let facts = postmortem::facts(&inc, &events);
    let (req, exec, ver) = (
        seq_of(&events, "action_requested"),
        seq_of(&events, "action_executed"),
        seq_of(&events, "action_verified"),
    );
    let rseq = seq_of(&events, "investigation_finished");
    let reply = json!({
        "summary": [
            {"text": "The host's CPU was saturated and oncall confirmed it with a measurement.", "cites": [rseq]},
            {"text": "Latency fell by 40 percent after the fix.", "cites": [ver]},
            {"text": "Everything recovered.", "cites": [9999]}
        ],
        "went_well": [
            {"text": "An approver reviewed the exact signal before it was sent.", "cites": [req, exec]},
            {"text": "It was approved quickly.", "cites": []}
        ],
        "went_badly": [
            {"text": "The engineer on call should have caught the hog earlier.", "cites": [rseq]}
        ],
        "lessons": [
            {"text": "Measuring the effect after the action showed whether it worked.", "cites": [ver]}
        ]
    });
    let out = prose::write(
        &Scripted(Ok(format!("```json\n{reply}\n```"))),
        &Prompts::builtin(),
        facts.clone(),
    )
    .await;
    assert_eq!(
        out.summary,
        vec![Fact {
            text: "The host's CPU was saturated and oncall confirmed it with a measurement.".into(),
            cites: vec![rseq]
        }]
    );
    assert_eq!(out.went_well[0].cites, vec![req, exec]);
    assert_eq!(
        out.went_badly, facts.went_badly,
        "a blaming claim is dropped; the facts stand"
    );
    assert_eq!(out.lessons[0].cites, vec![ver]);
    assert!(
        out.notes[0].starts_with("4 claim(s) of the model were left out"),
        "{:?}",
        out.notes
    );
    let notes = out.dropped.join("\n");
    for why in ["number 40", "event 9999", "cites no event", "not blameless"] {
        assert!(notes.contains(why), "{why} in {notes}");
    }
    assert!(out.written_by.contains("scripted-test-double"));
    let md = postmortem::render(&Prompts::builtin(), &out).unwrap();
    assert_eq!(blameless::check(&md), vec![], "{md}");
    assert!(md.contains(&format!("measurement. (#{rseq})")));

    // A model that fails, or answers something else: the facts-only draft, saying why.
    for model in [
        Scripted(Err("timed out after 30 s".into())),
        Scripted(Ok("I think it was the CPU.".into())),
    ] {
        let out = prose::write(&model, &Prompts::builtin(), facts.clone()).await;
        assert_eq!(out.summary, facts.summary);
        assert!(out.written_by.contains("facts only"));
        assert!(out.notes[0].contains("facts only"), "{:?}", out.notes);
    }
}

/// A local OpenAI-compatible chat endpoint answering with `content` (a test double).
async fn chat_double(content: String) -> String {
    use axum::{Json, Router, routing::post};
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| {
            let content = content.clone();
            async move {
                // The facts reach the model as data, with their event numbers.
                let prompt = body["messages"][1]["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                assert!(
                    prompt.contains("<facts>") && prompt.contains("- events 1: "),
                    "{prompt}"
                );
                Json(json!({
                    "id": "x", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                }))
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}/v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_compatible_endpoint_writes_the_prose() {
    let (inc, events) = recorded();
    let rseq = seq_of(&events, "investigation_finished");
    let base = chat_double(
        json!({"summary": [{"text": "The CPU of the host was saturated.", "cites": [rseq]}]})
            .to_string(),
    )
    .await;
    let mut cfg = oncall::config::Config::default();
    cfg.llm.provider = oncall::config::Provider::Openai;
    cfg.llm.base_url = base;
    cfg.llm.model = "double".into();
    let model = oncall::app::model(&cfg).expect("model");
    let out = prose::write(
        model.as_ref(),
        &Prompts::builtin(),
        postmortem::facts(&inc, &events),
    )
    .await;
    assert_eq!(out.summary[0].text, "The CPU of the host was saturated.");
    assert!(
        out.notes.is_empty() && out.dropped.is_empty(),
        "{:?}",
        out.dropped
    );
}
