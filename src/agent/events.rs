//! Progress of an investigation as events, emitted the moment each step happens: the CLI prints
//! them, and the server will stream them. Emitting never blocks the investigation.

use serde::Serialize;

/// One step of an investigation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        incident: String,
        reasoner: String,
    },
    /// The model (or the offline reasoner) finished thinking for one step.
    ModelStep {
        step: u32,
        prompt_tokens: u64,
        completion_tokens: u64,
        /// Prompt tokens served from the endpoint's prompt cache (0 when it does not say).
        cached_tokens: u64,
        /// HTTP calls to the model endpoint this step took, failed attempts included (0 for
        /// the offline reasoner).
        calls: u32,
        tool_calls: usize,
        ms: u64,
    },
    /// Text the model is writing, as it streams (a line, or up to about 200 characters, at a
    /// time).
    ModelText {
        step: u32,
        text: String,
    },
    ToolCalled {
        call: String,
        tool: String,
        args: String,
    },
    ToolAnswered {
        call: String,
        tool: String,
        ok: bool,
        ms: u64,
        summary: String,
    },
    HypothesisChanged {
        id: String,
        category: String,
        component: String,
        status: String,
        confidence: f64,
        statement: String,
    },
    /// Something the responder should know: a retry, a fallback, a refused action.
    Notice {
        message: String,
    },
    Finished {
        conclusion: String,
    },
}

/// Where events go.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: &Event);
}

/// Streamed model text on its way to the events: pieces are gathered until a line ends or about
/// 200 characters wait, so a reply becomes a few events, not one per token.
pub struct TextFlow<'a> {
    events: &'a dyn EventSink,
    step: u32,
    pending: std::sync::Mutex<String>,
}

impl<'a> TextFlow<'a> {
    pub fn new(events: &'a dyn EventSink, step: u32) -> TextFlow<'a> {
        TextFlow {
            events,
            step,
            pending: std::sync::Mutex::new(String::new()),
        }
    }

    /// Takes a piece of text.
    pub fn push(&self, piece: &str) {
        let ready = {
            let Ok(mut p) = self.pending.lock() else {
                return;
            };
            p.push_str(piece);
            if p.contains('\n') || p.len() >= 200 {
                std::mem::take(&mut *p)
            } else {
                return;
            }
        };
        self.send(ready);
    }

    /// Sends what is left.
    pub fn flush(&self) {
        let rest = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        self.send(rest);
    }

    fn send(&self, text: String) {
        if !text.trim().is_empty() {
            self.events.emit(&Event::ModelText {
                step: self.step,
                text,
            });
        }
    }
}

/// Drops every event.
pub struct Silent;

impl EventSink for Silent {
    fn emit(&self, _event: &Event) {}
}

/// Collects events (tests).
#[derive(Default)]
pub struct Collect(pub std::sync::Mutex<Vec<Event>>);

impl EventSink for Collect {
    fn emit(&self, event: &Event) {
        if let Ok(mut v) = self.0.lock() {
            v.push(event.clone());
        }
    }
}

/// One line for a person watching the investigation.
pub fn line(e: &Event) -> String {
    match e {
        Event::Started { incident, reasoner } => {
            format!("[start] incident {incident}, reasoner {reasoner}")
        }
        Event::ModelStep {
            step,
            prompt_tokens,
            completion_tokens,
            cached_tokens,
            calls,
            tool_calls,
            ms,
        } => {
            let cached = if *cached_tokens > 0 {
                format!(", {cached_tokens} cached")
            } else {
                String::new()
            };
            let http = if *calls > 1 {
                format!(" in {calls} model calls")
            } else {
                String::new()
            };
            format!(
                "[step {step}] thought for {ms} ms{http} ({prompt_tokens} prompt + {completion_tokens} completion tokens{cached}), {tool_calls} tool call(s)"
            )
        }
        Event::ModelText { step, text } => format!("[step {step}] model: {}", text.trim_end()),
        Event::ToolCalled { call, tool, args } => format!("[{call}] {tool} {args}"),
        Event::ToolAnswered {
            call,
            tool,
            ok,
            ms,
            summary,
        } => {
            format!(
                "[{call}] {tool} {} in {ms} ms: {summary}",
                if *ok { "answered" } else { "failed" }
            )
        }
        Event::HypothesisChanged {
            id,
            category,
            status,
            confidence,
            statement,
            ..
        } => {
            format!("[{id}] {status} {confidence:.2} {category}: {statement}")
        }
        Event::Notice { message } => format!("[note] {message}"),
        Event::Finished { conclusion } => format!("[done] {conclusion}"),
    }
}
