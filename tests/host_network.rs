//! Real packet loss on one port of this machine, diagnosed by the real `oncall` binary.
//!
//! `oncall-fault netloss` serves TCP on 127.0.0.1 behind a socket filter that drops a share of
//! the packets the service receives, and calls it a few times per second from the same process:
//! far too few segments for the host-wide counters of one sampling window, enough for the
//! per-socket view (inet_diag) over the connections' lifetimes. These tests measure the whole
//! machine, so they run one at a time (a lock here, and an exclusive nextest group in
//! .config/nextest.toml).

mod common;

use common::*;
use oncall::collectors::host::sockets;
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts the generator on a free port; returns it with its port.
fn netloss(name: &str, loss_pct: &str) -> (Fault, u16) {
    let port = free_port();
    let f = Fault::start(&[
        "--name",
        name,
        "netloss",
        "--port",
        &port.to_string(),
        "--loss-pct",
        loss_pct,
        "--seconds",
        "90",
    ]);
    (f, port)
}

/// The client side's lifetime counters towards `port`: (retransmitted, data segments sent).
fn client_counters(port: u16) -> (u64, u64) {
    let dump = sockets::read().expect("the socket dump reads");
    dump.sockets
        .iter()
        .filter(|s| s.peer.port() == port && s.state != sockets::TCP_LISTEN)
        .filter_map(|s| s.info)
        .fold((0, 0), |(r, d), i| {
            (
                r + u64::from(i.total_retrans),
                d + u64::from(i.data_segs_out.or(i.segs_out).unwrap_or(0)),
            )
        })
}

/// Polls until the connections to `port` have sent `segs` data segments, and at least `retrans`
/// of them again; gives up after `limit` and returns what was seen.
fn wait_for_traffic(port: u16, retrans: u64, segs: u64, limit: Duration) -> (u64, u64) {
    let start = Instant::now();
    loop {
        let seen = client_counters(port);
        if (seen.0 >= retrans && seen.1 >= segs) || start.elapsed() > limit {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn threshold(answer: &Value) -> f64 {
    answer["confidence_threshold"]
        .as_f64()
        .expect("a threshold")
}

#[test]
fn low_volume_loss_on_one_port_is_top1_network_errors_naming_the_port_and_process() {
    let _g = serial();
    let (f, port) = netloss("pricing-svc", "20");
    // Five exchanges a second: a few seconds give the sockets enough segments to judge.
    let (re, segs) = wait_for_traffic(port, 8, 40, Duration::from_secs(45));
    assert!(
        re >= 5 && segs >= 20,
        "the filter should have made retransmits by now: {re} of {segs}"
    );
    let answer = triage_json("calls to the pricing service time out now and then", &[]);
    let h = &hypotheses(&answer)[0];
    eprintln!(
        "client side before triage: {re} retransmitted of {segs} data segments\nranking:\n{}\nevidence: {}",
        ranking(&answer),
        h["evidence"]
    );
    assert_eq!(
        h["category"],
        "host.network_errors",
        "ranking:\n{}",
        ranking(&answer)
    );
    assert!(
        h["confidence"].as_f64().unwrap_or(0.0) >= threshold(&answer),
        "above the finding threshold:\n{}",
        ranking(&answer)
    );
    assert_ne!(h["status"], "rejected");
    let statement = h["statement"].as_str().unwrap_or("");
    let culprit = h["culprit"].to_string();
    assert!(
        statement.contains(&format!("port {port}")) || culprit.contains(&port.to_string()),
        "names the port {port}: {statement} / {culprit}"
    );
    assert!(
        statement.contains("pricing-svc") && statement.contains("segments retransmitted"),
        "{statement}"
    );
    assert_eq!(h["culprit"]["pid"], f.pid, "names the process: {h}");
    assert!(
        h["component"]
            .as_str()
            .is_some_and(|c| c == format!("network:tcp:{port}")),
        "{}",
        h["component"]
    );
    assert_eq!(answer["abstained"], false);
}

#[test]
fn the_same_traffic_without_loss_is_no_network_finding() {
    let _g = serial();
    let (_f, port) = netloss("pricing-svc", "0");
    let (re, segs) = wait_for_traffic(port, 0, 40, Duration::from_secs(45));
    assert!(segs >= 20, "traffic flowed: {segs} data segments");
    let answer = triage_json("calls to the pricing service time out now and then", &[]);
    eprintln!(
        "client side before triage: {re} retransmitted of {segs} data segments\nranking:\n{}",
        ranking(&answer)
    );
    let t = threshold(&answer);
    let network: Vec<&Value> = hypotheses(&answer)
        .iter()
        .filter(|h| h["category"] == "host.network_errors")
        .filter(|h| h["confidence"].as_f64().unwrap_or(0.0) >= t)
        .collect();
    assert!(
        network.is_empty(),
        "no network finding without loss:\n{}",
        ranking(&answer)
    );
    assert!(
        !ranking(&answer).contains(&format!("port {port}")),
        "the clean port is not blamed:\n{}",
        ranking(&answer)
    );
}

/// A Python service that listens with a backlog of 2 and never accepts, killed when dropped.
struct Unaccepting {
    child: std::process::Child,
    port: u16,
}

impl Drop for Unaccepting {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_listener_that_does_not_accept_fills_its_queue_and_is_named_by_port_and_program() {
    let _g = serial();
    use std::io::BufRead;
    let script = "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(2)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("quote_gateway.py");
    std::fs::write(&path, script).expect("write the service");
    let mut child = std::process::Command::new("python3")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the port");
    let svc = Unaccepting {
        port: line.trim().parse().expect("a port number"),
        child,
    };
    // More clients than the queue holds: the first few wait to be accepted, the rest are dropped.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", svc.port).parse().expect("addr");
    let clients: Vec<std::net::TcpStream> = (0..8)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()
        })
        .collect();
    assert!(!clients.is_empty(), "no connection reached the queue");
    let answer = triage_json("new connections to the quote gateway hang", &[]);
    let h = &hypotheses(&answer)[0];
    assert_eq!(
        h["category"],
        "host.network_errors",
        "ranking:\n{}",
        ranking(&answer)
    );
    let st = h["statement"].as_str().unwrap_or_default();
    assert!(
        st.contains(&format!("port {}", svc.port)) && st.contains("quote_gateway.py"),
        "names the port and the program that does not accept: {st}"
    );
    assert_eq!(h["component"], format!("network:tcp:{}", svc.port));
    drop(clients);
}
