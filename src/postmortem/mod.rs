//! The post-mortem draft, built deterministically from an incident's own event log: only facts
//! that are in the log, each with the event (`#seq`) it comes from.
//!
//! Sections follow the Google SRE book's example post-mortem: summary, impact, detection, root
//! cause and trigger, resolution, timeline, what went well, what went badly, where we got lucky,
//! action items (owned by roles), lessons learned. Blameless by construction: it names roles and
//! systems, never people.

pub mod blameless;
pub mod prose;

use crate::agent::prompts::{PromptError, Prompts};
use crate::incidents::{Event, EventKind, Incident};
use serde::Serialize;
use serde_json::Value;

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

/// The last finished round of investigation, if any.
fn last_round(events: &[Event]) -> Option<&Event> {
    events
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::InvestigationFinished)
}

/// One line of the timeline for an event, or none for events too small to matter.
fn timeline_line(e: &Event) -> Option<Fact> {
    let d = &e.data;
    let what = match e.kind {
        EventKind::Report => format!("Reported: {}", first_line(s(d, "text"))),
        EventKind::Message => format!("Message from a responder: {}", first_line(s(d, "text"))),
        EventKind::InvestigationStarted => format!(
            "Investigation round {} started ({})",
            d["round"],
            s(d, "reasoner")
        ),
        EventKind::HypothesisChanged if s(d, "status") != "proposed" => format!(
            "{} {} ({:.2}): {}",
            s(d, "id"),
            s(d, "status").to_uppercase(),
            d["confidence"].as_f64().unwrap_or_default(),
            s(d, "statement")
        ),
        EventKind::InvestigationFinished => format!("Diagnosis: {}", s(d, "conclusion")),
        EventKind::ActionRequested => format!("Action requested: {} {}", s(d, "tool"), d["args"]),
        EventKind::ActionApproved => format!("Action {} approved by an approver", s(d, "request")),
        EventKind::ActionDenied => format!("Action {} denied: {}", s(d, "request"), s(d, "reason")),
        EventKind::ActionExecuted => format!(
            "Action {} {} ({})",
            s(d, "tool"),
            if d["ok"] == Value::Bool(true) {
                "executed"
            } else {
                "failed"
            },
            s(d, "request")
        ),
        EventKind::ActionVerified => format!("Effect measured: {}", s(d, "effect")),
        EventKind::Interrupted => "oncall stopped mid-investigation (interrupted)".to_string(),
        _ => return None,
    };
    Some(Fact::new(
        format!("{} {what}", e.at.format("%Y-%m-%d %H:%M:%S UTC")),
        e.seq,
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

/// One statement of the draft and the events (`seq`) it comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fact {
    pub text: String,
    pub cites: Vec<i64>,
}

impl Fact {
    pub fn new(text: impl Into<String>, seq: i64) -> Fact {
        Fact {
            text: text.into(),
            cites: vec![seq],
        }
    }

    /// A statement that cites nothing: placeholders for the people to fill in, and notes.
    pub fn bare(text: impl Into<String>) -> Fact {
        Fact {
            text: text.into(),
            cites: vec![],
        }
    }
}

/// An action item, owned by a role (never a person).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionItem {
    pub action: String,
    pub owner: String,
}

/// Everything the draft states, by section (the Google SRE example post-mortem's), each
/// statement with the events it comes from. `prompts/postmortem.md.j2` renders it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facts {
    pub incident: String,
    pub title: String,
    /// Who wrote the prose: `oncall (facts only)` or the model, checked against the log.
    pub written_by: String,
    pub summary: Vec<Fact>,
    pub impact: Vec<Fact>,
    pub detection: Vec<Fact>,
    pub root_cause: Vec<Fact>,
    pub ruled_out: Vec<Fact>,
    pub resolution: Vec<Fact>,
    pub timeline: Vec<Fact>,
    pub went_well: Vec<Fact>,
    pub went_badly: Vec<Fact>,
    pub lucky: Vec<Fact>,
    pub action_items: Vec<ActionItem>,
    pub lessons: Vec<Fact>,
    /// How the draft was made (shown at the top of the draft).
    pub notes: Vec<String>,
    /// The model's claims that were left out, each with why (not rendered: the API, the CLI
    /// and the `postmortem_drafted` event carry them).
    pub dropped: Vec<String>,
}

