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
/// 200 characters wait, so a reply becomes a few events, not one per token. An event holds at
/// most 1,000 characters and a step streams at most 16 KiB: the events (and the store behind
/// them) stay bounded whatever an endpoint sends; the whole reply is still the step's answer.
pub struct TextFlow<'a> {
    events: &'a dyn EventSink,
    step: u32,
    pending: std::sync::Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    text: String,
    sent: usize,
    capped: bool,
}

const FLUSH_AT: usize = 200;
const EVENT_MAX: usize = 1000;
const STEP_MAX: usize = 16 * 1024;

impl<'a> TextFlow<'a> {
    pub fn new(events: &'a dyn EventSink, step: u32) -> TextFlow<'a> {
        TextFlow {
            events,
            step,
            pending: std::sync::Mutex::new(Pending::default()),
        }
    }

    /// Takes a piece of text.
    pub fn push(&self, piece: &str) {
        self.drain(piece, false);
    }

    /// Sends what is left.
    pub fn flush(&self) {
        self.drain("", true);
    }

    fn drain(&self, piece: &str, all: bool) {
        let mut ready = vec![];
        {
            let Ok(mut p) = self.pending.lock() else {
                return;
            };
            if p.capped {
                return;
            }
            p.text.push_str(piece);
            while !p.text.is_empty() && (all || p.text.contains('\n') || p.text.len() >= FLUSH_AT) {
                let room = EVENT_MAX.min(STEP_MAX.saturating_sub(p.sent));
                let mut cut = p.text.len().min(room);
                while !p.text.is_char_boundary(cut) {
                    cut -= 1;
                }
                let mut text: String = p.text.drain(..cut).collect();
                p.sent += text.len();
                if p.sent >= STEP_MAX {
                    text.push_str(" [the rest of this reply is not streamed]");
                    p.capped = true;
                    p.text.clear();
                }
                ready.push(text);
                if p.capped || cut == 0 {
                    break;
                }
            }
        }
        for text in ready {
            if !text.trim().is_empty() {
                self.events.emit(&Event::ModelText {
                    step: self.step,
                    text,
                });
            }
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

#[cfg(test)]
mod flow_tests {
    use super::*;

    fn texts(c: &Collect) -> Vec<String> {
        c.0.lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::ModelText { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn streamed_text_is_gathered_by_line_and_bounded() {
        let c = Collect::default();
        let flow = TextFlow::new(&c, 1);
        for piece in ["The host ", "is quiet.", "\nNo action", " needed."] {
            flow.push(piece);
        }
        flow.flush();
        assert_eq!(texts(&c), ["The host is quiet.\nNo action", " needed."]);
        // One huge piece: events of at most 1,000 characters, at most 16 KiB in the step.
        let c = Collect::default();
        let flow = TextFlow::new(&c, 2);
        flow.push(&"é".repeat(40_000));
        flow.push("more");
        flow.flush();
        let t = texts(&c);
        assert!(
            t.iter().all(|x| x.len() <= 1000 + 60),
            "{:?}",
            t.iter().map(String::len).collect::<Vec<_>>()
        );
        let total: usize = t.iter().map(String::len).sum();
        assert!(total <= 16 * 1024 + 60, "{total}");
        assert!(
            t.last()
                .unwrap()
                .ends_with("[the rest of this reply is not streamed]")
        );
    }
}
