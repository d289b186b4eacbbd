//! The kinds of entry an incident's log holds: one enum for the store, the event stream (SSE),
//! Slack, the post-mortem and incident memory. A kind travels as its snake_case name (the `kind`
//! field of an event, the `event:` line of a stream message); code matches on the enum, never on
//! the name.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

macro_rules! kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// What an incident event records.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[$doc])* $variant,)*
            /// A kind this version does not know (written by a newer replica sharing the
            /// store); kept as written and shown as it is.
            Other(String),
        }

        impl EventKind {
            /// Every kind this version writes, in the order of an incident's life.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The name it is stored and streamed under.
            pub fn as_str(&self) -> &str {
                match self {
                    $(EventKind::$variant => $name,)*
                    EventKind::Other(name) => name,
                }
            }

            /// The kind stored under `name`.
            pub fn parse(name: &str) -> EventKind {
                match name {
                    $($name => EventKind::$variant,)*
                    other => EventKind::Other(other.to_string()),
                }
            }
        }
    };
}

kinds! {
    /// The report that opened the incident (`text`).
    Report = "report",
    /// A person's follow-up (`text`); it starts a new round of investigation.
    Message = "message",
    /// Something a responder should know: a retry, a fallback, a refusal (`message`).
    Notice = "notice",
    /// The incident's status moved (`status`, `severity`).
    StatusChanged = "status_changed",
    /// oncall stopped in the middle of an investigation.
    Interrupted = "interrupted",
    /// A round of investigation began (`round`, `reasoner`).
    InvestigationStarted = "investigation_started",
    /// A round ended with its answer (`conclusion`, `triage`, `hypotheses`, `next_steps`, ...).
    InvestigationFinished = "investigation_finished",
    /// The model (or the offline reasoner) finished one step (`tokens`, `ms`).
    ModelStep = "model_step",
    /// A tool was called (`call`, `tool`, `args`).
    ToolCalled = "tool_called",
    /// A tool answered (`call`, `tool`, `ok`, `ms`, `summary`).
    ToolAnswered = "tool_answered",
    /// A hypothesis was proposed or its confidence moved with evidence.
    HypothesisChanged = "hypothesis_changed",
    /// A live action was requested and waits for an approver (`request`, `tool`, `args`).
    ActionRequested = "action_requested",
    /// An approver approved a request (`request`, `by`).
    ActionApproved = "action_approved",
    /// An approver denied a request (`request`, `by`, `reason`).
    ActionDenied = "action_denied",
    /// The requester took a request back (`request`, `by`, `reason`).
    ActionWithdrawn = "action_withdrawn",
    /// An approved action is starting (written before it runs).
    ActionExecuting = "action_executing",
    /// An approved action returned (`ok`, `output` or `error`).
    ActionExecuted = "action_executed",
    /// The effect of an action, measured after it settled (`effect`).
    ActionVerified = "action_verified",
    /// oncall stopped between an action's start and its result: check by hand (`verify`).
    ActionOutcomeUnknown = "action_outcome_unknown",
    /// A post-mortem draft was written from the log (`markdown`, `brief`).
    PostmortemDrafted = "postmortem_drafted",
    /// The resolved incident went into incident memory (`cause` or `error`).
    Remembered = "remembered",
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(EventKind::parse(&name))
    }
}

impl EventKind {
    /// An approver's decision on a request.
    pub fn is_decision(&self) -> bool {
        matches!(self, EventKind::ActionApproved | EventKind::ActionDenied)
    }

    /// A person's words that an investigation reads: the report and the follow-ups.
    pub fn is_said(&self) -> bool {
        matches!(self, EventKind::Report | EventKind::Message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_by_its_name_and_names_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        for k in EventKind::ALL {
            assert!(names.insert(k.as_str()), "{k} twice");
            assert_eq!(&EventKind::parse(k.as_str()), k);
            let json = serde_json::to_string(k).unwrap();
            assert_eq!(json, format!("\"{k}\""));
            assert_eq!(&serde_json::from_str::<EventKind>(&json).unwrap(), k);
            assert!(!matches!(k, EventKind::Other(_)));
        }
    }

    #[test]
    fn a_kind_from_a_newer_version_is_kept_as_written() {
        let k: EventKind = serde_json::from_str("\"runbook_linked\"").unwrap();
        assert_eq!(k, EventKind::Other("runbook_linked".into()));
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"runbook_linked\"");
    }
}
