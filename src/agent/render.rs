//! Renders an investigation: the hypothesis-driven debug log (built from the board and the tool
//! calls), and the whole answer as text in the protocol's order: Triage, Stabilize, Debug log,
//! ranked hypotheses, Next steps, then how the answer was made (tool calls, tokens, notices).

use super::board::{Board, HypothesisStatus};
use super::next_steps::ProposedAction;
use super::{Investigation, LogLine, ToolCallRecord, outcome_word};
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// The debug log in the seed's format: T0, one line per hypothesis with the tools that decided
/// it, the actions requested, the conclusion.
pub fn debug_log(
    t0: DateTime<Utc>,
    report: &str,
    board: &Board,
    calls: &[ToolCallRecord],
    requested: &[ProposedAction],
    conclusion: &str,
) -> Vec<LogLine> {
    let now = Utc::now();
    let mut log = vec![LogLine {
        at: t0,
        text: format!("Report: {report}"),
    }];
    for h in board.in_order() {
        let mut tools: Vec<String> = vec![];
        for e in &h.evidence {
            let t = format!("{} [{}]", e.tool, e.call);
            if !tools.contains(&t) {
                tools.push(t);
            }
        }
        let decisive = h
            .evidence
            .iter()
            .rev()
            .find(|e| match h.status {
                HypothesisStatus::Confirmed => e.supports,
                HypothesisStatus::Rejected => !e.supports,
                HypothesisStatus::Proposed => true,
            })
            .map(|e| e.note.clone())
            .unwrap_or_else(|| "no evidence cited".into());
        let via = if tools.is_empty() {
            "no measurement".to_string()
        } else {
            tools.join(", ")
        };
        log.push(LogLine {
            at: now,
            text: format!(
                "{}: {} -> {via} -> {} ({decisive}; confidence {:.2})",
                h.id,
                h.statement,
                outcome_word(h),
                h.confidence
            ),
        });
    }
    for a in requested {
        log.push(LogLine {
            at: now,
            text: format!(
                "Action requested, awaiting a human approver (not run): {} {}",
                a.tool, a.args
            ),
        });
    }
    let failed: Vec<&ToolCallRecord> = calls
        .iter()
        .filter(|c| !c.ok && !c.tool.starts_with("board."))
        .collect();
    for c in failed.iter().take(5) {
        log.push(LogLine {
            at: now,
            text: format!(
                "Tool {} [{}] failed: {}",
                c.tool,
                c.id,
                c.error.as_deref().unwrap_or("?")
            ),
        });
    }
    log.push(LogLine {
        at: now,
        text: format!("Conclusion: {conclusion}"),
    });
    log
}

/// The human-readable answer.
pub fn text(inv: &Investigation) -> String {
    let mut o = String::new();
    let t = &inv.triage;
    let _ = writeln!(o, "## Incident #{} (host {})", inv.incident, inv.host);
    if let Some(f) = &inv.fallback {
        let _ = writeln!(o, "\nNOTE: {f}.");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Triage");
    let _ = writeln!(o, "- Severity: {} (suggested): {}", t.severity, t.reason);
    let _ = writeln!(
        o,
        "- User-facing: {}",
        if t.user_facing {
            "yes, per the report"
        } else {
            "not indicated"
        }
    );
    let scope = if t.scope.is_empty() {
        "no resource or process shows abnormal signals".to_string()
    } else {
        t.scope.join(", ")
    };
    let _ = writeln!(o, "- Scope: {scope}");
    let _ = writeln!(o, "- Blast radius: {}", t.blast_radius);
    if !inv.stabilize.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Stabilize first (user-facing impact; proposals only, each needs a human approver)"
        );
        for a in &inv.stabilize {
            let _ = writeln!(o, "- {}", a.line());
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Debug log");
    for (i, l) in inv.debug_log.iter().enumerate() {
        if i == 0 {
            let _ = writeln!(o, "- T0 {}: {}", l.at.format("%H:%M:%S"), l.text);
        } else {
            let _ = writeln!(o, "- {}", l.text);
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Hypotheses, best first (finding threshold {:.2}{})",
        inv.confidence_threshold,
        if inv.abstained {
            "; none reached it: no fault found"
        } else {
            ""
        }
    );
    for (i, h) in inv.hypotheses.iter().enumerate() {
        let status = match h.status {
            HypothesisStatus::Confirmed => "confirmed",
            HypothesisStatus::Proposed => "open",
            HypothesisStatus::Rejected => "rejected",
        };
        let _ = writeln!(
            o,
            "{}. {} [{status} {:.2}] {} on {}: {}",
            i + 1,
            h.id,
            h.confidence,
            h.category,
            h.component,
            h.statement
        );
        for e in &h.evidence {
            let _ = writeln!(
                o,
                "     {} {} {}: {}",
                if e.supports { "+" } else { "-" },
                e.call,
                e.tool,
                e.note
            );
        }
    }
    if let Some(a) = &inv.answer {
        let _ = writeln!(o);
        let _ = writeln!(o, "In the reasoner's words: {a}");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Next steps");
    for s in &inv.next_steps {
        let _ = writeln!(o, "- {}", s.why);
        for c in &s.commands {
            let _ = writeln!(o, "    {c}");
        }
    }
    let _ = writeln!(o);
    let measured: Vec<String> = inv
        .tool_calls
        .iter()
        .filter(|c| !c.tool.starts_with("board."))
        .map(|c| {
            format!(
                "{} {} ({} ms, {})",
                c.id,
                c.tool,
                c.duration_ms,
                if c.ok { "ok" } else { "failed" }
            )
        })
        .collect();
    let _ = writeln!(
        o,
        "Reasoner: {} in {} step(s). Tool calls: {}",
        inv.reasoner,
        inv.steps,
        measured.join("; ")
    );
    let tk = &inv.tokens;
    let _ = writeln!(o, "Tokens ({}): {}", tk.encoding, tk.summary());
    for n in &inv.notices {
        let _ = writeln!(o, "Note: {n}");
    }
    o
}
