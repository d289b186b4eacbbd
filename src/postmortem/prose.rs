//! The model writes the prose; the log decides what it may say.
//!
//! With a model configured, oncall asks it (`prompts/postmortem-prose.md.j2`) for the summary,
//! what went well, what went badly and the lessons, as claims that each cite event numbers. Every
//! claim is then checked against the incident's own facts: it must cite events of this incident,
//! every number in it must appear in the facts it cites, and it must pass the blameless check.
//! Claims that fail are dropped and listed in the draft's notes; a section left without claims
//! keeps oncall's own facts. If the model cannot answer, the draft is the deterministic one,
//! with a note saying why.

use super::{Fact, Facts, blameless};
use crate::agent::prompts::Prompts;
use crate::llm::{ChatModel, ChatRequest, Message};
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeSet, HashSet};
use std::sync::LazyLock;

#[derive(Debug, Deserialize)]
struct Claim {
    text: String,
    #[serde(default)]
    cites: Vec<i64>,
}

#[derive(Debug, Deserialize)]
struct Prose {
    #[serde(default)]
    summary: Vec<Claim>,
    #[serde(default)]
    went_well: Vec<Claim>,
    #[serde(default)]
    went_badly: Vec<Claim>,
    #[serde(default)]
    lessons: Vec<Claim>,
}

