//! The answer card `oncall triage` prints by default: what a tired person needs first, in the
//! order they need it. How bad and where; what is (most likely) wrong and the evidence it
//! rests on; what to do now (stabilize proposals, then the next commands); what was ruled out.
//! The whole investigation (debug log, every hypothesis with all its evidence, tool calls,
//! tokens) stays one flag away, `-v`, rendered by [`crate::agent::render::text`].
//!
//! Plain text only: no colours or escapes, so it reads the same in a terminal, a pasted Slack
//! message or a CI log.

use crate::agent::Investigation;
use crate::agent::board::{Hypothesis, HypothesisStatus};
use std::fmt::Write;

/// Notes of ruled-out hypotheses are cut to this many characters: one line each.
const RULED_OUT_NOTE: usize = 100;

/// The card, ending with a newline.
pub fn card(inv: &Investigation) -> String {
    let mut o = String::new();
    let t = &inv.triage;
    let _ = writeln!(o, "Incident {} on host {}", inv.incident, inv.host);
    if let Some(f) = &inv.fallback {
        let _ = writeln!(o, "NOTE: {f}.");
    }
    let _ = writeln!(o);
    let facing = if t.user_facing {
        "user-facing"
    } else {
        "not user-facing per the report"
    };
    let scope = if t.scope.is_empty() {
        "nothing abnormal on this host".to_string()
    } else {
        t.scope.join(", ")
    };
    let _ = writeln!(o, "{} (suggested) · {facing} · scope: {scope}", t.severity);
    let _ = writeln!(o, "  why: {}", t.reason);
    let _ = writeln!(o, "  blast radius: {}", t.blast_radius);

    let _ = writeln!(o);
    let top = inv
        .hypotheses
        .iter()
        .find(|h| h.status != HypothesisStatus::Rejected);
    match top {
        Some(h) if !inv.abstained => finding(&mut o, h, inv.confidence_threshold),
        _ => {
            let _ = writeln!(
                o,
                "NO FAULT FOUND (no hypothesis reached {:.2})",
                inv.confidence_threshold
            );
            let _ = writeln!(o, "  {}", inv.conclusion);
            if let Some(h) = top {
                let _ = writeln!(
                    o,
                    "  still open: {} {} {:.2}: {}",
                    h.id, h.category, h.confidence, h.statement
                );
            }
        }
    }

    // Other hypotheses still standing: a confirmed one shows its evidence too, since two faults
    // at once is exactly when a tired reader should not stop at the first.
    let others: Vec<&Hypothesis> = inv
        .hypotheses
        .iter()
        .filter(|h| h.status != HypothesisStatus::Rejected)
        .filter(|h| top.is_none_or(|t| t.id != h.id))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "ALSO STANDING");
        for h in others {
            let _ = writeln!(
                o,
                "  {} {} {:.2} · {} on {}: {}",
                h.id,
                status_word(h),
                h.confidence,
                h.category,
                h.component,
                h.statement
            );
            if h.status == HypothesisStatus::Confirmed {
                for e in h.evidence.iter().filter(|e| e.supports) {
                    let _ = writeln!(o, "    + {} {}: {}", e.call, e.tool, e.note);
                }
            }
        }
    }

    let _ = writeln!(o);
    let _ = writeln!(o, "DO NOW");
    if !inv.stabilize.is_empty() {
        let _ = writeln!(
            o,
            "  Stabilize first (proposals only; each needs a human approver):"
        );
        for a in &inv.stabilize {
            let _ = writeln!(o, "  - {}", a.line());
        }
    }
    if !inv.stabilize.is_empty() && !inv.next_steps.is_empty() {
        let _ = writeln!(o, "  Then, to find the cause:");
    }
    if inv.next_steps.is_empty() {
        let _ = writeln!(o, "  (no next step suggested)");
    }
    for s in &inv.next_steps {
        let _ = writeln!(o, "  - {}", s.why);
        for c in &s.commands {
            let _ = writeln!(o, "      {c}");
        }
    }

    let ruled: Vec<&Hypothesis> = inv
        .hypotheses
        .iter()
        .filter(|h| h.status == HypothesisStatus::Rejected)
        .collect();
    if !ruled.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "RULED OUT");
        for h in ruled {
            let why = h
                .evidence
                .iter()
                .rev()
                .find(|e| !e.supports)
                .map(|e| cut(&e.note, RULED_OUT_NOTE))
                .unwrap_or_else(|| "no evidence cited".into());
            let _ = writeln!(o, "  {} {}: {why}", h.id, h.category);
        }
    }

    let _ = writeln!(o);
    let measured = inv
        .tool_calls
        .iter()
        .filter(|c| !c.tool.starts_with("board."))
        .count();
    let failed = inv
        .tool_calls
        .iter()
        .filter(|c| !c.tool.starts_with("board.") && !c.ok)
        .count();
    let failed = if failed > 0 {
        format!(" ({failed} failed)")
    } else {
        String::new()
    };
    let _ = writeln!(
        o,
        "{} reasoner, {} step(s), {measured} measurement(s){failed}, {} tokens. The whole investigation: add -v.",
        inv.reasoner,
        inv.steps,
        inv.tokens.prompt_tokens + inv.tokens.completion_tokens
    );
    for n in &inv.notices {
        let _ = writeln!(o, "Note: {n}");
    }
    o
}

/// The confirmed or leading hypothesis with the evidence it cites.
fn finding(o: &mut String, h: &Hypothesis, threshold: f64) {
    let head = match h.status {
        HypothesisStatus::Confirmed => "CONFIRMED",
        _ if h.confidence >= threshold => "LIKELY (not confirmed)",
        _ => "LEADING (not confirmed)",
    };
    let _ = writeln!(
        o,
        "{head} {} {:.2} · {} on {}",
        h.id, h.confidence, h.category, h.component
    );
    let _ = writeln!(o, "  {}", h.statement);
    if let Some(c) = &h.culprit {
        let pid = c.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        let _ = writeln!(o, "  culprit: {}{pid}", c.name);
    }
    if h.evidence.is_empty() {
        let _ = writeln!(o, "  evidence: none cited yet");
    }
    for e in &h.evidence {
        let _ = writeln!(
            o,
            "  {} {} {}: {}",
            if e.supports { "+" } else { "-" },
            e.call,
            e.tool,
            e.note
        );
    }
}

fn status_word(h: &Hypothesis) -> &'static str {
    match h.status {
        HypothesisStatus::Confirmed => "confirmed",
        HypothesisStatus::Proposed => "open",
        HypothesisStatus::Rejected => "rejected",
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}
