//! The fleet through a real Prometheus and node-exporter (Debian's packages, started on loopback
//! ports by the test): a real CPU hog on this host makes the fleet tools name this instance and
//! the CPU, and the offline reasoner confirm `host.cpu_saturation` there, saying it measured the
//! fleet. A Prometheus that is down or never answers is clear evidence within the timeout.

mod common;

use common::prom::Prom;
use common::{Fault, cores, investigate_offline};
use oncall::config::Config;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fleet_config(url: &str) -> Config {
    let mut c = Config::default();
    c.prometheus.url = url.into();
    c.prometheus.window_s = 30;
    c.prometheus.baseline_s = 60;
    c.prometheus.timeout_s = 2;
    c
}

fn signals(row: &Value) -> Vec<(String, String, String)> {
    row["abnormal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["category"].as_str().unwrap().to_string(),
                s["signal"].as_str().unwrap().to_string(),
                s["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_cpu_hog_is_named_by_instance_and_resource() {
    assert!(
        Prom::available(),
        "Prometheus and node-exporter are missing: run scripts/setup-test-deps.sh"
    );
    let prom = Prom::start().await;
    let threads = (cores() * 2).to_string();
    let _hog = Fault::start(&[
        "--name",
        "fleet-hog",
        "cpu",
        "--threads",
        &threads,
        "--seconds",
        "90",
    ]);
    // Enough scrapes under load for the 30 s window's rates.
    let begun = Instant::now();
    prom.wait_for_samples(20).await;
    while begun.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let config = fleet_config(&prom.url);
    let reg = oncall::app::builtin_registry(Arc::new(config.clone()));
    let out = reg
        .call("fleet.use_by_instance", json!({}), None)
        .await
        .expect("the fleet answers");
    let top = &out["ranked"][0];
    assert_eq!(top["instance"], prom.instance.as_str(), "{out:#}");
    let sig = signals(top);
    assert!(
        sig.iter().any(|(c, s, sev)| c == "host.cpu_saturation"
            && s == "cpu run queue per core"
            && sev == "crit"),
        "{sig:?}\n{out:#}"
    );
    assert_eq!(out["instances_seen"], 1);
    assert!(
        out["note"].as_str().unwrap().contains(&prom.instance),
        "{out:#}"
    );
    // RED: node-exporter exports no request metrics; that is said, not an error.
    let red = reg
        .call("fleet.red_by_service", json!({}), None)
        .await
        .expect("answers");
    assert!(
        red["note"].as_str().unwrap().contains("no request metrics"),
        "{red:#}"
    );

    // The whole investigation with the offline reasoner: the fleet, not the host tools.
    let inv = investigate_offline("the api got slow a few minutes ago", &reg, &config).await;
    let h = &inv.hypotheses[0];
    assert_eq!(
        h.category.label(),
        "host.cpu_saturation",
        "{:#?}",
        inv.hypotheses
    );
    assert_eq!(h.component, format!("instance:{}", prom.instance));
    assert_eq!(h.status, oncall::agent::board::HypothesisStatus::Confirmed);
    assert!(inv.tool_calls.iter().all(|c| c.tool != "host.use_snapshot"));
    assert!(
        inv.notices
            .iter()
            .any(|n| n.contains(&format!("Prometheus at {}", prom.url))),
        "{:?}",
        inv.notices
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_or_silent_is_clear_evidence_without_a_hang() {
    // Down: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config = fleet_config(&url);
    let reg = oncall::app::builtin_registry(Arc::new(config.clone()));
    let t = Instant::now();
    let out = reg
        .call("fleet.use_by_instance", json!({}), None)
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        out["note"]
            .as_str()
            .unwrap()
            .contains("no signal could be read"),
        "{out:#}"
    );
    assert!(
        out["unanswered"][0]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{out:#}"
    );

    // Silent: it accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut config = fleet_config(&url);
    config.prometheus.timeout_s = 1;
    let reg = oncall::app::builtin_registry(Arc::new(config.clone()));
    let t = Instant::now();
    let out = reg
        .call("fleet.use_by_instance", json!({}), None)
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "22 queries in parallel, each bounded: {:?}",
        t.elapsed()
    );
    assert!(
        out["unanswered"][0]
            .as_str()
            .unwrap()
            .contains("did not answer within 1 s"),
        "{out:#}"
    );
    // The investigation carries on with what it has and says the fleet was not measured.
    let inv = investigate_offline("is the fleet ok?", &reg, &config).await;
    assert!(inv.abstained, "{:#?}", inv.hypotheses);
    assert!(
        inv.hypotheses
            .iter()
            .all(|h| h.status != oncall::agent::board::HypothesisStatus::Confirmed)
    );
}
