//! The bounded span store: a time window of spans with a hard memory bound.
//!
//! Spans live in one-second buckets keyed by their end time. Each bucket indexes its spans by
//! trace id, so a trace is found without scanning everything. When the store exceeds its memory
//! bound, or a bucket falls out of the time window, the oldest bucket is dropped whole and the
//! spans in it are counted as dropped. Strings (service and operation names, status messages) are
//! interned, so a span costs a fixed few dozen bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

/// Interned string id; 0 is the empty string.
pub type Sym = u32;

/// One span, compactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zero for a root span.
    pub parent_id: [u8; 8],
    pub service: Sym,
    pub name: Sym,
    /// OTLP span kind (0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: u8,
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: bool,
    pub status_message: Sym,
    /// `db.system` when the span is a database call, else 0.
    pub db_system: Sym,
}

impl Span {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
    pub fn is_root(&self) -> bool {
        self.parent_id == [0; 8]
    }
}

/// Approximate memory of one stored span with its share of the indexes.
pub const SPAN_BYTES: usize = std::mem::size_of::<Span>() + 24;

#[derive(Default)]
struct Bucket {
    second: u64,
    spans: Vec<Span>,
    by_trace: HashMap<[u8; 16], Vec<u32>>,
}

#[derive(Default)]
struct Interner {
    ids: HashMap<String, Sym>,
    names: Vec<String>,
    bytes: usize,
    /// Strings stop being interned past this many bytes (names with ids in them would otherwise
    /// grow the store without bound); later ones all become "(other)".
    budget: usize,
    overflowed: u64,
}

/// What a name becomes once the interner's budget is spent.
pub const OVERFLOW_NAME: &str = "(other)";

impl Interner {
    fn get(&mut self, s: &str) -> Sym {
        if s.is_empty() {
            return 0;
        }
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        if self.names.is_empty() {
            self.names.push(String::new());
            self.names.push(OVERFLOW_NAME.to_string());
            self.ids.insert(OVERFLOW_NAME.to_string(), 1);
        }
        if self.bytes + 2 * s.len() + 48 > self.budget {
            self.overflowed += 1;
            return 1;
        }
        let id = self.names.len() as Sym;
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        self.bytes += 2 * s.len() + 48;
        id
    }
}

/// Counters of what the store holds and what it dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct StoreStats {
    pub spans: u64,
    pub bytes: u64,
    pub received: u64,
    pub dropped_for_memory: u64,
    pub dropped_for_age: u64,
    /// Names not interned because the name budget (1/8 of the memory bound) was spent.
    pub names_over_budget: u64,
}

struct Inner {
    buckets: VecDeque<Bucket>,
    strings: Interner,
    span_bytes: usize,
    stats: StoreStats,
}

/// A span to insert, with its strings not yet interned.
pub struct NewSpan<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_id: [u8; 8],
    pub service: &'a str,
    pub name: &'a str,
    pub kind: u8,
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: bool,
    pub status_message: &'a str,
    pub db_system: &'a str,
}

/// The store.
pub struct SpanStore {
    inner: RwLock<Inner>,
    max_bytes: usize,
    window_ns: u64,
}

/// A read view of the store for queries.
pub struct View<'a> {
    inner: std::sync::RwLockReadGuard<'a, Inner>,
}

impl SpanStore {
    pub fn new(max_bytes: usize, window_s: u64) -> SpanStore {
        SpanStore {
            inner: RwLock::new(Inner {
                buckets: VecDeque::new(),
                strings: Interner {
                    budget: max_bytes / 8,
                    ..Default::default()
                },
                span_bytes: 0,
                stats: StoreStats::default(),
            }),
            max_bytes,
            window_ns: window_s.saturating_mul(1_000_000_000),
        }
    }

    /// Inserts spans; returns how many were kept. `now_ns` decides the time window.
    pub fn insert(&self, spans: &[NewSpan<'_>], now_ns: u64) -> usize {
        let Ok(mut g) = self.inner.write() else {
            return 0;
        };
        let inner = &mut *g;
        let oldest_allowed = now_ns.saturating_sub(self.window_ns);
        let mut kept = 0;
        for s in spans {
            inner.stats.received += 1;
            if s.end_ns < oldest_allowed {
                inner.stats.dropped_for_age += 1;
                continue;
            }
            let span = Span {
                trace_id: s.trace_id,
                span_id: s.span_id,
                parent_id: s.parent_id,
                service: inner.strings.get(s.service),
                name: inner.strings.get(s.name),
                kind: s.kind,
                start_ns: s.start_ns,
                end_ns: s.end_ns,
                error: s.error,
                status_message: inner.strings.get(s.status_message),
                db_system: inner.strings.get(s.db_system),
            };
            let second = s.end_ns / 1_000_000_000;
            let pos = match inner.buckets.binary_search_by_key(&second, |b| b.second) {
                Ok(i) => i,
                Err(i) => {
                    inner.buckets.insert(
                        i,
                        Bucket {
                            second,
                            ..Default::default()
                        },
                    );
                    i
                }
            };
            let b = &mut inner.buckets[pos];
            b.by_trace
                .entry(span.trace_id)
                .or_default()
                .push(b.spans.len() as u32);
            b.spans.push(span);
            inner.span_bytes += SPAN_BYTES;
            inner.stats.spans += 1;
            kept += 1;
        }
        // Evict: out of the window, then over the memory bound, oldest bucket first.
        while inner.buckets.front().is_some_and(|b| {
            (b.second.saturating_add(1)).saturating_mul(1_000_000_000) < oldest_allowed
        }) {
            if let Some(b) = inner.buckets.pop_front() {
                inner.stats.dropped_for_age += b.spans.len() as u64;
                inner.stats.spans -= b.spans.len() as u64;
                inner.span_bytes -= b.spans.len() * SPAN_BYTES;
            }
        }
        while inner.span_bytes + inner.strings.bytes > self.max_bytes && inner.buckets.len() > 1 {
            if let Some(b) = inner.buckets.pop_front() {
                inner.stats.dropped_for_memory += b.spans.len() as u64;
                inner.stats.spans -= b.spans.len() as u64;
                inner.span_bytes -= b.spans.len() * SPAN_BYTES;
            }
        }
        inner.stats.bytes = (inner.span_bytes + inner.strings.bytes) as u64;
        inner.stats.names_over_budget = inner.strings.overflowed;
        kept
    }

    pub fn stats(&self) -> StoreStats {
        self.inner.read().map(|g| g.stats).unwrap_or_default()
    }

    /// A consistent read view for a query.
    pub fn view(&self) -> Option<View<'_>> {
        self.inner.read().ok().map(|inner| View { inner })
    }
}

