//! Fuzz target: any bytes as a Slack request. The slash-command form parser, the interaction
//! (`payload=` JSON in a form) parser, the Events API parser and the request-signature check must
//! not panic, and a signature over other bytes must never verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oncall::server::slack::{
    Dedup, parse_command, parse_event, parse_interaction, sign, strip_mention, unescape, verify,
};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TS: &str = "1531420618";
const NOW: i64 = 1_531_420_618;

/// `payload=<data, percent-encoded>`: the bytes as the JSON of an interaction form.
fn as_payload_form(data: &[u8]) -> Vec<u8> {
    let mut out = b"payload=".to_vec();
    for b in data {
        if b.is_ascii_alphanumeric() {
            out.push(*b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_command(data);
    let _ = parse_interaction(data);
    let _ = parse_interaction(&as_payload_form(data));
    let _ = parse_event(data);

    let text = String::from_utf8_lossy(data);
    let _ = unescape(&text);
    let _ = strip_mention(&text, None);

    // Headers from the input: "timestamp\nsignature\nbody".
    let mut parts = text.splitn(3, '\n');
    let ts = parts.next().unwrap_or("");
    let sig = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("").as_bytes();
    let _ = strip_mention(&text, Some(ts));
    let _ = verify(SECRET, ts, sig, body, NOW);
    let _ = verify(SECRET, ts, sig, body, ts.trim().parse().unwrap_or(0));
    let _ = verify(sig, TS, sig, body, NOW);
    let _ = Dedup::new(600, 4).refuse_replay(sig, NOW);

    // A signature is accepted for exactly the bytes it was made over.
    let good = sign(SECRET, TS, data).expect("sign");
    assert!(verify(SECRET, TS, &good, data, NOW).is_ok());
    if body != data {
        assert!(verify(SECRET, TS, &good, body, NOW).is_err());
    }
});
