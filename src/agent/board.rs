//! The hypothesis board: where hypotheses live and where confidence moves only with evidence.
//!
//! Whoever reasons (the offline rules today, a model tomorrow) proposes hypotheses and cites tool
//! calls for or against them. The board, not the reasoner, decides status: a hypothesis is
//! confirmed only at or above the confirm threshold AND with at least one supporting citation; it
//! is rejected only at or below the reject threshold AND with evidence against it. A citation of a
//! tool call the board has not seen is refused. A proposal starts at a low prior, so confidence
//! above it always comes from cited evidence.

use crate::taxonomy::Category;
use serde::{Deserialize, Serialize};

/// The highest prior a proposal may start with.
pub const MAX_PRIOR: f64 = 0.3;

/// How decisive a piece of evidence is. The board, not the reasoner, turns it into a weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Settles it: a critical signal, an exact match.
    Strong,
    /// Leans: a warning-level signal, a partial match.
    Moderate,
    /// Barely: context, a weak correlation.
    Weak,
}

impl Strength {
    pub fn weight(self) -> f64 {
        match self {
            Strength::Strong => 0.9,
            Strength::Moderate => 0.5,
            Strength::Weak => 0.25,
        }
    }
}

/// The prior of every new hypothesis: low, so confidence above it comes from evidence.
pub const PRIOR: f64 = 0.2;

/// The board's update rule: evidence for moves confidence `c` toward 1 by `weight` of the way,
/// evidence against moves it toward 0 by the same share.
pub fn updated(c: f64, supports: bool, weight: f64) -> f64 {
    if supports {
        c + (1.0 - c) * weight
    } else {
        c * (1.0 - weight)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HypothesisStatus {
    Proposed,
    Confirmed,
    Rejected,
}

/// A citation of one tool call for or against a hypothesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The tool call id (`c1`, `c2`, ...).
    pub call: String,
    pub tool: String,
    /// true: supports the hypothesis; false: speaks against it.
    pub supports: bool,
    /// How strongly, in (0, 1].
    pub weight: f64,
    /// What in the output decided it, with numbers and units.
    pub note: String,
}

/// The process (or other named thing) a hypothesis blames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Culprit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub id: String,
    pub statement: String,
    pub category: Category,
    pub component: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub culprit: Option<Culprit>,
    pub confidence: f64,
    pub status: HypothesisStatus,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum BoardError {
    #[error("no hypothesis {0} on the board")]
    UnknownHypothesis(String),
    #[error("tool call {0} does not exist; cite the id of a call that was made")]
    UnknownCall(String),
    #[error("weight {0} is out of range; use a number in (0, 1]")]
    BadWeight(f64),
    #[error("tool call {0} failed, so it is not evidence; cite a call that returned data")]
    FailedCall(String),
    #[error(
        "tool call {0} was a board operation or a memory lookup, not a measurement of the present; cite a call of a measuring tool"
    )]
    NotEvidence(String),
    #[error(
        "{hypothesis} already cites {call}; one call is one piece of evidence, however often it is cited"
    )]
    AlreadyCited { hypothesis: String, call: String },
}

/// The board of one investigation.
#[derive(Debug, Clone)]
pub struct Board {
    hypotheses: Vec<Hypothesis>,
    /// (call id, tool, succeeded)
    calls: Vec<(String, String, bool)>,
    confirm: f64,
    reject: f64,
}

impl Board {
    pub fn new(confirm: f64, reject: f64) -> Board {
        Board {
            hypotheses: vec![],
            calls: vec![],
            confirm,
            reject,
        }
    }

    /// Records that a tool call happened, so it can be cited (if it succeeded).
    pub fn record_call(&mut self, id: &str, tool: &str, ok: bool) {
        self.calls.push((id.to_string(), tool.to_string(), ok));
    }

    /// The id of an existing hypothesis of this category and component, if any.
    pub fn find(&self, category: Category, component: &str) -> Option<String> {
        self.hypotheses
            .iter()
            .find(|h| h.category == category && h.component == component)
            .map(|h| h.id.clone())
    }

    /// One hypothesis by id.
    pub fn get(&self, id: &str) -> Option<&Hypothesis> {
        self.hypotheses.iter().find(|h| h.id == id)
    }

    /// Proposes a hypothesis; returns its id. The prior is capped at [`MAX_PRIOR`].
    pub fn propose(
        &mut self,
        statement: &str,
        category: Category,
        component: &str,
        prior: f64,
    ) -> String {
        let id = format!("H{}", self.hypotheses.len() + 1);
        self.hypotheses.push(Hypothesis {
            id: id.clone(),
            statement: statement.to_string(),
            category,
            component: component.to_string(),
            culprit: None,
            confidence: prior.clamp(0.0, MAX_PRIOR),
            status: HypothesisStatus::Proposed,
            evidence: vec![],
        });
        id
    }

    fn get_mut(&mut self, id: &str) -> Result<&mut Hypothesis, BoardError> {
        self.hypotheses
            .iter_mut()
            .find(|h| h.id == id)
            .ok_or_else(|| BoardError::UnknownHypothesis(id.to_string()))
    }

    /// Refines what a hypothesis says and blames (not its confidence).
    pub fn restate(
        &mut self,
        id: &str,
        statement: &str,
        component: &str,
        culprit: Option<Culprit>,
    ) -> Result<(), BoardError> {
        let h = self.get_mut(id)?;
        h.statement = statement.to_string();
        h.component = component.to_string();
        h.culprit = culprit;
        Ok(())
    }

