//! The "what changed?" rule: a change shortly before a regression is the first suspect, and
//! rolling it back is the first stabilizer, before the root cause is known.
//!
//! It blames a change only when three things hold: the change is recent (within
//! `thresholds.changes.suspect_within_min`), something really regressed (another rule's
//! hypothesis would be a finding), and the regression is where the change was (the same service,
//! or a host-wide change). A recent change with nothing wrong, or a change to one service while
//! another fails, is shown but not blamed.

use crate::agent::board::{PRIOR, Strength, updated};
use crate::collectors::outputs::{ChangeKind, ChangesAnswer, RecentChange};
use crate::config::Thresholds;
use crate::taxonomy::Category;

/// The category a kind of change falls under.
fn category_of(kind: ChangeKind) -> Category {
    match kind {
        ChangeKind::Deploy | ChangeKind::Infra => Category::ChangeBadDeploy,
        ChangeKind::Config | ChangeKind::Flag => Category::ChangeBadConfig,
    }
}

/// The newest change recent enough to suspect.
fn suspect<'a>(a: &'a ChangesAnswer, th: &Thresholds) -> Option<&'a RecentChange> {
    a.changes
        .iter()
        .filter(|c| c.minutes_ago <= th.changes.suspect_within_min)
        .min_by(|x, y| x.minutes_ago.total_cmp(&y.minutes_ago))
}

/// Another rule's hypothesis, as this rule sees it.
pub struct Symptom<'a> {
    pub statement: &'a str,
    pub component: &'a str,
    pub culprit: Option<&'a str>,
    /// (call, supports, strength) of its citations.
    pub citations: Vec<(&'a str, bool, Strength)>,
}

impl Symptom<'_> {
    /// The confidence the board would give it (the board's own update rule).
    pub fn confidence(&self) -> f64 {
        self.citations.iter().fold(PRIOR, |c, (_, supports, s)| {
            updated(c, *supports, s.weight())
        })
    }

    /// Whether it is about `service`: its component, or the culprit it names (a process).
    fn names(&self, service: &str) -> bool {
        let s = service.to_lowercase();
        let words = |t: &str| {
            t.to_lowercase()
                .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
                .any(|w| w == s)
        };
        self.component
            .eq_ignore_ascii_case(&format!("service:{service}"))
            || self.culprit.is_some_and(words)
    }
}

/// What the rule concluded: statement, component, culprit, and citations (call, supports,
/// strength, note).
pub struct ChangeVerdict {
    pub category: Category,
    pub statement: String,
    pub component: String,
    pub culprit: String,
    pub citations: Vec<(String, bool, Strength, String)>,
}

fn ago(m: f64) -> String {
    if m < 1.0 {
        "under a minute".into()
    } else if m < 120.0 {
        format!("{m:.0} min")
    } else {
        format!("{:.1} h", m / 60.0)
    }
}

