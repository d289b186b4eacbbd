//! Questions asked of the span store: RED per service and operation beside a baseline window,
//! the slowest traces, the critical path (one trace, or aggregated over the slow ones), and
//! error spans grouped by where they come from.

use super::store::{Span, View};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Rate, errors and duration of one (service, operation) in one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Red {
    pub count: u64,
    pub rate_per_s: f64,
    pub error_ratio: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedRow {
    pub service: String,
    pub operation: String,
    pub window: Red,
    /// The same figures in the window before (None: no spans then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Red>,
}

fn r3(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

fn red_of(durations: &mut [u64], errors: u64, secs: f64) -> Red {
    let n = durations.len();
    if n == 0 {
        return Red::default();
    }
    let pct = |d: &mut [u64], p: f64| -> f64 {
        let k = (((n as f64) * p).ceil() as usize).clamp(1, n) - 1;
        let (_, v, _) = d.select_nth_unstable(k);
        *v as f64 / 1e6
    };
    Red {
        count: n as u64,
        rate_per_s: r3(n as f64 / secs.max(1e-9)),
        error_ratio: r3(errors as f64 / n as f64),
        p50_ms: r3(pct(durations, 0.50)),
        p95_ms: r3(pct(durations, 0.95)),
        p99_ms: r3(pct(durations, 0.99)),
    }
}

/// (service, name) -> (durations, errors)
fn group<'a>(
    spans: impl Iterator<Item = &'a Span>,
    service: Option<u32>,
) -> HashMap<(u32, u32), (Vec<u64>, u64)> {
    let mut g: HashMap<(u32, u32), (Vec<u64>, u64)> = HashMap::new();
    for s in spans.filter(|s| service.is_none_or(|x| s.service == x)) {
        let e = g.entry((s.service, s.name)).or_default();
        e.0.push(s.duration_ns());
        e.1 += s.error as u64;
    }
    g
}

/// RED per (service, operation) in [from, to), beside [from - (to - from), from).
pub fn red(v: &View<'_>, service: Option<&str>, from_ns: u64, to_ns: u64) -> Vec<RedRow> {
    let svc = match service {
        Some(s) => match v.sym(s) {
            Some(x) => Some(x),
            None => return vec![],
        },
        None => None,
    };
    let len = to_ns.saturating_sub(from_ns);
    let secs = len as f64 / 1e9;
    let now = group(v.spans_between(from_ns, to_ns), svc);
    let mut before = group(v.spans_between(from_ns.saturating_sub(len), from_ns), svc);
    let mut rows: Vec<RedRow> = now
        .into_iter()
        .map(|((s, n), (mut d, e))| RedRow {
            service: v.str(s).to_string(),
            operation: v.str(n).to_string(),
            window: red_of(&mut d, e, secs),
            baseline: before
                .get_mut(&(s, n))
                .map(|(bd, be)| red_of(bd, *be, secs)),
        })
        .collect();
    rows.sort_by(|a, b| b.window.p99_ms.total_cmp(&a.window.p99_ms));
    rows
}

/// Self time along the critical path of one trace: (span, self ns), root first.
pub fn critical_path(spans: &[Span]) -> Vec<(Span, u64)> {
    let ids: HashMap<[u8; 8], usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = vec![];
    for (i, s) in spans.iter().enumerate() {
        match ids.get(&s.parent_id) {
            Some(p) if !s.is_root() && *p != i => children.entry(*p).or_default().push(i),
            _ => roots.push(i),
        }
    }
    let Some(&root) = roots.iter().max_by_key(|i| spans[**i].duration_ns()) else {
        return vec![];
    };
    let mut out = vec![];
    let mut stack = vec![(root, spans[root].end_ns)];
    let mut guard = 0;
    while let Some((i, _)) = stack.pop() {
        guard += 1;
        if guard > spans.len() * 2 + 1 {
            break;
        }
        let s = spans[i];
        let mut kids = children.get(&i).cloned().unwrap_or_default();
        kids.sort_by_key(|k| std::cmp::Reverse(spans[*k].end_ns));
        let mut t = s.end_ns;
        let mut self_ns = 0;
        let mut on_path = vec![];
        for k in kids {
            let c = spans[k];
            // A child on the path overlaps what is left of the parent; one that ends after the
            // parent (clock skew between hosts) is clamped to it rather than dropped.
            if c.start_ns < t && c.end_ns > s.start_ns {
                self_ns += t.saturating_sub(c.end_ns.min(t).max(s.start_ns));
                on_path.push(k);
                t = c.start_ns.max(s.start_ns);
            }
        }
        self_ns += t.saturating_sub(s.start_ns);
        out.push((s, self_ns));
        for k in on_path.into_iter().rev() {
            stack.push((k, 0));
        }
    }
    out
}

/// One entry of an aggregated critical path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathShare {
    pub service: String,
    pub operation: String,
    /// Mean self time per trace on the critical path, ms.
    pub self_ms: f64,
    /// Share of the critical path, %.
    pub share_pct: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_system: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriticalPath {
    pub traces: usize,
    /// Mean duration of those traces, ms.
    pub mean_trace_ms: f64,
    pub path: Vec<PathShare>,
    /// The service of the root spans.
    pub entry_service: String,
}

/// Root spans in a window, slowest first.
pub fn slow_roots(
    v: &View<'_>,
    service: Option<&str>,
    operation: Option<&str>,
    from_ns: u64,
    to_ns: u64,
) -> Vec<Span> {
    // A root is a span without a parent, or whose parent was never received (an ingress or a
    // browser that propagates context but does not export spans).
    let mut ids: Vec<u64> = v
        .spans_between(from_ns, to_ns)
        .map(|s| u64::from_be_bytes(s.span_id))
        .collect();
    ids.sort_unstable();
    let mut roots: Vec<Span> = v
        .spans_between(from_ns, to_ns)
        .filter(|s| s.is_root() || ids.binary_search(&u64::from_be_bytes(s.parent_id)).is_err())
        .filter(|s| service.is_none_or(|x| v.str(s.service) == x))
        .filter(|s| operation.is_none_or(|x| v.str(s.name) == x))
        .copied()
        .collect();
    roots.sort_by_key(|s| std::cmp::Reverse(s.duration_ns()));
    roots
}

/// The critical path aggregated over traces: mean self time per (service, operation).
pub fn aggregate_path(v: &View<'_>, traces: &[[u8; 16]]) -> CriticalPath {
    let mut total: HashMap<(u32, u32, u32), u64> = HashMap::new();
    let mut path_total = 0u64;
    let mut trace_total = 0u64;
    let mut entry: HashMap<u32, usize> = HashMap::new();
    let mut n = 0;
    for t in traces {
        let spans = v.trace(t);
        let path = critical_path(&spans);
        let Some((root, _)) = path.first() else {
            continue;
        };
        n += 1;
        *entry.entry(root.service).or_default() += 1;
        trace_total += root.duration_ns();
        for (s, self_ns) in path {
            *total.entry((s.service, s.name, s.db_system)).or_default() += self_ns;
            path_total += self_ns;
        }
    }
    let mut path: Vec<PathShare> = total
        .into_iter()
        .map(|((s, o, db), ns)| PathShare {
            service: v.str(s).to_string(),
            operation: v.str(o).to_string(),
            self_ms: r3(ns as f64 / 1e6 / n.max(1) as f64),
            share_pct: r3(100.0 * ns as f64 / path_total.max(1) as f64),
            db_system: (db != 0).then(|| v.str(db).to_string()),
        })
        .collect();
    path.sort_by(|a, b| b.self_ms.total_cmp(&a.self_ms));
    CriticalPath {
        traces: n,
        mean_trace_ms: r3(trace_total as f64 / 1e6 / n.max(1) as f64),
        path,
        entry_service: entry
            .into_iter()
            .max_by_key(|(_, c)| *c)
            .map(|(s, _)| v.str(s).to_string())
            .unwrap_or_default(),
    }
}

/// Error spans with the same service, operation and message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorGroup {
    pub service: String,
    pub operation: String,
    pub message: String,
    pub count: u64,
    /// True when none of these spans has an erroring child: the error starts here.
    pub origin: bool,
    pub exemplar_trace_id: String,
}

