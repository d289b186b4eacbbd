//! Progress of `oncall triage` for a person at 3 a.m.: one line per reasoning step ("measured
//! host.use_snapshot", "proposed 6 hypotheses", "weighed 6 pieces of evidence: 5 rejected")
//! instead of every event. On a terminal the step under way turns on a spinner line that is
//! replaced by the finished step; piped, only the finished lines are written, with no escape
//! codes, so logs and CI output stay plain. Everything goes to stderr: stdout is the answer's.
//!
//! The full event stream is [`Verbose`] (`-v`), the same lines as before this existed.

use crate::agent::events::{self, Event, EventSink};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Prints each investigation event on stderr as it happens (`oncall triage -v`).
pub struct Verbose;

impl EventSink for Verbose {
    fn emit(&self, event: &Event) {
        eprintln!("{}", events::line(event));
    }
}

/// What one model step did, gathered from its events until its tool calls have answered.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StepTally {
    pub step: u32,
    pub model_ms: u64,
    /// Tool calls the model asked for in this step, and how many have answered.
    pub calls: usize,
    pub answered: usize,
    /// System tools that answered, with their time; and those that failed.
    pub measured: Vec<(String, u64)>,
    pub failed: Vec<String>,
    pub proposed: usize,
    pub weighed: usize,
    pub concluded: bool,
    /// The last state of each hypothesis this step changed: id -> (status, confidence).
    pub changed: BTreeMap<String, (String, f64)>,
}

impl StepTally {
    /// The finished step as one line, e.g. `step 3: weighed 6 pieces of evidence: H1 proposed
    /// 0.60, 5 rejected`.
    pub fn line(&self) -> String {
        let mut parts: Vec<String> = vec![];
        if !self.measured.is_empty() {
            let tools: Vec<String> = self
                .measured
                .iter()
                .map(|(t, ms)| format!("{t} ({ms} ms)"))
                .collect();
            parts.push(format!("measured {}", tools.join(", ")));
        }
        if !self.failed.is_empty() {
            parts.push(format!("{} failed", self.failed.join(", ")));
        }
        if self.proposed > 0 {
            parts.push(format!(
                "proposed {}",
                plural(self.proposed, "hypothesis", "hypotheses")
            ));
        }
        if self.weighed > 0 {
            let mut what = format!(
                "weighed {}",
                plural(self.weighed, "piece of evidence", "pieces of evidence")
            );
            let moved: Vec<String> = self
                .changed
                .iter()
                .filter(|(_, (s, _))| s != "rejected")
                .map(|(id, (s, c))| format!("{id} {s} {c:.2}"))
                .collect();
            let rejected = self
                .changed
                .values()
                .filter(|(s, _)| s == "rejected")
                .count();
            let mut said = moved;
            if rejected > 0 {
                said.push(format!("{rejected} rejected"));
            }
            if !said.is_empty() {
                what.push_str(": ");
                what.push_str(&said.join(", "));
            }
            parts.push(what);
        }
        if self.concluded {
            parts.push("concluded".into());
        }
        if parts.is_empty() {
            parts.push(if self.calls == 0 {
                "wrote the answer".into()
            } else {
                format!(
                    "asked for {}",
                    plural(self.calls, "tool call", "tool calls")
                )
            });
        }
        let thought = if self.model_ms >= 100 {
            format!(" (model {:.1} s)", self.model_ms as f64 / 1000.0)
        } else {
            String::new()
        };
        format!("step {}: {}{thought}", self.step, parts.join("; "))
    }

