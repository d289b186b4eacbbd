//! Policy rules (`tools/policy.toml`): for each tool or risk class, per environment, whether a
//! call runs freely, needs a human's approval, or is forbidden, and who may request and approve.
//!
//! Rules are read top to bottom and the first that matches a call decides; a call that no rule
//! matches is forbidden (deny by default). A rule can never let a live action run freely: the
//! loader refuses `effect = "allow"` on anything that may match a live action. Unknown tools,
//! unknown keys and malformed rules are refused at startup with the line they are on.

use super::{Human, Role};
use crate::tool::{RiskClass, ToolSpec};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The policy shipped with oncall (the file in the repository, compiled in).
pub const DEFAULT: &str = include_str!("../../tools/policy.toml");

/// What a rule lets a call do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Runs without asking anyone (never for live actions).
    Allow,
    /// Runs only with an approval from a human holding one of the rule's approver roles, who is
    /// not the requester.
    Approve,
    /// Never runs.
    Forbid,
}

/// Who asks for a call: the agent (a model or the offline reasoner) or a person by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Agent,
    Viewer,
    Responder,
    Approver,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// Tool names; `area.*` matches an area.
    #[serde(default)]
    tools: Vec<Spanned<String>>,
    #[serde(default)]
    risk: Option<RiskClass>,
    /// Environments it applies to; none: every environment.
    #[serde(default)]
    environments: Vec<String>,
    effect: Effect,
    #[serde(default)]
    requesters: Vec<Actor>,
    #[serde(default)]
    approvers: Vec<Role>,
    #[serde(default)]
    two_person: bool,
}

/// One rule, as loaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Line of the rule in its file, for messages and the audit log.
    pub line: usize,
    pub tools: Vec<String>,
    pub risk: Option<RiskClass>,
    pub environments: Vec<String>,
    pub effect: Effect,
    pub requesters: Vec<Actor>,
    pub approvers: Vec<Role>,
    /// The approver must be a different person from the one the request was made for (the
    /// human driving the investigation when the model filed it), not only from its filer.
    pub two_person: bool,
}

impl Rule {
    fn matches(&self, tool: &ToolSpec, env: &str) -> bool {
        (self.tools.is_empty() || self.tools.iter().any(|p| glob(p, tool.name)))
            && self.risk.is_none_or(|r| r == tool.risk)
            && (self.environments.is_empty() || self.environments.iter().any(|e| e == env))
    }
}

fn glob(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Why a policy file was refused: always with the file and the line.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{file}:{line}: {message}")]
pub struct PolicyFileError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Why a call or a decision was refused by the policy.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("`{tool}` is forbidden in {env} by the policy ({rule})")]
    Forbidden {
        tool: String,
        env: String,
        rule: String,
    },
    #[error("{who} may not request `{tool}` in {env} (policy line {line} allows: {allowed})")]
    MayNotRequest {
        who: String,
        tool: String,
        env: String,
        line: usize,
        allowed: String,
    },
    #[error(
        "{who} may not approve `{tool}` in {env}: it needs one of the roles {needed} (policy line {line})"
    )]
    MayNotApprove {
        who: String,
        tool: String,
        env: String,
        line: usize,
        needed: String,
    },
}

/// The loaded policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub file: String,
    pub rules: Vec<Rule>,
}

