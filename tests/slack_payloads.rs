//! Stable counterpart of the `slack_payload` fuzz target (fuzz/): mutated slash-command forms,
//! interaction `payload=` forms and Events API bodies never panic the parsers, and the request
//! signature check never panics and accepts a request only as it was signed.

use oncall::server::slack::{
    Dedup, parse_command, parse_event, parse_interaction, sign, strip_mention, unescape, verify,
};
use serde_json::json;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TS: &str = "1531420618";
const NOW: i64 = 1_531_420_618;

fn valid_bodies() -> Vec<Vec<u8>> {
    let command = "token=xyz&team_id=T1&channel_id=C1&user_id=U1&user_name=ana&command=%2Foncall&text=p99+%26gt%3B+2s+%3C%40UBOT%3E&response_url=https%3A%2F%2Fexample.invalid%2Fr&trigger_id=1.2.3";
    let interaction = json!({
        "type": "block_actions", "user": {"id": "U2", "username": "ana"},
        "container": {"type": "message", "message_ts": "1700.2", "thread_ts": "1700.1"},
        "channel": {"id": "C1"}, "message": {"ts": "1700.2", "text": "Approval needed"},
        "response_url": "https://example.invalid/actions/1",
        "actions": [{"action_id": "approve", "value": "9f1c", "type": "button"}]
    });
    let interaction = serde_urlencoded::to_string([("payload", interaction.to_string())]).unwrap();
    let event = json!({
        "type": "event_callback", "event_id": "Ev0PV52K21",
        "authorizations": [{"user_id": "UBOT", "is_bot": true}],
        "event": {"type": "app_mention", "user": "U061F7AUR", "channel": "C0LAN2Q65",
            "text": "<@UBOT> why is p99 &gt; 2s? ask <@U2>", "ts": "1515449522.000016",
            "thread_ts": "1515449000.000001"}
    })
    .to_string();
    let challenge = json!({"token": "t", "challenge": "3eZbrw1a", "type": "url_verification"});
    vec![
        command.into(),
        interaction.into(),
        event.into(),
        challenge.to_string().into(),
    ]
}

#[test]
fn mutated_slack_requests_never_panic_and_only_signed_bodies_verify() {
    let valid = valid_bodies();
    // Each valid body parses with its parser.
    assert!(parse_command(&valid[0]).is_ok());
    assert!(parse_interaction(&valid[1]).is_ok());
    assert!(parse_event(&valid[2]).is_ok() && parse_event(&valid[3]).is_ok());

    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let dedup = Dedup::new(600, 64);
    let mut parsed = 0;
    for round in 0..20_000 {
        let original = &valid[round % valid.len()];
        let mut b = original.clone();
        match (round / valid.len()) % 4 {
            0 => {
                for _ in 0..(next() % 8 + 1) {
                    let i = (next() as usize) % b.len();
                    b[i] = next() as u8;
                }
            }
            1 => b.truncate((next() as usize) % b.len()),
            2 => {
                let i = (next() as usize) % b.len();
                let extra: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
                b.splice(i..i, extra);
            }
            _ => b = (0..(next() % 512)).map(|_| next() as u8).collect(),
        }
        parsed += usize::from(parse_command(&b).is_ok())
            + usize::from(parse_interaction(&b).is_ok())
            + usize::from(parse_event(&b).is_ok());
        let text = String::from_utf8_lossy(&b);
        let _ = unescape(&text);
        let _ = strip_mention(&text, None);
        let _ = strip_mention(&text, Some("UBOT"));

        // The signature check: the original signature over a changed body is refused; the
        // changed bytes as headers never panic it.
        let sig = sign(SECRET, TS, original).unwrap();
        assert!(verify(SECRET, TS, &sig, original, NOW).is_ok());
        if b != *original {
            assert!(verify(SECRET, TS, &sig, &b, NOW).is_err(), "round {round}");
        }
        let mut halves = text.splitn(2, ':');
        let (h1, h2) = (halves.next().unwrap_or(""), halves.next().unwrap_or(""));
        let _ = verify(SECRET, h1, h2, &b, NOW);
        let _ = verify(SECRET, TS, h1, &b, NOW);
        let _ = verify(SECRET, TS, &format!("v0={h2}"), &b, NOW);
        let _ = verify(SECRET, h1, &sig, original, i64::MAX);
        let _ = verify(SECRET, h1, &sig, original, i64::MIN);
        let _ = dedup.refuse_replay(h1, NOW);
    }
    assert!(
        parsed > 0,
        "some mutations still parse, so the parsers were exercised past the first error"
    );
}