    fn done(&self) -> bool {
        self.answered >= self.calls
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

struct State {
    /// A spinner line may be on screen: clear it before writing a line.
    live: bool,
    drawn: bool,
    frame: usize,
    /// What is under way, shown beside the spinner.
    doing: String,
    step: Option<StepTally>,
    started: Instant,
}

impl State {
    fn clear(&mut self, err: &mut impl Write) {
        if self.drawn {
            let _ = write!(err, "\r\x1b[2K");
            self.drawn = false;
        }
    }

    fn say(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        self.clear(&mut err);
        let _ = writeln!(err, "{line}");
        self.draw(&mut err);
    }

    fn draw(&mut self, err: &mut impl Write) {
        if !self.live || self.doing.is_empty() {
            return;
        }
        const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
        let f = FRAMES[self.frame % FRAMES.len()];
        let _ = write!(err, "\r\x1b[2K{f} {}", self.doing);
        let _ = err.flush();
        self.drawn = true;
    }

    /// Writes the step's line once its tool calls have answered (or when forced).
    fn flush_step(&mut self, force: bool) {
        if self.step.as_ref().is_some_and(|s| force || s.done())
            && let Some(s) = self.step.take()
        {
            self.doing = if s.concluded {
                "writing the answer".into()
            } else {
                format!("step {}: thinking", s.step + 1)
            };
            self.say(&s.line());
        }
    }

    fn on(&mut self, event: &Event) {
        match event {
            Event::Started { .. } => {
                self.doing = "step 1: thinking".into();
                let mut err = std::io::stderr().lock();
                self.draw(&mut err);
            }
            Event::ModelStep {
                step,
                tool_calls,
                ms,
                ..
            } => {
                self.flush_step(true);
                self.step = Some(StepTally {
                    step: *step,
                    model_ms: *ms,
                    calls: *tool_calls,
                    ..StepTally::default()
                });
                self.doing = format!(
                    "step {step}: running {}",
                    plural(*tool_calls, "tool call", "tool calls")
                );
                self.flush_step(false);
            }
            Event::ToolCalled { tool, .. } if !tool.starts_with("board.") => {
                if let Some(s) = &self.step {
                    self.doing = format!("step {}: measuring {tool}", s.step);
                }
            }
            // The model's streamed words are for -v; the progress line says what it does.
            Event::ToolCalled { .. } | Event::ModelText { .. } => {}
            Event::ToolAnswered { tool, ok, ms, .. } => {
                if let Some(s) = &mut self.step {
                    s.answered += 1;
                    match tool.as_str() {
                        _ if !ok => s.failed.push(tool.clone()),
                        "board.propose" => s.proposed += 1,
                        "board.evidence" => s.weighed += 1,
                        "board.conclude" => s.concluded = true,
                        t if t.starts_with("board.") => {}
                        t => s.measured.push((t.to_string(), *ms)),
                    }
                }
                self.flush_step(false);
            }
            Event::HypothesisChanged {
                id,
                status,
                confidence,
                ..
            } => {
                if let Some(s) = &mut self.step {
                    s.changed.insert(id.clone(), (status.clone(), *confidence));
                }
            }
            Event::Notice { message } => self.say(&format!("note: {message}")),
            Event::Finished { .. } => {
                self.flush_step(true);
                self.doing.clear();
                let secs = self.started.elapsed().as_secs_f64();
                self.say(&format!("done in {secs:.1} s"));
            }
        }
    }
}

/// One line per step on stderr, with a spinner when stderr is a terminal.
pub struct Progress {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    spinner: Mutex<Option<JoinHandle<()>>>,
}

impl Progress {
    /// A spinner only on a terminal that can draw one (not `TERM=dumb`).
    pub fn new() -> Progress {
        let live =
            std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        let state = Arc::new(Mutex::new(State {
            live,
            drawn: false,
            frame: 0,
            doing: String::new(),
            step: None,
            started: Instant::now(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let spinner = live.then(|| {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    let mut s = lock(&state);
                    s.frame += 1;
                    let mut err = std::io::stderr().lock();
                    s.draw(&mut err);
                }
            })
        });
        Progress {
            state,
            stop,
            spinner: Mutex::new(spinner),
        }
    }

    /// Stops the spinner and clears its line, so the answer starts on a clean screen.
    pub fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.spinner.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        let mut s = lock(&self.state);
        s.doing.clear();
        let mut err = std::io::stderr().lock();
        s.clear(&mut err);
        let _ = err.flush();
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl EventSink for Progress {
    fn emit(&self, event: &Event) {
        lock(&self.state).on(event);
    }
}

/// A poisoned lock only means a print panicked; the state is still good to print from.
fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
