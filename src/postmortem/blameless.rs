//! The blameless-language check: a post-mortem describes what systems and processes did, never
//! who is at fault. Each finding names its line, the phrase, why it reads as blame, and a
//! suggested rewrite. oncall's own drafts pass it (a test checks that).
//!
//! What it flags:
//! - blaming phrases ("human error", "careless", "fault of", "blame", "negligent", ...);
//! - counterfactuals about people ("should have", "could have", "failed to", "forgot to");
//! - named individuals: an @-mention, or a capitalised name as the subject of an action
//!   ("Dave deployed", "by Alice") that is not a known system word.

use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

/// One place where the draft reads as blame.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Finding {
    /// 1-based line number in the checked text.
    pub line: usize,
    /// The words that triggered the finding.
    pub phrase: String,
    pub why: String,
    pub suggestion: String,
}

struct Rule {
    re: Regex,
    why: &'static str,
    suggestion: &'static str,
}

fn rule(pattern: &str, why: &'static str, suggestion: &'static str) -> Option<Rule> {
    Regex::new(pattern).ok().map(|re| Rule {
        re,
        why,
        suggestion,
    })
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    [
        rule(
            r"(?i)\bhuman error\b",
            "\"human error\" ends the inquiry at a person",
            "name the condition that made the error easy: \"the deploy tool accepted a config that failed validation\"",
        ),
        rule(
            r"(?i)\b(should|could|would) have\b",
            "a counterfactual about what someone ought to have done",
            "state what happened and what would make it unlikely next time: \"the runbook did not cover X; add it\"",
        ),
        rule(
            r"(?i)\b(failed|forgot|neglected|didn't bother|did not bother) to\b",
            "describes a person's failure rather than the system's behaviour",
            "describe the gap in the process or tooling: \"no check existed for ...\"",
        ),
        rule(
            r"(?i)\b(careless(ly)?|negligen(t|ce)|sloppy|incompetent|lazy|reckless(ly)?|stupid)\b",
            "a judgement of a person",
            "describe the action and its context without judging it",
        ),
        rule(
            r"(?i)\b(blame[sd]?|at fault|fault of|whose fault|responsible for (the )?(outage|incident))\b",
            "assigns fault",
            "describe contributing factors instead: \"contributing factors: ...\"",
        ),
        rule(
            r"(?i)\b(mistake|screw(ed)? up|messed up|botched) (by|of)\b",
            "attributes a mistake to someone",
            "describe the change and why it was unsafe: \"the change removed the index that ...\"",
        ),
        rule(
            r"(^|[\s(])@[A-Za-z][\w.-]+",
            "names an individual",
            "name the role instead (\"the on-call engineer\", \"the release manager\")",
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
});

/// Actions that make a capitalised word before them read as a person doing something.
static NAMED_ACTOR: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"\b([A-Z][a-z]{2,})\s+(deployed|pushed|merged|broke|caused|ran|dropped|deleted|changed|approved|restarted|misconfigured|forgot|missed|ignored)\b",
    )
    .ok()
});

static BY_NAME: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\b(by|from|to) ([A-Z][a-z]{2,})\b").ok());

/// Capitalised words that are not people.
const NOT_PEOPLE: &[&str] = &[
    "The",
    "This",
    "That",
    "Then",
    "When",
    "After",
    "Before",
    "Oncall",
    "Nobody",
    "Someone",
    "Postgres",
    "PostgreSQL",
    "Kubernetes",
    "Slack",
    "Redis",
    "Linux",
    "Python",
    "Prometheus",
    "Action",
    "Effect",
    "Investigation",
    "Diagnosis",
    "Message",
    "Reported",
    "Opened",
    "Severity",
    "Incident",
    "Request",
    "Requests",
    "Approver",
    "Responder",
    "Viewer",
    "Alert",
    "Alerts",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
    "Ruled",
    "Not",
    "No",
    "None",
    "Edit",
    "Duration",
    "User",
    "Users",
    "Blast",
];

fn person_like(word: &str) -> bool {
    !NOT_PEOPLE.contains(&word)
}

/// Checks `text` line by line.
pub fn check(text: &str) -> Vec<Finding> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        for r in RULES.iter() {
            for m in r.re.find_iter(line) {
                out.push(Finding {
                    line: n,
                    phrase: m.as_str().trim().to_string(),
                    why: r.why.to_string(),
                    suggestion: r.suggestion.to_string(),
                });
            }
        }
        if let Some(re) = NAMED_ACTOR.as_ref() {
            for c in re.captures_iter(line) {
                if person_like(&c[1]) {
                    out.push(Finding {
                        line: n,
                        phrase: c[0].to_string(),
                        why: format!("names an individual ({}) as the one who acted", &c[1]),
                        suggestion: format!(
                            "name the role and the system: \"the release pipeline {}\"",
                            &c[2]
                        ),
                    });
                }
            }
        }
        if let Some(re) = BY_NAME.as_ref() {
            for c in re.captures_iter(line) {
                if person_like(&c[2]) {
                    out.push(Finding {
                        line: n,
                        phrase: c[0].to_string(),
                        why: format!("names an individual ({})", &c[2]),
                        suggestion: format!(
                            "{} a role (\"{} the on-call engineer\")",
                            &c[1], &c[1]
                        ),
                    });
                }
            }
        }
    }
    out
}

/// Findings as lines for a person: `line 12: "should have": why. Try: suggestion`.
pub fn report(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "line {}: \"{}\": {}. Try: {}",
                f.line, f.phrase, f.why, f.suggestion
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_blame_is_found_with_its_line_and_a_rewrite() {
        let text = "## Summary\n\
            The outage was caused by human error.\n\
            Dave deployed the config without review.\n\
            The on-call engineer should have checked the dashboard.\n\
            It was the fault of the DBA team; @mallory forgot to renew the cert.\n\
            The change was approved by Alice.\n\
            Careless handling of the migration made it worse.\n";
        let f = check(text);
        let at = |line: usize, phrase: &str| {
            f.iter()
                .any(|x| x.line == line && x.phrase.to_lowercase().contains(phrase))
        };
        assert!(at(2, "human error"), "{f:#?}");
        assert!(at(3, "dave deployed"));
        assert!(at(4, "should have"));
        assert!(at(5, "fault of"));
        assert!(at(5, "@mallory"));
        assert!(at(5, "forgot to"));
        assert!(at(6, "by alice"));
        assert!(at(7, "careless"));
        assert!(f.iter().all(|x| !x.suggestion.is_empty()));
        assert!(!f.iter().any(|x| x.line == 1));
    }

    #[test]
    fn systems_and_roles_are_not_people() {
        let text = "The deploy of v2.5.1 was rolled back by the on-call engineer.\n\
            Postgres restarted after the change; PostgreSQL deployed a new plan.\n\
            Action host.signal_process approved by an approver (#12).\n\
            Opened from api at 2026-11-27 04:47 UTC.\n";
        assert_eq!(check(text), vec![]);
    }
}
