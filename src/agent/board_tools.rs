//! The board as tools for the model: `board.propose`, `board.evidence`, `board.conclude`.
//!
//! These are not in the tool registry because they act on one investigation's board, not on a
//! system. Their arguments are typed like every tool's (the doc comments are the schema the model
//! reads). The model says how strong a citation is; the board turns that into confidence, so the
//! model never sets a number itself.

use super::board::{Board, Culprit, Strength};
use crate::llm::ToolDef;
use crate::taxonomy::Category;
use crate::tool::schema_for;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::LazyLock;

pub const PROPOSE: &str = "board.propose";
pub const EVIDENCE: &str = "board.evidence";
pub const CONCLUDE: &str = "board.conclude";

/// Arguments of `board.propose`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposeArgs {
    /// One sentence: what is wrong and where, e.g. "CPU saturated by ledger-sync (pid 4242)".
    pub statement: String,
    /// The root-cause category, one label of the taxonomy.
    pub category: Category,
    /// The resource or service at fault: cpu, memory, disk:<device>, fs:<mount>, net:<interface>,
    /// tcp, fd, process:<name>, postgres, service:<name>.
    pub component: String,
    /// The process, query, table or service to blame, e.g. "ledger-sync (pid 4242)". Optional.
    #[serde(default)]
    pub culprit: Option<String>,
}

/// Arguments of `board.evidence`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceArgs {
    /// The hypothesis id that board.propose returned (H1, H2, ...).
    pub hypothesis: String,
    /// The id of the tool call whose output is the evidence (c1, c2, ...). Only calls of
    /// measuring tools that returned data can be cited.
    pub call: String,
    /// true when the output supports the hypothesis, false when it speaks against it.
    pub supports: bool,
    /// How decisive the output is: strong (settles it), moderate (leans), weak (barely).
    pub strength: Strength,
    /// The numbers from the output that decide it, with units.
    pub note: String,
}

/// Arguments of `board.conclude`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcludeArgs {
    /// Two or three sentences for the responder: what is wrong, how sure, what to do first.
    /// Leave it out to let the board state its leading hypothesis.
    #[serde(default)]
    pub summary: Option<String>,
    /// true when no hypothesis is supported by the evidence: no fault found. Leave it out to let
    /// the board decide (it abstains when no hypothesis reaches the confidence threshold).
    #[serde(default)]
    pub abstain: Option<bool>,
}

/// The board tools as offered to the model.
pub fn defs() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: PROPOSE.into(),
            description: "Put a root-cause hypothesis on the board (one taxonomy category, a component, optionally the culprit). Its id is H1, H2, ... in the order proposed, so the same reply may cite evidence for it and conclude. Confidence starts low and moves only with cited evidence.".into(),
            parameters: schema_for::<ProposeArgs>(),
        },
        ToolDef {
            name: EVIDENCE.into(),
            description: "Cite a tool call (c1, c2, ...) for or against a hypothesis, with the numbers that decide it. The board updates confidence and decides confirmed/rejected; a confirmation needs at least one supporting citation.".into(),
            parameters: schema_for::<EvidenceArgs>(),
        },
        ToolDef {
            name: CONCLUDE.into(),
            description: "Finish the investigation (after the evidence, in the same reply or a later one): a short summary, and abstain when nothing is supported; both may be left to the board. The ranking comes from the board.".into(),
            parameters: schema_for::<ConcludeArgs>(),
        },
    ]
}

static PID: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?i)\bpid[ =:]?(\d+)").ok());

/// Reads "ledger-sync (pid 4242)", "4242" or "ledger-sync" into a culprit.
pub fn parse_culprit(text: &str) -> Culprit {
    let t = text.trim();
    if let Ok(pid) = t.parse::<u32>() {
        return Culprit {
            pid: Some(pid),
            name: t.to_string(),
        };
    }
    let pid = PID
        .as_ref()
        .and_then(|r| r.captures(t))
        .and_then(|c| c.get(1))
        .and_then(|m| m.as_str().parse().ok());
    let name = t.split(" (").next().unwrap_or(t).trim().to_string();
    Culprit { pid, name }
}

/// What a board call did to the investigation.
pub enum BoardOutcome {
    /// The JSON answer for the model.
    Answer(Value),
    /// The model concluded.
    Concluded {
        summary: String,
        abstain: bool,
        answer: Value,
    },
}

/// The board's own conclusion: its leading hypothesis at or above `threshold`, or that nothing
/// reached it (then it abstains).
fn leading(board: &Board, threshold: f64) -> (String, bool) {
    match board.findings(threshold).into_iter().next() {
        Some(h) => {
            let status = serde_json::to_value(h.status).unwrap_or(Value::Null);
            (
                format!(
                    "{} is {} at confidence {:.2}: {}.",
                    h.id,
                    status.as_str().unwrap_or("proposed"),
                    h.confidence,
                    h.statement
                ),
                false,
            )
        }
        None => (
            "No fault found on this host: every hypothesis was rejected or stayed below the confidence threshold.".into(),
            true,
        ),
    }
}

