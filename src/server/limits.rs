//! What one request may carry, and what one caller may hold open at once.
//!
//! - Lengths: every text a client sends that oncall keeps (in the incident log, the audit log or
//!   a Slack thread) has a maximum, here in one place and listed in the README's API section. A
//!   field over its maximum is refused whole with 400 and a JSON error naming the field and the
//!   limit (`{"error": "title is 5123 characters; the limit is 200", "field": "title",
//!   "limit": 200}`); nothing of it is stored. Lengths are counted in characters (Unicode scalar
//!   values) after trimming, tool arguments in bytes of their JSON. The whole body is capped
//!   before any of this by `[server] max_body_bytes` (413).
//! - Per-caller caps ([`PerCaller`]): open event streams (`[server] max_streams_per_user`) and
//!   investigations running or queued (`[server] max_investigations_per_user`). Each slot is an
//!   RAII [`Slot`]: a closed stream, a dropped connection or a finished round frees it.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An incident's title (`POST /api/v1/incidents` `title`).
pub const TITLE_CHARS: usize = 200;
/// A report that opens an incident or a synchronous triage (`report`).
pub const REPORT_CHARS: usize = 20_000;
/// A message in an incident (`POST .../messages` `text`).
pub const MESSAGE_CHARS: usize = 20_000;
/// Why a person asks for an action (`POST .../actions` `why`).
pub const WHY_CHARS: usize = 2_000;
/// The reason of an approval decision (`POST /api/v1/approvals/{id}/decision` `reason`).
pub const REASON_CHARS: usize = 2_000;
/// A tool's name (`POST .../actions` `tool`); the longest real one is far shorter.
pub const TOOL_NAME_CHARS: usize = 100;
/// A tool call's arguments, as JSON (`POST .../actions` `args`).
pub const TOOL_ARGS_BYTES: usize = 16 * 1024;
/// An eval case's id (`POST /api/v1/record` `id`).
pub const RECORD_ID_CHARS: usize = 100;
/// The text of a Slack slash command or app mention (it opens or continues an incident).
pub const SLACK_TEXT_CHARS: usize = 4_000;
/// Each label name and value of an Alertmanager alert (`alerts[i].labels.*`).
pub const ALERT_LABEL_CHARS: usize = 1_024;
/// Each annotation value of an Alertmanager alert (`alerts[i].annotations.*`).
pub const ALERT_ANNOTATION_CHARS: usize = 4_096;
/// The other string fields of an alert (`alerts[i].status`, `startsAt`, ...).
pub const ALERT_FIELD_CHARS: usize = 1_024;

/// A field over its maximum. Its message is the one the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {length} {unit}; the limit is {limit}")]
pub struct TooLong {
    /// The field as the client named it, e.g. `title` or `alerts[3].annotations.description`.
    pub field: String,
    pub length: usize,
    pub limit: usize,
    /// `characters`, or `bytes as JSON` for tool arguments.
    pub unit: &'static str,
}

/// `text` (trimmed) has at most `limit` characters.
pub fn chars(field: &str, text: &str, limit: usize) -> Result<(), TooLong> {
    let length = text.trim().chars().count();
    if length > limit {
        return Err(TooLong {
            field: field.to_string(),
            length,
            limit,
            unit: "characters",
        });
    }
    Ok(())
}

/// `v` serialized as JSON has at most `limit` bytes (counted without building the string).
pub fn json_bytes(field: &str, v: &Value, limit: usize) -> Result<(), TooLong> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing into a counter cannot fail; a failure would count as over the limit.
    let length = match serde_json::to_writer(&mut n, v) {
        Ok(()) => n.0,
        Err(_) => usize::MAX,
    };
    if length > limit {
        return Err(TooLong {
            field: field.to_string(),
            length,
            limit,
            unit: "bytes as JSON",
        });
    }
    Ok(())
}

