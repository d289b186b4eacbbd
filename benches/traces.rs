//! Traces: OTLP ingest throughput beside raw protobuf decoding of the same payloads (the ratio is
//! the figure), and RED over one million stored spans (time and memory).
//!
//! Run: `cargo bench --bench traces`. Payloads: 200 export requests of 500 spans each, three
//! services, realistic names and attributes, encoded once with the published OTLP definitions.

use oncall::collectors::traces::analysis;
use oncall::collectors::traces::otlp::{Format, convert, decode};
use oncall::collectors::traces::store::{NewSpan, SpanStore};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as AV};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use std::time::Instant;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(AV::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn payload(req_no: u64, per: u64, now: u64) -> Vec<u8> {
    let services = ["storefront", "payments", "inventory"];
    let ops = [
        "GET /checkout",
        "POST /authorize",
        "provider.authorize",
        "SELECT orders",
        "GET /stock",
    ];
    let mut rs = vec![];
    for (si, svc) in services.iter().enumerate() {
        let spans: Vec<Span> = (0..per / 3)
            .map(|i| {
                let n = req_no * per + si as u64 * 1_000_000 + i;
                Span {
                    trace_id: ((n / 4) as u128 + 1).to_be_bytes().to_vec(),
                    span_id: (n + 1).to_be_bytes().to_vec(),
                    parent_span_id: if n.is_multiple_of(4) {
                        vec![]
                    } else {
                        n.to_be_bytes().to_vec()
                    },
                    name: ops[(n % 5) as usize].into(),
                    kind: 2,
                    start_time_unix_nano: now - 1_000_000 - (n % 1000) * 1000,
                    end_time_unix_nano: now - (n % 1000) * 100,
                    attributes: vec![
                        kv("http.route", "/checkout"),
                        kv("net.peer.name", "10.0.0.7"),
                    ],
                    status: n.is_multiple_of(50).then(|| Status {
                        code: 2,
                        message: "boom".into(),
                    }),
                    ..Default::default()
                }
            })
            .collect();
        rs.push(ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", svc), kv("host.name", "web-1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    ExportTraceServiceRequest { resource_spans: rs }.encode_to_vec()
}

fn rate(spans: u64, secs: f64) -> String {
    format!("{:.0}", spans as f64 / secs)
}

fn main() {
    let now = oncall::collectors::traces::now_ns();
    let (requests, per) = (200u64, 501u64);
    let payloads: Vec<Vec<u8>> = (0..requests).map(|r| payload(r, per, now)).collect();
    let total_spans: u64 = payloads
        .iter()
        .map(|p| {
            decode(Format::Protobuf, p)
                .map(|r| convert(&r).spans.len() as u64)
                .unwrap_or(0)
        })
        .sum();
    let bytes: usize = payloads.iter().map(Vec::len).sum();

    // Raw protobuf decoding of the same payloads.
    let mut best_raw = f64::MAX;
    let mut best_ingest = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for p in &payloads {
            let r = ExportTraceServiceRequest::decode(p.as_slice()).expect("decode");
            std::hint::black_box(r);
        }
        best_raw = best_raw.min(t.elapsed().as_secs_f64());
        // oncall's ingest path: decode, validate and convert, insert into the bounded store.
        let store = SpanStore::new(1 << 30, 3600);
        let t = Instant::now();
        for p in &payloads {
            let r = decode(Format::Protobuf, p).expect("decode");
            let c = convert(&r);
            store.insert(&c.spans, now);
        }
        best_ingest = best_ingest.min(t.elapsed().as_secs_f64());
    }

    // RED over one million stored spans.
    let store = SpanStore::new(1 << 30, 3600);
    let svcs = ["storefront", "payments", "inventory", "search", "auth"];
    let ops = [
        "GET /checkout",
        "POST /authorize",
        "provider.authorize",
        "SELECT orders",
        "GET /stock",
        "GET /search",
        "POST /login",
        "cache.get",
    ];
    let million = 1_000_000u64;
    let t_fill = Instant::now();
    for chunk in 0..100u64 {
        let spans: Vec<NewSpan> = (0..10_000u64)
            .map(|i| {
                let n = chunk * 10_000 + i;
                NewSpan {
                    trace_id: ((n / 5) as u128 + 1).to_be_bytes(),
                    span_id: (n + 1).to_be_bytes(),
                    parent_id: if n.is_multiple_of(5) {
                        [0; 8]
                    } else {
                        n.to_be_bytes()
                    },
                    service: svcs[(n % 5) as usize],
                    name: ops[(n % 8) as usize],
                    kind: 2,
                    start_ns: now - 200_000_000_000 + n * 150_000 - (n % 997) * 10_000,
                    end_ns: now - 200_000_000_000 + n * 150_000,
                    error: n.is_multiple_of(97),
                    status_message: if n.is_multiple_of(97) { "boom" } else { "" },
                    db_system: if n % 8 == 3 { "postgresql" } else { "" },
                }
            })
            .collect();
        store.insert(&spans, now);
    }
    let fill = t_fill.elapsed().as_secs_f64();
    let stats = store.stats();
    let view = store.view().expect("view");
    let mut best_red = f64::MAX;
    let mut rows = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let r = analysis::red(&view, None, now - 400_000_000_000, now + 1);
        best_red = best_red.min(t.elapsed().as_secs_f64());
        rows = r.len();
    }
    let t = Instant::now();
    let slow = analysis::slow_roots(&view, None, None, now - 400_000_000_000, now + 1);
    let ids: Vec<[u8; 16]> = slow.iter().take(20).map(|s| s.trace_id).collect();
    let cp = analysis::aggregate_path(&view, &ids);
    let cp_ms = t.elapsed().as_secs_f64() * 1000.0;

    println!(
        "OTLP ingest vs. raw protobuf decoding: {requests} requests, {total_spans} spans, {:.1} MiB of protobuf (best of 3)\n",
        bytes as f64 / 1048576.0
    );
    println!("| path | seconds | spans/s |");
    println!("|---|---:|---:|");
    println!(
        "| raw decode (prost, opentelemetry-proto) | {best_raw:.3} | {} |",
        rate(total_spans, best_raw)
    );
    println!(
        "| oncall ingest: decode + validate + convert + store | {best_ingest:.3} | {} |",
        rate(total_spans, best_ingest)
    );
    println!(
        "\ningest / raw decode time: {:.2}x (budget: within 2x)\n",
        best_ingest / best_raw
    );
    println!(
        "RED over {} stored spans ({} spans in store, {:.1} MiB by the store's own accounting, filled in {fill:.2} s):\n",
        million,
        stats.spans,
        stats.bytes as f64 / 1048576.0
    );
    println!("| query | ms |");
    println!("|---|---:|");
    println!(
        "| traces.red over every span ({rows} service/operation rows, with baseline) | {:.1} |",
        best_red * 1000.0
    );
    println!(
        "| slowest roots + critical path of the 20 slowest ({} traces) | {cp_ms:.1} |",
        cp.traces
    );
}