/// Judges the suspect change of `answer` (from call `call`) against the other rules' symptoms.
pub fn judge(
    call: &str,
    answer: &ChangesAnswer,
    symptoms: &[Symptom],
    th: &Thresholds,
) -> Option<ChangeVerdict> {
    let change = suspect(answer, th)?;
    let when = ago(change.minutes_ago);
    let scope = change
        .service
        .as_deref()
        .map(|s| format!("service {s}"))
        .unwrap_or_else(|| "the whole host".into());
    let found: Vec<&Symptom> = symptoms
        .iter()
        .filter(|s| s.confidence() >= th.confidence)
        .collect();
    let related = found
        .iter()
        .copied()
        .filter(|s| change.service.as_deref().is_none_or(|svc| s.names(svc)))
        .max_by(|a, b| a.confidence().total_cmp(&b.confidence()));
    let component = |s: Option<&Symptom>| match (&change.service, s) {
        (Some(svc), _) => format!("service:{svc}"),
        (None, Some(s)) => s.component.to_string(),
        (None, None) => "host".into(),
    };
    let mut v = ChangeVerdict {
        category: category_of(change.kind),
        statement: format!(
            "The {} \"{}\" ({when} ago, {scope}) introduced the regression",
            kind_word(change.kind),
            change.what
        ),
        component: component(related),
        culprit: change.what.clone(),
        citations: vec![],
    };
    match related {
        Some(s) => {
            let (symptom_call, _, _) = s
                .citations
                .iter()
                .find(|(_, supports, _)| *supports)
                .copied()?;
            v.citations.push((
                call.to_string(),
                true,
                Strength::Strong,
                format!(
                    "{} \"{}\" {when} before this investigation, within the {:.0} min a change stays a suspect",
                    kind_word(change.kind),
                    change.what,
                    th.changes.suspect_within_min
                ),
            ));
            v.citations.push((
                symptom_call.to_string(),
                true,
                Strength::Strong,
                format!("what regressed is where the change went: {}", s.statement),
            ));
        }
        None if !found.is_empty() => v.citations.push((
            call.to_string(),
            true,
            Strength::Weak,
            format!(
                "\"{}\" changed {when} ago, but what fails ({}) is not where it changed",
                change.what,
                found
                    .iter()
                    .map(|s| s.component)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        None => v.citations.push((
            call.to_string(),
            false,
            Strength::Moderate,
            format!(
                "\"{}\" changed {when} ago, and nothing measured has regressed",
                change.what
            ),
        )),
    }
    Some(v)
}

fn kind_word(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Deploy => "deploy",
        ChangeKind::Config => "config change",
        ChangeKind::Flag => "flag change",
        ChangeKind::Infra => "infrastructure change",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn answer(minutes_ago: f64, service: Option<&str>) -> ChangesAnswer {
        let now = Utc::now();
        ChangesAnswer {
            now,
            since_minutes: 180,
            changes: vec![RecentChange {
                at: now - chrono::Duration::seconds((minutes_ago * 60.0) as i64),
                minutes_ago,
                kind: ChangeKind::Deploy,
                what: "storefront v2.5.0".into(),
                service: service.map(str::to_string),
            }],
            unreadable: vec![],
        }
    }

    fn symptom<'a>(component: &'a str, strength: Strength) -> Symptom<'a> {
        Symptom {
            statement: "errors start in storefront",
            component,
            culprit: None,
            citations: vec![("c2", true, strength)],
        }
    }

    #[test]
    fn a_recent_change_where_the_regression_is_is_blamed_above_it() {
        let th = Thresholds::default();
        let s = [symptom("service:storefront", Strength::Strong)];
        let v = judge("c1", &answer(4.0, Some("storefront")), &s, &th).expect("a verdict");
        assert_eq!(v.component, "service:storefront");
        assert_eq!(v.citations.len(), 2);
        let conf = Symptom {
            statement: "",
            component: "",
            culprit: None,
            citations: v
                .citations
                .iter()
                .map(|c| (c.0.as_str(), c.1, c.2))
                .collect(),
        }
        .confidence();
        assert!(conf > s[0].confidence(), "{conf}");
    }

    #[test]
    fn old_unrelated_or_harmless_changes_are_not_blamed() {
        let th = Thresholds::default();
        let strong = [symptom("service:payments", Strength::Strong)];
        assert!(judge("c1", &answer(150.0, Some("storefront")), &strong, &th).is_none());
        let other = judge("c1", &answer(4.0, Some("storefront")), &strong, &th).expect("shown");
        assert_eq!(other.citations.len(), 1);
        assert_eq!(other.citations[0].2, Strength::Weak);
        let healthy = [symptom("cpu", Strength::Weak)];
        let none = judge("c1", &answer(4.0, Some("storefront")), &healthy, &th).expect("shown");
        assert!(
            !none.citations[0].1,
            "a harmless change is evidence against"
        );
        // A host-wide change goes with any finding.
        let host = [symptom("cpu", Strength::Strong)];
        let v = judge("c1", &answer(4.0, None), &host, &th).expect("a verdict");
        assert_eq!((v.component.as_str(), v.citations.len()), ("cpu", 2));
    }
}
