//! What `oncall triage` shows a person: by default one progress line per step on stderr and the
//! answer card on stdout, no debug log; `-v` the whole investigation as before; `--json` the same
//! document as ever. Piped output carries no terminal escape codes; on a terminal a spinner
//! line is drawn and cleared.

mod common;

use common::*;
use oncall::agent::events::{Event, EventSink};
use oncall::cli::progress::StepTally;
use std::collections::BTreeSet;

const REPORT: &str = "checkout is slow";

fn no_escapes(what: &str, text: &str) {
    assert!(
        !text.contains('\x1b') && !text.contains('\r'),
        "{what} has terminal escape codes: {text:?}"
    );
}

#[test]
fn default_is_progress_lines_then_the_card() {
    let (code, out, err) = oncall(&["triage", REPORT], &[]);
    assert_eq!(code, 0, "{err}");
    // The card, in the order a responder needs it.
    let pos = |s: &str| {
        out.find(s)
            .unwrap_or_else(|| panic!("missing {s:?} in the card:\n{out}"))
    };
    assert!(out.starts_with("Incident "), "{out}");
    assert!(pos("(suggested) · ") < pos("DO NOW"), "{out}");
    assert!(pos("  why: ") < pos("  blast radius: "), "{out}");
    let finding = [
        "CONFIRMED H",
        "LIKELY (not confirmed) H",
        "LEADING (not confirmed) H",
        "NO FAULT FOUND",
    ]
    .iter()
    .filter_map(|h| out.find(h))
    .min()
    .unwrap_or_else(|| panic!("no finding headline in:\n{out}"));
    assert!(finding < pos("DO NOW"), "{out}");
    assert!(out.contains("The whole investigation: add -v."), "{out}");
    // No debug log and none of the long form.
    for s in [
        "Debug log",
        "- T0 ",
        "Hypotheses, best first",
        "Tokens (",
        "Reasoner: ",
    ] {
        assert!(!out.contains(s), "the card shows {s:?}:\n{out}");
    }
    // Progress: a line per step, none of the per-event lines.
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("step 1: ")), "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("step ") && l.contains("proposed")),
        "{err}"
    );
    assert!(
        lines.last().is_some_and(|l| l.starts_with("done in ")),
        "{err}"
    );
    for s in ["[start]", "[step ", "[c1]", "board.propose", "[done]"] {
        assert!(!err.contains(s), "stderr has the event line {s:?}:\n{err}");
    }
    // Fewer than ten progress lines, not one per event.
    let steps = lines.iter().filter(|l| l.starts_with("step ")).count();
    assert!((1..10).contains(&steps), "{err}");
    no_escapes("stdout", &out);
    no_escapes("stderr", &err);
}

#[test]
fn verbose_shows_every_event_and_the_debug_log() {
    let (code, out, err) = oncall(&["triage", "-v", REPORT], &[]);
    assert_eq!(code, 0, "{err}");
    let pos = |s: &str| {
        out.find(s)
            .unwrap_or_else(|| panic!("missing {s:?} in:\n{out}"))
    };
    assert!(pos("Triage") < pos("Debug log"));
    assert!(pos("- T0 ") < pos("- H1: "));
    assert!(pos("Debug log") < pos("Hypotheses, best first"));
    assert!(pos("Hypotheses, best first") < pos("Next steps"));
    assert!(out.contains("-> host.use_snapshot [c1] -> "), "{out}");
    assert!(
        !out.contains("DO NOW"),
        "-v prints the long form, not the card:\n{out}"
    );
    assert!(err.starts_with("[start] incident "), "{err}");
    assert!(err.contains("[c1] host.use_snapshot"), "{err}");
    assert!(err.contains("\n[done] "), "{err}");
    assert!(!err.contains("\nstep 1: "), "{err}");
    no_escapes("stdout", &out);
    no_escapes("stderr", &err);
    let (code, long, _) = oncall(&["triage", "--verbose", REPORT], &[]);
    assert_eq!(code, 0);
    assert!(long.contains("Debug log"), "{long}");
}