/// Every string field of an Alertmanager webhook body's alerts within its limit.
pub fn alerts(alerts: &[Value]) -> Result<(), TooLong> {
    for (i, a) in alerts.iter().enumerate() {
        let Some(fields) = a.as_object() else {
            continue;
        };
        for (k, v) in fields {
            match (k.as_str(), v) {
                ("labels" | "annotations", Value::Object(m)) => {
                    let limit = if k == "labels" {
                        ALERT_LABEL_CHARS
                    } else {
                        ALERT_ANNOTATION_CHARS
                    };
                    for (name, value) in m {
                        chars(&format!("alerts[{i}].{k} name"), name, ALERT_LABEL_CHARS)?;
                        if let Some(s) = value.as_str() {
                            chars(&format!("alerts[{i}].{k}.{}", clip(name)), s, limit)?;
                        }
                    }
                }
                (_, Value::String(s)) => {
                    chars(&format!("alerts[{i}].{}", clip(k)), s, ALERT_FIELD_CHARS)?
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// A client-chosen name, short enough to repeat in an error.
fn clip(name: &str) -> String {
    if name.chars().count() <= 64 {
        name.to_string()
    } else {
        format!("{}…", name.chars().take(64).collect::<String>())
    }
}

/// What one caller has open of one kind, at most `cap` at once.
pub struct PerCaller {
    /// `event streams`, `investigations`.
    what: &'static str,
    /// The setting that sets the cap, e.g. `[server] max_streams_per_user`.
    setting: &'static str,
    /// What to do about it, e.g. `close one`.
    hint: &'static str,
    cap: usize,
    open: Mutex<HashMap<String, Vec<(u64, String)>>>,
    next: AtomicU64,
}

/// One open thing of a caller; dropping it frees the slot.
pub struct Slot {
    owner: Arc<PerCaller>,
    caller: String,
    id: u64,
}

impl Slot {
    /// Renames what this slot is shown as (once the incident it opened has its id).
    pub fn relabel(&self, label: &str) {
        let Ok(mut open) = self.owner.open.lock() else {
            return;
        };
        if let Some((_, l)) = open
            .get_mut(&self.caller)
            .and_then(|list| list.iter_mut().find(|(id, _)| *id == self.id))
        {
            *l = label.to_string();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Ok(mut open) = self.owner.open.lock() else {
            return;
        };
        if let Some(list) = open.get_mut(&self.caller) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                open.remove(&self.caller);
            }
        }
    }
}

/// A caller at their cap: the message names the cap, its setting and what is open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{caller} has {n} {what} open ({list}), the most one caller may ({setting} = {cap}); {hint}",
    n = open.len(),
    list = summary(open)
)]
pub struct OverCap {
    pub caller: String,
    pub what: &'static str,
    pub setting: &'static str,
    pub cap: usize,
    pub hint: &'static str,
    /// What the caller has open, one label per slot (`incident 2026-11-27-01`, `triage`).
    pub open: Vec<String>,
}

/// `incident A ×2, triage` (first ten distinct labels, in the order they were opened).
fn summary(open: &[String]) -> String {
    let mut counted: Vec<(&str, usize)> = vec![];
    for l in open {
        match counted.iter_mut().find(|(x, _)| *x == l.as_str()) {
            Some((_, n)) => *n += 1,
            None => counted.push((l.as_str(), 1)),
        }
    }
    let more = counted.len().saturating_sub(10);
    let mut parts: Vec<String> = counted
        .iter()
        .take(10)
        .map(|(l, n)| {
            if *n > 1 {
                format!("{l} ×{n}")
            } else {
                l.to_string()
            }
        })
        .collect();
    if more > 0 {
        parts.push(format!("{more} more"));
    }
    parts.join(", ")
}

impl PerCaller {
    pub fn new(
        what: &'static str,
        setting: &'static str,
        hint: &'static str,
        cap: usize,
    ) -> Arc<PerCaller> {
        Arc::new(PerCaller {
            what,
            setting,
            hint,
            cap: cap.max(1),
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    /// A slot for `caller`, labelled `label` (shown to them when they are at their cap).
    pub fn acquire(self: &Arc<Self>, caller: &str, label: &str) -> Result<Slot, OverCap> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let list = open.entry(caller.to_string()).or_default();
        if list.len() >= self.cap {
            return Err(OverCap {
                caller: caller.to_string(),
                what: self.what,
                setting: self.setting,
                cap: self.cap,
                hint: self.hint,
                open: list.iter().map(|(_, l)| l.clone()).collect(),
            });
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        list.push((id, label.to_string()));
        Ok(Slot {
            owner: self.clone(),
            caller: caller.to_string(),
            id,
        })
    }

    /// How many slots `caller` holds.
    pub fn held(&self, caller: &str) -> usize {
        self.open
            .lock()
            .map(|o| o.get(caller).map_or(0, Vec::len))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_over_their_limit_are_named_with_the_limit() {
        assert!(chars("title", "  short  ", 5).is_ok());
        let e = chars("title", &"é".repeat(5123), TITLE_CHARS).unwrap_err();
        assert_eq!(e.to_string(), "title is 5123 characters; the limit is 200");
        let e = json_bytes("args", &json!({"a": "x".repeat(20)}), 16).unwrap_err();
        assert_eq!(e.to_string(), "args is 28 bytes as JSON; the limit is 16");
        let long = "d".repeat(ALERT_ANNOTATION_CHARS + 1);
        let body = json!([{"labels": {"alertname": "A"}}, {"annotations": {"description": long}}]);
        let e = alerts(body.as_array().unwrap()).unwrap_err();
        assert_eq!(e.field, "alerts[1].annotations.description");
    }

    #[test]
    fn a_caller_holds_at_most_cap_slots_and_a_dropped_slot_frees_one() {
        let p = PerCaller::new(
            "event streams",
            "[server] max_streams_per_user",
            "close one",
            2,
        );
        let a = p.acquire("ana", "incident X").unwrap();
        let _b = p.acquire("ana", "incident X").unwrap();
        let e = p.acquire("ana", "incident Y").err().unwrap();
        assert_eq!(
            e.to_string(),
            "ana has 2 event streams open (incident X ×2), the most one caller may ([server] max_streams_per_user = 2); close one"
        );
        assert!(
            p.acquire("bo", "incident Y").is_ok(),
            "others are not limited"
        );
        a.relabel("incident Z");
        assert!(
            p.acquire("ana", "x")
                .err()
                .unwrap()
                .to_string()
                .contains("(incident Z, incident X)")
        );
        drop(a);
        assert_eq!(p.held("ana"), 1);
        assert!(p.acquire("ana", "incident Y").is_ok());
        assert_eq!(p.held("bo"), 0, "an empty caller is forgotten");
    }
}
