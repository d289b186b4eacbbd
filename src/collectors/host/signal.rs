//! The shape of host evidence: signals grouped per resource by the USE method.

use crate::config::Level;
use serde::{Deserialize, Serialize};

/// Whether a signal is normal. Ordered: `Normal < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Normal,
    Warning,
    Critical,
}

impl Status {
    /// Classifies a value where higher is worse.
    pub fn of(value: f64, level: Level) -> Status {
        if value >= level.crit {
            Status::Critical
        } else if value >= level.warn {
            Status::Warning
        } else {
            Status::Normal
        }
    }
}

/// One measured value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// What was measured, e.g. `run_queue_per_core`.
    pub metric: String,
    pub value: f64,
    pub unit: String,
    pub status: Status,
    /// Where it was read, e.g. `/proc/stat` (left out of compact evidence).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Signal {
    /// A signal classified against a level (higher is worse).
    pub fn rated(metric: &str, value: f64, unit: &str, level: Level, source: &str) -> Signal {
        Signal {
            metric: metric.into(),
            value: round2(value),
            unit: unit.into(),
            status: Status::of(value, level),
            source: source.into(),
            note: None,
        }
    }

    /// A signal shown for context only; it is always normal.
    pub fn info(metric: &str, value: f64, unit: &str, source: &str) -> Signal {
        Signal {
            metric: metric.into(),
            value: round2(value),
            unit: unit.into(),
            status: Status::Normal,
            source: source.into(),
            note: None,
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Signal {
        self.note = Some(note.into());
        self
    }
}

/// Rounds to two decimals, which is all the precision evidence needs.
pub fn round2(v: f64) -> f64 {
    if v.is_finite() {
        (v * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// The USE view of one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceReport {
    /// `cpu`, `memory`, `disk:<device>`, `fs:<mount>`, `net:<interface>`, `tcp`, `fd`.
    pub resource: String,
    /// The worst status among its signals.
    pub status: Status,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub utilization: Vec<Signal>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saturation: Vec<Signal>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Signal>,
}

impl ResourceReport {
    pub fn new(
        resource: impl Into<String>,
        utilization: Vec<Signal>,
        saturation: Vec<Signal>,
        errors: Vec<Signal>,
    ) -> ResourceReport {
        let status = utilization
            .iter()
            .chain(&saturation)
            .chain(&errors)
            .map(|s| s.status)
            .max()
            .unwrap_or(Status::Normal);
        ResourceReport {
            resource: resource.into(),
            status,
            utilization,
            saturation,
            errors,
        }
    }

    /// Adds a saturation signal; the resource's status follows the worst of its signals.
    pub fn push_saturation(&mut self, s: Signal) {
        self.status = self.status.max(s.status);
        self.saturation.push(s);
    }

    /// Adds an error signal; the resource's status follows the worst of its signals.
    pub fn push_error(&mut self, s: Signal) {
        self.status = self.status.max(s.status);
        self.errors.push(s);
    }

    /// All signals of this resource.
    pub fn signals(&self) -> impl Iterator<Item = &Signal> {
        self.utilization
            .iter()
            .chain(&self.saturation)
            .chain(&self.errors)
    }

    /// A signal by metric name.
    pub fn signal(&self, metric: &str) -> Option<&Signal> {
        self.signals().find(|s| s.metric == metric)
    }
}

/// A signal that could not be read, and why. The snapshot carries on without it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unreadable {
    pub signal: String,
    pub source: String,
    pub why: String,
}

impl Unreadable {
    pub fn new(signal: &str, source: &str, why: impl Into<String>) -> Unreadable {
        Unreadable {
            signal: signal.into(),
            source: source.into(),
            why: why.into(),
        }
    }
}

/// The increase of a monotonic counter, or a clear error when it went backwards.
pub fn counter_delta(name: &str, before: u64, after: u64) -> Result<u64, String> {
    after.checked_sub(before).ok_or_else(|| {
        format!("counter {name} went backwards from {before} to {after} during the window (wrapped or reset); rate not computed")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_thresholds_are_inclusive() {
        let l = Level {
            warn: 10.0,
            crit: 20.0,
        };
        assert_eq!(Status::of(9.99, l), Status::Normal);
        assert_eq!(Status::of(10.0, l), Status::Warning);
        assert_eq!(Status::of(20.0, l), Status::Critical);
    }

    #[test]
    fn wrapped_counter_is_an_error_not_a_huge_rate() {
        assert_eq!(counter_delta("x", 5, 9), Ok(4));
        let err = counter_delta("rx_bytes", u64::MAX - 1, 3).unwrap_err();
        assert!(
            err.contains("rx_bytes") && err.contains("backwards"),
            "{err}"
        );
    }

    #[test]
    fn resource_status_is_the_worst_signal() {
        let l = Level {
            warn: 1.0,
            crit: 2.0,
        };
        let r = ResourceReport::new(
            "cpu",
            vec![Signal::rated("a", 0.0, "%", l, "t")],
            vec![Signal::rated("b", 1.5, "%", l, "t")],
            vec![],
        );
        assert_eq!(r.status, Status::Warning);
    }
}
