//! Running a built call: the command with only its declared environment, or the HTTP request;
//! what comes back is redacted and cut short.

use super::Action;
use super::parse::Template;
use super::render::Env;
use crate::tool::ToolError;
use serde_json::{Value, json};
use std::collections::BTreeMap;

impl Action {
    pub(super) async fn run(&self, args: Value) -> Result<Value, ToolError> {
        let plan = self.build(&args, Env::Resolve)?;
        let fail = |message: String| ToolError::Failed {
            tool: self.spec.name.to_string(),
            message,
        };
        match &self.template {
            Template::Command {
                timeout, pass_env, ..
            } => {
                let argv: Vec<String> = serde_json::from_value(plan["argv"].clone())
                    .map_err(|e| fail(e.to_string()))?;
                let Some(program) = argv.first() else {
                    return Err(fail("command.argv is empty".into()));
                };
                let env: BTreeMap<String, String> =
                    serde_json::from_value(plan["env"].clone()).map_err(|e| fail(e.to_string()))?;
                let mut cmd = tokio::process::Command::new(program);
                // Nothing of oncall's environment but what the file declares.
                cmd.args(&argv[1..])
                    .env_clear()
                    .envs(&env)
                    .envs(
                        pass_env
                            .iter()
                            .filter_map(|k| Some((k, std::env::var_os(k)?))),
                    )
                    .kill_on_drop(true);
                let out = tokio::time::timeout(*timeout, cmd.output())
                    .await
                    .map_err(|_| fail(format!("{} did not finish within {timeout:?}", argv[0])))?
                    .map_err(|e| fail(format!("cannot run {}: {e}", argv[0])))?;
                let text = |b: &[u8]| {
                    let s = String::from_utf8_lossy(b);
                    crate::redact::redact(&s.chars().take(4000).collect::<String>())
                };
                let answer = json!({"argv": argv, "exit_code": out.status.code(), "stdout": text(&out.stdout), "stderr": text(&out.stderr)});
                if out.status.success() {
                    Ok(answer)
                } else {
                    Err(fail(format!(
                        "{} exited with {:?}: {}",
                        argv[0],
                        out.status.code(),
                        text(&out.stderr)
                    )))
                }
            }
            Template::Http {
                method, timeout, ..
            } => {
                let url = plan["url"].as_str().unwrap_or_default().to_string();
                let client = reqwest::Client::builder()
                    .timeout(*timeout)
                    .build()
                    .map_err(|e| fail(e.to_string()))?;
                let mut req = client.request(method.clone(), &url);
                for (k, h) in plan["headers"].as_object().into_iter().flatten() {
                    req = req.header(k.as_str(), h.as_str().unwrap_or_default());
                }
                if !plan["body"].is_null() {
                    req = req.json(&plan["body"]);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| fail(format!("{} {url}: {e}", method.as_str())))?;
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                let body = crate::redact::redact(&body.chars().take(4000).collect::<String>());
                if status.is_success() {
                    Ok(json!({"status": status.as_u16(), "body": body}))
                } else {
                    Err(fail(format!(
                        "{} {url} answered {status}: {body}",
                        method.as_str()
                    )))
                }
            }
        }
    }
}
