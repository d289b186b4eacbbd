//! The post-mortem draft, built deterministically from an incident's own event log: only facts
//! that are in the log, each with the event (`#seq`) it comes from.
//!
//! Sections follow the Google SRE book's example post-mortem: summary, impact, detection, root
//! cause and trigger, resolution, timeline, what went well, what went badly, where we got lucky,
//! action items (owned by roles), lessons learned. Blameless by construction: it names roles and
//! systems, never people.

pub mod blameless;

use crate::incidents::{Event, Incident};
use serde_json::Value;
use std::fmt::Write;

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

/// The last finished round of investigation, if any.
fn last_round(events: &[Event]) -> Option<&Event> {
    events
        .iter()
        .rev()
        .find(|e| e.kind == "investigation_finished")
}

/// One line of the timeline for an event, or none for events too small to matter.
fn timeline_line(e: &Event) -> Option<String> {
    let d = &e.data;
    let what = match e.kind.as_str() {
        "report" => format!("Reported: {}", first_line(s(d, "text"))),
        "message" => format!("Message from a responder: {}", first_line(s(d, "text"))),
        "investigation_started" => format!(
            "Investigation round {} started ({})",
            d["round"],
            s(d, "reasoner")
        ),
        "hypothesis_changed" if s(d, "status") != "proposed" => format!(
            "{} {} ({:.2}): {}",
            s(d, "id"),
            s(d, "status").to_uppercase(),
            d["confidence"].as_f64().unwrap_or_default(),
            s(d, "statement")
        ),
        "investigation_finished" => format!("Diagnosis: {}", s(d, "conclusion")),
        "action_requested" => format!("Action requested: {} {}", s(d, "tool"), d["args"]),
        "action_approved" => format!("Action {} approved by an approver", s(d, "request")),
        "action_denied" => format!("Action {} denied: {}", s(d, "request"), s(d, "reason")),
        "action_executed" => format!(
            "Action {} {} ({})",
            s(d, "tool"),
            if d["ok"] == Value::Bool(true) {
                "executed"
            } else {
                "failed"
            },
            s(d, "request")
        ),
        "action_verified" => format!("Effect measured: {}", s(d, "effect")),
        "interrupted" => "oncall stopped mid-investigation (interrupted)".to_string(),
        _ => return None,
    };
    Some(format!(
        "- {} {} (#{})",
        e.at.format("%Y-%m-%d %H:%M:%S UTC"),
        what,
        e.seq
    ))
}