#[test]
fn quiet_prints_only_the_card() {
    let (code, out, err) = oncall(&["triage", "-q", REPORT], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("DO NOW"), "{out}");
    assert!(
        !err.contains("step 1: ") && !err.contains("[start]"),
        "{err}"
    );
    // -q and -v contradict each other: one line, exit 2.
    let (code, _, err) = oncall(&["triage", "-q", "-v", REPORT], &[]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn json_keeps_its_keys() {
    for flags in [&["--json"][..], &["--json", "-v"], &["--json", "-q"]] {
        let mut args = vec!["triage"];
        args.extend_from_slice(flags);
        args.push(REPORT);
        let (code, out, err) = oncall(&args, &[]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{flags:?}: not JSON ({e}):\n{out}"));
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let always: BTreeSet<&str> = [
            "incident",
            "report",
            "t0",
            "host",
            "reasoner",
            "triage",
            "stabilize",
            "debug_log",
            "hypotheses",
            "abstained",
            "conclusion",
            "next_steps",
            "tool_calls",
            "confidence_threshold",
            "tokens",
            "steps",
        ]
        .into();
        let optional: BTreeSet<&str> = ["answer", "notices", "fallback"].into();
        assert!(always.is_subset(&keys), "{flags:?}: {keys:?}");
        let extra: Vec<&&str> = keys
            .iter()
            .filter(|k| !always.contains(*k) && !optional.contains(*k))
            .collect();
        assert!(extra.is_empty(), "{flags:?}: new keys {extra:?}");
        let t: BTreeSet<&str> = v["triage"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            t,
            ["severity", "reason", "user_facing", "scope", "blast_radius"].into()
        );
        assert!(
            v["debug_log"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("Report: ")
        );
        no_escapes("stderr", &err);
    }
}

/// On a terminal (a pseudo-terminal from `script`), the step under way is a spinner line that is
/// cleared before the card.
#[test]
fn terminal_gets_a_spinner() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `script` to make a pseudo-terminal");
        return;
    }
    let cmd = format!("{ONCALL} triage '{REPORT}'");
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("ONCALL_CONFIG")
        .env("TERM", "xterm")
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("\r\x1b[2K"),
        "no spinner line drawn: {text:?}"
    );
    assert!(text.contains("step 1: thinking"), "{text:?}");
    let card = text.find("Incident ").expect("the card");
    assert!(
        !text[card..].contains('\x1b'),
        "the card is plain text: {text:?}"
    );
}

/// The progress line of each kind of step.
#[test]
fn step_lines() {
    let mut s = StepTally {
        step: 1,
        calls: 1,
        answered: 1,
        measured: vec![("host.use_snapshot".into(), 14)],
        ..StepTally::default()
    };
    assert_eq!(s.line(), "step 1: measured host.use_snapshot (14 ms)");
    s.model_ms = 2300;
    s.failed = vec!["k8s.pods".into()];
    assert_eq!(
        s.line(),
        "step 1: measured host.use_snapshot (14 ms); k8s.pods failed (model 2.3 s)"
    );
    let mut s = StepTally {
        step: 3,
        weighed: 3,
        ..StepTally::default()
    };
    s.changed.insert("H1".into(), ("confirmed".into(), 0.92));
    s.changed.insert("H2".into(), ("rejected".into(), 0.02));
    s.changed.insert("H3".into(), ("rejected".into(), 0.02));
    assert_eq!(
        s.line(),
        "step 3: weighed 3 pieces of evidence: H1 confirmed 0.92, 2 rejected"
    );
    let s = StepTally {
        step: 2,
        proposed: 1,
        concluded: true,
        ..StepTally::default()
    };
    assert_eq!(s.line(), "step 2: proposed 1 hypothesis; concluded");
    let s = StepTally {
        step: 5,
        ..StepTally::default()
    };
    assert_eq!(s.line(), "step 5: wrote the answer");
}

/// The sink takes events from any thread and never panics on events out of order.
#[test]
fn progress_sink_tolerates_any_order() {
    let p = oncall::cli::progress::Progress::new();
    p.emit(&Event::Notice {
        message: "before anything".into(),
    });
    p.emit(&Event::ToolAnswered {
        call: "c9".into(),
        tool: "host.use_snapshot".into(),
        ok: true,
        ms: 1,
        summary: String::new(),
    });
    p.emit(&Event::Finished {
        conclusion: "x".into(),
    });
    p.finish();
    p.finish();
}

/// The card of a real answer changed into the cases a quiet host may not produce: nothing
/// found, stabilize proposals, a long note on a ruled-out hypothesis.
#[test]
fn card_for_no_fault_and_for_stabilize_first() {
    use oncall::agent::Investigation;
    use oncall::agent::board::HypothesisStatus;
    use oncall::agent::next_steps::{NextStep, ProposedAction};
    use oncall::cli::card::card;

    let mut inv: Investigation =
        serde_json::from_value(triage_json(REPORT, &[])).expect("an Investigation");
    assert!(!inv.hypotheses.is_empty());
    for h in &mut inv.hypotheses {
        h.status = HypothesisStatus::Rejected;
        h.confidence = 0.02;
        for e in &mut h.evidence {
            e.supports = false;
        }
    }
    inv.abstained = true;
    inv.conclusion = "No fault found on this host".into();
    inv.stabilize.clear();
    inv.next_steps = vec![NextStep {
        why: "look wider".into(),
        commands: vec!["oncall serve".into()],
    }];
    let long = "x".repeat(300);
    if let Some(e) = inv.hypotheses[0].evidence.first_mut() {
        e.note = long.clone();
    }
    let c = card(&inv);
    assert!(
        c.contains("NO FAULT FOUND (no hypothesis reached 0.50)\n  No fault found on this host\n"),
        "{c}"
    );
    for s in [
        "CONFIRMED",
        "LIKELY",
        "LEADING",
        "ALSO STANDING",
        "Stabilize first",
        &long,
    ] {
        assert!(!c.contains(s), "{s:?} in:\n{c}");
    }
    // Ruled out in the answer's order (a real run may rank any hypothesis first).
    let first = format!("RULED OUT\n  {} ", inv.hypotheses[0].id);
    assert!(c.contains(&first), "{c}");
    assert!(
        c.lines().all(|l| l.chars().count() < 260),
        "a ruled-out note is cut to one line:\n{c}"
    );
    assert!(c.contains("  - look wider\n      oncall serve\n"), "{c}");

    inv.stabilize = vec![
        ProposedAction {
            tool: "deploy.rollback".into(),
            args: serde_json::json!({"deployment": "storefront"}),
            why: "roll back the deploy".into(),
            needs_approval: true,
        },
        ProposedAction {
            tool: "manual".into(),
            args: serde_json::json!({}),
            why: "page the owner".into(),
            needs_approval: true,
        },
    ];
    let c = card(&inv);
    let pos = |s: &str| {
        c.find(s)
            .unwrap_or_else(|| panic!("missing {s:?} in:\n{c}"))
    };
    assert!(
        pos("DO NOW\n  Stabilize first")
            < pos(
                "  - request deploy.rollback {\"deployment\":\"storefront\"}: roll back the deploy\n"
            )
    );
    assert!(pos("  - page the owner\n") < pos("  Then, to find the cause:\n"));
    assert!(pos("  Then, to find the cause:\n") < pos("  - look wider"));
}