/// The facts of an incident's log, by section. Deterministic: the same log, the same facts.
pub fn facts(inc: &Incident, events: &[Event]) -> Facts {
    let round = last_round(events);
    let empty = Value::Null;
    let r = round.map(|e| &e.data).unwrap_or(&empty);
    let rseq = round.map(|e| e.seq).unwrap_or_default();
    let hyps = |status: &str| -> Vec<&Value> {
        r["hypotheses"]
            .as_array()
            .map(|h| h.iter().filter(|h| s(h, "status") == status).collect())
            .unwrap_or_default()
    };
    let (confirmed, rejected) = (hyps("confirmed"), hyps("rejected"));
    let of_kind = |k: EventKind| -> Vec<&Event> { events.iter().filter(|e| e.kind == k).collect() };
    let (executed, verified) = (
        of_kind(EventKind::ActionExecuted),
        of_kind(EventKind::ActionVerified),
    );
    let mut f = Facts {
        incident: inc.id.clone(),
        title: inc.title.clone(),
        written_by: "oncall, from the incident's event log (facts only)".into(),
        summary: vec![],
        impact: vec![],
        detection: vec![],
        root_cause: vec![],
        ruled_out: vec![],
        resolution: vec![],
        timeline: events.iter().filter_map(timeline_line).collect(),
        went_well: vec![],
        went_badly: vec![],
        lucky: vec![Fact::bare("(for the responders to fill in)")],
        action_items: vec![],
        lessons: vec![Fact::bare("(for the team to fill in)")],
        notes: vec![],
        dropped: vec![],
    };
    f.summary.push(match round {
        Some(e) => Fact::new(s(r, "conclusion"), e.seq),
        None => Fact::bare("No investigation finished yet."),
    });
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        f.impact.push(Fact {
            text: format!(
                "Duration in oncall: {} min, from {} to {}.",
                (last.at - first.at).num_minutes(),
                first.at.format("%H:%M UTC"),
                last.at.format("%H:%M UTC")
            ),
            cites: vec![first.seq, last.seq],
        });
        f.detection.push(Fact::new(
            format!(
                "Opened from {} at {}: \"{}\".",
                inc.source,
                first.at.format("%Y-%m-%d %H:%M UTC"),
                first_line(s(&first.data, "text"))
            ),
            first.seq,
        ));
    }
    if round.is_some() {
        let t = &r["triage"];
        f.impact.push(Fact::new(
            format!("Severity: {} ({}).", s(t, "severity"), s(t, "reason")),
            rseq,
        ));
        f.impact.push(Fact::new(
            format!(
                "User-facing: {}.",
                if t["user_facing"] == Value::Bool(true) {
                    "yes"
                } else {
                    "no"
                }
            ),
            rseq,
        ));
        if !s(t, "blast_radius").is_empty() {
            f.impact.push(Fact::new(
                format!(
                    "Blast radius: {}.",
                    s(t, "blast_radius").trim_end_matches('.')
                ),
                rseq,
            ));
        }
    }
    if confirmed.is_empty() {
        f.root_cause.push(Fact::bare(
            "Not confirmed by evidence yet: no hypothesis reached the confirmation threshold.",
        ));
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
        f.root_cause.push(Fact::new(
            format!(
                "{} `{}` on {}: {} (confidence {:.2}; evidence: {}).",
                s(h, "id"),
                s(h, "category"),
                s(h, "component"),
                s(h, "statement"),
                h["confidence"].as_f64().unwrap_or_default(),
                if cites.is_empty() {
                    "none cited".to_string()
                } else {
                    cites.join("; ")
                }
            ),
            rseq,
        ));
        f.action_items.push(ActionItem {
            action: format!(
                "prevent `{}` on {} from recurring (alert earlier, add a guard)",
                s(h, "category"),
                s(h, "component")
            ),
            owner: "service owner".into(),
        });
    }
    for h in &rejected {
        f.ruled_out.push(Fact::new(
            format!(
                "{} `{}`: {}",
                s(h, "id"),
                s(h, "category"),
                s(h, "statement")
            ),
            rseq,
        ));
    }
    let requested = of_kind(EventKind::ActionRequested);
    if requested.is_empty() {
        f.resolution
            .push(Fact::bare("No live action was requested through oncall."));
    }
    for q in &requested {
        let id = s(&q.data, "request");
        let mut fact = Fact::new(format!("{} {}", s(&q.data, "tool"), q.data["args"]), q.seq);
        let decided = events
            .iter()
            .find(|e| e.kind.is_decision() && s(&e.data, "request") == id);
        match decided {
            Some(d) if d.kind == EventKind::ActionApproved => fact.text.push_str(": approved"),
            Some(d) => fact
                .text
                .push_str(&format!(": denied: {}", s(&d.data, "reason"))),
            None => fact.text.push_str(": not decided"),
        }
        fact.cites.extend(decided.map(|d| d.seq));
        if let Some(e) = executed.iter().find(|e| s(&e.data, "request") == id) {
            fact.text.push_str(if e.data["ok"] == Value::Bool(true) {
                "; executed"
            } else {
                "; failed"
            });
            fact.cites.push(e.seq);
        }
        if let Some(e) = verified.iter().find(|e| s(&e.data, "request") == id) {
            fact.text
                .push_str(&format!("; effect: {}", s(&e.data, "effect")));
            fact.cites.push(e.seq);
        }
        f.resolution.push(fact);
    }
    if !confirmed.is_empty() {
        f.went_well.push(Fact::new(
            "The cause was confirmed with cited measurements.",
            rseq,
        ));
    }
    if !rejected.is_empty() {
        f.went_well.push(Fact::new(
            format!(
                "{} hypothesis(es) were ruled out by measurement rather than assumed.",
                rejected.len()
            ),
            rseq,
        ));
    }
    if let Some(e) = verified
        .iter()
        .find(|e| !s(&e.data, "effect").starts_with("no change"))
    {
        f.went_well.push(Fact::new(
            "The stabilizing action's effect was measured after it ran.",
            e.seq,
        ));
    }
    if let Some(e) = events.iter().find(|e| e.kind == EventKind::Interrupted) {
        f.went_badly.push(Fact::new(
            "The investigation was interrupted and had to be resumed.",
            e.seq,
        ));
    }
    if confirmed.is_empty() {
        f.went_badly.push(match round {
            Some(e) => Fact::new("No cause was confirmed.", e.seq),
            None => Fact::bare("No cause was confirmed."),
        });
    }
    if let Some(e) = events.iter().find(|e| e.kind == EventKind::ActionDenied) {
        f.went_badly.push(Fact::new(
            "A proposed action was denied; see Resolution for why.",
            e.seq,
        ));
    }
    f.action_items.push(ActionItem {
        action: "review this draft and the timeline with the team".into(),
        owner: "incident commander".into(),
    });
    f
}