    /// Cites a tool call for (`supports`) or against a hypothesis, moving its confidence:
    /// for: c + (1 - c) * w; against: c * (1 - w). Status is then recomputed.
    pub fn cite(
        &mut self,
        id: &str,
        call: &str,
        supports: bool,
        weight: f64,
        note: &str,
    ) -> Result<(), BoardError> {
        if !(weight > 0.0 && weight <= 1.0) {
            return Err(BoardError::BadWeight(weight));
        }
        let (tool, ok) = self
            .calls
            .iter()
            .find(|(c, _, _)| c == call)
            .map(|(_, t, ok)| (t.clone(), *ok))
            .ok_or_else(|| BoardError::UnknownCall(call.to_string()))?;
        if !ok {
            return Err(BoardError::FailedCall(call.to_string()));
        }
        // Past incidents are leads, not measurements of the present.
        if tool.starts_with("board.") || tool.starts_with("memory.") {
            return Err(BoardError::NotEvidence(call.to_string()));
        }
        let (confirm, reject) = (self.confirm, self.reject);
        let h = self.get_mut(id)?;
        if h.evidence.iter().any(|e| e.call == call) {
            return Err(BoardError::AlreadyCited {
                hypothesis: id.to_string(),
                call: call.to_string(),
            });
        }
        h.confidence = updated(h.confidence, supports, weight);
        h.confidence = (h.confidence * 1000.0).round() / 1000.0;
        h.evidence.push(Evidence {
            call: call.to_string(),
            tool,
            supports,
            weight,
            note: note.to_string(),
        });
        let has_for = h.evidence.iter().any(|e| e.supports);
        let has_against = h.evidence.iter().any(|e| !e.supports);
        h.status = if h.confidence >= confirm && has_for {
            HypothesisStatus::Confirmed
        } else if h.confidence <= reject && has_against {
            HypothesisStatus::Rejected
        } else {
            HypothesisStatus::Proposed
        };
        Ok(())
    }

    /// Hypotheses in the order they were proposed.
    pub fn in_order(&self) -> &[Hypothesis] {
        &self.hypotheses
    }

    /// Hypotheses ranked best first: by status (confirmed, proposed, rejected), then confidence.
    pub fn ranked(&self) -> Vec<Hypothesis> {
        let rank = |s: HypothesisStatus| match s {
            HypothesisStatus::Confirmed => 0,
            HypothesisStatus::Proposed => 1,
            HypothesisStatus::Rejected => 2,
        };
        let mut v = self.hypotheses.clone();
        v.sort_by(|a, b| {
            rank(a.status)
                .cmp(&rank(b.status))
                .then(b.confidence.total_cmp(&a.confidence))
        });
        v
    }

    /// Hypotheses at or above a confidence threshold, ranked.
    pub fn findings(&self, threshold: f64) -> Vec<Hypothesis> {
        self.ranked()
            .into_iter()
            .filter(|h| h.confidence >= threshold && h.status != HypothesisStatus::Rejected)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Board {
        let mut b = Board::new(0.7, 0.15);
        b.record_call("c1", "host.use_snapshot", true);
        b.record_call("c2", "host.use_snapshot", false);
        b.record_call("c3", "board.propose", true);
        b.record_call("c4", "memory.similar", true);
        b
    }

    #[test]
    fn prior_is_capped_and_confidence_moves_only_with_citations() {
        let mut b = board();
        let h = b.propose("cpu", Category::HostCpuSaturation, "cpu", 0.99);
        assert_eq!(b.in_order()[0].confidence, MAX_PRIOR);
        assert_eq!(b.in_order()[0].status, HypothesisStatus::Proposed);
        b.cite(&h, "c1", true, 0.9, "run queue 2.5/core").unwrap();
        let x = &b.in_order()[0];
        assert_eq!(x.status, HypothesisStatus::Confirmed);
        assert_eq!(x.evidence[0].tool, "host.use_snapshot");
    }

    #[test]
    fn uncited_or_unknown_calls_cannot_confirm() {
        let mut b = board();
        let h = b.propose("cpu", Category::HostCpuSaturation, "cpu", 0.3);
        assert_eq!(
            b.cite(&h, "c9", true, 1.0, "made up"),
            Err(BoardError::UnknownCall("c9".into()))
        );
        assert_eq!(b.in_order()[0].status, HypothesisStatus::Proposed);
        assert!(b.cite(&h, "c1", true, 1.5, "x").is_err());
        assert_eq!(
            b.cite(&h, "c2", true, 0.9, "x"),
            Err(BoardError::FailedCall("c2".into()))
        );
        assert_eq!(
            b.cite(&h, "c3", true, 0.9, "x"),
            Err(BoardError::NotEvidence("c3".into()))
        );
        assert_eq!(
            b.cite(&h, "c4", true, 0.9, "it happened before"),
            Err(BoardError::NotEvidence("c4".into()))
        );
        assert!(b.cite("H7", "c1", true, 0.5, "x").is_err());
        b.cite(&h, "c1", true, 0.25, "weak").unwrap();
        let before = b.get(&h).unwrap().confidence;
        assert!(
            matches!(
                b.cite(&h, "c1", true, 0.25, "again"),
                Err(BoardError::AlreadyCited { .. })
            ),
            "one call cannot be cited twice"
        );
        assert_eq!(b.get(&h).unwrap().confidence, before);
    }

    #[test]
    fn evidence_against_rejects_and_ranks_last() {
        let mut b = board();
        let a = b.propose("a", Category::HostCpuSaturation, "cpu", 0.3);
        let m = b.propose("m", Category::HostMemoryPressure, "memory", 0.2);
        b.cite(&a, "c1", false, 0.9, "normal").unwrap();
        b.cite(&m, "c1", true, 0.5, "growth").unwrap();
        let r = b.ranked();
        assert_eq!(r[0].id, "H2");
        assert_eq!(r[1].status, HypothesisStatus::Rejected);
        assert_eq!(b.findings(0.5).len(), 1);
    }
}
