//! A seeded-secrets corpus through every path that reaches a model: tool outputs, the report (a
//! chat message), a recorded eval case replayed later, and the log. The model is a TEST DOUBLE
//! that captures every request it receives; not one seeded secret may be in them.

use async_trait::async_trait;
use oncall::agent::events::Silent;
use oncall::config::{Config, CustomRedaction};
use oncall::llm::{ChatModel, ChatReply, ChatRequest, LlmError, Role, ToolCallRequest};
use oncall::tool::{DynTool, Registry, RiskClass, ToolError, ToolSpec};
use serde_json::{Value, json};
use std::sync::Mutex;

/// (what it is, the text that carries it, the secret part that must never be seen).
const SECRETS: [(&str, &str, &str); 10] = [
    (
        "connection string",
        "postgres://app:Pg-S3cret-77@db.internal:5432/app",
        "Pg-S3cret-77",
    ),
    (
        "bearer token",
        "Authorization: Bearer abcDEF123456ghiJKL789",
        "abcDEF123456ghiJKL789",
    ),
    (
        "jwt",
        "session eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    (
        "aws access key",
        "key AKIAIOSFODNN7SEEDED1 in use",
        "AKIAIOSFODNN7SEEDED1",
    ),
    (
        "private key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAseededkeymaterial\n-----END RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEAseededkeymaterial",
    ),
    (
        "e-mail",
        "reported by jane.seeded@example.com",
        "jane.seeded@example.com",
    ),
    (
        "api key",
        "OPENAI sk-live-0123456789abcdefSEEDED",
        "sk-live-0123456789abcdefSEEDED",
    ),
    (
        "password pair",
        "retrying with password=hunter2-seeded",
        "hunter2-seeded",
    ),
    (
        "custom pattern",
        "see ticket TCK-482910 for the credentials",
        "TCK-482910",
    ),
    (
        "url password",
        "fetching https://svc:Url-Pa55-seeded@artifacts.internal/x",
        "Url-Pa55-seeded",
    ),
];

/// A read tool whose output carries every seeded secret, in strings, nested values and
/// secret-named keys.
struct Leaky(&'static str);

#[async_trait]
impl DynTool for Leaky {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.0,
            description: "a read tool whose output is full of secrets",
            risk: RiskClass::Read,
            parameters: json!({"type": "object"}),
            unavailable: false,
            version: 1,
        }
    }

    async fn call_json(&self, _args: Value) -> Result<Value, ToolError> {
        Ok(json!({
            "lines": SECRETS.iter().map(|s| s.1).collect::<Vec<_>>(),
            "nested": {"env": {"api_key": "plainvalue-xyz-123", "DB_PASSWORD": "plain-db-pw-456"}},
            "query": format!("SELECT * FROM users WHERE note = '{}'", SECRETS[0].1),
        }))
    }
}

const PLAIN: [&str; 2] = ["plainvalue-xyz-123", "plain-db-pw-456"];

/// TEST DOUBLE of a model that captures every request: it calls every tool once, then concludes.
#[derive(Default)]
struct Capturing {
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl ChatModel for Capturing {
    fn name(&self) -> String {
        "capturing-test-double".into()
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatReply, LlmError> {
        self.seen
            .lock()
            .unwrap()
            .push(serde_json::to_string(&req.messages).unwrap());
        let asked = req
            .messages
            .iter()
            .any(|m| m.role == Role::Assistant && !m.tool_calls.is_empty());
        if asked || req.tools.is_empty() {
            return Ok(ChatReply {
                content: Some("done".into()),
                ..Default::default()
            });
        }
        Ok(ChatReply {
            tool_calls: req
                .tools
                .iter()
                .filter(|t| !t.name.starts_with("board."))
                .enumerate()
                .map(|(i, t)| ToolCallRequest {
                    id: format!("s{i}"),
                    name: t.name.clone(),
                    arguments: "{}".into(),
                })
                .collect(),
            ..Default::default()
        })
    }
}

fn leaks(text: &str) -> Vec<String> {
    let mut out: Vec<String> = SECRETS
        .iter()
        .filter(|s| text.contains(s.2))
        .map(|s| s.0.to_string())
        .collect();
    out.extend(
        PLAIN
            .iter()
            .filter(|p| text.contains(*p))
            .map(|p| p.to_string()),
    );
    out
}

fn registry() -> Registry {
    Registry::from_tools(vec![
        Box::new(Leaky("host.use_snapshot")),
        Box::new(Leaky("postgres.activity")),
        Box::new(Leaky("traces.errors")),
    ])
}

fn report() -> String {
    format!(
        "checkout down, the DSN is {} and {} says {}",
        SECRETS[0].1, SECRETS[5].1, SECRETS[8].1
    )
}

#[tokio::test]
async fn no_seeded_secret_reaches_the_model_from_outputs_report_or_a_recorded_case() {
    oncall::policy::redact::configure(&[CustomRedaction {
        kind: "ticket".into(),
        pattern: r"TCK-[0-9]{6}".into(),
    }])
    .unwrap();
    let config = Config::default();
    // 1. Tool outputs and the report, live.
    let model = Capturing::default();
    let reg = registry();
    oncall::agent::investigate(&report(), &reg, &config, &model, &Silent)
        .await
        .unwrap();
    let seen = model.seen.lock().unwrap().join("\n");
    assert!(
        seen.contains("[REDACTED:"),
        "the double did see the outputs"
    );
    assert_eq!(leaks(&seen), Vec::<String>::new(), "live prompts");
    // 2. A case recorded from the same tools, then replayed.
    let rec = Capturing::default();
    let case = oncall::eval::record::record("s-01", &report(), &config, &reg, &rec, |_| {})
        .await
        .unwrap();
    let written = serde_json::to_string(&case).unwrap();
    assert_eq!(leaks(&written), Vec::<String>::new(), "the recorded case");
    let replayed = Capturing::default();
    let replay = oncall::eval::replay::registry(&case, &reg);
    oncall::agent::investigate(&case.report, &replay, &config, &replayed, &Silent)
        .await
        .unwrap();
    let seen = replayed.seen.lock().unwrap().join("\n");
    assert!(seen.contains("[REDACTED:"));
    assert_eq!(leaks(&seen), Vec::<String>::new(), "replayed prompts");
    eprintln!(
        "seeded secrets: {} kinds + {} secret-named keys through outputs, the report and a recorded case: 0 reached the model",
        SECRETS.len(),
        PLAIN.len()
    );
}

#[test]
fn the_log_and_the_answer_carry_no_secret_from_the_report() {
    let (code, out, err) = {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_oncall"))
            .args(["triage", "--json", &report()])
            .env_remove("ONCALL_CONFIG")
            .env("ONCALL_LOG", "debug")
            .env("ONCALL_HOST__WINDOW_MS", "100")
            .output()
            .expect("run oncall");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(code, 0, "{err}");
    assert!(!err.is_empty(), "debug logging produced lines");
    // Without the custom pattern configured in this process, the ticket id is ordinary text.
    let leaked: Vec<String> = leaks(&(out + &err))
        .into_iter()
        .filter(|k| k != "custom pattern")
        .collect();
    assert_eq!(leaked, Vec::<String>::new());
}
