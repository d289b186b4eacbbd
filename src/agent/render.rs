//! Renders an investigation as text, in the protocol's order: Triage, Stabilize, the
//! hypothesis-driven debug log, the ranked hypotheses, next steps.

use super::Investigation;
use super::board::HypothesisStatus;
use std::fmt::Write;

/// The human-readable answer.
pub fn text(inv: &Investigation) -> String {
    let mut o = String::new();
    let t = &inv.triage;
    let _ = writeln!(o, "## Incident #{} (host {})", inv.incident, inv.host);
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
            if a.tool == "manual" {
                let _ = writeln!(o, "- {}", a.why);
            } else {
                let _ = writeln!(o, "- request {} {}: {}", a.tool, a.args, a.why);
            }
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
            "; none reached it: no fault found on this host"
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
    let _ = writeln!(o);
    let _ = writeln!(o, "Next steps");
    for s in &inv.next_steps {
        let _ = writeln!(o, "- {}", s.why);
        for c in &s.commands {
            let _ = writeln!(o, "    {c}");
        }
    }
    let _ = writeln!(o);
    let calls: Vec<String> = inv
        .tool_calls
        .iter()
        .map(|c| {
            format!(
                "{} {} ({} ms, {})",
                c.id,
                c.tool,
                c.duration_ms,
                if c.ok {
                    "ok"
                } else {
                    c.error.as_deref().unwrap_or("failed")
                }
            )
        })
        .collect();
    let _ = writeln!(o, "Tool calls: {}", calls.join("; "));
    o
}
