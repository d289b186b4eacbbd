//! The agent loop against an OpenAI-compatible endpoint.
//!
//! TEST DOUBLE: `ScriptedLlm` (tests/common/llm.rs) is a scripted OpenAI-compatible HTTP server inside the test
//! (a paid model cannot run here). It answers `POST /v1/chat/completions` with the next scripted
//! reply (or status, or delay) and records every request, so the tests can check what the loop
//! sent: tool errors, withdrawn tools, fenced outputs. The tools the loop calls are real
//! (host.use_snapshot samples this machine; host.signal_process targets a real child process).

mod common;

use common::llm::{Scripted, ScriptedLlm, text_turn, tool_turn};
use oncall::agent::Investigation;
use oncall::agent::events::Collect;
use oncall::config::Config;
use oncall::llm::openai::OpenAiModel;
use oncall::reasoner::investigate;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn config(base_url: &str) -> Config {
    common::llm::model_config(base_url)
}

async fn run(llm: &ScriptedLlm, c: Config, report: &str) -> (Investigation, Vec<String>) {
    let model = OpenAiModel::new(&c.llm).unwrap();
    let registry = oncall::app::builtin_registry(Arc::new(c.clone()));
    let events = Collect::default();
    let inv = investigate(report, &registry, &c, &model, &events)
        .await
        .unwrap();
    let lines = events
        .0
        .lock()
        .unwrap()
        .iter()
        .map(oncall::agent::events::line)
        .collect();
    let _ = llm;
    (inv, lines)
}