/// The decision for one tool in one environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'a> {
    pub effect: Effect,
    /// The rule that decided; none: no rule matched (deny by default).
    pub rule: Option<&'a Rule>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Policy {
    /// Parses and checks a policy against the tools that exist.
    pub fn load(text: &str, file: &str, tools: &[ToolSpec]) -> Result<Policy, PolicyFileError> {
        let err = |line: usize, message: String| PolicyFileError {
            file: file.to_string(),
            line,
            message,
        };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            err(line, e.message().to_string())
        })?;
        let mut rules = vec![];
        for r in raw.rules {
            let line = line_of(text, r.span().start);
            let r = r.into_inner();
            if r.tools.is_empty() && r.risk.is_none() {
                return Err(err(
                    line,
                    "a rule needs `tools` or `risk` (a rule for everything would hide mistakes)"
                        .into(),
                ));
            }
            let mut names = vec![];
            for t in &r.tools {
                let matched: Vec<&ToolSpec> =
                    tools.iter().filter(|s| glob(t.get_ref(), s.name)).collect();
                // An exact name must exist (a typo would silently match nothing); an area
                // (`deploy.*`) may be empty when the team's action files have none of it.
                if matched.is_empty() && !t.get_ref().ends_with('*') {
                    return Err(err(
                        line_of(text, t.span().start),
                        format!(
                            "no tool named {:?}; known tools: {}",
                            t.get_ref(),
                            tools.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                if r.effect == Effect::Allow
                    && let Some(live) = matched.iter().find(|s| s.risk == RiskClass::LiveAction)
                {
                    return Err(err(
                        line_of(text, t.span().start),
                        format!(
                            "`{}` is a live action: a rule may require an approval for it or forbid it, never allow it",
                            live.name
                        ),
                    ));
                }
                names.push(t.get_ref().clone());
            }
            if r.effect == Effect::Allow && r.risk == Some(RiskClass::LiveAction) {
                return Err(err(
                    line,
                    "live actions may require an approval or be forbidden, never be allowed".into(),
                ));
            }
            if r.two_person && r.effect != Effect::Approve {
                return Err(err(
                    line,
                    "`two_person = true` only means something with `effect = \"approve\"`".into(),
                ));
            }
            if r.effect == Effect::Approve && r.approvers.is_empty() {
                return Err(err(
                    line,
                    "`effect = \"approve\"` needs `approvers` (the roles that may approve)".into(),
                ));
            }
            if r.effect == Effect::Approve && r.requesters.is_empty() {
                return Err(err(
                    line,
                    "`effect = \"approve\"` needs `requesters` (who may ask: agent, responder, approver)"
                        .into(),
                ));
            }
            rules.push(Rule {
                line,
                tools: names,
                risk: r.risk,
                environments: r.environments,
                effect: r.effect,
                requesters: r.requesters,
                approvers: r.approvers,
                two_person: r.two_person,
            });
        }
        Ok(Policy {
            file: file.to_string(),
            rules,
        })
    }

    /// The first matching rule's effect; forbid when none matches.
    pub fn decide(&self, tool: &ToolSpec, env: &str) -> Decision<'_> {
        match self.rules.iter().find(|r| r.matches(tool, env)) {
            Some(r) => Decision {
                // Belt and braces: whatever a rule says, a live action never runs freely.
                effect: if r.effect == Effect::Allow && tool.risk == RiskClass::LiveAction {
                    Effect::Approve
                } else {
                    r.effect
                },
                rule: Some(r),
            },
            None => Decision {
                effect: Effect::Forbid,
                rule: None,
            },
        }
    }

    fn where_(&self, d: &Decision) -> String {
        match d.rule {
            Some(r) => format!("{} line {}", self.file, r.line),
            None => format!("no rule in {} matches it: denied by default", self.file),
        }
    }

    /// Whether `actor` (named `who`) may ask for `tool` in `env`; the decision if so.
    pub fn may_request(
        &self,
        tool: &ToolSpec,
        env: &str,
        who: &str,
        actor: Actor,
    ) -> Result<Decision<'_>, Refusal> {
        let d = self.decide(tool, env);
        match (d.effect, d.rule) {
            (Effect::Forbid, _) | (_, None) => Err(Refusal::Forbidden {
                tool: tool.name.to_string(),
                env: env.to_string(),
                rule: self.where_(&d),
            }),
            (Effect::Allow, _) => Ok(d),
            (Effect::Approve, Some(r)) => {
                if r.requesters.contains(&actor) {
                    Ok(d)
                } else {
                    Err(Refusal::MayNotRequest {
                        who: who.to_string(),
                        tool: tool.name.to_string(),
                        env: env.to_string(),
                        line: r.line,
                        allowed: format!("{:?}", r.requesters).to_lowercase(),
                    })
                }
            }
        }
    }

    /// Whether the rule deciding `tool` in `env` demands two different people.
    pub fn two_person(&self, tool: &ToolSpec, env: &str) -> bool {
        self.decide(tool, env).rule.is_some_and(|r| r.two_person)
    }

    /// Whether `human` may approve a call of `tool` in `env` (the requester check is separate).
    pub fn may_approve(&self, tool: &ToolSpec, env: &str, human: &Human) -> Result<(), Refusal> {
        let d = self.decide(tool, env);
        match (d.effect, d.rule) {
            (Effect::Approve, Some(r)) => {
                if human.roles.iter().any(|h| r.approvers.contains(h)) {
                    Ok(())
                } else {
                    Err(Refusal::MayNotApprove {
                        who: human.name.clone(),
                        tool: tool.name.to_string(),
                        env: env.to_string(),
                        line: r.line,
                        needed: format!("{:?}", r.approvers).to_lowercase(),
                    })
                }
            }
            _ => Err(Refusal::Forbidden {
                tool: tool.name.to_string(),
                env: env.to_string(),
                rule: self.where_(&d),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &'static str, risk: RiskClass) -> ToolSpec {
        ToolSpec {
            name,
            description: "",
            risk,
            parameters: json!({"type": "object"}),
            unavailable: false,
            version: 1,
        }
    }

    fn tools() -> Vec<ToolSpec> {
        vec![
            spec("host.use_snapshot", RiskClass::Read),
            spec("postgres.explain_analyze", RiskClass::Write),
            spec("host.signal_process", RiskClass::LiveAction),
            spec("deploy.rollback", RiskClass::LiveAction),
        ]
    }

    #[test]
    fn the_shipped_policy_loads_and_denies_by_default() {
        let mut t = tools();
        t.extend(
            crate::app::builtin_registry(std::sync::Arc::new(crate::config::Config::default()))
                .specs(),
        );
        let p = Policy::load(DEFAULT, "tools/policy.toml", &t).expect("the shipped policy loads");
        let read = spec("host.use_snapshot", RiskClass::Read);
        assert_eq!(p.decide(&read, "production").effect, Effect::Allow);
        let live = spec("host.signal_process", RiskClass::LiveAction);
        assert_eq!(p.decide(&live, "production").effect, Effect::Approve);
        let empty = Policy::load("", "p.toml", &t).unwrap();
        assert_eq!(empty.decide(&read, "production").effect, Effect::Forbid);
    }

    #[test]
    fn bad_rules_are_refused_with_their_line() {
        let t = tools();
        let cases = [
            (
                "[[rule]]\nrisk = \"read\"\neffect = \"allow\"\n\n[[rule]]\ntools = [\"host.nope\"]\neffect = \"forbid\"\n",
                6,
                "host.nope",
            ),
            (
                "[[rule]]\ntools = [\"deploy.rollback\"]\neffect = \"allow\"\n",
                2,
                "never allow",
            ),
            (
                "[[rule]]\nrisk = \"live_action\"\neffect = \"allow\"\n",
                1,
                "never",
            ),
            (
                "[[rule]]\neffect = \"forbid\"\n",
                1,
                "needs `tools` or `risk`",
            ),
            (
                "[[rule]]\nrisk = \"write\"\neffect = \"approve\"\nrequesters = [\"agent\"]\n",
                1,
                "approvers",
            ),
            (
                "[[rule]]\nrisk = \"read\"\neffect = \"maybe\"\n",
                3,
                "maybe",
            ),
            (
                "[[rule]]\nrisk = \"read\"\neffect = \"allow\"\ncolour = 1\n",
                4,
                "colour",
            ),
            ("[[rule]\n", 1, ""),
        ];
        for (text, line, needle) in cases {
            let e = Policy::load(text, "p.toml", &t).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(e.to_string().starts_with(&format!("p.toml:{line}:")), "{e}");
        }
    }

    #[test]
    fn requesters_approvers_and_environments_are_enforced() {
        let text = "[[rule]]\ntools = [\"deploy.*\"]\nenvironments = [\"production\"]\neffect = \"approve\"\nrequesters = [\"agent\", \"responder\"]\napprovers = [\"approver\"]\n\n[[rule]]\ntools = [\"deploy.*\"]\neffect = \"forbid\"\n";
        let p = Policy::load(text, "p.toml", &tools()).unwrap();
        let rb = spec("deploy.rollback", RiskClass::LiveAction);
        assert!(
            p.may_request(&rb, "production", "agent", Actor::Agent)
                .is_ok()
        );
        assert!(matches!(
            p.may_request(&rb, "production", "vic", Actor::Viewer),
            Err(Refusal::MayNotRequest { .. })
        ));
        assert!(matches!(
            p.may_request(&rb, "staging", "agent", Actor::Agent),
            Err(Refusal::Forbidden { .. })
        ));
        let ana = Human {
            name: "ana".into(),
            roles: vec![Role::Approver],
        };
        let bo = Human {
            name: "bo".into(),
            roles: vec![Role::Responder],
        };
        assert!(p.may_approve(&rb, "production", &ana).is_ok());
        assert!(matches!(
            p.may_approve(&rb, "production", &bo),
            Err(Refusal::MayNotApprove { .. })
        ));
        assert!(p.may_approve(&rb, "staging", &ana).is_err());
    }
}