/// The draft in Markdown: `prompts/postmortem.md.j2` (or its override in `prompts`' directory)
/// rendering `facts`.
pub fn render(prompts: &Prompts, facts: &Facts) -> Result<String, PromptError> {
    prompts.render("postmortem.md.j2", facts)
}

/// The deterministic draft of an incident's log, with the shipped template.
pub fn draft(inc: &Incident, events: &[Event]) -> String {
    let f = facts(inc, events);
    render(&Prompts::builtin(), &f)
        .unwrap_or_else(|e| format!("# Post-mortem draft: incident {}\n\n{e}\n", f.incident))
}

/// A short version for a chat thread (Slack mrkdwn): summary, root cause and resolution, with
/// their citations, and where the full draft is.
pub fn brief(f: &Facts) -> String {
    let line = |x: &Fact| {
        let cites: Vec<String> = x.cites.iter().map(|c| format!("#{c}")).collect();
        if cites.is_empty() {
            x.text.clone()
        } else {
            format!("{} ({})", x.text, cites.join(", "))
        }
    };
    let mut t = format!("*Post-mortem draft for {}* ({})\n", f.incident, f.title);
    for (title, list) in [
        ("Summary", &f.summary),
        ("Root cause and trigger", &f.root_cause),
        ("Resolution", &f.resolution),
    ] {
        t.push_str(&format!("\n*{title}*\n"));
        for x in list.iter().take(4) {
            t.push_str(&format!("• {}\n", line(x)));
        }
    }
    t.push_str(&format!(
        "\nFull draft (timeline, action items, lessons): the incident's page, or GET /api/v1/incidents/{}/postmortem",
        f.incident
    ));
    t
}