static NUMBER: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\d+(?:[.,:]\d+)*").ok());
static EVENT_REF: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)(#|event\s+|events\s+)\d+").ok());

/// Every fact of the draft that cites an event, once.
fn cited_facts(f: &Facts) -> Vec<Fact> {
    let mut seen = HashSet::new();
    [
        &f.summary,
        &f.impact,
        &f.detection,
        &f.root_cause,
        &f.ruled_out,
        &f.resolution,
        &f.timeline,
        &f.went_well,
        &f.went_badly,
    ]
    .into_iter()
    .flatten()
    .filter(|x| !x.cites.is_empty() && seen.insert(x.text.clone()))
    .cloned()
    .collect()
}

/// Why a claim may not stand, or None when the facts it cites back it.
pub fn check_claim(text: &str, cites: &[i64], facts: &[Fact]) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return Some("it is empty".into());
    }
    if text.chars().count() > 600 {
        return Some("it is longer than 600 characters".into());
    }
    if cites.is_empty() {
        return Some("it cites no event".into());
    }
    let known: BTreeSet<i64> = facts.iter().flat_map(|f| f.cites.iter().copied()).collect();
    if let Some(c) = cites.iter().find(|c| !known.contains(c)) {
        return Some(format!(
            "it cites event {c}, which no fact of this incident comes from"
        ));
    }
    let backing: String = facts
        .iter()
        .filter(|f| f.cites.iter().any(|c| cites.contains(c)))
        .map(|f| f.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let without_refs = match EVENT_REF.as_ref() {
        Some(re) => re.replace_all(text, "").to_string(),
        None => text.to_string(),
    };
    if let Some(re) = NUMBER.as_ref() {
        for m in re.find_iter(&without_refs) {
            if !backing.contains(m.as_str()) {
                return Some(format!(
                    "the number {} is not in the facts it cites ({})",
                    m.as_str(),
                    cites
                        .iter()
                        .map(|c| format!("#{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    if let Some(b) = blameless::check(text).first() {
        return Some(format!("it is not blameless language ({})", b.why));
    }
    None
}

/// The JSON object in a reply, without the code fences some models add.
fn json_of(reply: &str) -> &str {
    let t = reply.trim();
    match (t.find('{'), t.rfind('}')) {
        (Some(a), Some(b)) if b > a => &t[a..=b],
        _ => t,
    }
}

/// `facts` with the model's checked prose in place of oncall's summary, went well, went badly
/// and lessons. Never fails: what goes wrong is said in the notes and the facts stand.
pub async fn write(model: &dyn ChatModel, prompts: &Prompts, mut facts: Facts) -> Facts {
    let pool = cited_facts(&facts);
    let ctx = serde_json::json!({
        "incident": facts.incident,
        "title": facts.title,
        "facts": pool,
    });
    let prompt = match prompts.render("postmortem-prose.md.j2", &ctx) {
        Ok(p) => p,
        Err(e) => {
            facts.notes.push(format!(
                "The model was not asked for prose: {e}. This draft states oncall's facts only."
            ));
            return facts;
        }
    };
    let req = ChatRequest {
        messages: vec![
            Message::system(
                "You write blameless post-mortem drafts from an incident's log. Answer with JSON only.",
            ),
            Message::user(crate::redact::redact(&prompt)),
        ],
        tools: vec![],
        max_completion_tokens: 1500,
    };
    let reply = match model.complete(&req).await {
        Ok(r) => r.content.unwrap_or_default(),
        Err(e) => {
            facts.notes.push(format!(
                "The model ({}) could not write the prose: {e}. This draft states oncall's facts only.",
                model.name()
            ));
            return facts;
        }
    };
    let prose: Prose = match serde_json::from_str(json_of(&reply)) {
        Ok(p) => p,
        Err(e) => {
            facts.notes.push(format!(
                "The model ({}) did not answer with the JSON asked for ({e}). This draft states oncall's facts only.",
                model.name()
            ));
            return facts;
        }
    };
    let mut dropped = vec![];
    let mut kept = 0;
    let mut take = |section: &str, claims: Vec<Claim>, into: &mut Vec<Fact>| {
        let mut ok = vec![];
        for c in claims.into_iter().take(6) {
            match check_claim(&c.text, &c.cites, &pool) {
                None => ok.push(Fact {
                    text: c.text.trim().to_string(),
                    cites: c.cites,
                }),
                Some(why) => dropped.push(format!(
                    "Dropped a model claim from {section} because {why}: \"{}\"",
                    c.text.chars().take(160).collect::<String>()
                )),
            }
        }
        if !ok.is_empty() {
            kept += ok.len();
            *into = ok;
        }
    };
    take("the summary", prose.summary, &mut facts.summary);
    take("what went well", prose.went_well, &mut facts.went_well);
    take("what went badly", prose.went_badly, &mut facts.went_badly);
    take("the lessons", prose.lessons, &mut facts.lessons);
    if kept > 0 {
        facts.written_by = format!(
            "{} (prose; oncall checked each claim against the log) and oncall (facts)",
            model.name()
        );
    }
    if !dropped.is_empty() {
        facts.notes.push(format!(
            "{} claim(s) of the model were left out: the log does not back them, or they were not blameless.",
            dropped.len()
        ));
    }
    facts.dropped = dropped;
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Vec<Fact> {
        vec![
            Fact::new("Action host.signal_process executed (req-1)", 12),
            Fact::new(
                "Effect measured: abnormal signals: 3 item(s) -> 0 item(s)",
                13,
            ),
            Fact::new(
                "H1 CONFIRMED (0.91): ingest-worker (pid 4242) saturates the CPU",
                9,
            ),
        ]
    }

    #[test]
    fn claims_must_be_backed_by_the_facts_they_cite() {
        let p = pool();
        assert_eq!(
            check_claim(
                "Stopping the busy process cleared all 3 abnormal signals.",
                &[12, 13],
                &p
            ),
            None
        );
        assert_eq!(
            check_claim("The process 4242 saturated the CPU (#9).", &[9], &p),
            None
        );
        let why = check_claim("Latency fell by 40 percent.", &[13], &p).unwrap();
        assert!(why.contains("number 40"), "{why}");
        let why = check_claim("The process 4242 was stopped.", &[12], &p).unwrap();
        assert!(why.contains("4242"), "a number from an uncited fact: {why}");
        assert!(
            check_claim("It recovered.", &[], &p)
                .unwrap()
                .contains("cites no event")
        );
        assert!(
            check_claim("It recovered.", &[77], &p)
                .unwrap()
                .contains("event 77")
        );
        let why =
            check_claim("The operator should have noticed the CPU sooner.", &[9], &p).unwrap();
        assert!(why.contains("not blameless"), "{why}");
    }

    #[test]
    fn fenced_json_is_read() {
        assert_eq!(json_of("```json\n{\"a\": 1}\n```"), "{\"a\": 1}");
        assert_eq!(json_of("no json"), "no json");
    }
}