/// Error spans in a window, grouped, most frequent first.
pub fn errors(v: &View<'_>, service: Option<&str>, from_ns: u64, to_ns: u64) -> Vec<ErrorGroup> {
    let spans: Vec<Span> = v.spans_between(from_ns, to_ns).copied().collect();
    let erroring_parents: std::collections::HashSet<[u8; 8]> = spans
        .iter()
        .filter(|s| s.error)
        .map(|s| s.parent_id)
        .collect();
    // (service, operation, message) -> (count, origin, exemplar trace)
    type Groups = HashMap<(u32, u32, u32), (u64, bool, [u8; 16])>;
    let mut g: Groups = HashMap::new();
    for s in spans
        .iter()
        .filter(|s| s.error)
        .filter(|s| service.is_none_or(|x| v.str(s.service) == x))
    {
        let e = g
            .entry((s.service, s.name, s.status_message))
            .or_insert((0, true, s.trace_id));
        e.0 += 1;
        if erroring_parents.contains(&s.span_id) {
            e.1 = false;
        }
    }
    let mut out: Vec<ErrorGroup> = g
        .into_iter()
        .map(|((s, o, m), (count, origin, t))| ErrorGroup {
            service: v.str(s).to_string(),
            operation: v.str(o).to_string(),
            message: v.str(m).to_string(),
            count,
            origin,
            exemplar_trace_id: hex::encode(t),
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(b.origin.cmp(&a.origin)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::traces::store::{NewSpan, SpanStore};

    #[allow(clippy::too_many_arguments)]
    fn s<'a>(
        trace: u8,
        id: u8,
        parent: u8,
        svc: &'a str,
        name: &'a str,
        start_ms: u64,
        end_ms: u64,
        error: bool,
    ) -> NewSpan<'a> {
        NewSpan {
            trace_id: [trace; 16],
            span_id: [id; 8],
            parent_id: [parent; 8],
            service: svc,
            name,
            kind: 2,
            start_ns: 1_000_000_000_000 + start_ms * 1_000_000,
            end_ns: 1_000_000_000_000 + end_ms * 1_000_000,
            error,
            status_message: if error { "card declined" } else { "" },
            db_system: if name.starts_with("SELECT") {
                "postgresql"
            } else {
                ""
            },
        }
    }

    #[test]
    fn critical_path_names_the_downstream_that_dominates() {
        let st = SpanStore::new(1 << 20, 3600);
        // storefront GET /checkout 0..1240: db 5..15 (fast), payments POST /authorize 20..1235 -> provider.authorize 25..1230
        let spans = [
            s(1, 1, 0, "storefront", "GET /checkout", 0, 1240, false),
            s(1, 2, 1, "storefront", "SELECT orders", 5, 15, false),
            s(1, 3, 1, "payments", "POST /authorize", 20, 1235, false),
            s(1, 4, 3, "payments", "provider.authorize", 25, 1230, false),
        ];
        st.insert(&spans, 1_000_000_000_000 + 2_000_000_000);
        let v = st.view().unwrap();
        let cp = aggregate_path(&v, &[[1; 16]]);
        assert_eq!(cp.entry_service, "storefront");
        assert_eq!(cp.path[0].operation, "provider.authorize");
        assert_eq!(cp.path[0].service, "payments");
        assert_eq!(cp.path[0].self_ms, 1205.0);
        assert!(cp.path[0].share_pct > 95.0);
        let db = cp
            .path
            .iter()
            .find(|p| p.operation == "SELECT orders")
            .unwrap();
        assert_eq!(db.db_system.as_deref(), Some("postgresql"));
        assert_eq!(db.self_ms, 10.0);
        assert_eq!(cp.mean_trace_ms, 1240.0);
    }

    #[test]
    fn clock_skew_and_missing_parents_do_not_hide_the_downstream() {
        let st = SpanStore::new(1 << 20, 3600);
        // The downstream's clock runs 3 ms ahead: its span "ends" after its caller's. The
        // trace's real root (an ingress) was never exported.
        let spans = [
            s(2, 1, 9, "storefront", "GET /checkout", 0, 1000, false),
            s(2, 2, 1, "payments", "provider.authorize", 10, 1003, false),
        ];
        st.insert(&spans, 1_000_000_000_000 + 2_000_000_000);
        let v = st.view().unwrap();
        let roots = slow_roots(
            &v,
            None,
            None,
            1_000_000_000_000,
            1_000_000_000_000 + 2_000_000_000,
        );
        assert_eq!(
            roots.len(),
            1,
            "the span whose parent never arrived is a root"
        );
        let cp = aggregate_path(&v, &[[2; 16]]);
        assert_eq!(cp.path[0].operation, "provider.authorize", "{:?}", cp.path);
        assert!(cp.path[0].share_pct > 95.0);
    }

    #[test]
    fn red_and_errors_by_origin() {
        let st = SpanStore::new(1 << 20, 3600);
        let mut spans = vec![];
        for t in 0..20u8 {
            let fail = t % 4 == 0;
            spans.push(s(
                t,
                1,
                0,
                "storefront",
                "GET /checkout",
                0,
                100 + t as u64,
                fail,
            ));
            spans.push(s(t, 2, 1, "payments", "POST /authorize", 10, 90, fail));
        }
        st.insert(&spans, 1_000_000_000_000 + 2_000_000_000);
        let v = st.view().unwrap();
        let rows = red(
            &v,
            None,
            1_000_000_000_000,
            1_000_000_000_000 + 1_000_000_000,
        );
        let sf = rows.iter().find(|r| r.service == "storefront").unwrap();
        assert_eq!(sf.window.count, 20);
        assert_eq!(sf.window.error_ratio, 0.25);
        assert_eq!(sf.window.p50_ms, 109.0);
        assert_eq!(sf.window.p99_ms, 119.0);
        assert!(sf.baseline.is_none());
        let e = errors(
            &v,
            None,
            1_000_000_000_000,
            1_000_000_000_000 + 1_000_000_000,
        );
        let origin = e.iter().find(|g| g.origin).unwrap();
        assert_eq!(origin.service, "payments");
        assert_eq!(origin.count, 5);
        assert_eq!(origin.message, "card declined");
        assert!(
            !e.iter().find(|g| g.service == "storefront").unwrap().origin,
            "storefront only propagates"
        );
    }
}