fn first_line(t: &str) -> String {
    t.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// The draft in Markdown.
pub fn draft(inc: &Incident, events: &[Event]) -> String {
    let mut md = String::new();
    let round = last_round(events);
    let empty = Value::Null;
    let r = round.map(|e| &e.data).unwrap_or(&empty);
    let confirmed: Vec<&Value> = r["hypotheses"]
        .as_array()
        .map(|h| h.iter().filter(|h| s(h, "status") == "confirmed").collect())
        .unwrap_or_default();
    let rejected: Vec<&Value> = r["hypotheses"]
        .as_array()
        .map(|h| h.iter().filter(|h| s(h, "status") == "rejected").collect())
        .unwrap_or_default();
    let executed: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == "action_executed")
        .collect();
    let verified: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == "action_verified")
        .collect();
    let first = events.first();
    let last = events.last();
    let _ = writeln!(
        md,
        "# Post-mortem draft: incident {} ({})\n",
        inc.id, inc.title
    );
    let _ = writeln!(
        md,
        "_Blameless draft built by oncall from the incident's event log; `#n` cites event n. Edit before publishing._\n"
    );
    let _ = writeln!(md, "## Summary\n");
    match round {
        Some(e) => {
            let _ = writeln!(md, "{} (#{})\n", s(r, "conclusion"), e.seq);
        }
        None => {
            let _ = writeln!(md, "No investigation finished yet.\n");
        }
    }
    let _ = writeln!(md, "## Impact\n");
    if let (Some(f), Some(l)) = (first, last) {
        let mins = (l.at - f.at).num_minutes();
        let _ = writeln!(
            md,
            "- Duration in oncall: {mins} min, from {} (#{}) to {} (#{}).",
            f.at.format("%H:%M UTC"),
            f.seq,
            l.at.format("%H:%M UTC"),
            l.seq
        );
    }
    if let Some(e) = round {
        let t = &r["triage"];
        let _ = writeln!(
            md,
            "- Severity: {} ({}) (#{}).",
            s(t, "severity"),
            s(t, "reason"),
            e.seq
        );
        let _ = writeln!(
            md,
            "- User-facing: {} (#{}).",
            if t["user_facing"] == Value::Bool(true) {
                "yes"
            } else {
                "no"
            },
            e.seq
        );
        if !s(t, "blast_radius").is_empty() {
            let _ = writeln!(md, "- Blast radius: {} (#{}).", s(t, "blast_radius"), e.seq);
        }
    }
    let _ = writeln!(md, "\n## Detection\n");
    if let Some(f) = first {
        let _ = writeln!(
            md,
            "Opened from {} at {}: \"{}\" (#{}).",
            inc.source,
            f.at.format("%Y-%m-%d %H:%M UTC"),
            first_line(s(&f.data, "text")),
            f.seq
        );
    }
    let _ = writeln!(md, "\n## Root cause and trigger\n");
    if confirmed.is_empty() {
        let _ = writeln!(
            md,
            "Not confirmed by evidence yet: no hypothesis reached the confirmation threshold."
        );
    }
    for h in &confirmed {
        let cites: Vec<String> = h["evidence"]
            .as_array()
            .map(|ev| {
                ev.iter()
                    .map(|x| format!("{} {}", s(x, "call"), s(x, "note")))
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "- {} `{}` on {}: {} (confidence {:.2}; evidence: {}) (#{}).",
            s(h, "id"),
            s(h, "category"),
            s(h, "component"),
            s(h, "statement"),
            h["confidence"].as_f64().unwrap_or_default(),
            if cites.is_empty() {
                "none cited".to_string()
            } else {
                cites.join("; ")
            },
            round.map(|e| e.seq).unwrap_or_default()
        );
    }
    if !rejected.is_empty() {
        let _ = writeln!(md, "\nRuled out:");
        for h in &rejected {
            let _ = writeln!(
                md,
                "- {} `{}`: {}",
                s(h, "id"),
                s(h, "category"),
                s(h, "statement")
            );
        }
    }
    let _ = writeln!(md, "\n## Resolution\n");
    let requested: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == "action_requested")
        .collect();
    if requested.is_empty() {
        let _ = writeln!(md, "No live action was requested through oncall.");
    }
    for q in &requested {
        let id = s(&q.data, "request");
        let decided = events.iter().find(|e| {
            (e.kind == "action_approved" || e.kind == "action_denied")
                && s(&e.data, "request") == id
        });
        let ran = executed.iter().find(|e| s(&e.data, "request") == id);
        let effect = verified.iter().find(|e| s(&e.data, "request") == id);
        let _ = writeln!(
            md,
            "- {} {} (#{}): {}{}{}",
            s(&q.data, "tool"),
            q.data["args"],
            q.seq,
            match decided {
                Some(d) if d.kind == "action_approved" => format!("approved (#{})", d.seq),
                Some(d) => format!("denied: {} (#{})", s(&d.data, "reason"), d.seq),
                None => "not decided".into(),
            },
            ran.map(|e| format!(
                "; {} (#{})",
                if e.data["ok"] == Value::Bool(true) {
                    "executed"
                } else {
                    "failed"
                },
                e.seq
            ))
            .unwrap_or_default(),
            effect
                .map(|e| format!("; effect: {} (#{})", s(&e.data, "effect"), e.seq))
                .unwrap_or_default(),
        );
    }
    let _ = writeln!(md, "\n## Timeline\n");
    for e in events {
        if let Some(l) = timeline_line(e) {
            let _ = writeln!(md, "{l}");
        }
    }
    let _ = writeln!(md, "\n## What went well\n");
    if !confirmed.is_empty() {
        let _ = writeln!(md, "- The cause was confirmed with cited measurements.");
    }
    if !rejected.is_empty() {
        let _ = writeln!(
            md,
            "- {} hypothesis(es) were ruled out by measurement rather than assumed.",
            rejected.len()
        );
    }
    if verified
        .iter()
        .any(|e| !s(&e.data, "effect").starts_with("no change"))
    {
        let _ = writeln!(
            md,
            "- The stabilizing action's effect was measured after it ran."
        );
    }
    let _ = writeln!(md, "\n## What went badly\n");
    if events.iter().any(|e| e.kind == "interrupted") {
        let _ = writeln!(
            md,
            "- The investigation was interrupted and had to be resumed."
        );
    }
    if confirmed.is_empty() {
        let _ = writeln!(md, "- No cause was confirmed.");
    }
    if events.iter().any(|e| e.kind == "action_denied") {
        let _ = writeln!(
            md,
            "- A proposed action was denied; see Resolution for why."
        );
    }
    let _ = writeln!(
        md,
        "\n## Where we got lucky\n\n- (for the responders to fill in)"
    );
    let _ = writeln!(md, "\n## Action items\n");
    let _ = writeln!(md, "| action | owner (role) |\n| --- | --- |");
    for h in &confirmed {
        let _ = writeln!(
            md,
            "| prevent `{}` on {} from recurring (alert earlier, add a guard) | service owner |",
            s(h, "category"),
            s(h, "component")
        );
    }
    let _ = writeln!(
        md,
        "| review this draft and the timeline with the team | incident commander |"
    );
    let _ = writeln!(md, "\n## Lessons learned\n\n- (for the team to fill in)");
    md
}