#[tokio::test]
async fn tool_calls_over_several_steps_end_in_a_board_ranking() {
    let llm = ScriptedLlm::start(vec![
        Scripted::Reply(tool_turn(&[("host.use_snapshot", "{}")])),
        Scripted::Reply(tool_turn(&[("board.propose", r#"{"statement": "CPU saturated", "category": "host.cpu_saturation", "component": "cpu"}"#)])),
        Scripted::Reply(tool_turn(&[("board.evidence", r#"{"hypothesis": "H1", "call": "c1", "supports": false, "strength": "strong", "note": "run queue 0.4/core"}"#)])),
        Scripted::Reply(tool_turn(&[("board.conclude", r#"{"summary": "nothing wrong", "abstain": true}"#)])),
    ])
    .await;
    let (inv, events) = run(&llm, config(&llm.base_url), "api is slow").await;
    assert_eq!(inv.reasoner, "openai:scripted");
    assert!(inv.fallback.is_none(), "{:?}", inv.notices);
    assert_eq!(
        inv.hypotheses[0].status,
        oncall::agent::board::HypothesisStatus::Rejected
    );
    assert_eq!(inv.hypotheses[0].evidence[0].call, "c1");
    assert!(inv.abstained);
    assert_eq!(inv.steps, 4);
    assert_eq!(
        inv.tokens.prompt_tokens, 4000,
        "server-reported usage is believed"
    );
    assert_eq!(inv.tokens.steps.len(), 4);
    // The snapshot reached the model fenced as data, and the tools were offered with schemas.
    let first_tool_msg = &llm.tool_messages(1)[0];
    assert!(
        first_tool_msg
            .starts_with("<tool_output call=\"c1\" tool=\"host.use_snapshot\" status=\"ok\">"),
        "{first_tool_msg}"
    );
    let offered = llm.requests()[0]["tools"].as_array().unwrap().clone();
    assert!(
        offered
            .iter()
            .any(|t| t["function"]["name"] == "host__use_snapshot"
                && t["function"]["parameters"]["properties"]["window_ms"].is_object())
    );
    assert!(
        offered
            .iter()
            .any(|t| t["function"]["name"] == "board__evidence")
    );
    assert!(
        events.iter().any(|l| l.starts_with("[H1] rejected")),
        "{events:?}"
    );
    assert!(events.iter().any(|l| l.starts_with("[step 1]")));
}

#[tokio::test]
async fn parallel_calls_run_in_one_step() {
    let llm = ScriptedLlm::start(vec![
        Scripted::Reply(tool_turn(&[
            ("host.use_snapshot", "{}"),
            ("host.use_snapshot", r#"{"top": 2}"#),
        ])),
        Scripted::Reply(text_turn("both measured")),
    ])
    .await;
    let (inv, _) = run(&llm, config(&llm.base_url), "is this host ok").await;
    let calls: Vec<_> = inv
        .tool_calls
        .iter()
        .filter(|c| c.tool == "host.use_snapshot")
        .collect();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.ok && c.step == 1));
    assert_eq!(llm.tool_messages(1).len(), 2);
    assert_eq!(inv.answer.as_deref(), Some("both measured"));
}

#[tokio::test]
async fn bad_json_unknown_tool_bad_args_and_repeats_go_back_as_tool_errors() {
    let llm = ScriptedLlm::start(vec![
        Scripted::Reply(tool_turn(&[
            ("host.use_snapshot", "{\"window_ms\": "),
            ("host.reboot", "{}"),
            ("host.use_snapshot", r#"{"window_ms": 99999}"#),
            (
                "board.propose",
                r#"{"statement": "x", "category": "db.slowness", "component": "pg"}"#,
            ),
        ])),
        Scripted::Reply(tool_turn(&[("host.use_snapshot", "{}")])),
        Scripted::Reply(tool_turn(&[("host.use_snapshot", "{}")])),
        Scripted::Reply(text_turn("done")),
    ])
    .await;
    let (inv, _) = run(&llm, config(&llm.base_url), "slow").await;
    let errors = llm.tool_messages(1);
    assert!(
        errors[0].contains("status=\"error\"") && errors[0].contains("not valid JSON"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("unknown tool `host.reboot`") && errors[1].contains("host.use_snapshot"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].contains("window_ms must be between 100 and 1000"),
        "{}",
        errors[2]
    );
    assert!(errors[3].contains("db.slowness"), "{}", errors[3]);
    let repeat = llm.tool_messages(3).last().unwrap().clone();
    assert!(
        repeat.contains("identical call already made as c5"),
        "{repeat}"
    );
    assert_eq!(
        inv.answer.as_deref(),
        Some("done"),
        "the run carried on after every error"
    );
}

#[tokio::test]
async fn truncated_call_is_explained() {
    let mut cut = tool_turn(&[("host.use_snapshot", "{\"wind")]);
    cut["choices"][0]["finish_reason"] = json!("length");
    let llm =
        ScriptedLlm::start(vec![Scripted::Reply(cut), Scripted::Reply(text_turn("ok"))]).await;
    let _ = run(&llm, config(&llm.base_url), "slow").await;
    assert!(llm.tool_messages(1)[0].contains("cut off at the token limit"));
    // The cut-off call goes back in the history as valid JSON: real servers (llama.cpp) parse
    // every call in the history and refuse the whole request otherwise.
    let history = &llm.requests()[1]["messages"];
    let echoed = history
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap();
    assert_eq!(echoed["tool_calls"][0]["function"]["arguments"], "{}");
}

#[tokio::test]
async fn rate_limit_then_success() {
    let llm = ScriptedLlm::start(vec![
        Scripted::Status(
            429,
            json!({"error": {"message": "slow down", "type": "rate_limit_error"}}),
        ),
        Scripted::Reply(text_turn("fine")),
    ])
    .await;
    let (inv, _) = run(&llm, config(&llm.base_url), "slow").await;
    assert!(inv.fallback.is_none(), "{:?}", inv.notices);
    assert_eq!(inv.answer.as_deref(), Some("fine"));
    assert_eq!(llm.requests().len(), 2);
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let llm = ScriptedLlm::start(vec![
        Scripted::Delay(Duration::from_secs(4), text_turn("too late")),
        Scripted::Reply(text_turn("in time")),
    ])
    .await;
    let (inv, _) = run(&llm, config(&llm.base_url), "slow").await;
    assert_eq!(inv.answer.as_deref(), Some("in time"));
    assert!(
        inv.notices
            .iter()
            .any(|n| n.contains("did not answer within 2 s")),
        "{:?}",
        inv.notices
    );
    assert!(inv.fallback.is_none());
}

#[tokio::test]
async fn malformed_reply_is_retried() {
    let llm = ScriptedLlm::start(vec![
        Scripted::Reply(json!({"unexpected": true})),
        Scripted::Reply(text_turn("ok")),
    ])
    .await;
    let (inv, _) = run(&llm, config(&llm.base_url), "slow").await;
    assert_eq!(inv.answer.as_deref(), Some("ok"));
    assert!(
        inv.notices.iter().any(|n| n.contains("malformed")),
        "{:?}",
        inv.notices
    );
}

#[tokio::test]
async fn a_500_storm_falls_back_to_the_offline_reasoner_and_says_so() {
    let llm = ScriptedLlm::start(vec![]).await;
    *llm.script.forever.lock().unwrap() = Some(500);
    let (inv, events) = run(&llm, config(&llm.base_url), "api is slow").await;
    // One retry policy: max_attempts (3) HTTP calls, not the client's retries times the loop's.
    assert_eq!(llm.requests().len(), 3, "HTTP calls to a failing endpoint");
    let fb = inv.fallback.clone().expect("fallback");
    assert!(
        fb.contains("HTTP 500") && fb.contains("offline reasoner"),
        "{fb}"
    );
    assert!(inv.reasoner.starts_with("offline"), "{}", inv.reasoner);
    assert_eq!(
        inv.hypotheses.len(),
        6,
        "the offline reasoner finished the job"
    );
    assert!(inv.hypotheses.iter().all(|h| !h.evidence.is_empty()));
    assert!(oncall::agent::render::text(&inv).contains("NOTE: the model endpoint failed"));
    assert!(
        events
            .iter()
            .any(|l| l.contains("[note] the model endpoint failed"))
    );
}

#[tokio::test]
async fn confirming_without_citing_evidence_is_refused() {
    let llm = ScriptedLlm::start(vec![
        Scripted::Reply(tool_turn(&[("board.propose", r#"{"statement": "Postgres is slow", "category": "db.slow_query", "component": "postgres"}"#)])),
        Scripted::Reply(tool_turn(&[("board.evidence", r#"{"hypothesis": "H1", "call": "c9", "supports": true, "strength": "strong", "note": "I am sure"}"#)])),
        Scripted::Reply(tool_turn(&[("board.evidence", r#"{"hypothesis": "H1", "call": "c1", "supports": true, "strength": "strong", "note": "citing the proposal itself"}"#)])),
        Scripted::Reply(tool_turn(&[("board.conclude", r#"{"summary": "Postgres is definitely the cause"}"#)])),
    ])
    .await;
    let (inv, _) = run(&llm, config(&llm.base_url), "checkout slow").await;
    let h = &inv.hypotheses[0];
    assert_eq!(h.status, oncall::agent::board::HypothesisStatus::Proposed);
    assert_eq!(
        h.confidence, 0.2,
        "confidence did not move without evidence"
    );
    assert!(inv.abstained, "free text does not make a finding");
    assert!(
        llm.tool_messages(2)
            .last()
            .unwrap()
            .contains("c9 does not exist")
    );
    assert!(
        llm.tool_messages(3)
            .last()
            .unwrap()
            .contains("not a measurement of the present")
    );
}

#[tokio::test]
async fn step_limit_withdraws_the_tools() {
    let llm = ScriptedLlm::start(vec![
        Scripted::Reply(tool_turn(&[("host.use_snapshot", "{}")])),
        Scripted::Reply(tool_turn(&[("host.use_snapshot", r#"{"top": 3}"#)])),
        Scripted::Reply(tool_turn(&[("host.use_snapshot", r#"{"top": 4}"#)])),
    ])
    .await;
    let mut c = config(&llm.base_url);
    c.llm.max_steps = 2;
    let (inv, _) = run(&llm, c, "slow").await;
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[1]["tools"].is_array());
    assert!(
        reqs[2].get("tools").is_none(),
        "tools withdrawn on the last turn"
    );
    let last_user = reqs[2]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .unwrap();
    assert!(
        last_user["content"]
            .as_str()
            .unwrap()
            .contains("step limit")
    );
    assert!(
        inv.notices
            .iter()
            .any(|n| n.contains("after they were withdrawn")),
        "{:?}",
        inv.notices
    );
    assert_eq!(
        inv.tool_calls
            .iter()
            .filter(|c| c.tool == "host.use_snapshot")
            .count(),
        2
    );
}

#[tokio::test]
async fn a_live_action_from_the_model_is_filed_not_run() {
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let args = format!(r#"{{"pid": {}, "signal": "KILL"}}"#, child.id());
    let llm = ScriptedLlm::start(vec![
        Scripted::Reply(tool_turn(&[("host.signal_process", &args)])),
        Scripted::Reply(text_turn("requested")),
    ])
    .await;
    let (inv, _) = run(&llm, config(&llm.base_url), "checkout is down for everyone").await;
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process must still be alive"
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(llm.tool_messages(1)[0].contains("not run"));
    assert!(
        inv.stabilize
            .iter()
            .any(|a| a.tool == "host.signal_process" && a.needs_approval)
    );
    assert!(
        inv.debug_log
            .iter()
            .any(|l| l.text.contains("awaiting a human approver (not run)"))
    );
}

#[tokio::test]
async fn secrets_in_the_report_and_in_tool_output_never_reach_the_model() {
    // A real process whose name is an e-mail address shows up in the snapshot's list of growing
    // processes (kept in compact evidence).
    let mut hog = std::process::Command::new(env!("CARGO_BIN_EXE_oncall-fault"))
        .args([
            "--name",
            "ops@corp.io",
            "--seconds",
            "20",
            "memory",
            "--rate-mib-per-s",
            "800",
            "--max-mib",
            "3000",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let llm = ScriptedLlm::start(vec![
        Scripted::Reply(tool_turn(&[("host.use_snapshot", "{}")])),
        Scripted::Reply(text_turn("ok")),
    ])
    .await;
    let report = "checkout slow; db is postgres://app:hunter22secret@db.internal/shop, token=tok_abcdef123456";
    let (inv, _) = run(&llm, config(&llm.base_url), report).await;
    let _ = hog.kill();
    let _ = hog.wait();
    let snapshot = inv.tool_calls[0].output.as_ref().unwrap().to_string();
    assert!(
        snapshot.contains("ops@corp.io"),
        "the raw output (kept for the responder) names the process"
    );
    let sent = serde_json::to_string(&llm.requests()).unwrap();
    for secret in ["hunter22secret", "tok_abcdef123456", "ops@corp.io"] {
        assert!(!sent.contains(secret), "{secret} reached the model");
    }
    assert!(sent.contains("[REDACTED:password]") && sent.contains("[REDACTED:email]"));
}

#[tokio::test]
async fn a_storm_after_a_good_step_keeps_one_step_count_and_does_not_multiply_retries() {
    let llm = ScriptedLlm::start(vec![Scripted::Reply(tool_turn(&[(
        "host.use_snapshot",
        "{}",
    )]))])
    .await;
    *llm.script.forever.lock().unwrap() = Some(503);
    let (inv, _) = run(&llm, config(&llm.base_url), "api is slow").await;
    assert!(inv.fallback.is_some());
    // 1 good request, then one failing step: max_attempts (3) calls, one retry policy.
    assert_eq!(
        llm.requests().len(),
        1 + 3,
        "retries are the loop's alone: max_attempts HTTP calls for the failing step"
    );
    let steps: Vec<u32> = inv.tokens.steps.iter().map(|s| s.step).collect();
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "step numbers continue across the fallback: {steps:?}"
    );
    assert_eq!(inv.steps as usize, steps.len());
    assert_eq!(
        inv.tokens.steps[0].counted_by,
        oncall::llm::tokens::CountedBy::Server
    );
    assert_eq!(inv.tool_calls[0].step, 1);
    assert!(inv.tool_calls.iter().skip(1).all(|c| c.step > 1));
}

#[tokio::test]
async fn tool_call_markup_in_the_final_answer_is_not_the_answer() {
    let llm = ScriptedLlm::start(vec![
        Scripted::Reply(tool_turn(&[("host.use_snapshot", "{}")])),
        Scripted::Reply(text_turn(
            "<tool_call>{\"name\": \"host__use_snapshot\", \"arguments\": {}}</tool_call>",
        )),
    ])
    .await;
    let mut c = config(&llm.base_url);
    c.llm.max_steps = 1;
    let (inv, _) = run(&llm, c, "slow").await;
    assert_eq!(inv.answer, None);
    assert!(
        inv.notices.iter().any(|n| n.contains("tool-call markup")),
        "{:?}",
        inv.notices
    );
}

#[tokio::test]
async fn a_retry_after_is_waited_out_and_one_past_the_deadline_falls_back_at_once() {
    let slow_down = json!({"error": {"message": "slow down", "type": "rate_limit_error"}});
    let llm = ScriptedLlm::start(vec![
        Scripted::StatusAfter(429, "1", slow_down),
        Scripted::Reply(text_turn("fine")),
    ])
    .await;
    let (inv, _) = run(&llm, config(&llm.base_url), "slow").await;
    assert_eq!(inv.answer.as_deref(), Some("fine"), "{:?}", inv.notices);
    let at = llm.script.at.lock().unwrap().clone();
    assert_eq!(at.len(), 2);
    assert!(
        at[1] - at[0] >= Duration::from_secs(1),
        "retried {:?} after a Retry-After of 1 s",
        at[1] - at[0]
    );
    assert!(
        inv.notices.iter().any(|n| n.contains("asked to wait 1 s")),
        "{:?}",
        inv.notices
    );
    assert_eq!((inv.tokens.model_calls, inv.tokens.failed_calls), (2, 1));

    // Asked to wait two minutes with a 20 s deadline: one call, then the offline reasoner.
    let overloaded = json!({"error": {"message": "overloaded", "type": "server_error"}});
    let llm = ScriptedLlm::start(vec![Scripted::StatusAfter(503, "120", overloaded)]).await;
    let started = std::time::Instant::now();
    let (inv, _) = run(&llm, config(&llm.base_url), "api is slow").await;
    assert_eq!(llm.requests().len(), 1, "no attempt inside the asked wait");
    let fb = inv.fallback.expect("fell back");
    assert!(fb.contains("HTTP 503, asked to wait 120 s"), "{fb}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn the_models_time_for_an_investigation_is_bounded_then_the_offline_reasoner_finishes() {
    let slow = |v| Scripted::Delay(Duration::from_millis(1200), v);
    let llm = ScriptedLlm::start(vec![
        slow(tool_turn(&[("host.use_snapshot", "{}")])),
        slow(tool_turn(&[("host.use_snapshot", r#"{"top": 3}"#)])),
        slow(text_turn("too late")),
    ])
    .await;
    let mut c = config(&llm.base_url);
    c.llm.investigation_deadline_s = 2;
    let (inv, events) = run(&llm, c, "api is slow").await;
    let fb = inv.fallback.clone().expect("fell back");
    assert!(
        fb.contains("(2 s, llm.investigation_deadline_s) ran out after")
            && fb.contains("offline reasoner"),
        "{fb}"
    );
    assert!(inv.reasoner.starts_with("offline"), "{}", inv.reasoner);
    assert!(!inv.hypotheses.is_empty(), "the offline reasoner finished");
    assert!(
        llm.requests().len() <= 2,
        "{} model calls",
        llm.requests().len()
    );
    assert!(events.iter().any(|l| l.contains("ran out after")));
    assert!(inv.tokens.model_calls >= 1 && inv.tokens.model_ms >= 1000);
}

/// TEST DOUBLE: the scripted endpoint stands in for a paid model; the server, its store, its
/// event log and /metrics are the real ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_round_records_its_calls_tokens_cache_hits_time_and_cost() {
    use common::server::{OPERATOR, start, wait_for};
    let mut cached = tool_turn(&[("host.use_snapshot", "{}")]);
    cached["usage"]["prompt_tokens_details"] = json!({"cached_tokens": 800});
    let llm = ScriptedLlm::start(vec![
        Scripted::Status(429, json!({"error": {"message": "slow down"}})),
        Scripted::Reply(cached),
        Scripted::Reply(text_turn("Nothing wrong here.")),
    ])
    .await;
    let mut c = config(&llm.base_url);
    c.llm.stream = true;
    c.llm.price_prompt_per_mtok = 2.0;
    c.llm.price_completion_per_mtok = 8.0;
    c.llm.price_cached_prompt_per_mtok = 1.0;
    let srv = start(c).await;
    let id = srv.open_incident(OPERATOR, "the api is slow").await;
    let events = wait_for(
        &srv,
        OPERATOR,
        &id,
        Duration::from_secs(60),
        "the round's end",
        |e| e.iter().any(|x| x["kind"] == "investigation_finished"),
    )
    .await;
    let done = &events
        .iter()
        .find(|x| x["kind"] == "investigation_finished")
        .unwrap()["data"];
    let t = &done["tokens"];
    assert_eq!(t["model_calls"], 3, "{t}");
    assert_eq!(t["failed_calls"], 1, "{t}");
    assert_eq!(t["prompt_tokens"], 2200, "{t}");
    assert_eq!(t["completion_tokens"], 50, "{t}");
    assert_eq!(t["cached_prompt_tokens"], 800, "{t}");
    // 1400 prompt at 2 $/M, 800 cached at 1 $/M, 50 completion at 8 $/M.
    let usd = t["cost_usd"].as_f64().unwrap_or(0.0);
    assert!((usd - (0.0028 + 0.0008 + 0.0004)).abs() < 1e-9, "{t}");
    assert!(t["wall_ms"].as_u64().unwrap() >= t["model_ms"].as_u64().unwrap());
    let spend = done["spend"].as_str().unwrap();
    assert!(
        spend.starts_with(
            "2,200 prompt + 50 completion tokens (800 cached), 3 model call(s) (1 failed) taking "
        ) && spend.contains(", $0.0040, "),
        "{spend}"
    );
    // Streamed: the final answer's text is in the log as the model wrote it.
    let streamed: Vec<&str> = events
        .iter()
        .filter(|x| x["kind"] == "model_text")
        .filter_map(|x| x["data"]["text"].as_str())
        .collect();
    assert_eq!(streamed.concat(), "Nothing wrong here.");
    let step = events.iter().find(|x| x["kind"] == "model_step").unwrap();
    assert_eq!(
        step["data"]["calls"], 2,
        "the first step took a 429 and a reply"
    );
    assert_eq!(step["data"]["cached_tokens"], 800);
    let m = srv.metrics(OPERATOR).await;
    for line in [
        "oncall_llm_calls_total{outcome=\"ok\"} 2",
        "oncall_llm_calls_total{outcome=\"failed\"} 1",
        "oncall_llm_tokens_total{kind=\"cached\"} 800",
        "oncall_llm_tokens_total{kind=\"prompt\"} 2200",
        "oncall_llm_cost_usd_total 0.004",
        "oncall_llm_step_seconds_count 2",
    ] {
        assert!(m.lines().any(|l| l == line), "no {line:?} in\n{m}");
    }
}

/// A server without a tool-call parser for its model (llama.cpp or Ollama with a generic
/// template) returns the calls as text: they are read as calls while tools are offered.
#[tokio::test]
async fn tool_calls_written_as_text_are_read_as_calls() {
    let llm = ScriptedLlm::start(vec![
        Scripted::Reply(text_turn(
            "```json\n{\"name\": \"host__use_snapshot\", \"arguments\": {\"top\": 3}}\n```",
        )),
        Scripted::Reply(text_turn(
            r#"{"name": "search_api_slow", "arguments": {"window_ms": 1000}}"#,
        )),
        Scripted::Reply(text_turn("The host looks healthy.")),
    ])
    .await;
    let (inv, _) = run(&llm, config(&llm.base_url), "api is slow").await;
    assert_eq!(inv.tool_calls[0].tool, "host.use_snapshot");
    assert!(inv.tool_calls[0].ok, "{:?}", inv.tool_calls[0].error);
    // An invented tool hears which tools exist, and the run carries on.
    let invented = &llm.tool_messages(2)[1];
    assert!(
        invented.contains("unknown tool `search_api_slow`; available tools:"),
        "{invented}"
    );
    assert_eq!(inv.answer.as_deref(), Some("The host looks healthy."));
    assert_eq!(inv.steps, 3);
}

#[tokio::test]
async fn a_streamed_reply_reaches_the_events_as_it_is_written() {
    let answer = "The host is quiet.\nNothing points at a fault, so no action is needed now.";
    let llm = ScriptedLlm::start(vec![
        Scripted::Reply(tool_turn(&[("host.use_snapshot", r#"{"top": 3}"#)])),
        Scripted::Reply(text_turn(answer)),
    ])
    .await;
    let mut c = config(&llm.base_url);
    c.llm.stream = true;
    let (inv, events) = run(&llm, c, "api is slow").await;
    assert!(
        llm.requests()
            .iter()
            .all(|r| r["stream"] == true && r["stream_options"]["include_usage"] == true)
    );
    // The call came in pieces and was put back together.
    assert_eq!(inv.tool_calls[0].tool, "host.use_snapshot");
    assert!(inv.tool_calls[0].ok, "{:?}", inv.tool_calls[0].error);
    assert_eq!(inv.answer.as_deref(), Some(answer));
    let texts: Vec<&String> = events
        .iter()
        .filter(|l| l.starts_with("[step 2] model: "))
        .collect();
    assert!(
        texts.len() >= 2,
        "a line at a time, not one event: {events:?}"
    );
    assert!(texts.len() < 10, "not one event per piece: {texts:?}");
    assert_eq!(inv.tokens.prompt_tokens, 2200, "usage from the last chunk");
}

/// An endpoint that streams without end is cut off: the reply is abandoned past 1 MiB, the
/// events hold at most 16 KiB of it, and the run carries on.
#[tokio::test]
async fn an_endless_stream_is_abandoned_and_bounded_in_the_events() {
    let flood = "lorem ipsum ".repeat(100_000);
    let llm = ScriptedLlm::start(vec![
        Scripted::Reply(text_turn(&flood)),
        Scripted::Reply(text_turn("Short answer.")),
    ])
    .await;
    let mut c = config(&llm.base_url);
    c.llm.stream = true;
    let (inv, events) = run(&llm, c, "api is slow").await;
    assert!(
        inv.notices
            .iter()
            .any(|n| n.contains("passed 1024 KiB; abandoned")),
        "{:?}",
        inv.notices
    );
    assert_eq!(inv.answer.as_deref(), Some("Short answer."));
    let streamed: usize = events
        .iter()
        .filter(|l| l.starts_with("[step 1] model: "))
        .map(String::len)
        .sum();
    assert!(
        streamed < 20 * 1024,
        "{streamed} bytes of streamed text in the events"
    );
}