/// Runs one board tool call (`threshold`: the confidence a finding needs). Errors are messages
/// for the model.
pub fn handle(
    board: &mut Board,
    tool: &str,
    args: &Value,
    threshold: f64,
) -> Result<BoardOutcome, String> {
    let parse_err = |e: serde_json::Error| format!("bad arguments for `{tool}`: {e}");
    match tool {
        PROPOSE => {
            let a: ProposeArgs = serde_json::from_value(args.clone()).map_err(parse_err)?;
            if a.statement.trim().is_empty() || a.component.trim().is_empty() {
                return Err("statement and component must not be empty".into());
            }
            if let Some(id) = board.find(a.category, a.component.trim()) {
                return Ok(BoardOutcome::Answer(
                    json!({"hypothesis": id, "note": "already on the board; cite evidence for it"}),
                ));
            }
            let id = board.propose(
                a.statement.trim(),
                a.category,
                a.component.trim(),
                super::board::PRIOR,
            );
            if let Some(c) = a.culprit.as_deref().filter(|c| !c.trim().is_empty()) {
                let _ = board.restate(
                    &id,
                    a.statement.trim(),
                    a.component.trim(),
                    Some(parse_culprit(c)),
                );
            }
            Ok(BoardOutcome::Answer(
                json!({"hypothesis": id, "confidence": super::board::PRIOR, "status": "proposed"}),
            ))
        }
        EVIDENCE => {
            let a: EvidenceArgs = serde_json::from_value(args.clone()).map_err(parse_err)?;
            board
                .cite(
                    &a.hypothesis,
                    &a.call,
                    a.supports,
                    a.strength.weight(),
                    a.note.trim(),
                )
                .map_err(|e| e.to_string())?;
            let h = board
                .get(&a.hypothesis)
                .ok_or_else(|| format!("no hypothesis {}", a.hypothesis))?;
            Ok(BoardOutcome::Answer(
                json!({"hypothesis": h.id, "status": h.status, "confidence": h.confidence}),
            ))
        }
        CONCLUDE => {
            let a: ConcludeArgs = serde_json::from_value(args.clone()).map_err(parse_err)?;
            let ranking: Vec<Value> = board
                .ranked()
                .iter()
                .map(|h| json!({"id": h.id, "category": h.category, "status": h.status, "confidence": h.confidence}))
                .collect();
            let (said, leads_nowhere) = leading(board, threshold);
            let summary = a.summary.filter(|s| !s.trim().is_empty()).unwrap_or(said);
            Ok(BoardOutcome::Concluded {
                summary,
                abstain: a.abstain.unwrap_or(leads_nowhere),
                answer: json!({"ranking": ranking}),
            })
        }
        other => Err(format!("unknown board tool `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn culprits_are_read_from_free_text() {
        assert_eq!(
            parse_culprit("ledger-sync (pid 4242)"),
            Culprit {
                pid: Some(4242),
                name: "ledger-sync".into()
            }
        );
        assert_eq!(parse_culprit("4242").pid, Some(4242));
        assert_eq!(
            parse_culprit("billing-worker"),
            Culprit {
                pid: None,
                name: "billing-worker".into()
            }
        );
    }

    #[test]
    fn schemas_name_the_taxonomy_and_strengths() {
        let d = defs();
        let s = d[0].parameters.to_string();
        assert!(
            s.contains("host.cpu_saturation") && s.contains("db.lock_contention"),
            "{s}"
        );
        assert!(d[1].parameters.to_string().contains("moderate"));
    }

    #[test]
    fn model_cannot_confirm_without_citing() {
        let mut b = Board::new(0.7, 0.15);
        let BoardOutcome::Answer(v) = handle(&mut b, PROPOSE, &json!({"statement": "db is slow", "category": "db.slow_query", "component": "postgres"}), 0.5).unwrap() else {
            panic!()
        };
        let id = v["hypothesis"].as_str().unwrap().to_string();
        let err = handle(&mut b, EVIDENCE, &json!({"hypothesis": id, "call": "c7", "supports": true, "strength": "strong", "note": "trust me"}), 0.5)
            .err()
            .unwrap();
        assert!(err.contains("c7 does not exist"), "{err}");
        assert_eq!(
            b.get(&id).unwrap().status,
            super::super::board::HypothesisStatus::Proposed
        );
        let err = handle(
            &mut b,
            PROPOSE,
            &json!({"statement": "x", "category": "db.slowness", "component": "pg"}),
            0.5,
        )
        .err()
        .unwrap();
        assert!(err.contains("db.slowness"), "{err}");
    }

    #[test]
    fn a_conclusion_left_to_the_board_states_its_leader_or_abstains() {
        let mut b = Board::new(0.7, 0.15);
        b.record_call("c1", "host.use_snapshot", true);
        let p = json!({"statement": "CPU saturated", "category": "host.cpu_saturation", "component": "cpu"});
        handle(&mut b, PROPOSE, &p, 0.5).unwrap();
        let Ok(BoardOutcome::Concluded {
            summary, abstain, ..
        }) = handle(&mut b, CONCLUDE, &json!({}), 0.5)
        else {
            panic!()
        };
        assert!(
            abstain && summary.starts_with("No fault found"),
            "{summary}"
        );
        let e = json!({"hypothesis": "H1", "call": "c1", "supports": true, "strength": "strong", "note": "run queue 4/core"});
        handle(&mut b, EVIDENCE, &e, 0.5).unwrap();
        let Ok(BoardOutcome::Concluded {
            summary, abstain, ..
        }) = handle(&mut b, CONCLUDE, &json!({}), 0.5)
        else {
            panic!()
        };
        assert!(!abstain, "{summary}");
        assert!(
            summary.starts_with("H1 is confirmed at confidence")
                && summary.ends_with("CPU saturated."),
            "{summary}"
        );
        // What the model says is kept.
        let Ok(BoardOutcome::Concluded {
            summary, abstain, ..
        }) = handle(
            &mut b,
            CONCLUDE,
            &json!({"summary": "CPU.", "abstain": true}),
            0.5,
        )
        else {
            panic!()
        };
        assert_eq!((summary.as_str(), abstain), ("CPU.", true));
    }
}