impl View<'_> {
    /// What the store holds and dropped, as of this view.
    pub fn stats(&self) -> StoreStats {
        self.inner.stats
    }

    /// The string behind a symbol.
    pub fn str(&self, s: Sym) -> &str {
        self.inner
            .strings
            .names
            .get(s as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The symbol of a string, if it was ever seen.
    pub fn sym(&self, s: &str) -> Option<Sym> {
        self.inner.strings.ids.get(s).copied()
    }

    /// Every span that ended in [from_ns, to_ns).
    pub fn spans_between(&self, from_ns: u64, to_ns: u64) -> impl Iterator<Item = &Span> {
        let (from_s, to_s) = (from_ns / 1_000_000_000, to_ns / 1_000_000_000);
        self.inner
            .buckets
            .iter()
            .filter(move |b| b.second >= from_s && b.second <= to_s)
            .flat_map(|b| b.spans.iter())
            .filter(move |s| s.end_ns >= from_ns && s.end_ns < to_ns)
    }

    /// Every span of one trace.
    pub fn trace(&self, id: &[u8; 16]) -> Vec<Span> {
        self.inner
            .buckets
            .iter()
            .filter_map(|b| {
                b.by_trace.get(id).map(|ix| {
                    ix.iter()
                        .filter_map(|i| b.spans.get(*i as usize).copied())
                        .collect::<Vec<_>>()
                })
            })
            .flatten()
            .collect()
    }

    /// The newest span end time in the store.
    pub fn latest_ns(&self) -> Option<u64> {
        self.inner
            .buckets
            .back()
            .and_then(|b| b.spans.iter().map(|s| s.end_ns).max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: u8, id: u8, end_s: u64) -> NewSpan<'static> {
        NewSpan {
            trace_id: [trace; 16],
            span_id: [id; 8],
            parent_id: [0; 8],
            service: "checkout",
            name: "GET /checkout",
            kind: 2,
            start_ns: end_s * 1_000_000_000 - 5_000_000,
            end_ns: end_s * 1_000_000_000,
            error: false,
            status_message: "",
            db_system: "",
        }
    }

    #[test]
    fn indexed_by_trace_and_windowed_by_time() {
        let st = SpanStore::new(1 << 20, 60);
        let now = 1_000 * 1_000_000_000;
        assert_eq!(
            st.insert(
                &[
                    span(1, 1, 990),
                    span(1, 2, 995),
                    span(2, 3, 999),
                    span(3, 4, 100)
                ],
                now
            ),
            3
        );
        let v = st.view().unwrap();
        assert_eq!(v.trace(&[1; 16]).len(), 2);
        assert_eq!(v.spans_between(994 * 1_000_000_000, now).count(), 2);
        assert_eq!(v.str(v.trace(&[2; 16])[0].service), "checkout");
        drop(v);
        assert_eq!(
            st.stats().dropped_for_age,
            1,
            "the span older than the window was dropped"
        );
    }

    #[test]
    fn names_stop_growing_at_their_budget() {
        let st = SpanStore::new(8_000, 3600);
        let now = 10_000 * 1_000_000_000;
        let names: Vec<String> = (0..500).map(|i| format!("GET /orders/{i:08}")).collect();
        for (i, n) in names.iter().enumerate() {
            let mut sp = span(1, (i % 200) as u8, 9_000 + i as u64);
            sp.name = n;
            st.insert(&[sp], now);
        }
        let s = st.stats();
        assert!(s.names_over_budget > 0, "{s:?}");
        assert!(s.bytes as usize <= 8_000 + SPAN_BYTES, "{s:?}");
        let v = st.view().unwrap();
        assert!(v.sym(OVERFLOW_NAME).is_some());
    }

    #[test]
    fn memory_bound_drops_oldest_first_and_counts() {
        let st = SpanStore::new(SPAN_BYTES * 10 + 200, 3600);
        let now = 10_000 * 1_000_000_000;
        let spans: Vec<NewSpan> = (0..30).map(|i| span(i as u8, i as u8, 9_000 + i)).collect();
        st.insert(&spans, now);
        let s = st.stats();
        assert!(s.bytes as usize <= SPAN_BYTES * 10 + 200, "{s:?}");
        assert_eq!(s.spans + s.dropped_for_memory, 30);
        let v = st.view().unwrap();
        assert!(v.trace(&[29; 16]).len() == 1, "the newest survive");
        assert!(v.trace(&[0; 16]).is_empty(), "the oldest went first");
    }
}
