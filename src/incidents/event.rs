//! The kinds of entry an incident's log holds: one enum for the store, the event stream (SSE),
//! Slack, the post-mortem and incident memory. A kind travels as its snake_case name (the `kind`
//! field of an event, the `event:` line of a stream message); code matches on the enum, never on
//! the name.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

macro_rules! kinds {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal [$($field:ident),*],)*) => {
        /// What an incident event records.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[doc = $doc])* $variant,)*
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

            /// What the kind records, in words (its doc comment).
            pub fn meaning(&self) -> &'static str {
                match self {
                    $(EventKind::$variant => concat!($($doc),*).trim_ascii(),)*
                    EventKind::Other(_) => "a kind this version does not know",
                }
            }

            /// The fields of an event's `data` for this kind.
            pub fn data_fields(&self) -> &'static [&'static str] {
                match self {
                    $(EventKind::$variant => &[$(stringify!($field)),*],)*
                    EventKind::Other(_) => &[],
                }
            }
        }
    };
}

kinds! {
    /// The report that opened the incident.
    Report = "report" [text],
    /// A person's follow-up; it starts a new round of investigation.
    Message = "message" [text],
    /// Something a responder should know: a retry, a fallback, a refusal.
    Notice = "notice" [message],
    /// The incident's status moved.
    StatusChanged = "status_changed" [status],
    /// oncall stopped in the middle of an investigation (`owner`: the replica that ran it).
    Interrupted = "interrupted" [reason, by, owner],
    /// A round of investigation began.
    InvestigationStarted = "investigation_started" [round, reasoner],
    /// A round ended with its answer (`severity` is the triage's; `abstained`: no hypothesis
    /// reached the confidence threshold; `tokens`: its model calls, tokens, time and cost, which
    /// `spend` says in one line).
    InvestigationFinished = "investigation_finished" [round, reasoner, conclusion, severity, triage,
        hypotheses, abstained, stabilize, next_steps, debug_log, answer, notices, tokens, spend],
    /// The model (or the offline reasoner) finished one step.
    ModelStep = "model_step" [step, prompt_tokens, completion_tokens, cached_tokens, calls, tool_calls, ms],
    /// Text the model wrote, as it streamed (`[llm] stream = true`).
    ModelText = "model_text" [step, text],
    /// A tool was called.
    ToolCalled = "tool_called" [call, tool, args],
    /// A tool answered.
    ToolAnswered = "tool_answered" [call, tool, ok, ms, summary],
    /// A hypothesis was proposed or its confidence moved with evidence.
    HypothesisChanged = "hypothesis_changed" [id, category, component, status, confidence, statement],
    /// A live action was requested and waits for an approver (`plan`: its dry run).
    ActionRequested = "action_requested" [request, tool, args, plan, why, requested_by, on_behalf_of],
    /// An approver approved a request.
    ActionApproved = "action_approved" [request, by],
    /// An approver denied a request.
    ActionDenied = "action_denied" [request, by, reason],
    /// The requester took a request back.
    ActionWithdrawn = "action_withdrawn" [request, tool, by, reason],
    /// An approved action is starting (written before it runs).
    ActionExecuting = "action_executing" [request, tool],
    /// An approved action returned (`output` when `ok`, else `error`).
    ActionExecuted = "action_executed" [request, tool, ok, output, error],
    /// The effect of an action, measured after it settled.
    ActionVerified = "action_verified" [request, tool, ok, effect],
    /// oncall stopped between an action's start and its result: check by hand (`verify` says
    /// what; `replica`: the replica that stopped, when another one noticed).
    ActionOutcomeUnknown = "action_outcome_unknown" [request, tool, verify, replica],
    /// A post-mortem draft was written from the log, with the blameless check's findings.
    PostmortemDrafted = "postmortem_drafted" [markdown, brief, blameless_findings, written_by,
        notes, dropped],
    /// The resolved incident went into incident memory (`cause`, or `error` when it could not).
    Remembered = "remembered" [cause, error, memory],
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

/// The kind as the API documents it: a string, one of [`EventKind::ALL`]'s names.
impl utoipa::PartialSchema for EventKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let mut description = String::from(
            "What the event records (its `event:` name on the event stream). A replica of a \
             newer version may write kinds not listed here.",
        );
        for k in EventKind::ALL {
            description.push_str(&format!("\n- `{k}`: {}", k.meaning()));
        }
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(EventKind::ALL.iter().map(EventKind::as_str)))
            .description(Some(description))
            .into()
    }
}

impl utoipa::ToSchema for EventKind {}

/// The schema of an event's `data`: an object whose fields depend on the kind, each kind's
/// fields listed in its description.
pub fn data_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let mut description =
        String::from("The kind's data (redacted before it is stored). Its fields, by kind:");
    for k in EventKind::ALL {
        let fields: Vec<String> = k.data_fields().iter().map(|f| format!("`{f}`")).collect();
        description.push_str(&format!("\n- `{k}`: {{{}}}", fields.join(", ")));
    }
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .build()
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
